//! How a process reaches a pool block: [`Block`] owns the region a block lies in, and
//! [`BlockView`] is the borrowed, copyable handle that the fast path works with (one pointer and
//! a few offsets), which the borrow checker keeps from outliving its block. [`Block::attach`]
//! checks everything a process will ever follow in a block another process made, and returns
//! copies of what it checked.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::block::layout::{
    BUFFER_ALIGN, BlockLayout, FLAG_HOLD_TIMES, LAYOUT_VERSION, MAGIC, PoolHeader, Shape,
};
use crate::block::memory_kind::MemoryKind;
use crate::block::port_entry::PortEntry;
use crate::block::process::{MAX_PROCESSES, ProcessEntry};
use crate::block::slot::{FOREIGN, NO_OFFSET, Slot, SlotState, SlotWord};
use crate::lockfree::queue::{QueueCell, QueueCtrl, QueueRef};
use crate::lockfree::wait::WaitWord;
use crate::shm::region::Region;
use crate::sync::shm_safe::{ShmSafe, load_bytes};
use std::fmt;

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

/// An initialised block and the region it lives in (owned: dropping it releases the region).
pub(crate) struct Block {
    /// Owned so that the memory lives exactly as long as the block.
    region: Region,
    address: BlockAddress,
}

/// Where a block lies in this process: its base address and layout, with no lifetime. It is
/// what a handle stores beside the `Arc` that owns the block, to reach the block with one load
/// less; it is read only by turning it back into a [`BlockView`] ([`BlockAddress::view`]).
#[derive(Clone, Copy)]
pub(crate) struct BlockAddress {
    base: NonNull<u8>,
    layout: BlockLayout,
}

// SAFETY: an address only gives access (through a view) to `ShmSafe` structures made of atomics,
// and to slot metadata under the ownership protocol of `block/slot.rs`; both are meant for use from
// many threads.
unsafe impl Send for BlockAddress {}
// SAFETY: as for `Send`.
unsafe impl Sync for BlockAddress {}

impl BlockAddress {
    /// A view of the block at this address, for `'b`.
    ///
    /// # Safety
    ///
    /// The [`Block`] this address came from ([`Block::address`]) must stay alive for `'b`.
    #[inline(always)]
    pub(crate) unsafe fn view<'b>(self) -> BlockView<'b> {
        BlockView {
            address: self,
            _block: PhantomData,
        }
    }
}

/// A copyable view of an initialised block, borrowed from it: what the fast path works with
/// (one pointer and a few offsets, with no further indirection). The borrow checker keeps every
/// copy from outliving the block.
#[derive(Clone, Copy)]
pub(crate) struct BlockView<'b> {
    address: BlockAddress,
    _block: PhantomData<&'b Block>,
}

