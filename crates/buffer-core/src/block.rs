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
//! [`Block::attach`] checks everything else it will follow before trusting the block.

use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::error::AttachError;
use crate::port::PortEntry;
use crate::port::{MAX_PORT_DEPTH, MAX_PORTS};
use crate::process::{MAX_PROCESSES, ProcessEntry};
use crate::queue::{QueueCell, QueueCtrl, QueueRef, cells_for};
use crate::region::{REGION_ALIGN, Region};
use crate::shm_safe::{CachePadded, ShmSafe, load_bytes};
use crate::slot::{FOREIGN, NO_OFFSET, Slot, SlotState, SlotWord};
use crate::wait::WaitWord;
use crate::{MemoryKind, Queue};

/// `b"BUFPOOL2"`: marks an initialised block.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"BUFPOOL2");
/// Version of this layout; bumped on any change to the structures in a block (or to the
/// protocol between processes using them: 6 brought kernel-held liveness).
pub(crate) const LAYOUT_VERSION: u32 = 6;
/// Longest pool name in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Longest category in bytes.
pub const MAX_CATEGORY_LEN: usize = 31;
/// `PoolHeader::flags` bit: acquisitions record the time in the slot.
pub(crate) const FLAG_HOLD_TIMES: u32 = 1;
/// Most buffers one pool can ever hold.
pub const MAX_CAPACITY: u32 = 1 << 20;
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
    /// 1 once the creator destroyed the pool (its name is gone).
    pub(crate) destroyed: AtomicU32,
    /// Acquisitions that had to wait.
    pub(crate) waits: AtomicU64,
    /// Acquisitions that gave up after their timeout.
    pub(crate) timeouts: AtomicU64,
    /// Buffers taken back from dead processes.
    pub(crate) reclaimed: AtomicU64,
    /// Processes found dead and cleaned up after.
    pub(crate) reaped: AtomicU64,
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

/// What a block says about the pool in it, copied out of the block once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolIdentity {
    pub(crate) pool_id: u64,
    pub(crate) name: String,
    pub(crate) category: String,
    pub(crate) hold_times: bool,
    /// Each port's name, by index.
    pub(crate) ports: Vec<String>,
}

/// One buffer of an attached block, as read (once) and checked when attaching: where it lies in
/// the segment, how long it is, what memory it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttachedBuffer {
    pub(crate) index: u32,
    /// From the segment's start: the buffer's bytes, or (foreign) its share token.
    pub(crate) offset: usize,
    pub(crate) size: usize,
    pub(crate) kind: MemoryKind,
    /// Whether each process opens the memory itself from the token at `offset`.
    pub(crate) foreign: bool,
}

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

/// An initialised block and the region it lives in (owned: dropping it releases the region).
pub(crate) struct Block {
    /// Owned so that the memory lives exactly as long as the block.
    region: Region,
    view: BlockView,
}

/// A copyable view of an initialised block: its base address and layout. It is what the fast
/// path works with: one pointer and a few offsets, with no further indirection.
///
/// A view does not keep the block alive; see [`Block::view`].
#[derive(Clone, Copy)]
pub(crate) struct BlockView {
    base: NonNull<u8>,
    layout: BlockLayout,
}

// SAFETY: a view only gives access to `ShmSafe` structures made of atomics, and to slot metadata
// under the ownership protocol of `slot.rs`; both are meant for use from many threads.
unsafe impl Send for BlockView {}
// SAFETY: as for `Send`.
unsafe impl Sync for BlockView {}

/// What a new block is called and how it behaves.
pub(crate) struct BlockIdentity<'a> {
    pub(crate) pool_id: u64,
    pub(crate) name: &'a str,
    pub(crate) category: &'a str,
    pub(crate) hold_times: bool,
    pub(crate) port_names: &'a [String],
}

