//! The pool block: one `#[repr(C)]` image of a pool's whole state (header with counters and
//! wait words, process table, ports, queues, the slot table), made of integers, atomics and
//! offsets only, so that it can be placed in private memory or in a shared-memory segment mapped
//! at any address.
//!
//! ```text
//! offset 0           PoolHeader      identity, shape, counters, wait words
//! processes          [ProcessEntry]  MAX_PROCESSES attached processes
//! ports              [PortEntry]     shape.ports fan-out ports
//! free_queue         QueueCtrl, [QueueCell; cells_for(capacity)]
//! filled_queue       QueueCtrl, [QueueCell; cells_for(capacity)]
//! port_queues        shape.ports × (QueueCtrl, [QueueCell; shape.port_depth])
//! slots              [Slot; capacity], 64-byte aligned
//! len                (shared pools: the buffers' memory follows, page-aligned)
//! ```
//!
//! The layout is a pure function of the [`Shape`] ([`BlockLayout::new`]), so a process that maps a
//! block recomputes every offset from the shape instead of trusting offsets stored in it, and
//! [`Block::attach`](crate::block::view::Block::attach) checks everything else it will follow
//! before trusting the block.

use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};

use crate::block::port_entry::{MAX_PORT_DEPTH, MAX_PORTS, PortEntry};
use crate::block::process::{MAX_PROCESSES, ProcessEntry};
use crate::block::slot::Slot;
use crate::lockfree::queue::{QueueCell, QueueCtrl, cells_for};
use crate::lockfree::wait::WaitWord;
use crate::shm::region::REGION_ALIGN;
use crate::sync::shm_safe::{CachePadded, ShmSafe};

/// `b"BUFPOOL2"`: marks an initialised block.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"BUFPOOL2");
/// Version of this layout; bumped on any change to the structures in a block (or to the
/// protocol between processes using them: 6 brought kernel-held liveness, 7 dropped the header's
/// unread `destroyed` flag and `reaped` counter).
pub(crate) const LAYOUT_VERSION: u32 = 7;
/// Longest pool name in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Longest category in bytes.
pub const MAX_CATEGORY_LEN: usize = 31;
/// `PoolHeader::flags` bit: acquisitions record the time in the slot.
pub(crate) const FLAG_HOLD_TIMES: u32 = 1;
/// Most buffers one pool can ever hold.
pub const MAX_CAPACITY: u32 = 1 << 20;
/// Bytes of a share token: what another process needs to open one buffer's memory (a CUDA IPC
/// memory handle is 64 bytes).
pub const SHARE_TOKEN_LEN: usize = 64;
/// Alignment of every buffer in a shared segment.
pub(crate) const BUFFER_ALIGN: u64 = 64;

/// The block's first structure: identity and shape (written once, before the block is
/// published), then live state. Every field is an atomic, so that a peer writing any of them
/// while this process reads gives wrong numbers, never undefined behaviour; the identity and
/// shape are read once, when attaching, and only the copies are used after that.
#[repr(C)]
pub(crate) struct PoolHeader {
    /// [`MAGIC`] once the block is initialised.
    pub(crate) magic: AtomicU64,
    pub(crate) layout_version: AtomicU32,
    pub(crate) capacity: AtomicU32,
    pub(crate) ports: AtomicU32,
    pub(crate) port_depth: AtomicU32,
    pub(crate) block_len: AtomicU64,
    pub(crate) pool_id: AtomicU64,
    pub(crate) name_len: AtomicU32,
    pub(crate) category_len: AtomicU32,
    /// Option bits, fixed at creation: [`FLAG_HOLD_TIMES`].
    pub(crate) flags: AtomicU32,
    /// 1 while the pool is open, 0 once it is closed. (Open rather than closed, so that a
    /// zeroed block, which is what a forked child's inherited handles see, reads as closed.)
    pub(crate) open: AtomicU32,
    pub(crate) name: [AtomicU8; MAX_NAME_LEN + 1],
    pub(crate) category: [AtomicU8; MAX_CATEGORY_LEN + 1],
    /// Number of slots that hold a buffer.
    pub(crate) buffers: AtomicU32,
    /// Acquisitions that had to wait.
    pub(crate) waits: AtomicU64,
    /// Acquisitions that gave up after their timeout.
    pub(crate) timeouts: AtomicU64,
    /// Buffers taken back from dead processes.
    pub(crate) reclaimed: AtomicU64,
    /// Fewest buffers seen on the free queue right after an acquisition.
    pub(crate) free_low_water: AtomicU32,
    /// Most buffers seen on the filled queue right after a submission.
    pub(crate) filled_high_water: AtomicU32,
    /// Producers waiting for a free buffer.
    pub(crate) free_wait: CachePadded<WaitWord>,
    /// Consumers waiting for a filled buffer.
    pub(crate) filled_wait: CachePadded<WaitWord>,
}

