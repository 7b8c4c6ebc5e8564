//! The process-local handles of a pool: [`BufferPool`] for everyone, [`PoolOwner`] for whoever
//! created the pool (it alone adds and removes memory, and dropping it destroys the pool).

use std::ops::Deref;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::block::{Block, BlockLayout, BlockView, MAX_CAPACITY, MAX_CATEGORY_LEN, MAX_NAME_LEN};
use crate::error::{
    AcquireError, Counts, CreatePoolError, Holder, Holders, InjectError, Queue, RedeemError,
    RemoveError, SlotStateName,
};
use crate::guard::{ReadGuard, WriteGuard};
use crate::memory::{BufferMemory, MemoryOwner};
use crate::meta::FrameMeta;
use crate::region::Region;
use crate::slot::{Slot, SlotState, pack, unpack};
use crate::wait::{Wait, WaitFailure, pop_waiting, wake_all, wake_one};
use crate::{Buffer, BufferId, PoolId};

/// Capacity of a pool when none is given: room to grow well past typical frame-pool sizes.
pub const DEFAULT_CAPACITY: u32 = 64;

/// What a new pool is called and how many buffers it can ever hold.
///
/// # Examples
///
/// ```
/// use buffer_core::PoolConfig;
///
/// let config = PoolConfig::new("decoder")
///     .with_category("video")
///     .with_capacity(16)
///     .with_hold_times(false);
/// assert!(!config.hold_times());
/// assert_eq!(config.capacity(), 16);
/// assert_eq!(config.category(), "video");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    name: String,
    category: String,
    capacity: u32,
    hold_times: bool,
}

impl PoolConfig {
    /// A pool called `name`, category `"default"`, capacity [`DEFAULT_CAPACITY`].
    pub fn new(name: impl Into<String>) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            category: "default".to_owned(),
            capacity: DEFAULT_CAPACITY,
            hold_times: true,
        }
    }

    /// Sets the category (a free-form grouping such as "video" or "audio").
    pub fn with_category(mut self, category: impl Into<String>) -> PoolConfig {
        self.category = category.into();
        self
    }

    /// Sets the most buffers the pool can ever hold (1 to [`MAX_CAPACITY`]).
    pub fn with_capacity(mut self, capacity: u32) -> PoolConfig {
        self.capacity = capacity;
        self
    }

    /// Whether acquiring records the time in the buffer's slot (on by default), so that
    /// [`BufferPool::holders`] and timeout errors can say how long buffers have been held.
    /// Reading the clock costs a few nanoseconds per acquisition (a vDSO call, no system call);
    /// pools that hand out millions of small buffers per second can turn it off.
    pub fn with_hold_times(mut self, hold_times: bool) -> PoolConfig {
        self.hold_times = hold_times;
        self
    }

    /// Whether hold times are recorded.
    pub fn hold_times(&self) -> bool {
        self.hold_times
    }

    /// The name set.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The category set.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The capacity set.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Checks that a pool of this configuration can start with `count` buffers of `size`
    /// bytes: at most the capacity, at least 1 byte each.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{CreatePoolError, PoolConfig};
    ///
    /// let config = PoolConfig::new("p").with_capacity(2);
    /// assert!(config.check_initial_buffers(2, 64).is_ok());
    /// assert_eq!(config.check_initial_buffers(3, 64), Err(CreatePoolError::TooManyBuffers { count: 3, capacity: 2 }));
    /// assert_eq!(config.check_initial_buffers(1, 0), Err(CreatePoolError::ZeroSize));
    /// ```
    pub fn check_initial_buffers(&self, count: u32, size: usize) -> Result<(), CreatePoolError> {
        if count > self.capacity {
            return Err(CreatePoolError::TooManyBuffers {
                count,
                capacity: self.capacity,
            });
        }
        if size == 0 {
            return Err(CreatePoolError::ZeroSize);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), CreatePoolError> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(CreatePoolError::Capacity {
                capacity: self.capacity,
            });
        }
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN || self.name.contains('\0') {
            return Err(CreatePoolError::Name {
                name: self.name.clone(),
            });
        }
        if self.category.len() > MAX_CATEGORY_LEN || self.category.contains('\0') {
            return Err(CreatePoolError::Category {
                category: self.category.clone(),
            });
        }
        Ok(())
    }
}

