//! The pool block: one `#[repr(C)]` image of a pool's whole state (header with counters and
//! wait words, two queues, the slot table), made of integers, atomics and offsets only, so that it
//! can be placed in private memory or in a shared-memory segment mapped at any address.
//!
//! ```text
//! offset 0           PoolHeader     identity, counters, wait words
//! free_queue         QueueCtrl      head, tail
//!                    [QueueCell]    cells_for(capacity) cells
//! filled_queue       QueueCtrl
//!                    [QueueCell]
//! slots              [Slot]         capacity slots, 64-byte aligned
//! ```
//!
//! The layout is a pure function of the capacity ([`BlockLayout::new`]), so a process that maps a
//! block recomputes every offset from the capacity instead of trusting offsets stored in it.

use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::Queue;
use crate::queue::{QueueCell, QueueCtrl, QueueRef, cells_for};
use crate::region::{REGION_ALIGN, Region};
use crate::shm_safe::{CachePadded, ShmSafe};
use crate::slot::{Slot, SlotState, pack};
use crate::wait::WaitWord;

/// `b"BUFPOOL1"`: marks an initialised block.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"BUFPOOL1");
/// Version of this layout; bumped on any change to the structures in a block.
pub(crate) const LAYOUT_VERSION: u32 = 1;
/// Longest pool name in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Longest category in bytes.
pub const MAX_CATEGORY_LEN: usize = 31;
/// `PoolHeader::flags` bit: acquisitions record the time in the slot.
pub(crate) const FLAG_HOLD_TIMES: u32 = 1;
/// Most buffers one pool can ever hold.
pub const MAX_CAPACITY: u32 = 1 << 20;

/// The block's first structure: identity (written once, before `magic`), then live state.
#[repr(C)]
pub(crate) struct PoolHeader {
    /// [`MAGIC`] once the block is initialised; stored last, with `Release`.
    pub(crate) magic: AtomicU64,
    pub(crate) layout_version: u32,
    pub(crate) capacity: u32,
    pub(crate) block_len: u64,
    pub(crate) pool_id: u64,
    pub(crate) name_len: u32,
    pub(crate) category_len: u32,
    /// Option bits, fixed at creation: [`FLAG_HOLD_TIMES`].
    pub(crate) flags: u32,
    pub(crate) name: [u8; MAX_NAME_LEN + 1],
    pub(crate) category: [u8; MAX_CATEGORY_LEN + 1],
    /// 1 once the pool is closed.
    pub(crate) closed: AtomicU32,
    /// Number of slots that hold a buffer.
    pub(crate) buffers: AtomicU32,
    /// Acquisitions that had to wait.
    pub(crate) waits: AtomicU64,
    /// Acquisitions that gave up after their timeout.
    pub(crate) timeouts: AtomicU64,
    /// Fewest buffers seen on the free queue right after an acquisition.
    pub(crate) free_low_water: AtomicU32,
    /// Most buffers seen on the filled queue right after a submission.
    pub(crate) filled_high_water: AtomicU32,
    /// Producers waiting for a free buffer.
    pub(crate) free_wait: CachePadded<WaitWord>,
    /// Consumers waiting for a filled buffer.
    pub(crate) filled_wait: CachePadded<WaitWord>,
}

// SAFETY: `#[repr(C)]`; fields are integers, atomics, byte arrays and `CachePadded<WaitWord>`,
// all `ShmSafe`.
unsafe impl ShmSafe for PoolHeader {}

/// Where each part of a block lies, computed from the capacity alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockLayout {
    pub(crate) capacity: u32,
    pub(crate) cells: usize,
    pub(crate) free_queue: usize,
    pub(crate) filled_queue: usize,
    pub(crate) slots: usize,
    pub(crate) len: usize,
}

const fn align_up(offset: usize, align: usize) -> usize {
    (offset + align - 1) & !(align - 1)
}

