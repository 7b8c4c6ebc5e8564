//! [`PoolOwner`]: the handle of whoever created a pool. It alone adds and removes memory, and
//! dropping it destroys the pool.

use std::ops::Deref;
use std::sync::atomic::Ordering;

use crate::block::memory_kind::MemoryKind;
use crate::block::meta::FrameMeta;
use crate::block::slot::ONE_TIME;
use crate::block::view::Queue;
use crate::lockfree::wait::Wait;
use crate::pool::error::{InjectError, RemoveError};
use crate::pool::handle::{BufferPool, PlaneSpans};
use crate::pool::memory::{BufferMemory, KeepAlive};
use crate::shm::segment::Segment;

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
    pub(super) pool: BufferPool,
}

impl PoolOwner {
    /// Adds a buffer to the pool, on the `queue` given (a decoder's frames go straight to
    /// `Filled`). Fails when every slot holds a buffer, the pool is closed, or it is a shared
    /// pool (whose buffers are part of its segment); the memory's keep-alive is then dropped,
    /// releasing it.
    pub fn inject(&self, memory: BufferMemory, queue: Queue) -> Result<(), InjectError> {
        let (index, generation) = self.claim_slot_for(&memory)?;
        let buffer = memory.local();
        self.pool
            .enqueue_new_buffer(index, generation, buffer, memory.keep_alive, queue);
        Ok(())
    }

    /// Adds a buffer that already holds a finished frame, described by `meta` (all of the buffer
    /// counted as used), to the filled queue, for one reader: when its reader releases it, it
    /// leaves the pool and its memory's keep-alive is dropped (instead of going to the free queue
    /// for reuse). The memory is released exactly once: then, or when the pool is destroyed,
    /// whichever comes first. For frames that someone else allocated, such as a decoder's
    /// (`allocator-avframe` wraps `AVFrame`s so).
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferMemory, BufferPool, FrameMeta, MemoryKind, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::create(PoolConfig::new("wrapped")).unwrap();
    /// let mut frame = vec![7u8; 64].into_boxed_slice();
    /// let addr = frame.as_mut_ptr();
    /// // SAFETY: the boxed slice holds 64 bytes and moves into the pool with its keep-alive.
    /// let memory = unsafe { BufferMemory::owned(addr, 64, MemoryKind::Host, None, Box::new(frame)) };
    /// let mut meta = FrameMeta::default();
    /// meta.sequence = 9;
    /// pool.inject_frame(memory, meta).unwrap();
    /// let read = pool.acquire_filled(Wait::NoWait).unwrap();
    /// assert_eq!((read.meta().sequence, read.as_slice().unwrap()[0]), (9, 7));
    /// drop(read); // leaves the pool: the boxed slice is freed
    /// assert_eq!(pool.counts().total, 0);
    /// ```
    pub fn inject_frame(&self, memory: BufferMemory, meta: FrameMeta) -> Result<(), InjectError> {
        self.inject_once(memory, meta, None)
    }

    /// Like [`PoolOwner::inject_frame`], for a frame whose planes lie in separate allocations
    /// (as FFmpeg's own decoder allocator makes them): `planes` gives each plane's allocation
    /// (start, length), `keep_alive` keeps them all alive, and `meta` describes each plane with an
    /// offset from the lowest plane's start. Readers reach the planes with
    /// [`ReadGuard::plane`], each checked to lie inside its own allocation; the buffer as one
    /// slice is refused ([`AccessError::Scattered`](crate::AccessError::Scattered)).
    ///
    /// [`ReadGuard::plane`]: crate::ReadGuard::plane
    ///
    /// # Safety
    ///
    /// Each `(start, length)` must be readable host memory that stays valid and unwritten
    /// until `keep_alive` is dropped, which the pool does when the buffer leaves it.
    pub unsafe fn inject_scattered_frame(
        &self,
        planes: &[(*const u8, usize)],
        keep_alive: KeepAlive,
        meta: FrameMeta,
    ) -> Result<(), InjectError> {
        let name = || self.pool.inner.name.clone();
        let mut regions: PlaneSpans = [(0, 0); crate::block::meta::MAX_PLANES];
        if planes.is_empty()
            || planes.len() > crate::block::meta::MAX_PLANES
            || planes
                .iter()
                .any(|&(start, len)| start.is_null() || len == 0)
        {
            return Err(InjectError::Empty { pool: name() });
        }
        for (region, &(start, len)) in regions.iter_mut().zip(planes) {
            *region = (start as usize, len);
        }
        let start = planes
            .iter()
            .map(|&(start, _)| start as usize)
            .min()
            .unwrap_or(0);
        let end = planes
            .iter()
            .map(|&(start, len)| start as usize + len)
            .max()
            .unwrap_or(0);
        // SAFETY: the span is only recorded (its address and length); every read goes through
        // `plane`, checked against the regions, which the caller vouches for.
        let memory = unsafe {
            BufferMemory::owned(
                start as *mut u8,
                end - start,
                MemoryKind::Host,
                None,
                keep_alive,
            )
        };
        self.inject_once(memory, meta, Some(regions))
    }