/// Statistics of a pool since it was created.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig};
///
/// let pool = BufferPool::create(PoolConfig::new("stats")).unwrap();
/// assert_eq!(pool.stats().acquisitions, 0);
/// assert_eq!(pool.stats().min_free, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Buffers acquired from either queue.
    pub acquisitions: u64,
    /// Acquisitions that found their queue empty and had to wait.
    pub waits: u64,
    /// Waits that ended with a timeout.
    pub timeouts: u64,
    /// Fewest buffers left on the free queue right after an acquisition (the pool's headroom;
    /// 0 means it ran dry). `None` before the first acquisition.
    pub min_free: Option<u32>,
    /// Most buffers on the filled queue right after a submission (how far consumers fell behind).
    pub max_filled: u32,
}

/// `CLOCK_MONOTONIC_COARSE` packed as seconds (high 32 bits) and nanoseconds (low 32 bits): a
/// vDSO read (no system call, ~4 ms resolution, enough to tell how long a buffer has been held),
/// with no division on the acquire path.
#[inline(always)]
fn coarse_now() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (now.tv_sec as u64) << 32 | now.tv_nsec as u64
}

/// A slot's acquire time when the pool records none.
const NOT_RECORDED: u64 = 0;

/// Converts a [`coarse_now`] value to a duration since the clock's origin; `None` for
/// [`NOT_RECORDED`].
fn coarse_to_duration(packed: u64) -> Option<Duration> {
    (packed != NOT_RECORDED).then(|| Duration::new(packed >> 32, packed as u32))
}

/// The state one process keeps beside a block.
pub(crate) struct PoolInner {
    block: Block,
    id: PoolId,
    name: Arc<str>,
    category: Arc<str>,
    /// Each slot's memory address in this process (null while vacant).
    addrs: Box<[AtomicPtr<u8>]>,
    /// Each slot's memory owner, dropped when the buffer leaves the pool. Touched only when
    /// buffers are added or removed, never on the acquire/release path.
    owners: Mutex<Vec<Option<MemoryOwner>>>,
    /// Set once the pool is destroyed: buffers then leave the pool as soon as they are released.
    destroyed: AtomicBool,
}

/// A pool of reusable buffers with a free queue and a filled queue.
///
/// ```text
/// producer:  acquire_free   -> write -> submit
/// consumer:  acquire_filled -> read  -> drop (back to free)
/// ```
///
/// A `BufferPool` is a cheap handle (clone it for each thread). Acquiring returns a guard that can
/// only be submitted or dropped, so a buffer can be neither released twice nor leaked. All pool
/// state lives in one position-independent block (see the crate docs); the fast path is a few
/// atomic operations on it: no lock, no system call, no allocation.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("frames"), 2, 1024).unwrap();
///
/// let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
/// frame.as_mut_slice().unwrap()[0] = 42;
/// frame.meta_mut().sequence = 1;
/// frame.submit();
///
/// let frame = pool.acquire_filled(Wait::NoWait).unwrap();
/// assert_eq!(frame.as_slice().unwrap()[0], 42);
/// assert_eq!(frame.meta().sequence, 1);
/// drop(frame); // back to the free queue
/// assert_eq!(pool.counts().free, 2);
/// ```
#[derive(Clone)]
pub struct BufferPool {
    /// The block's view, kept here (not behind the `Arc`) so that the fast path reaches the
    /// block with one load less. Valid as long as `inner`, which owns the block, is alive.
    block: BlockView,
    /// This process's id, recorded as the holder of the buffers it acquires.
    holder: u32,
    /// Whether acquiring records the time (the block's `FLAG_HOLD_TIMES`, copied so that the
    /// fast path does not read the header for it).
    hold_times: bool,
    inner: Arc<PoolInner>,
}