impl Block {
    /// Initialises a block for `layout` at the start of `region`, which nobody else sees yet (a
    /// private region, or a segment without a name), storing the magic number last.
    pub(crate) fn init(region: Region, layout: BlockLayout, identity: &BlockIdentity<'_>) -> Block {
        assert!(region.len() >= layout.len, "region smaller than the layout");
        let view = BlockView {
            base: region.base(),
            layout,
        };
        let block = Block { region, view };
        let header = block.header_for_init();
        *header.capacity.get_mut() = layout.shape.capacity;
        *header.ports.get_mut() = layout.shape.ports;
        *header.port_depth.get_mut() = layout.shape.port_depth;
        *header.layout_version.get_mut() = LAYOUT_VERSION;
        *header.block_len.get_mut() = layout.len as u64;
        *header.pool_id.get_mut() = identity.pool_id;
        *header.name_len.get_mut() = identity.name.len() as u32;
        for (byte, &value) in header.name.iter_mut().zip(identity.name.as_bytes()) {
            *byte.get_mut() = value;
        }
        *header.category_len.get_mut() = identity.category.len() as u32;
        for (byte, &value) in header.category.iter_mut().zip(identity.category.as_bytes()) {
            *byte.get_mut() = value;
        }
        *header.flags.get_mut() = if identity.hold_times {
            FLAG_HOLD_TIMES
        } else {
            0
        };
        *header.open.get_mut() = 1;
        *header.free_low_water.get_mut() = u32::MAX;
        let view = block.view;
        view.free_queue().init();
        view.filled_queue().init();
        for (index, name) in identity.port_names.iter().enumerate() {
            let offset = layout.ports + index * size_of::<PortEntry>();
            // SAFETY: the entry lies in the port table of this block, which nobody else sees
            // yet; the configuration checked the name's length.
            unsafe { PortEntry::init(view.at::<PortEntry>(offset), name) };
            view.port_queue(index).init();
        }
        for index in 0..layout.shape.capacity {
            let slot = view.slot(index);
            slot.data_offset.store(NO_OFFSET, Ordering::Relaxed);
            slot.set(SlotWord::new(0, SlotState::Vacant));
        }
        view.header().magic.store(MAGIC, Ordering::Release);
        block
    }

