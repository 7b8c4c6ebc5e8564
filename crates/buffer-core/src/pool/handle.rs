//! [`BufferPool`], the process-local handle everyone uses: the fast path (acquire, submit,
//! release, redeem) over the block, and the state this process keeps beside the block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::block::local::{LocalBuffer, LocalSlots};
use crate::block::meta::FrameMeta;
use crate::block::process::ProcessRecord;
use crate::block::slot::{Slot, SlotState, SlotWord};
use crate::block::view::{Block, BlockView, Queue};
use crate::lockfree::queue::Stalled;
use crate::lockfree::wait::{Sleepers, Wait, WaitFailure, Waitable, wait_for, wake_all, wake_one};
use crate::pool::async_acquire::{AsyncWaiters, WaitSource};
use crate::pool::attachment::Attachment;
use crate::pool::error::{AcquireError, RedeemError, SlotStateName};
use crate::pool::guard::{ReadGuard, WriteGuard};
use crate::pool::ids::{BufferId, PoolId};
use crate::pool::memory::{Buffer, KeepAlive};
use crate::pool::stats::{Counts, Stats};
use crate::shm::clock::{NOT_RECORDED, coarse_now};
use crate::shm::fork::ForkTracking;
use crate::shm::liveness::Liveness;
use crate::shm::segment::SegmentName;

/// The allocations of a frame's planes: (start address, length) each, length 0 for none.
pub(crate) type PlaneSpans = [(usize, usize); crate::block::meta::MAX_PLANES];

/// The state one process keeps beside a block.
///
/// Fields drop in order: the fork tracking goes before the segment file is closed (a child
/// forked later would have its handler replace whatever file reused the number) and before
/// the block's memory is unmapped.
pub(crate) struct PoolInner {
    /// A shared pool's mapping, tracked so that forked children get a private copy.
    pub(super) _fork: Option<ForkTracking>,
    /// How this process asks the kernel which other processes live, and holds its own entry's
    /// lock (through the segment file, for a shared pool).
    pub(crate) liveness: Liveness,
    pub(super) block: Block,
    pub(super) id: PoolId,
    pub(super) name: Arc<str>,
    pub(super) category: Arc<str>,
    /// Each slot's buffer as this process knows it (see the `local` module).
    pub(crate) local: LocalSlots,
    /// Each port's name, read once.
    pub(super) ports: Box<[String]>,
    /// Each slot's memory keep-alive, dropped when the buffer leaves the pool. Touched only when
    /// buffers are added or removed, never on the acquire/release path.
    pub(crate) keep_alives: Mutex<Vec<Option<KeepAlive>>>,
    /// Set once the pool is destroyed: buffers then leave the pool as soon as they are released.
    pub(super) destroyed: AtomicBool,
    /// For one-time buffers whose planes lie in separate allocations: each plane's allocation
    /// (start, length; length 0 for none), within which reads of that plane are checked.
    pub(super) plane_spans: Mutex<Vec<Option<PlaneSpans>>>,
    /// This process's entry in the block's process table.
    pub(super) actor: u8,
    pub(super) record: ProcessRecord,
    /// The shared-memory segment's name, for a shared pool.
    pub(super) segment: Option<SegmentName>,
    /// Futures of this process waiting for a free buffer (index 0), a filled one (index 1), or a
    /// buffer on port `p` (index 2 + `p`).
    pub(super) async_waiters: Box<[AsyncWaiters]>,
    /// This process's threads asleep on each wait word, indexed as `async_waiters`.
    pub(super) sleepers: Box<[Sleepers]>,
}