/// The creator's handle of a pool: adds and removes buffers, and destroys the pool when dropped.
///
/// It dereferences to [`BufferPool`] for everything else.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, Wait};
///
/// let owner = BufferPool::with_heap_buffers(PoolConfig::new("cam"), 1, 64).unwrap();
/// let user: BufferPool = (*owner).clone();
/// drop(owner); // destroys the pool
/// assert!(user.is_closed());
/// assert!(user.acquire_free(Wait::NoWait).is_err());
/// ```
pub struct PoolOwner {
    pool: BufferPool,
}

impl BufferPool {
    /// Creates an empty pool in private memory; add buffers with [`PoolOwner::inject`].
    pub fn create(config: PoolConfig) -> Result<PoolOwner, CreatePoolError> {
        config.validate()?;
        let layout = BlockLayout::new(config.capacity);
        let region = Region::private(layout.len)?;
        let id = PoolId::next();
        let block = Block::init(
            region,
            layout,
            id.as_raw(),
            &config.name,
            &config.category,
            config.hold_times,
        );
        let capacity = config.capacity as usize;
        let inner = PoolInner {
            block,
            id,
            name: config.name.into(),
            category: config.category.into(),
            addrs: (0..capacity)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            owners: Mutex::new((0..capacity).map(|_| None).collect()),
            destroyed: AtomicBool::new(false),
        };
        let inner = Arc::new(inner);
        // SAFETY: the view is stored beside the `Arc` that owns the block, in `BufferPool` and
        // its clones, so the block outlives every use of it.
        let block = unsafe { inner.block.view() };
        Ok(PoolOwner {
            pool: BufferPool {
                block,
                holder: std::process::id(),
                hold_times: block.hold_times(),
                inner,
            },
        })
    }

    /// Creates a pool with `count` zeroed heap buffers of `size` bytes (64-byte aligned) on the
    /// free queue: a convenience for tests and examples. Allocator backends (`allocator-normal`
    /// and the others) are the full-featured way to fill pools.
    pub fn with_heap_buffers(
        config: PoolConfig,
        count: u32,
        size: usize,
    ) -> Result<PoolOwner, CreatePoolError> {
        /// One 64-byte, 64-byte-aligned unit of heap storage.
        #[derive(Clone, Copy)]
        #[repr(C, align(64))]
        struct Line([u8; 64]);

        config.check_initial_buffers(count, size)?;
        let owner = BufferPool::create(config)?;
        for _ in 0..count {
            let mut storage = vec![Line([0; 64]); size.div_ceil(64)].into_boxed_slice();
            let addr = storage.as_mut_ptr().cast::<u8>();
            // SAFETY: `storage` holds at least `size` bytes, is moved into the owner (a boxed
            // slice's heap memory does not move with it) and is freed only when the pool drops
            // the owner; nothing else accesses it.
            let memory = unsafe {
                BufferMemory::owned(addr, size, crate::MemoryKind::Host, None, Box::new(storage))
            };
            owner
                .inject(memory, Queue::Free)
                .expect("a new pool with room for every buffer accepts a non-empty buffer");
        }
        Ok(owner)
    }

    /// The pool's id.
    pub fn id(&self) -> PoolId {
        self.inner.id
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The pool's category.
    pub fn category(&self) -> &str {
        &self.inner.category
    }

    /// The most buffers the pool can hold.
    pub fn capacity(&self) -> u32 {
        self.block.capacity()
    }

    /// Takes a buffer from the free queue, waiting as `wait` says, for a producer to fill.
    #[inline(always)]
    pub fn acquire_free(&self, wait: Wait) -> Result<WriteGuard<'_>, AcquireError> {
        let (index, generation) = self.take(Queue::Free, wait, SlotState::Writing)?;
        let slot = self.block.slot(index);
        let size = slot.size.load(Ordering::Relaxed);
        // SAFETY: popping `index` from the free queue made this thread the slot's only owner
        // (slot module docs), so nobody else accesses its metadata.
        unsafe { (*slot.meta.get()).reset(size) };
        self.note_free_level();
        Ok(WriteGuard::new(self, index, generation))
    }