    /// Takes a block that another process initialised in `region`, after checking everything
    /// this process will ever follow in it: magic, version, shape, that the layout fits the
    /// region, names, queue positions and that every buffer lies inside the region. Each value
    /// is read once and checked as read; the returned copies are all the caller may use (a
    /// peer changing the block meanwhile cannot make a checked value unchecked).
    pub(crate) fn attach(
        region: Region,
    ) -> Result<(Block, PoolIdentity, Vec<AttachedBuffer>), AttachError> {
        if region.len() < size_of::<PoolHeader>() {
            return Err(AttachError::Truncated {
                len: region.len(),
                needed: size_of::<PoolHeader>(),
            });
        }
        let probe = BlockView {
            base: region.base(),
            layout: BlockLayout::new(Shape::EMPTY),
        };
        let header = probe.header();
        let magic = header.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(AttachError::NotAPool { magic });
        }
        let version = header.layout_version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(AttachError::Version {
                found: version,
                supported: LAYOUT_VERSION,
            });
        }
        let shape = Shape {
            capacity: header.capacity.load(Ordering::Relaxed),
            ports: header.ports.load(Ordering::Relaxed),
            port_depth: header.port_depth.load(Ordering::Relaxed),
        };
        shape
            .check()
            .map_err(|reason| AttachError::Shape { reason })?;
        let layout = BlockLayout::new(shape);
        let stored = header.block_len.load(Ordering::Relaxed);
        if stored != layout.len as u64 || layout.len > region.len() {
            return Err(AttachError::Layout {
                stored,
                computed: layout.len as u64,
                mapped: region.len(),
            });
        }
        let text = |bytes: &[AtomicU8], len: &AtomicU32, what: &str| {
            let len = len.load(Ordering::Relaxed) as usize;
            bytes
                .get(..len)
                .and_then(|bytes| String::from_utf8(load_bytes(bytes)).ok())
                .ok_or_else(|| AttachError::Corrupt { what: what.into() })
        };
        let name = text(&header.name, &header.name_len, "pool name")?;
        let category = text(&header.category, &header.category_len, "pool category")?;
        if name.is_empty() {
            return Err(AttachError::Corrupt {
                what: "pool name".into(),
            });
        }
        let view = BlockView {
            base: region.base(),
            layout,
        };
        let ports = (0..shape.ports as usize)
            .map(|index| {
                view.port(index).name().ok_or_else(|| AttachError::Corrupt {
                    what: format!("name of port {index}"),
                })
            })
            .collect::<Result<Vec<String>, AttachError>>()?;
        let queues = [(Queue::Free.to_string(), view.free_queue())]
            .into_iter()
            .chain([(Queue::Filled.to_string(), view.filled_queue())]);
        let port_queues = (0..shape.ports as usize)
            .map(|index| (format!("port {index}"), view.port_queue(index)));
        for (name, queue) in queues.chain(port_queues) {
            let (head, tail) = queue.positions();
            if tail.wrapping_sub(head) > queue.cell_count() as u64 {
                return Err(AttachError::Corrupt {
                    what: format!("{name} queue positions (head {head}, tail {tail})"),
                });
            }
        }
        let mut buffers = Vec::new();
        for index in 0..shape.capacity {
            let slot = view.slot(index);
            let offset = slot.data_offset.load(Ordering::Relaxed);
            let size = slot.size.load(Ordering::Relaxed);
            let foreign = slot.flags.load(Ordering::Relaxed) & FOREIGN != 0;
            if offset == NO_OFFSET {
                if slot.word().state == Some(SlotState::Vacant) {
                    continue;
                }
                return Err(AttachError::Corrupt {
                    what: format!("slot {index}: a buffer outside the segment"),
                });
            }
            // A foreign buffer's memory lies elsewhere; the segment holds its share token.
            let span = if foreign {
                crate::SHARE_TOKEN_LEN as u64
            } else {
                size
            };
            let fits = offset >= layout.len as u64
                && offset.is_multiple_of(BUFFER_ALIGN)
                && size > 0
                && usize::try_from(size).is_ok()
                && offset
                    .checked_add(span)
                    .is_some_and(|end| end <= region.len() as u64);
            if !fits {
                return Err(AttachError::Corrupt {
                    what: format!(
                        "slot {index}: buffer at offset {offset}, {size} bytes, in a segment of {} bytes",
                        region.len()
                    ),
                });
            }
            buffers.push(AttachedBuffer {
                index,
                offset: offset as usize,
                size: size as usize,
                kind: MemoryKind::from_word(slot.memory_kind.load(Ordering::Relaxed)),
                foreign,
            });
        }
        // Two slots over the same bytes would make two guards of this process alias memory.
        let span = |buffer: &AttachedBuffer| {
            let len = if buffer.foreign {
                crate::SHARE_TOKEN_LEN
            } else {
                buffer.size
            };
            (buffer.offset, buffer.offset + len, buffer.index)
        };
        let mut spans: Vec<(usize, usize, u32)> = buffers.iter().map(span).collect();
        spans.sort_unstable();
        if let Some(pair) = spans.windows(2).find(|pair| pair[1].0 < pair[0].1) {
            return Err(AttachError::Corrupt {
                what: format!(
                    "slots {} and {}: their buffers overlap in the segment",
                    pair[0].2, pair[1].2
                ),
            });
        }
        let identity = PoolIdentity {
            pool_id: header.pool_id.load(Ordering::Relaxed),
            name,
            category,
            hold_times: header.flags.load(Ordering::Relaxed) & FLAG_HOLD_TIMES != 0,
            ports,
        };
        let block = Block { region, view };
        Ok((block, identity, buffers))
    }

    /// The region's start and length (the mapping, for a shared pool).
    pub(crate) fn region(&self) -> (NonNull<u8>, usize) {
        (self.region.base(), self.region.len())
    }

    /// A view of this block.
    ///
    /// # Safety
    ///
    /// The view and every copy of it must be used only while this block is alive (in practice:
    /// stored beside an `Arc` that owns the block).
    pub(crate) unsafe fn view(&self) -> BlockView {
        self.view
    }

    /// `&mut` access to the header while initialising: the block was just handed over in `init`
    /// and no reference to it exists yet.
    #[allow(clippy::mut_from_ref)]
    fn header_for_init(&self) -> &mut PoolHeader {
        let ptr = self.view.at::<PoolHeader>(0).as_ptr();
        // SAFETY: `at` checked bounds and alignment; the region is zeroed memory and
        // `PoolHeader` is `ShmSafe` (valid for all zeros); `init` is the only caller and runs
        // before any shared reference into the block exists, so this `&mut` is unique.
        unsafe { &mut *ptr }
    }
}