    /// Adds a one-time buffer (see [`PoolOwner::inject_frame`]).
    fn inject_once(
        &self,
        memory: BufferMemory,
        mut meta: FrameMeta,
        regions: Option<PlaneSpans>,
    ) -> Result<(), InjectError> {
        meta.bytes_used = memory.len as u64;
        let (index, generation) = self.claim_slot_for(&memory)?;
        let slot = self.pool.block().slot(index);
        self.pool.inner.plane_spans.lock()[index as usize] = regions;
        slot.flags.store(ONE_TIME, Ordering::Relaxed);
        let buffer = memory.local();
        self.pool.enqueue_new_buffer_with(
            index,
            generation,
            (buffer, memory.keep_alive),
            meta,
            Queue::Filled,
        );
        Ok(())
    }

    /// Checks that the pool takes `memory` (private, open, non-empty memory), claims a vacant
    /// slot for it and records its description; returns the slot and its generation.
    fn claim_slot_for(&self, memory: &BufferMemory) -> Result<(u32, u32), InjectError> {
        let inner = &self.pool.inner;
        let name = || inner.name.clone();
        if inner.segment.is_some() {
            return Err(InjectError::Shared { pool: name() });
        }
        if self.pool.is_closed() {
            return Err(InjectError::Closed { pool: name() });
        }
        if memory.is_empty() || memory.kind.is_host_accessible() && memory.addr.is_null() {
            return Err(InjectError::Empty { pool: name() });
        }
        let (index, generation) =
            self.pool
                .block()
                .claim_vacant_slot(self.pool.actor)
                .ok_or(InjectError::Full {
                    pool: name(),
                    capacity: self.pool.capacity(),
                })?;
        let slot = self.pool.block().slot(index);
        slot.set_description(memory.len, memory.kind, memory.ownership(), memory.phys);
        Ok((index, generation))
    }

    /// Takes one free buffer out of the pool (waiting as `wait` says) and releases its memory
    /// (for owned memory; external memory is only forgotten). Buffers in use or filled are never
    /// taken. Shared pools keep their buffers: [`RemoveError::Shared`].
    pub fn remove(&self, wait: Wait) -> Result<(), RemoveError> {
        if self.pool.inner.segment.is_some() {
            return Err(RemoveError::Shared {
                pool: self.pool.inner.name.clone(),
            });
        }
        let (index, _) = self
            .pool
            .take(Queue::Free, wait)
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
    /// Destroys the pool: closes it (waking every waiter, in every process) and releases every
    /// buffer not held. For a private pool, buffers held by guards are released when their guard
    /// drops, and a [`BufferPool`] handle kept after this sees a closed, empty pool. For a shared
    /// pool, the segment's name is removed, so no process can attach any more; processes
    /// attached keep a valid, closed pool until they detach, and the memory is freed when the
    /// last one does.
    fn drop(&mut self) {
        let inner = &self.pool.inner;
        self.pool.close();
        match (&inner.segment, inner.liveness.file()) {
            (Some(name), Some(file)) => Segment::unlink(name, file),
            _ => {
                inner.destroyed.store(true, Ordering::SeqCst);
                inner.release_queued_buffers();
            }
        }
    }
}

impl std::fmt::Debug for PoolOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PoolOwner").field(&self.pool).finish()
    }
}