/// Why a mapped block cannot be trusted, found by [`Block::attach`] before anything in it is
/// followed; the pool layer says it to the user as an `AttachError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockDefect {
    /// The mapping is shorter than a block's header.
    Truncated { len: usize, needed: usize },
    /// The block does not start with [`MAGIC`].
    NotAPool { magic: u64 },
    /// The block has another [`LAYOUT_VERSION`].
    Version { found: u32 },
    /// The shape is out of range; what.
    Shape(String),
    /// The stored length disagrees with the shape or the mapping.
    Layout {
        stored: u64,
        computed: u64,
        mapped: usize,
    },
    /// Something the block records is out of range; what.
    Corrupt(String),
}

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
        let address = BlockAddress {
            base: region.base(),
            layout,
        };
        let block = Block { region, address };
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
        let view = block.view();
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
    ) -> Result<(Block, PoolIdentity, Vec<AttachedBuffer>), BlockDefect> {
        if region.len() < size_of::<PoolHeader>() {
            return Err(BlockDefect::Truncated {
                len: region.len(),
                needed: size_of::<PoolHeader>(),
            });
        }
        // SAFETY: `region` holds at least the header (checked above), all that a view of the
        // empty shape reads.
        let probe = unsafe { BlockView::over(&region, BlockLayout::new(Shape::EMPTY)) };
        let header = probe.header();
        let magic = header.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(BlockDefect::NotAPool { magic });
        }
        let version = header.layout_version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(BlockDefect::Version { found: version });
        }
        let shape = Shape {
            capacity: header.capacity.load(Ordering::Relaxed),
            ports: header.ports.load(Ordering::Relaxed),
            port_depth: header.port_depth.load(Ordering::Relaxed),
        };
        shape.check().map_err(BlockDefect::Shape)?;
        let layout = BlockLayout::new(shape);
        let stored = header.block_len.load(Ordering::Relaxed);
        if stored != layout.len as u64 || layout.len > region.len() {
            return Err(BlockDefect::Layout {
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
                .ok_or_else(|| BlockDefect::Corrupt(what.into()))
        };
        let name = text(&header.name, &header.name_len, "pool name")?;
        let category = text(&header.category, &header.category_len, "pool category")?;
        if name.is_empty() {
            return Err(BlockDefect::Corrupt("pool name".into()));
        }
        // SAFETY: `region` holds the whole layout (checked above).
        let view = unsafe { BlockView::over(&region, layout) };
        let ports = (0..shape.ports as usize)
            .map(|index| {
                (view.port(index).name())
                    .ok_or_else(|| BlockDefect::Corrupt(format!("name of port {index}")))
            })
            .collect::<Result<Vec<String>, BlockDefect>>()?;
        let queues = [(Queue::Free.to_string(), view.free_queue())]
            .into_iter()
            .chain([(Queue::Filled.to_string(), view.filled_queue())]);
        let port_queues = (0..shape.ports as usize)
            .map(|index| (format!("port {index}"), view.port_queue(index)));
        for (name, queue) in queues.chain(port_queues) {
            let (head, tail) = queue.positions();
            if tail.wrapping_sub(head) > queue.cell_count() as u64 {
                return Err(BlockDefect::Corrupt(format!(
                    "{name} queue positions (head {head}, tail {tail})"
                )));
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
                return Err(BlockDefect::Corrupt(format!(
                    "slot {index}: a buffer outside the segment"
                )));
            }
            // A foreign buffer's memory lies elsewhere; the segment holds its share token.
            let span = if foreign {
                crate::block::layout::SHARE_TOKEN_LEN as u64
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
                return Err(BlockDefect::Corrupt(format!(
                    "slot {index}: buffer at offset {offset}, {size} bytes, in a segment of {} bytes",
                    region.len()
                )));
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
                crate::block::layout::SHARE_TOKEN_LEN
            } else {
                buffer.size
            };
            (buffer.offset, buffer.offset + len, buffer.index)
        };
        let mut spans: Vec<(usize, usize, u32)> = buffers.iter().map(span).collect();
        spans.sort_unstable();
        if let Some(pair) = spans.windows(2).find(|pair| pair[1].0 < pair[0].1) {
            return Err(BlockDefect::Corrupt(format!(
                "slots {} and {}: their buffers overlap in the segment",
                pair[0].2, pair[1].2
            )));
        }
        let identity = PoolIdentity {
            pool_id: header.pool_id.load(Ordering::Relaxed),
            name,
            category,
            hold_times: header.flags.load(Ordering::Relaxed) & FLAG_HOLD_TIMES != 0,
            ports,
        };
        let address = BlockAddress {
            base: region.base(),
            layout,
        };
        let block = Block { region, address };
        Ok((block, identity, buffers))
    }

    /// The region's start and length (the mapping, for a shared pool).
    pub(crate) fn region(&self) -> (NonNull<u8>, usize) {
        (self.region.base(), self.region.len())
    }

    /// A view of this block, for as long as it is borrowed.
    #[inline(always)]
    pub(crate) fn view(&self) -> BlockView<'_> {
        // SAFETY: the view borrows `self`, which owns the block.
        unsafe { self.address.view() }
    }

    /// Where this block lies, to store beside whatever owns the block (see [`BlockAddress`]).
    pub(crate) fn address(&self) -> BlockAddress {
        self.address
    }

    /// `&mut` access to the header while initialising: the block was just handed over in `init`
    /// and no reference to it exists yet.
    #[allow(clippy::mut_from_ref)]
    fn header_for_init(&self) -> &mut PoolHeader {
        let ptr = self.view().at::<PoolHeader>(0).as_ptr();
        // SAFETY: `at` checked bounds and alignment; the region is zeroed memory and
        // `PoolHeader` is `ShmSafe` (valid for all zeros); `init` is the only caller and runs
        // before any shared reference into the block exists, so this `&mut` is unique.
        unsafe { &mut *ptr }
    }
}