impl BlockView {
    /// Pointer to a `T` at `offset`, checked to lie inside the region and be aligned.
    #[inline(always)]
    fn at<T: ShmSafe>(&self, offset: usize) -> NonNull<T> {
        debug_assert!(offset + size_of::<T>() <= self.layout.len.max(size_of::<PoolHeader>()));
        debug_assert_eq!(offset % align_of::<T>(), 0);
        // SAFETY: `offset` lies inside the block (asserted above; every caller passes an offset
        // from `self.layout`, and the region holds the whole layout, as `init` asserted and
        // `attach` checked).
        let ptr = unsafe { self.base.as_ptr().add(offset) };
        // SAFETY: derived from a non-null base by an in-bounds offset.
        unsafe { NonNull::new_unchecked(ptr.cast::<T>()) }
    }

    /// The block's start in this process.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The header.
    #[inline(always)]
    pub(crate) fn header(&self) -> &PoolHeader {
        // SAFETY: offset 0 is in bounds and page-aligned; the header was initialised in `init`
        // (or checked in `attach`) and lives as long as the block, which outlives the view
        // (`Block::view`).
        unsafe { self.at::<PoolHeader>(0).as_ref() }
    }

    /// The slot at `index` (`index < capacity`, checked).
    #[inline(always)]
    pub(crate) fn slot(&self, index: u32) -> &Slot {
        assert!(
            index < self.layout.shape.capacity,
            "slot index out of range"
        );
        let offset = self.layout.slots + index as usize * size_of::<Slot>();
        // SAFETY: `index < capacity`, so the slot lies inside the slot table, which the layout
        // places inside the block, 64-byte aligned; slots are initialised in `init` and live as
        // long as the block, which outlives the view (`Block::view`).
        unsafe { self.at::<Slot>(offset).as_ref() }
    }

    /// The slot at `index` if the index (read from the block, so untrusted) is in range.
    #[inline(always)]
    pub(crate) fn slot_checked(&self, index: u32) -> Option<&Slot> {
        (index < self.layout.shape.capacity).then(|| self.slot(index))
    }

    /// The shape this block was laid out for.
    #[inline]
    pub(crate) fn shape(&self) -> Shape {
        self.layout.shape
    }

    /// The capacity this block was laid out for.
    #[inline]
    pub(crate) fn capacity(&self) -> u32 {
        self.layout.shape.capacity
    }