/// A pool of reusable buffers with a free queue, a filled queue and optional fan-out ports.
///
/// ```text
/// producer:  acquire_free   -> write -> submit (or publish to ports)
/// consumer:  acquire_filled -> read  -> drop (back to free)
/// ```
///
/// A `BufferPool` is a cheap handle (clone it for each thread). Acquiring returns a guard that can
/// only be submitted or dropped, so a buffer can be neither released twice nor leaked. All pool
/// state lives in one position-independent block (see the crate docs), in private memory
/// ([`BufferPool::create`]) or in a named shared-memory segment that other processes attach to
/// ([`BufferPool::create_shared`], [`BufferPool::attach`]); the code is the same. The fast path is
/// a few atomic operations on the block: no lock, no system call, no allocation.
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
    /// This process's actor number, recorded in the slots of the buffers it holds.
    pub(crate) actor: u8,
    /// Whether acquiring records the time (the block's `FLAG_HOLD_TIMES`, copied so that the
    /// fast path does not read the header for it).
    pub(super) hold_times: bool,
    /// Whether other processes may use (and scribble on) the block: a shared pool. Its queues
    /// pass stalled takers' cells, and its guards are claimed in this process's slot table
    /// (see the `local` module); a private pool's are neither.
    pub(crate) peers: bool,
    /// This process's state beside the block, and the block (see [`Attachment`]).
    pub(crate) inner: Attachment,
}