impl<'b> BlockView<'b> {
    /// A view of the block `layout` describes at the start of `region`, borrowing `region`.
    ///
    /// # Safety
    ///
    /// `region` must hold all that the view will read: the whole layout (or, for the layout of
    /// [`Shape::EMPTY`], the header alone).
    unsafe fn over(region: &'b Region, layout: BlockLayout) -> BlockView<'b> {
        let address = BlockAddress {
            base: region.base(),
            layout,
        };
        // SAFETY: the view borrows `region`, so the memory stays mapped for `'b`; the caller
        // guarantees its extent.
        unsafe { address.view() }
    }

    /// Pointer to a `T` at `offset`, checked to lie inside the region and be aligned.
    #[inline(always)]
    fn at<T: ShmSafe>(self, offset: usize) -> NonNull<T> {
        debug_assert!(
            offset + size_of::<T>() <= self.address.layout.len.max(size_of::<PoolHeader>())
        );
        debug_assert_eq!(offset % align_of::<T>(), 0);
        // SAFETY: `offset` lies inside the block (asserted above; every caller passes an offset
        // from `self.address.layout`, and the region holds the whole layout, as `init` asserted and
        // `attach` checked).
        let ptr = unsafe { self.address.base.as_ptr().add(offset) };
        // SAFETY: derived from a non-null base by an in-bounds offset.
        unsafe { NonNull::new_unchecked(ptr.cast::<T>()) }
    }

    /// The block's start in this process.
    pub(crate) fn base(self) -> NonNull<u8> {
        self.address.base
    }

    /// The header.
    #[inline(always)]
    pub(crate) fn header(self) -> &'b PoolHeader {
        // SAFETY: offset 0 is in bounds and page-aligned; the header was initialised in `init`
        // (or checked in `attach`) and lives as long as the block, which outlives the view
        // (`Block::view`).
        unsafe { self.at::<PoolHeader>(0).as_ref() }
    }