    fn queue_at(&self, offset: usize, cells: usize) -> QueueRef<'_> {
        let cells_offset = offset + size_of::<QueueCtrl>();
        let first = self.at::<QueueCell>(cells_offset);
        // SAFETY: the layout reserves `cells` cells right after the control block, inside the
        // block, aligned for `QueueCell`; they live as long as the block, which outlives the view.
        let cells = unsafe { std::slice::from_raw_parts(first.as_ptr(), cells) };
        // SAFETY: the control block lies at `offset` inside the block (layout) and lives as long
        // as the block, which outlives the view.
        let ctrl = unsafe { self.at::<QueueCtrl>(offset).as_ref() };
        QueueRef::new(ctrl, cells)
    }

    /// The free queue.
    #[inline(always)]
    pub(crate) fn free_queue(&self) -> QueueRef<'_> {
        self.queue_at(self.layout.free_queue, self.layout.cells)
    }

    /// The filled queue.
    #[inline(always)]
    pub(crate) fn filled_queue(&self) -> QueueRef<'_> {
        self.queue_at(self.layout.filled_queue, self.layout.cells)
    }

    /// A queue and the wait word of its waiters.
    #[inline(always)]
    pub(crate) fn queue(&self, queue: Queue) -> (QueueRef<'_>, &WaitWord) {
        match queue {
            Queue::Free => (self.free_queue(), &self.header().free_wait),
            Queue::Filled => (self.filled_queue(), &self.header().filled_wait),
        }
    }

    /// The entry of port `index` (`index < shape.ports`, checked).
    pub(crate) fn port(&self, index: usize) -> &PortEntry {
        assert!(
            index < self.layout.shape.ports as usize,
            "port index out of range"
        );
        let offset = self.layout.ports + index * size_of::<PortEntry>();
        // SAFETY: in range (asserted), so inside the port table that the layout places in the
        // block, aligned for `PortEntry`; lives as long as the block, which outlives the view.
        unsafe { self.at::<PortEntry>(offset).as_ref() }
    }

    /// The queue of port `index` (`index < shape.ports`, checked).
    pub(crate) fn port_queue(&self, index: usize) -> QueueRef<'_> {
        assert!(
            index < self.layout.shape.ports as usize,
            "port index out of range"
        );
        let offset = self.layout.port_queues + index * self.layout.port_queue_len;
        self.queue_at(offset, self.layout.shape.port_depth as usize)
    }

    /// The process entry of `actor` (1..=MAX_PROCESSES); `None` for any other number.
    pub(crate) fn process(&self, actor: u8) -> Option<&ProcessEntry> {
        let index = usize::from(actor).checked_sub(1)?;
        (index < MAX_PROCESSES).then(|| {
            let offset = self.layout.processes + index * size_of::<ProcessEntry>();
            // SAFETY: `index < MAX_PROCESSES`, so inside the process table that the layout places
            // in the block; lives as long as the block, which outlives the view.
            unsafe { self.at::<ProcessEntry>(offset).as_ref() }
        })
    }

    /// Every actor number with its entry.
    pub(crate) fn processes(&self) -> impl Iterator<Item = (u8, &ProcessEntry)> + '_ {
        (1..=MAX_PROCESSES as u8).filter_map(|actor| Some((actor, self.process(actor)?)))
    }

    /// Finds a vacant slot and claims it for an injection by `actor`; `None` if every slot is
    /// taken.
    pub(crate) fn claim_vacant_slot(&self, actor: u8) -> Option<(u32, u32)> {
        (0..self.capacity()).find_map(|index| {
            let slot = self.slot(index);
            let word = slot.word();
            (word.state == Some(SlotState::Vacant)
                && slot
                    .replace(
                        word,
                        SlotWord::new(word.generation, SlotState::Injecting).by(actor),
                    )
                    .is_ok())
            .then_some((index, word.generation))
        })
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

    #[test]
    fn init_publishes_identity_and_empty_state() {
        let layout = BlockLayout::new(shape(4));
        let owner = Block::init(
            Region::private(layout.len).unwrap(),
            layout,
            &BlockIdentity {
                pool_id: 9,
                name: "cam0",
                category: "video",
                hold_times: true,
                port_names: &["a".into(), "b".into(), "c".into()],
            },
        );
        // SAFETY: `owner` outlives `block`; both live until the end of this test.
        let block = unsafe { owner.view() };
        let h = block.header();
        assert_eq!(h.magic.load(Ordering::Acquire), MAGIC);
        assert_eq!(h.capacity.load(Ordering::Relaxed), 4);
        assert_eq!(&load_bytes(&h.name)[..4], b"cam0");
        assert_eq!(&load_bytes(&h.category)[..5], b"video");
        assert_eq!(h.flags.load(Ordering::Relaxed), FLAG_HOLD_TIMES);
        assert_eq!(h.open.load(Ordering::Relaxed), 1);
        assert_eq!(block.port(2).name().as_deref(), Some("c"));
        assert_eq!(block.free_queue().len(), 0);
        assert_eq!(block.claim_vacant_slot(1), Some((0, 0)));
        assert_eq!(block.claim_vacant_slot(1), Some((1, 0)));
        assert!(block.process(0).is_none());
        assert!(block.process(MAX_PROCESSES as u8).is_some());
        assert!(block.process(MAX_PROCESSES as u8 + 1).is_none());
    }
}