impl BufferPool {
    /// The pool's block, for as long as this handle is borrowed.
    #[inline(always)]
    pub(crate) fn block(&self) -> BlockView<'_> {
        self.inner.block()
    }

    /// The pool's id (the same in every process attached to a shared pool).
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
        self.block().capacity()
    }

    /// The shared-memory segment the pool lives in; `None` for a private pool.
    pub fn segment(&self) -> Option<&str> {
        self.inner.segment.as_ref().map(SegmentName::as_str)
    }

    /// This process's number in the pool's process table (1 to
    /// [`MAX_PROCESSES`](crate::MAX_PROCESSES)).
    pub fn actor(&self) -> u8 {
        self.actor
    }

    /// Takes a buffer from the free queue, waiting as `wait` says, for a producer to fill.
    #[inline(always)]
    pub fn acquire_free(&self, wait: Wait) -> Result<WriteGuard<'_>, AcquireError> {
        let (index, generation) = self.take(Queue::Free, wait)?;
        Ok(self.free_guard(index, generation))
    }

    /// A free buffer if one is ready, without waiting and without an error to build: the fast
    /// path of callers that go on elsewhere when the queue is empty (a tiered pool). Returned
    /// in registers, where a `Result` carrying an [`AcquireError`] goes through memory.
    #[inline(always)]
    pub(crate) fn acquire_free_now(&self) -> Option<WriteGuard<'_>> {
        let (index, generation) = self.try_take(Queue::Free)?;
        Some(self.free_guard(index, generation))
    }

    /// The guard of free buffer `index`, just taken: its metadata reset for the new holder.
    #[inline(always)]
    pub(crate) fn free_guard(&self, index: u32, generation: u32) -> WriteGuard<'_> {
        self.block()
            .slot(index)
            .reset_meta(self.len_of(index) as u64);
        self.note_free_level();
        WriteGuard::new(self, index, generation)
    }

    /// The pool's name, shared (for errors).
    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.inner.name.clone()
    }

    /// This process's async waiters of `source`.
    pub(crate) fn async_waiters(&self, source: WaitSource) -> &AsyncWaiters {
        &self.inner.async_waiters[source.index()]
    }

    /// This process's threads asleep on the wait word of `source`.
    pub(crate) fn sleepers(&self, source: WaitSource) -> &Sleepers {
        &self.inner.sleepers[source.index()]
    }

    /// The name of each port, by index.
    pub(crate) fn port_names(&self) -> &[String] {
        &self.inner.ports
    }

    /// Takes a buffer from the filled queue, waiting as `wait` says, for a consumer to read.
    ///
    /// After [`BufferPool::close`], buffers already submitted are still handed out; `Closed` comes
    /// once the filled queue is empty.
    #[inline(always)]
    pub fn acquire_filled(&self, wait: Wait) -> Result<ReadGuard<'_>, AcquireError> {
        let (index, generation) = self.take(Queue::Filled, wait)?;
        Ok(ReadGuard::new(self, index, generation))
    }

    /// Takes a buffer off `queue` and marks it held by this process; returns its slot and
    /// generation. The fast path is one cell CAS, the head's CAS and two stores; waiting and
    /// errors are in [`BufferPool::take_slow`].
    #[inline(always)]
    pub(super) fn take(&self, queue: Queue, wait: Wait) -> Result<(u32, u32), AcquireError> {
        match self.try_take(queue) {
            Some(taken) => Ok(taken),
            None => self.take_slow(queue, wait),
        }
    }

    /// One attempt at [`BufferPool::take`], without waiting.
    #[inline(always)]
    pub(crate) fn try_take(&self, queue: Queue) -> Option<(u32, u32)> {
        // A closed pool hands out no free buffers (producers stop) but still its filled ones
        // (consumers drain what was submitted).
        if queue == Queue::Free && self.is_closed() {
            return None;
        }
        let (ring, _) = self.block().queue(queue);
        let (position, index) = ring.take(self.actor)?;
        let taken = self.hold_taken(index, queue);
        // The slot now names this process as its holder: the cell may go.
        if self.peers {
            ring.release(position, self.actor, index);
        } else {
            ring.release_unpassed(position);
        }
        taken
    }

    /// Claims slot `index`'s buffer for a guard of this process alone (shared pools; see the
    /// `local` module); `false` if a guard here has it already (a peer queued it again).
    #[inline(always)]
    pub(crate) fn claim(&self, index: u32) -> bool {
        !self.peers || self.inner.local.claim_exclusive(index)
    }

    /// Ends the claim of a guard of this process (before the buffer goes where another guard
    /// may take it).
    #[inline(always)]
    pub(crate) fn unclaim(&self, index: u32) {
        if self.peers {
            self.inner.local.end_exclusive(index);
        }
    }

    /// Marks the buffer in slot `index`, just taken from `queue`, as held by this process.
    /// `None` if the slot is not a queued buffer of that queue, or not a buffer this process
    /// knows (a corrupt block, or a peer that wrote a vacant slot's index into a queue): such a
    /// value is dropped, never handed out.
    #[inline(always)]
    fn hold_taken(&self, index: u32, queue: Queue) -> Option<(u32, u32)> {
        let slot = self.block().slot_checked(index)?;
        if self.len_of(index) == 0 {
            return None;
        }
        let word = slot.word();
        let (queued, held) = match queue {
            Queue::Free => (SlotState::Free, SlotState::Writing),
            Queue::Filled => (SlotState::Filled, SlotState::Reading),
        };
        if word.state != Some(queued) || !self.claim(index) {
            return None;
        }
        slot.set(SlotWord::new(word.generation, held).by(self.actor));
        slot.note_acquired(self.hold_time());
        Some((index, word.generation))
    }

    #[cold]
    #[inline(never)]
    fn take_slow(&self, queue: Queue, wait: Wait) -> Result<(u32, u32), AcquireError> {
        let header = self.block().header();
        let closed = || AcquireError::Closed {
            pool: self.inner.name.clone(),
            queue,
        };
        if queue == Queue::Free && self.is_closed() {
            return Err(closed());
        }
        let (_, word) = self.block().queue(queue);
        let source = TakeFrom { pool: self, queue };
        let sleepers = self.sleepers(WaitSource::Queue(queue));
        let result = wait_for(&source, word, sleepers, wait, || {
            header.waits.fetch_add(1, Ordering::Relaxed);
        });
        result.map_err(|failure| match failure {
            WaitFailure::Closed => closed(),
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

    /// Turns an id made by [`WriteGuard::into_id`] back into the write guard, exactly once, in
    /// this process or any other attached to the pool.
    pub fn redeem_write(&self, id: BufferId) -> Result<WriteGuard<'_>, RedeemError> {
        self.redeem(id, SlotState::WritingDetached, SlotState::Writing)?;
        Ok(WriteGuard::new(self, id.slot, id.generation))
    }

    /// Turns an id made by [`ReadGuard::into_id`] back into the read guard, exactly once, in
    /// this process or any other attached to the pool.
    pub fn redeem_read(&self, id: BufferId) -> Result<ReadGuard<'_>, RedeemError> {
        self.redeem(id, SlotState::ReadingDetached, SlotState::Reading)?;
        Ok(ReadGuard::new(self, id.slot, id.generation))
    }

    /// Closes the pool: every waiter (in any thread or process) wakes with
    /// [`AcquireError::Closed`], `acquire_free` fails from now on, and `acquire_filled` and port
    /// receives fail once their queue is empty. Guards alive keep working; their buffers go back
    /// to the free queue as usual.
    pub fn close(&self) {
        let header = self.block().header();
        header.open.store(0, Ordering::SeqCst);
        wake_all(&header.free_wait);
        wake_all(&header.filled_wait);
        for index in 0..self.block().shape().ports as usize {
            wake_all(&self.block().port(index).wait);
        }
    }

    /// Whether [`BufferPool::close`] was called (or the pool destroyed).
    #[inline(always)]
    pub fn is_closed(&self) -> bool {
        self.block().header().open.load(Ordering::SeqCst) == 0
    }

    /// How many buffers there are and where (a snapshot; it scans the queues' cells, so it is
    /// meant for diagnostics and decisions off the fast path).
    pub fn counts(&self) -> Counts {
        let block = self.block();
        let total = block.header().buffers.load(Ordering::SeqCst);
        let free = block.free_queue().waiting();
        let filled = block.filled_queue().waiting();
        Counts {
            total,
            free,
            filled,
            in_use: total.saturating_sub(free + filled),
        }
    }

    /// Statistics since the pool was created.
    pub fn stats(&self) -> Stats {
        let block = self.block();
        let header = block.header();
        // Counters in shared memory can hold anything: sum without overflowing.
        let acquisitions = (0..block.capacity())
            .map(|index| block.slot(index).acquisitions.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add);
        let min_free = header.free_low_water.load(Ordering::Relaxed);
        Stats {
            acquisitions,
            waits: header.waits.load(Ordering::Relaxed),
            timeouts: header.timeouts.load(Ordering::Relaxed),
            min_free: (min_free != u32::MAX).then_some(min_free),
            max_filled: header.filled_high_water.load(Ordering::Relaxed),
            reclaimed: header.reclaimed.load(Ordering::Relaxed),
        }
    }

    // ----- internals shared with the guards, the ports and the reaper -----

    #[inline(always)]
    pub(crate) fn slot(&self, index: u32) -> &Slot {
        self.block().slot(index)
    }

    /// Slot `index`'s buffer as this process knows it.
    #[inline]
    pub(crate) fn local(&self, index: u32) -> LocalBuffer {
        self.inner.local.get(index)
    }

    /// The plane allocations of slot `index`'s buffer, if it is a frame whose planes lie in
    /// separate allocations (only one-time buffers are: others cost one load of the slot).
    #[inline]
    pub(crate) fn plane_spans(&self, index: u32) -> Option<PlaneSpans> {
        if !self.slot(index).is_one_time() {
            return None;
        }
        self.inner.plane_spans.lock()[index as usize]
    }

    /// The length of slot `index`'s buffer as this process knows it (0: no buffer known).
    #[inline(always)]
    pub(crate) fn len_of(&self, index: u32) -> usize {
        self.inner.local.len(index)
    }

    pub(crate) fn describe(&self, index: u32, generation: u32) -> Buffer {
        let (_, _, ownership, phys_addr) = self.slot(index).describe();
        let local = self.local(index);
        Buffer {
            id: BufferId::new(self.id(), index, generation),
            virt_addr: local.addr as usize,
            phys_addr,
            size: local.len,
            ownership,
            kind: local.kind,
        }
    }

    /// Puts a held buffer back on the free queue (a guard's drop), or takes a one-time buffer
    /// out of the pool.
    #[inline(always)]
    pub(crate) fn release(&self, index: u32, generation: u32) {
        self.unclaim(index);
        let slot = self.slot(index);
        if slot.is_one_time() {
            drop(self.inner.take_out(index));
            return;
        }
        slot.set(SlotWord::new(generation.wrapping_add(1), SlotState::Free).by(self.actor));
        self.push(Queue::Free, index);
        self.release_if_destroyed();
    }

    /// Puts a written buffer on the filled queue (a write guard's `submit`).
    #[inline(always)]
    pub(crate) fn submit(&self, index: u32, generation: u32) {
        self.unclaim(index);
        self.slot(index)
            .set(SlotWord::new(generation, SlotState::Filled).by(self.actor));
        self.push(Queue::Filled, index);
        self.note_filled_level();
        self.release_if_destroyed();
    }

    /// The time to record for an acquisition: [`coarse_now`], or 0 ("not recorded") when the
    /// pool records no hold times.
    #[inline(always)]
    pub(crate) fn hold_time(&self) -> u64 {
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
        self.unclaim(index);
        self.slot(index)
            .set(SlotWord::new(generation, state).by(self.actor));
        BufferId::new(self.id(), index, generation)
    }

    /// Puts slot `index` on `queue`, its state word already saying so, and wakes a waiter. A
    /// taker stopped with a cell of the queue a lap earlier delays nothing (see the queue
    /// module): only a corrupt block can leave the queue without a cell.
    #[inline(always)]
    pub(crate) fn push(&self, queue: Queue, index: u32) {
        let (ring, word) = self.block().queue(queue);
        let stalled = if self.peers {
            Stalled::Pass
        } else {
            Stalled::Refuse
        };
        match ring.push(index, stalled) {
            Ok(_) => wake_one(word),
            Err(_) => self.push_slow(queue, index),
        }
    }

    /// A push that found no cell. In a private pool: a thread of this process was preempted
    /// between taking the cell a lap earlier and releasing it; it runs again soon (a process
    /// stopped as a whole stops this thread too), so wait for it. In a shared pool pushes pass
    /// such cells, so only a corrupt block gets here: its queue positions or cells were
    /// overwritten.
    #[cold]
    #[inline(never)]
    fn push_slow(&self, queue: Queue, index: u32) {
        let (ring, word) = self.block().queue(queue);
        if !self.peers {
            let mut tries = 0u32;
            while ring.push(index, Stalled::Refuse).is_err() {
                tries = tries.saturating_add(1);
                if tries < 1000 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            wake_one(word);
            return;
        }
        eprintln!(
            "bufpool: pool '{}': the {queue} queue has no free cell, which only a corrupt pool block explains; buffer {index} is left out of it",
            self.name()
        );
    }

    /// Updates the free queue's low-water mark after an acquisition: a few loads, and a write
    /// only when a new low is reached.
    #[inline(always)]
    fn note_free_level(&self) {
        let left = self.block().free_queue().len();
        let low = &self.block().header().free_low_water;
        if left < low.load(Ordering::Relaxed) {
            low.fetch_min(left, Ordering::Relaxed);
        }
    }

    /// Updates the filled queue's high-water mark after a submission.
    #[inline(always)]
    fn note_filled_level(&self) {
        let depth = self.block().filled_queue().len();
        let high = &self.block().header().filled_high_water;
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
        let Some(slot) = self.block().slot_checked(id.slot) else {
            return Err(RedeemError::NoSuchSlot {
                id,
                pool: self.inner.name.clone(),
                capacity: self.capacity(),
            });
        };
        let wanted = if to == SlotState::Writing {
            "write"
        } else {
            "read"
        };
        let mut word = slot.word();
        // A peer flipping the word for ever must not keep this loop going for ever.
        for _ in 0..1000 {
            if word.generation != id.generation {
                return Err(RedeemError::Stale {
                    id,
                    pool: self.inner.name.clone(),
                    current: word.generation,
                });
            }
            if word.state != Some(from) {
                break;
            }
            if self.len_of(id.slot) == 0 || !self.claim(id.slot) {
                return Err(RedeemError::Unknown {
                    id,
                    pool: self.inner.name.clone(),
                });
            }
            let held = SlotWord::new(id.generation, to).by(self.actor);
            match slot.replace(word, held) {
                Ok(()) => return Ok(()),
                Err(now) => {
                    self.unclaim(id.slot);
                    word = now;
                }
            }
        }
        Err(RedeemError::NotDetached {
            id,
            wanted,
            state: SlotStateName(word.state),
        })
    }

    /// Records a new buffer in slot `index` (claimed for injection) and queues it.
    pub(crate) fn enqueue_new_buffer(
        &self,
        index: u32,
        generation: u32,
        buffer: LocalBuffer,
        keep_alive: Option<KeepAlive>,
        queue: Queue,
    ) {
        let mut meta = FrameMeta::default();
        meta.reset(buffer.len as u64);
        self.enqueue_new_buffer_with(index, generation, (buffer, keep_alive), meta, queue);
    }

    /// [`BufferPool::enqueue_new_buffer`] with the metadata record given.
    pub(super) fn enqueue_new_buffer_with(
        &self,
        index: u32,
        generation: u32,
        (buffer, keep_alive): (LocalBuffer, Option<KeepAlive>),
        meta: FrameMeta,
        queue: Queue,
    ) {
        let slot = self.block().slot(index);
        slot.meta.store(meta);
        self.inner.local.set(index, buffer);
        self.inner.keep_alives.lock()[index as usize] = keep_alive;
        self.block().header().buffers.fetch_add(1, Ordering::SeqCst);
        let state = match queue {
            Queue::Free => SlotState::Free,
            Queue::Filled => SlotState::Filled,
        };
        slot.set(SlotWord::new(generation, state).by(self.actor));
        self.push(queue, index);
    }
}

/// A wait for a buffer on one of the pool's two queues.
struct TakeFrom<'a> {
    pool: &'a BufferPool,
    queue: Queue,
}