    /// Takes a buffer from the filled queue, waiting as `wait` says, for a consumer to read.
    ///
    /// After [`BufferPool::close`], buffers already submitted are still handed out; `Closed` comes
    /// once the filled queue is empty.
    #[inline(always)]
    pub fn acquire_filled(&self, wait: Wait) -> Result<ReadGuard<'_>, AcquireError> {
        let (index, generation) = self.take(Queue::Filled, wait, SlotState::Reading)?;
        Ok(ReadGuard::new(self, index, generation))
    }

    /// Takes a buffer off `queue` and marks it held by this process in `state`; returns its slot
    /// and generation.
    #[inline(always)]
    fn take(&self, queue: Queue, wait: Wait, state: SlotState) -> Result<(u32, u32), AcquireError> {
        let index = self.pop(queue, wait)?;
        let slot = self.block.slot(index);
        let (generation, _) = unpack(slot.state_word());
        slot.set_state(generation, state);
        slot.mark_held(self.holder, self.hold_time());
        Ok((index, generation))
    }

    /// Turns an id made by [`WriteGuard::into_id`] back into the write guard, exactly once.
    pub fn redeem_write(&self, id: BufferId) -> Result<WriteGuard<'_>, RedeemError> {
        self.redeem(id, SlotState::WritingDetached, SlotState::Writing)?;
        Ok(WriteGuard::new(self, id.slot, id.generation))
    }

    /// Turns an id made by [`ReadGuard::into_id`] back into the read guard, exactly once.
    pub fn redeem_read(&self, id: BufferId) -> Result<ReadGuard<'_>, RedeemError> {
        self.redeem(id, SlotState::ReadingDetached, SlotState::Reading)?;
        Ok(ReadGuard::new(self, id.slot, id.generation))
    }

    /// Closes the pool: every waiter (in any thread) wakes with [`AcquireError::Closed`],
    /// `acquire_free` fails from now on, and `acquire_filled` fails once the filled queue is empty.
    /// Guards alive keep working; their buffers go back to the free queue as usual.
    pub fn close(&self) {
        let header = self.block.header();
        header.closed.store(1, Ordering::SeqCst);
        wake_all(&header.free_wait);
        wake_all(&header.filled_wait);
    }

    /// Whether [`BufferPool::close`] was called (or the pool destroyed).
    #[inline(always)]
    pub fn is_closed(&self) -> bool {
        self.block.header().closed.load(Ordering::SeqCst) != 0
    }

    /// How many buffers there are and where (a snapshot).
    pub fn counts(&self) -> Counts {
        let block = &self.block;
        let total = block.header().buffers.load(Ordering::SeqCst);
        let free = block.free_queue().len();
        let filled = block.filled_queue().len();
        Counts {
            total,
            free,
            filled,
            in_use: total.saturating_sub(free + filled),
        }
    }

    /// Who holds buffers right now: each holder's process id, how many buffers it holds and for
    /// how long it has held the oldest (if the pool records hold times), most buffers first. Scans the slot table; meant for
    /// diagnostics, not for the fast path.
    pub fn holders(&self) -> Holders {
        let now = coarse_to_duration(coarse_now());
        let mut holders: Vec<Holder> = Vec::new();
        for index in 0..self.capacity() {
            let slot = self.block.slot(index);
            let Some(pid) = slot.holder() else { continue };
            let held_since = coarse_to_duration(slot.acquired_at.load(Ordering::Relaxed));
            let held_for = now
                .zip(held_since)
                .map(|(now, since)| now.saturating_sub(since));
            match holders.iter_mut().find(|holder| holder.pid == pid) {
                Some(holder) => {
                    holder.buffers += 1;
                    holder.longest = holder.longest.max(held_for);
                }
                None => holders.push(Holder {
                    pid,
                    buffers: 1,
                    longest: held_for,
                }),
            }
        }
        holders.sort_by(|a, b| b.buffers.cmp(&a.buffers).then(a.pid.cmp(&b.pid)));
        Holders(holders)
    }

    /// Statistics since the pool was created.
    pub fn stats(&self) -> Stats {
        let block = &self.block;
        let header = block.header();
        let acquisitions = (0..block.capacity())
            .map(|index| block.slot(index).acquisitions.load(Ordering::Relaxed))
            .sum();
        let min_free = header.free_low_water.load(Ordering::Relaxed);
        Stats {
            acquisitions,
            waits: header.waits.load(Ordering::Relaxed),
            timeouts: header.timeouts.load(Ordering::Relaxed),
            min_free: (min_free != u32::MAX).then_some(min_free),
            max_filled: header.filled_high_water.load(Ordering::Relaxed),
        }
    }

    // ----- internals shared with the guards -----

    #[inline(always)]
    pub(crate) fn slot(&self, index: u32) -> &Slot {
        self.block.slot(index)
    }

    #[inline]
    pub(crate) fn addr(&self, index: u32) -> *mut u8 {
        self.inner.addrs[index as usize].load(Ordering::Acquire)
    }

    pub(crate) fn describe(&self, index: u32, generation: u32) -> Buffer {
        let (size, kind, ownership, phys_addr) = self.slot(index).describe();
        Buffer {
            id: BufferId::new(self.id(), index, generation),
            virt_addr: self.addr(index) as usize,
            phys_addr,
            size,
            ownership,
            kind,
        }
    }

    /// Puts a held buffer back on the free queue (a guard's drop).
    #[inline(always)]
    pub(crate) fn release(&self, index: u32, generation: u32) {
        let slot = self.slot(index);
        slot.mark_unheld();
        slot.set_state(generation.wrapping_add(1), SlotState::Free);
        self.push(Queue::Free, index);
        self.release_if_destroyed();
    }

    /// Puts a written buffer on the filled queue (a write guard's `submit`).
    #[inline(always)]
    pub(crate) fn submit(&self, index: u32, generation: u32) {
        let slot = self.slot(index);
        slot.mark_unheld();
        slot.set_state(generation, SlotState::Filled);
        self.push(Queue::Filled, index);
        self.note_filled_level();
        self.release_if_destroyed();
    }

    /// The time to record for an acquisition: [`coarse_now`], or 0 ("not recorded") when the
    /// pool records no hold times.
    #[inline(always)]
    fn hold_time(&self) -> u64 {
        if self.hold_times {
            coarse_now()
        } else {
            NOT_RECORDED
        }
    }

    /// After a buffer went back to a queue: if the pool was destroyed meanwhile, its memory is
    /// released now rather than when the last handle goes. A destroyed pool is always closed,
    /// so the common case costs one load of the (hot) closed flag.
    #[inline(always)]
    fn release_if_destroyed(&self) {
        if self.is_closed() && self.inner.destroyed.load(Ordering::SeqCst) {
            self.inner.release_queued_buffers();
        }
    }

    /// Marks a held buffer as detached into an id (a guard's `into_id`).
    pub(crate) fn detach(&self, index: u32, generation: u32, state: SlotState) -> BufferId {
        self.slot(index).set_state(generation, state);
        BufferId::new(self.id(), index, generation)
    }

    #[inline(always)]
    fn push(&self, queue: Queue, index: u32) {
        let (ring, word) = self.block.queue(queue);
        // The queues have a cell for every slot and a slot is queued at most once, so a push
        // cannot find its queue full.
        ring.push(index)
            .unwrap_or_else(|_| panic!("pool '{}': {queue} queue overflow", self.name()));
        wake_one(word);
    }

    /// Takes a slot index from `queue`: the fast path is one queue pop (plus, for the free queue,
    /// one load of the closed flag); waiting and errors are in [`BufferPool::pop_slow`].
    #[inline(always)]
    fn pop(&self, queue: Queue, wait: Wait) -> Result<u32, AcquireError> {
        let (ring, _) = self.block.queue(queue);
        // A closed pool hands out no free buffers (producers stop) but still its filled ones
        // (consumers drain what was submitted).
        if (queue == Queue::Filled || !self.is_closed())
            && let Some(index) = ring.pop()
        {
            return Ok(index);
        }
        self.pop_slow(queue, wait)
    }

    #[cold]
    #[inline(never)]
    fn pop_slow(&self, queue: Queue, wait: Wait) -> Result<u32, AcquireError> {
        let header = self.block.header();
        let (ring, word) = self.block.queue(queue);
        if queue == Queue::Free && self.is_closed() {
            return Err(AcquireError::Closed {
                pool: self.inner.name.clone(),
                queue,
            });
        }
        let result = pop_waiting(
            ring,
            word,
            wait,
            || self.is_closed(),
            || {
                header.waits.fetch_add(1, Ordering::Relaxed);
            },
        );
        result.map_err(|failure| match failure {
            WaitFailure::Closed => AcquireError::Closed {
                pool: self.inner.name.clone(),
                queue,
            },
            WaitFailure::TimedOut => match wait {
                Wait::Timeout(waited) => {
                    header.timeouts.fetch_add(1, Ordering::Relaxed);
                    AcquireError::Timeout {
                        pool: self.inner.name.clone(),
                        queue,
                        waited,
                        counts: self.counts(),
                        holders: self.holders(),
                    }
                }
                Wait::NoWait | Wait::Forever => AcquireError::Empty {
                    pool: self.inner.name.clone(),
                    queue,
                    counts: self.counts(),
                },
            },
        })
    }

    /// Updates the free queue's low-water mark after an acquisition: a few loads, and a write
    /// only when a new low is reached.
    #[inline(always)]
    fn note_free_level(&self) {
        let left = self.block.free_queue().len();
        let low = &self.block.header().free_low_water;
        if left < low.load(Ordering::Relaxed) {
            low.fetch_min(left, Ordering::Relaxed);
        }
    }

    /// Updates the filled queue's high-water mark after a submission.
    #[inline(always)]
    fn note_filled_level(&self) {
        let depth = self.block.filled_queue().len();
        let high = &self.block.header().filled_high_water;
        if depth > high.load(Ordering::Relaxed) {
            high.fetch_max(depth, Ordering::Relaxed);
        }
    }

    fn redeem(&self, id: BufferId, from: SlotState, to: SlotState) -> Result<(), RedeemError> {
        if id.pool != self.id() {
            return Err(RedeemError::WrongPool {
                id,
                pool: self.inner.name.clone(),
                pool_id: self.id(),
            });
        }
        if id.slot >= self.capacity() {
            return Err(RedeemError::NoSuchSlot {
                id,
                pool: self.inner.name.clone(),
                capacity: self.capacity(),
            });
        }
        let slot = self.slot(id.slot);
        match slot.state.compare_exchange(
            pack(id.generation, from),
            pack(id.generation, to),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(actual) => {
                let (current, state) = unpack(actual);
                Err(if current != id.generation {
                    RedeemError::Stale {
                        id,
                        pool: self.inner.name.clone(),
                        current,
                    }
                } else {
                    RedeemError::NotDetached {
                        id,
                        wanted: if to == SlotState::Writing {
                            "write"
                        } else {
                            "read"
                        },
                        state: SlotStateName(state),
                    }
                })
            }
        }
    }
}