impl BlockLayout {
    /// The layout for `capacity` slots (at most [`MAX_CAPACITY`], checked by the caller).
    pub(crate) fn new(capacity: u32) -> BlockLayout {
        let cells = cells_for(capacity);
        let queue_len = size_of::<QueueCtrl>() + cells * size_of::<QueueCell>();
        let free_queue = align_up(size_of::<PoolHeader>(), align_of::<QueueCtrl>());
        let filled_queue = align_up(free_queue + queue_len, align_of::<QueueCtrl>());
        let slots = align_up(filled_queue + queue_len, align_of::<Slot>());
        let len = align_up(slots + capacity as usize * size_of::<Slot>(), REGION_ALIGN);
        BlockLayout {
            capacity,
            cells,
            free_queue,
            filled_queue,
            slots,
            len,
        }
    }
}

/// An initialised block and the region it lives in (owned: dropping it releases the region).
pub(crate) struct Block {
    /// Owned so that the memory lives exactly as long as the block.
    _region: Region,
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

impl Block {
    /// Initialises a block for `layout` at the start of `region` (phase one: nobody else sees it
    /// yet) and publishes it by storing the magic number last.
    pub(crate) fn init(
        region: Region,
        layout: BlockLayout,
        pool_id: u64,
        name: &str,
        category: &str,
        hold_times: bool,
    ) -> Block {
        assert!(region.len() >= layout.len, "region smaller than the layout");
        let view = BlockView {
            base: region.base(),
            layout,
        };
        let block = Block {
            _region: region,
            view,
        };
        let header = block.header_for_init();
        header.capacity = layout.capacity;
        header.layout_version = LAYOUT_VERSION;
        header.block_len = layout.len as u64;
        header.pool_id = pool_id;
        header.name_len = name.len() as u32;
        header.name[..name.len()].copy_from_slice(name.as_bytes());
        header.category_len = category.len() as u32;
        header.category[..category.len()].copy_from_slice(category.as_bytes());
        header.flags = if hold_times { FLAG_HOLD_TIMES } else { 0 };
        header.free_low_water = AtomicU32::new(u32::MAX);
        let view = block.view;
        view.free_queue().init();
        view.filled_queue().init();
        for index in 0..layout.capacity {
            view.slot(index).set_state(0, SlotState::Vacant);
        }
        view.header().magic.store(MAGIC, Ordering::Release);
        block
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
        debug_assert!(offset + size_of::<T>() <= self.layout.len);
        debug_assert_eq!(offset % align_of::<T>(), 0);
        // SAFETY: `offset` lies inside the block (asserted above; every caller passes an offset
        // from `self.layout`, and the region holds the whole layout, as `init` asserted).
        let ptr = unsafe { self.base.as_ptr().add(offset) };
        // SAFETY: derived from a non-null base by an in-bounds offset.
        unsafe { NonNull::new_unchecked(ptr.cast::<T>()) }
    }

    /// The header.
    #[inline(always)]
    pub(crate) fn header(&self) -> &PoolHeader {
        // SAFETY: offset 0 is in bounds and page-aligned; the header was initialised in `init`
        // and lives as long as the block, which outlives the view (`Block::view`).
        unsafe { self.at::<PoolHeader>(0).as_ref() }
    }

    /// The slot at `index` (`index < capacity`, checked).
    #[inline(always)]
    pub(crate) fn slot(&self, index: u32) -> &Slot {
        assert!(index < self.layout.capacity, "slot index out of range");
        let offset = self.layout.slots + index as usize * size_of::<Slot>();
        // SAFETY: `index < capacity`, so the slot lies inside the slot table, which the layout
        // places inside the block, 64-byte aligned; slots are initialised in `init` and live as
        // long as the block, which outlives the view (`Block::view`).
        unsafe { self.at::<Slot>(offset).as_ref() }
    }

    /// The capacity this block was laid out for.
    #[inline]
    pub(crate) fn capacity(&self) -> u32 {
        self.layout.capacity
    }