// SAFETY: `#[repr(C)]`; fields are atomics, arrays of atomics and `CachePadded<WaitWord>`, all
// `ShmSafe`.
unsafe impl ShmSafe for PoolHeader {}

/// The numbers a block's layout is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Most buffers.
    pub(crate) capacity: u32,
    /// Fan-out ports.
    pub(crate) ports: u32,
    /// Cells of each port's queue (a power of two).
    pub(crate) port_depth: u32,
}

impl Shape {
    /// The shape whose layout is only the header (to read a header before trusting it).
    pub(crate) const EMPTY: Shape = Shape {
        capacity: 0,
        ports: 0,
        port_depth: 2,
    };

    /// Checks the ranges; the reason, for an error message, if one is out.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(format!("capacity {} (1 to {MAX_CAPACITY})", self.capacity));
        }
        if self.ports > MAX_PORTS as u32 {
            return Err(format!("{} ports (at most {MAX_PORTS})", self.ports));
        }
        if !self.port_depth.is_power_of_two() || !(2..=MAX_PORT_DEPTH).contains(&self.port_depth) {
            return Err(format!(
                "port depth {} (a power of two from 2 to {MAX_PORT_DEPTH})",
                self.port_depth
            ));
        }
        Ok(())
    }
}

/// Where each part of a block lies, computed from the shape alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockLayout {
    pub(crate) shape: Shape,
    pub(crate) cells: usize,
    pub(crate) processes: usize,
    pub(crate) ports: usize,
    pub(crate) free_queue: usize,
    pub(crate) filled_queue: usize,
    pub(crate) port_queues: usize,
    pub(crate) port_queue_len: usize,
    pub(crate) slots: usize,
    pub(crate) len: usize,
}

pub(crate) const fn align_up(offset: usize, align: usize) -> usize {
    (offset + align - 1) & !(align - 1)
}

impl BlockLayout {
    /// The layout for `shape` (checked by the caller with [`Shape::check`]).
    pub(crate) fn new(shape: Shape) -> BlockLayout {
        let cells = cells_for(shape.capacity);
        let queue_len = size_of::<QueueCtrl>() + cells * size_of::<QueueCell>();
        let port_queue_len = align_up(
            size_of::<QueueCtrl>() + shape.port_depth as usize * size_of::<QueueCell>(),
            align_of::<QueueCtrl>(),
        );
        let processes = align_up(size_of::<PoolHeader>(), align_of::<ProcessEntry>());
        let ports = align_up(
            processes + MAX_PROCESSES * size_of::<ProcessEntry>(),
            align_of::<PortEntry>(),
        );
        let free_queue = align_up(
            ports + shape.ports as usize * size_of::<PortEntry>(),
            align_of::<QueueCtrl>(),
        );
        let filled_queue = align_up(free_queue + queue_len, align_of::<QueueCtrl>());
        let port_queues = align_up(filled_queue + queue_len, align_of::<QueueCtrl>());
        let slots = align_up(
            port_queues + shape.ports as usize * port_queue_len,
            align_of::<Slot>(),
        );
        let len = align_up(
            slots + shape.capacity as usize * size_of::<Slot>(),
            REGION_ALIGN,
        );
        BlockLayout {
            shape,
            cells,
            processes,
            ports,
            free_queue,
            filled_queue,
            port_queues,
            port_queue_len,
            slots,
            len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(capacity: u32) -> Shape {
        Shape {
            capacity,
            ports: 3,
            port_depth: 4,
        }
    }

    #[test]
    fn layout_parts_do_not_overlap_and_fit() {
        for capacity in [1, 2, 3, 8, 100, 4096] {
            let l = BlockLayout::new(shape(capacity));
            assert!(l.processes >= size_of::<PoolHeader>());
            assert!(l.ports >= l.processes + MAX_PROCESSES * size_of::<ProcessEntry>());
            assert!(l.free_queue >= l.ports + 3 * size_of::<PortEntry>());
            assert!(l.filled_queue >= l.free_queue + size_of::<QueueCtrl>() + l.cells * 8);
            assert!(l.port_queues >= l.filled_queue + size_of::<QueueCtrl>() + l.cells * 8);
            assert!(l.slots >= l.port_queues + 3 * l.port_queue_len);
            assert!(l.len >= l.slots + capacity as usize * size_of::<Slot>());
            assert_eq!(l.slots % 64, 0);
            assert_eq!(l.len % REGION_ALIGN, 0);
        }
    }
}