impl PoolInner {
    /// Takes buffer `index` (owned by the caller, just popped) out of the pool and returns its
    /// memory owner; the caller drops it (releasing the memory) outside any lock.
    fn take_out(&self, index: u32) -> Option<MemoryOwner> {
        // SAFETY: used only within this call, while `self` (owning the block) is borrowed.
        let block = unsafe { self.block.view() };
        let slot = block.slot(index);
        let (generation, _) = unpack(slot.state_word());
        slot.set_state(generation, SlotState::Removing);
        let owner = self.owners.lock()[index as usize].take();
        self.addrs[index as usize].store(ptr::null_mut(), Ordering::Release);
        block.header().buffers.fetch_sub(1, Ordering::SeqCst);
        slot.set_state(generation.wrapping_add(1), SlotState::Vacant);
        owner
    }

    /// Takes every queued buffer out of the pool, releasing its memory (used once destroyed).
    fn release_queued_buffers(&self) {
        // SAFETY: used only within this call, while `self` (owning the block) is borrowed.
        let block = unsafe { self.block.view() };
        for queue in [block.free_queue(), block.filled_queue()] {
            while let Some(index) = queue.pop() {
                drop(self.take_out(index));
            }
        }
    }
}

impl PoolOwner {
    /// Adds a buffer to the pool, on the `queue` given (a decoder's frames go straight to
    /// `Filled`). Fails when every slot holds a buffer or the pool is closed; the memory's owner
    /// is then dropped, releasing it.
    pub fn inject(&self, memory: BufferMemory, queue: Queue) -> Result<(), InjectError> {
        let inner = &self.pool.inner;
        let name = || inner.name.clone();
        if self.pool.is_closed() {
            return Err(InjectError::Closed { pool: name() });
        }
        if memory.is_empty() {
            return Err(InjectError::Empty { pool: name() });
        }
        let (index, generation) = self
            .pool
            .block
            .claim_vacant_slot()
            .ok_or(InjectError::Full {
                pool: name(),
                capacity: self.pool.capacity(),
            })?;
        let slot = self.pool.block.slot(index);
        let ownership = memory.ownership();
        slot.set_description(memory.len, memory.kind, ownership, memory.phys);
        // SAFETY: claiming the vacant slot made this thread its only owner.
        let meta = unsafe { &mut *slot.meta.get() };
        *meta = FrameMeta::default();
        meta.reset(memory.len as u64);
        inner.addrs[index as usize].store(memory.addr, Ordering::Release);
        inner.owners.lock()[index as usize] = memory.owner;
        self.pool
            .block
            .header()
            .buffers
            .fetch_add(1, Ordering::SeqCst);
        let state = match queue {
            Queue::Free => SlotState::Free,
            Queue::Filled => SlotState::Filled,
        };
        slot.set_state(generation, state);
        self.pool.push(queue, index);
        Ok(())
    }