    #[inline(always)]
    fn queue_at(&self, offset: usize) -> QueueRef<'_> {
        let cells_offset = offset + size_of::<QueueCtrl>();
        let cells = self.at::<QueueCell>(cells_offset);
        // SAFETY: the layout reserves `cells` cells right after the control block, inside the
        // block, aligned for `QueueCell`; they live as long as the block, which outlives the view.
        let cells = unsafe { std::slice::from_raw_parts(cells.as_ptr(), self.layout.cells) };
        // SAFETY: the control block lies at `offset` inside the block (layout) and lives as long
        // as the block, which outlives the view.
        let ctrl = unsafe { self.at::<QueueCtrl>(offset).as_ref() };
        QueueRef::new(ctrl, cells)
    }

    /// The free queue.
    #[inline(always)]
    pub(crate) fn free_queue(&self) -> QueueRef<'_> {
        self.queue_at(self.layout.free_queue)
    }

    /// The filled queue.
    #[inline(always)]
    pub(crate) fn filled_queue(&self) -> QueueRef<'_> {
        self.queue_at(self.layout.filled_queue)
    }

    /// A queue and the wait word of its waiters.
    #[inline(always)]
    pub(crate) fn queue(&self, queue: Queue) -> (QueueRef<'_>, &WaitWord) {
        match queue {
            Queue::Free => (self.free_queue(), &self.header().free_wait),
            Queue::Filled => (self.filled_queue(), &self.header().filled_wait),
        }
    }

    /// Whether acquisitions record hold times ([`FLAG_HOLD_TIMES`], fixed at creation).
    pub(crate) fn hold_times(&self) -> bool {
        self.header().flags & FLAG_HOLD_TIMES != 0
    }

    /// Finds a vacant slot and claims it for an injection; `None` if every slot is taken.
    pub(crate) fn claim_vacant_slot(&self) -> Option<(u32, u32)> {
        (0..self.layout.capacity).find_map(|index| {
            let slot = self.slot(index);
            let word = slot.state_word();
            let (generation, state) = crate::slot::unpack(word);
            (state == Some(SlotState::Vacant)
                && slot
                    .state
                    .compare_exchange(
                        word,
                        pack(generation, SlotState::Injecting),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok())
            .then_some((index, generation))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_parts_do_not_overlap_and_fit() {
        for capacity in [0, 1, 2, 3, 8, 100, 4096] {
            let l = BlockLayout::new(capacity);
            assert!(l.free_queue >= size_of::<PoolHeader>());
            assert!(l.filled_queue >= l.free_queue + size_of::<QueueCtrl>() + l.cells * 16);
            assert!(l.slots >= l.filled_queue + size_of::<QueueCtrl>() + l.cells * 16);
            assert!(l.len >= l.slots + capacity as usize * size_of::<Slot>());
            assert_eq!(l.slots % 64, 0);
            assert_eq!(l.len % REGION_ALIGN, 0);
        }
    }

    #[test]
    fn init_publishes_identity_and_empty_state() {
        let layout = BlockLayout::new(4);
        let owner = Block::init(
            Region::private(layout.len).unwrap(),
            layout,
            9,
            "cam0",
            "video",
            true,
        );
        // SAFETY: `owner` outlives `block`; both live until the end of this test.
        let block = unsafe { owner.view() };
        let h = block.header();
        assert_eq!(h.magic.load(Ordering::Acquire), MAGIC);
        assert_eq!(h.capacity, 4);
        assert_eq!(&h.name[..h.name_len as usize], b"cam0");
        assert_eq!(&h.category[..h.category_len as usize], b"video");
        assert_eq!(h.flags, FLAG_HOLD_TIMES);
        assert_eq!(block.free_queue().len(), 0);
        assert_eq!(block.claim_vacant_slot(), Some((0, 0)));
        assert_eq!(block.claim_vacant_slot(), Some((1, 0)));
    }
}