impl Waitable for TakeFrom<'_> {
    type Item = (u32, u32);

    fn try_take(&self) -> Option<(u32, u32)> {
        self.pool.try_take(self.queue)
    }

    fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    fn on_idle(&self) {
        self.pool.reclaim_dead();
    }
}

impl PoolInner {
    /// The shared-memory segment's name, for a shared pool.
    pub(crate) fn segment_name(&self) -> Option<SegmentName> {
        self.segment.clone()
    }

    /// Takes buffer `index` (owned by the caller, just taken) out of the pool and returns its
    /// memory keep-alive; the caller drops it (releasing the memory) outside any lock.
    pub(super) fn take_out(&self, index: u32) -> Option<KeepAlive> {
        let block = self.block.view();
        let slot = block.slot(index);
        let generation = slot.word().generation;
        slot.set(SlotWord::new(generation, SlotState::Removing).by(self.actor));
        let keep_alive = self.keep_alives.lock()[index as usize].take();
        if slot.is_one_time() {
            slot.flags.store(0, Ordering::Relaxed);
            self.plane_spans.lock()[index as usize] = None;
        }
        self.local.clear(index);
        block.header().buffers.fetch_sub(1, Ordering::SeqCst);
        slot.set(SlotWord::new(generation.wrapping_add(1), SlotState::Vacant));
        keep_alive
    }