    /// The slot at `index` (`index < capacity`, checked).
    #[inline(always)]
    pub(crate) fn slot(self, index: u32) -> &'b Slot {
        assert!(
            index < self.address.layout.shape.capacity,
            "slot index out of range"
        );
        let offset = self.address.layout.slots + index as usize * size_of::<Slot>();
        // SAFETY: `index < capacity`, so the slot lies inside the slot table, which the layout
        // places inside the block, 64-byte aligned; slots are initialised in `init` and live as
        // long as the block, which outlives the view (`'b`).
        unsafe { self.at::<Slot>(offset).as_ref() }
    }

    /// The slot at `index` if the index (read from the block, so untrusted) is in range.
    #[inline(always)]
    pub(crate) fn slot_checked(self, index: u32) -> Option<&'b Slot> {
        (index < self.address.layout.shape.capacity).then(|| self.slot(index))
    }

    /// The shape this block was laid out for.
    #[inline]
    pub(crate) fn shape(self) -> Shape {
        self.address.layout.shape
    }

    /// The capacity this block was laid out for.
    #[inline]
    pub(crate) fn capacity(self) -> u32 {
        self.address.layout.shape.capacity
    }

    fn queue_at(self, offset: usize, cells: usize) -> QueueRef<'b> {
        let cells_offset = offset + size_of::<QueueCtrl>();
        let first = self.at::<QueueCell>(cells_offset);
        // SAFETY: the layout reserves `cells` cells right after the control block, inside the
        // block, aligned for `QueueCell`; they live as long as the block, which outlives the view
        // (`'b`).
        let cells = unsafe { std::slice::from_raw_parts(first.as_ptr(), cells) };
        // SAFETY: the control block lies at `offset` inside the block (layout) and lives as long
        // as the block, which outlives the view (`'b`).
        let ctrl = unsafe { self.at::<QueueCtrl>(offset).as_ref() };
        QueueRef::new(ctrl, cells)
    }

    /// The free queue.
    #[inline(always)]
    pub(crate) fn free_queue(self) -> QueueRef<'b> {
        self.queue_at(self.address.layout.free_queue, self.address.layout.cells)
    }

    /// The filled queue.
    #[inline(always)]
    pub(crate) fn filled_queue(self) -> QueueRef<'b> {
        self.queue_at(self.address.layout.filled_queue, self.address.layout.cells)
    }

    /// A queue and the wait word of its waiters.
    #[inline(always)]
    pub(crate) fn queue(self, queue: Queue) -> (QueueRef<'b>, &'b WaitWord) {
        match queue {
            Queue::Free => (self.free_queue(), &self.header().free_wait),
            Queue::Filled => (self.filled_queue(), &self.header().filled_wait),
        }
    }

    /// The entry of port `index` (`index < shape.ports`, checked).
    pub(crate) fn port(self, index: usize) -> &'b PortEntry {
        assert!(
            index < self.address.layout.shape.ports as usize,
            "port index out of range"
        );
        let offset = self.address.layout.ports + index * size_of::<PortEntry>();
        // SAFETY: in range (asserted), so inside the port table that the layout places in the
        // block, aligned for `PortEntry`; lives as long as the block, which outlives the view
        // (`'b`).
        unsafe { self.at::<PortEntry>(offset).as_ref() }
    }

    /// The queue of port `index` (`index < shape.ports`, checked).
    pub(crate) fn port_queue(self, index: usize) -> QueueRef<'b> {
        assert!(
            index < self.address.layout.shape.ports as usize,
            "port index out of range"
        );
        let offset = self.address.layout.port_queues + index * self.address.layout.port_queue_len;
        self.queue_at(offset, self.address.layout.shape.port_depth as usize)
    }

    /// The process entry of `actor` (1..=MAX_PROCESSES); `None` for any other number.
    pub(crate) fn process(self, actor: u8) -> Option<&'b ProcessEntry> {
        let index = usize::from(actor).checked_sub(1)?;
        (index < MAX_PROCESSES).then(|| {
            let offset = self.address.layout.processes + index * size_of::<ProcessEntry>();
            // SAFETY: `index < MAX_PROCESSES`, so inside the process table that the layout places
            // in the block; lives as long as the block, which outlives the view (`'b`).
            unsafe { self.at::<ProcessEntry>(offset).as_ref() }
        })
    }

    /// Every actor number with its entry.
    pub(crate) fn processes(self) -> impl Iterator<Item = (u8, &'b ProcessEntry)> + 'b {
        (1..=MAX_PROCESSES as u8).filter_map(move |actor| Some((actor, self.process(actor)?)))
    }

    /// Finds a vacant slot and claims it for an injection by `actor`; `None` if every slot is
    /// taken.
    pub(crate) fn claim_vacant_slot(self, actor: u8) -> Option<(u32, u32)> {
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

/// The two queues of a pool.
///
/// # Examples
///
/// ```
/// use buffer_core::Queue;
///
/// assert_eq!(Queue::Free.to_string(), "free");
/// assert_eq!(Queue::Filled.to_string(), "filled");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Buffers ready for a producer.
    Free,
    /// Buffers a producer submitted, ready for a consumer.
    Filled,
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Queue::Free => "free",
            Queue::Filled => "filled",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_publishes_identity_and_empty_state() {
        let layout = BlockLayout::new(Shape {
            capacity: 4,
            ports: 3,
            port_depth: 4,
        });
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
        let block = owner.view();
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