    /// Takes one free buffer out of the pool (waiting as `wait` says) and releases its memory
    /// (for owned memory; external memory is only forgotten). Buffers in use or filled are never
    /// taken.
    pub fn remove(&self, wait: Wait) -> Result<(), RemoveError> {
        let index = self
            .pool
            .pop(Queue::Free, wait)
            .map_err(RemoveError::NoFreeBuffer)?;
        drop(self.pool.inner.take_out(index));
        Ok(())
    }

    /// The shared handle, to clone for other threads.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }
}

impl Deref for PoolOwner {
    type Target = BufferPool;
    fn deref(&self) -> &BufferPool {
        &self.pool
    }
}

impl Drop for PoolOwner {
    /// Destroys the pool: closes it (waking every waiter) and releases every buffer not held.
    /// Buffers held by guards are released when their guard drops; a [`BufferPool`] handle kept
    /// after this sees a closed, empty pool.
    fn drop(&mut self) {
        let inner = &self.pool.inner;
        inner.destroyed.store(true, Ordering::SeqCst);
        self.pool.close();
        inner.release_queued_buffers();
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Every guard and handle is gone: whatever memory is still owned (buffers whose release
        // raced with destruction) is released now, exactly once, by dropping its owner.
        self.owners.get_mut().clear();
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("category", &self.category())
            .field("counts", &self.counts())
            .finish()
    }
}

impl std::fmt::Debug for PoolOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PoolOwner").field(&self.pool).finish()
    }
}