    /// Takes every queued buffer out of the pool, releasing its memory (used once a private
    /// pool is destroyed).
    pub(super) fn release_queued_buffers(&self) {
        let block = self.block.view();
        for queue in [block.free_queue(), block.filled_queue()] {
            // Only private pools get here: their pushes never pass a taken cell.
            while let Some((position, index)) = queue.take(self.actor) {
                queue.release_unpassed(position);
                if block.slot_checked(index).is_some() {
                    drop(self.take_out(index));
                }
            }
        }
    }
}

impl Drop for PoolInner {
    /// Detaches: what this process still holds (ids it detached that nobody redeemed) goes back
    /// to the pool, then its process entry is freed and its lock given up. If another process
    /// is reclaiming right now, the entry is left as it is instead: once this attachment's file
    /// is closed, its lock is gone and the next reaper reclaims what it held, as for a process
    /// that died. Either way, ids it held become stale; none is handed to the next process that
    /// gets the entry.
    fn drop(&mut self) {
        let block = self.block.view();
        if let Some(entry) = block.process(self.actor) {
            if self.segment.is_some() {
                if let Some(_lock) = self.liveness.cleanup_within(Duration::from_millis(10)) {
                    crate::block::reclaim::reap(block, self.actor, self.actor);
                    entry.free(self.record);
                }
            } else {
                entry.free(self.record);
            }
        }
        self.liveness.unlock_entry(self.actor);
        // Every guard and handle is gone: whatever memory is still owned (buffers whose release
        // raced with destruction) is released now, exactly once, by dropping its keep-alive.
        self.keep_alives.get_mut().clear();
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("category", &self.category())
            .field("segment", &self.segment())
            .field("counts", &self.counts())
            .finish()
    }
}
