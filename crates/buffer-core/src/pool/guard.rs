//! Guards: the only way to touch a held buffer. A write guard is submitted or dropped; a read
//! guard is dropped; either can become a [`BufferId`] and back, exactly once.

use std::fmt;
use std::mem::ManuallyDrop;

use crate::block::meta::{FrameMeta, MetaMut};
use crate::block::slot::SlotState;
use crate::pool::error::{AccessError, BytesUsedError, HostAccessError};
use crate::pool::handle::BufferPool;
use crate::pool::ids::BufferId;
use crate::pool::memory::Buffer;
use crate::pool::port::{Port, Published};

/// What both guards hold: the pool, the slot and its generation. Address, size and kind are
/// read from this process's slot table (never from the shared block) when the data is accessed,
/// so acquiring and releasing touch only the slot's state.
pub(crate) struct GuardCore<'p> {
    pool: &'p BufferPool,
    index: u32,
    generation: u32,
}

impl<'p> GuardCore<'p> {
    #[inline(always)]
    pub(crate) fn new(pool: &'p BufferPool, index: u32, generation: u32) -> GuardCore<'p> {
        GuardCore {
            pool,
            index,
            generation,
        }
    }

    #[inline]
    fn id(&self) -> BufferId {
        BufferId::new(self.pool.id(), self.index, self.generation)
    }

    #[inline]
    fn len(&self) -> usize {
        self.pool.len_of(self.index)
    }

    /// A description of the buffer (addresses, size, kind, ownership).
    fn buffer(&self) -> Buffer {
        self.pool.describe(self.index, self.generation)
    }

    /// The buffer's address and length, if the CPU may access it as one slice.
    #[inline]
    pub(crate) fn host_memory(&self) -> Result<(*mut u8, usize), AccessError> {
        if let Some(spans) = self.pool.plane_spans(self.index) {
            return Err(AccessError::Scattered {
                id: self.id(),
                planes: spans.iter().filter(|&&(_, len)| len != 0).count() as u32,
            });
        }
        Ok(self.host()?)
    }

    /// The buffer's address and length here, if the CPU may access it (the kind and mapping
    /// this process recorded: a peer cannot change them).
    #[inline]
    pub(crate) fn host(&self) -> Result<(*mut u8, usize), HostAccessError> {
        let local = self.pool.local(self.index);
        local.host().ok_or(HostAccessError {
            id: self.id(),
            kind: local.kind,
        })
    }

    /// Plane `plane` of the frame the buffer holds, as its metadata describes it (offset, line
    /// size, rows), checked to lie inside the buffer's memory.
    fn plane(&self, plane: usize) -> Result<&[u8], AccessError> {
        let video = self.meta().video;
        let planes = video.planes();
        let Some(described) = planes.get(plane) else {
            return Err(AccessError::NoSuchPlane {
                id: self.id(),
                plane,
                planes: planes.len() as u32,
            });
        };
        let (base, size) = self.host()?;
        let len = u64::from(described.stride) * u64::from(described.rows);
        let outside = AccessError::PlaneOutside {
            id: self.id(),
            plane,
            offset: described.offset,
            len,
        };
        let base = base as usize;
        let start = usize::try_from(described.offset)
            .ok()
            .and_then(|offset| base.checked_add(offset))
            .ok_or(outside)?;
        let len = usize::try_from(len).map_err(|_| outside)?;
        let end = start.checked_add(len).ok_or(outside)?;
        let inside = match self.pool.plane_spans(self.index) {
            None => end <= base + size,
            Some(spans) => spans
                .iter()
                .any(|&(region, size)| size != 0 && start >= region && end <= region + size),
        };
        if !inside {
            return Err(outside);
        }
        // SAFETY: `start..end` lies inside the buffer's host memory (checked above: within the
        // buffer, or within one of the frame's own allocations), which stays valid while the
        // buffer is in the pool, as it is while the guard lives; a read guard's holder is the
        // only one with access to a filled buffer, and nobody writes it.
        Ok(unsafe { std::slice::from_raw_parts(start as *const u8, len) })
    }
    /// The bytes the producer filled, for a guard that may only read.
    #[inline]
    fn filled_bytes(&self) -> Result<&[u8], AccessError> {
        let (addr, len) = self.host_memory()?;
        // A corrupt record cannot make the slice longer than the buffer.
        let used = usize::try_from(self.meta().bytes_used)
            .unwrap_or(usize::MAX)
            .min(len);
        // SAFETY: the memory is host-accessible and one allocation (checked) and `len` bytes
        // long at `addr` (the injector's contract in `BufferMemory`, or checked against the
        // segment on attach); it stays valid while the buffer is in the pool, which it is while
        // the guard lives; the guard's reference keeps producers from writing it, and
        // `used <= len`.
        Ok(unsafe { std::slice::from_raw_parts(addr, used) })
    }

    /// A copy of the buffer's metadata record.
    #[inline]
    pub(crate) fn meta(&self) -> FrameMeta {
        self.pool.slot(self.index).meta.load()
    }

    /// The metadata record, for the buffer's writer.
    #[inline]
    pub(crate) fn meta_mut(&self) -> MetaMut<'p> {
        MetaMut::new(&self.pool.slot(self.index).meta)
    }
}

/// A free buffer held by a producer: write it, then [`submit`](WriteGuard::submit) it to the
/// filled queue, or drop the guard to put it back on the free queue unused.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("w"), 1, 16).unwrap();
/// let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
/// guard.as_mut_slice().unwrap()[..5].copy_from_slice(b"hello");
/// guard.set_bytes_used(5).unwrap();
/// guard.submit();
/// let read = pool.acquire_filled(Wait::NoWait).unwrap();
/// assert_eq!(read.as_slice().unwrap(), b"hello");
/// ```
#[must_use = "dropping a write guard returns the buffer unused; call submit() to pass it on"]
pub struct WriteGuard<'p> {
    held: GuardCore<'p>,
}

/// A filled buffer held by a consumer: read it, then drop the guard to release the buffer to the
/// free queue.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("r"), 1, 16).unwrap();
/// pool.acquire_free(Wait::NoWait).unwrap().submit();
/// let guard = pool.acquire_filled(Wait::NoWait).unwrap();
/// assert_eq!(guard.as_slice().unwrap().len(), 16);
/// drop(guard);
/// assert_eq!(pool.counts().free, 1);
/// ```
#[must_use = "dropping a read guard releases the buffer at once"]
pub struct ReadGuard<'p> {
    held: GuardCore<'p>,
}

// SAFETY: a guard is the unique owner of its slot and buffer memory (slot module docs); moving it
// to another thread moves that ownership, and the pool handle it borrows is `Sync`.
unsafe impl Send for WriteGuard<'_> {}
// SAFETY: through `&WriteGuard` one can only read (id, description, metadata); every write needs
// `&mut WriteGuard`, so sharing it between threads is sound.
unsafe impl Sync for WriteGuard<'_> {}
// SAFETY: as for `WriteGuard`.
unsafe impl Send for ReadGuard<'_> {}
// SAFETY: a read guard only gives shared access to its memory and metadata.
unsafe impl Sync for ReadGuard<'_> {}

impl<'p> WriteGuard<'p> {
    #[inline(always)]
    pub(crate) fn new(pool: &'p BufferPool, index: u32, generation: u32) -> WriteGuard<'p> {
        WriteGuard {
            held: GuardCore::new(pool, index, generation),
        }
    }

    /// The buffer's id while this guard holds it.
    #[inline]
    pub fn id(&self) -> BufferId {
        self.held.id()
    }

    /// Ends the guard without releasing the buffer: its pool, slot and generation, for a new
    /// owner of the hold.
    pub(crate) fn into_parts(self) -> (&'p BufferPool, u32, u32) {
        let this = ManuallyDrop::new(self);
        (this.held.pool, this.held.index, this.held.generation)
    }

    /// A description of the buffer (addresses, size, kind, ownership).
    pub fn buffer(&self) -> Buffer {
        self.held.buffer()
    }

    /// The buffer's size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether the buffer has no bytes (never true: pools refuse empty memory).
    pub fn is_empty(&self) -> bool {
        self.held.len() == 0
    }

    /// The whole buffer, for writing. Fails for memory the CPU cannot access.
    #[inline]
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8], AccessError> {
        let (addr, len) = self.held.host_memory()?;
        // SAFETY: the memory is host-accessible (checked) and `len` bytes long at `addr` (the
        // injector's contract in `BufferMemory`); it stays valid while the buffer is in the pool,
        // which it is while this guard lives; the guard owns it exclusively, and `&mut self`
        // makes this the only borrow.
        Ok(unsafe { std::slice::from_raw_parts_mut(addr, len) })
    }

    /// A copy of the buffer's metadata record (reset when the buffer was acquired).
    #[inline]
    pub fn meta(&self) -> FrameMeta {
        self.held.meta()
    }

    /// The metadata record, for the producer to fill: a copy, written back when the returned
    /// [`MetaMut`] drops (at the end of the statement in `frame.meta_mut().sequence = 1`).
    #[inline]
    pub fn meta_mut(&mut self) -> MetaMut<'_> {
        self.held.meta_mut()
    }

    /// Records how many bytes from the start the producer filled (the whole buffer by default).
    pub fn set_bytes_used(&mut self, bytes: u64) -> Result<(), BytesUsedError> {
        let size = self.held.len() as u64;
        if bytes > size {
            return Err(BytesUsedError {
                id: self.id(),
                requested: bytes,
                size,
            });
        }
        self.meta_mut().bytes_used = bytes;
        Ok(())
    }

    /// Passes the buffer to the filled queue, waking a waiting consumer.
    #[inline(always)]
    pub fn submit(self) {
        let this = ManuallyDrop::new(self);
        this.held.pool.submit(this.held.index, this.held.generation);
    }

    /// Hands the buffer to fan-out `ports` (see the [`port`](crate::port) module): each port
    /// that accepts it holds one reference, and the buffer returns to the free queue when the
    /// last port's subscriber drops it (at once if no port accepted it).
    pub fn publish(self, ports: &[Port]) -> Published {
        let this = ManuallyDrop::new(self);
        this.held
            .pool
            .publish(this.held.index, this.held.generation, ports)
    }

    /// Detaches the buffer into a plain id, to be sent elsewhere (to another thread, or another
    /// process attached to the pool) and turned back into a write guard with
    /// [`BufferPool::redeem_write`]. Until then the buffer stays held by this process: if the
    /// process dies or detaches first, the buffer goes back to the pool and the id becomes stale.
    pub fn into_id(self) -> BufferId {
        let this = ManuallyDrop::new(self);
        let held = &this.held;
        held.pool
            .detach(held.index, held.generation, SlotState::WritingDetached)
    }
}

impl<'p> ReadGuard<'p> {
    #[inline(always)]
    pub(crate) fn new(pool: &'p BufferPool, index: u32, generation: u32) -> ReadGuard<'p> {
        ReadGuard {
            held: GuardCore::new(pool, index, generation),
        }
    }

    /// Ends the guard without releasing the buffer: its pool, slot and generation, for a new
    /// owner of the hold.
    #[cfg_attr(not(feature = "bytes"), allow(dead_code))]
    pub(crate) fn into_parts(self) -> (&'p BufferPool, u32, u32) {
        let this = ManuallyDrop::new(self);
        (this.held.pool, this.held.index, this.held.generation)
    }

    /// The buffer's id while this guard holds it.
    #[inline]
    pub fn id(&self) -> BufferId {
        self.held.id()
    }

    /// A description of the buffer (addresses, size, kind, ownership).
    pub fn buffer(&self) -> Buffer {
        self.held.buffer()
    }

    /// The pool the buffer belongs to.
    pub fn pool(&self) -> &'p BufferPool {
        self.held.pool
    }

    /// The bytes the producer filled (`meta().bytes_used()` of them). Fails for memory the CPU
    /// cannot access.
    #[inline]
    pub fn as_slice(&self) -> Result<&[u8], AccessError> {
        self.held.filled_bytes()
    }

    /// Plane `plane` of the frame, as the producer described it in the metadata (offset, line
    /// size, rows), checked to lie inside the buffer's memory. Works for every frame, including
    /// one whose planes lie in separate allocations (a wrapped decoder frame).
    pub fn plane(&self, plane: usize) -> Result<&[u8], AccessError> {
        self.held.plane(plane)
    }

    /// A copy of the metadata record the producer wrote.
    #[inline]
    pub fn meta(&self) -> FrameMeta {
        self.held.meta()
    }

    /// Detaches the buffer into a plain id, to be sent elsewhere (to another thread, or another
    /// process attached to the pool) and turned back into a read guard with
    /// [`BufferPool::redeem_read`]. Until then the buffer stays held by this process: if the
    /// process dies or detaches first, the buffer goes back to the pool and the id becomes stale.
    pub fn into_id(self) -> BufferId {
        let this = ManuallyDrop::new(self);
        let held = &this.held;
        held.pool
            .detach(held.index, held.generation, SlotState::ReadingDetached)
    }
}

/// A buffer received from a fan-out port: read it, then drop the guard to drop the port's
/// reference (the last one returns the buffer to the free queue).
///
/// See the [`port`](crate::port) module for an example.
#[must_use = "dropping a port guard drops the port's reference at once"]
pub struct PortGuard<'p> {
    held: GuardCore<'p>,
    port: u8,
    position: u64,
}

// SAFETY: as for `ReadGuard`: the port's reference keeps the buffer from being written while the
// guard lives, and the guard only gives shared access.
unsafe impl Send for PortGuard<'_> {}
// SAFETY: as for `ReadGuard`.
unsafe impl Sync for PortGuard<'_> {}

impl<'p> PortGuard<'p> {
    pub(crate) fn new(
        pool: &'p BufferPool,
        port: u8,
        position: u64,
        index: u32,
        generation: u32,
    ) -> PortGuard<'p> {
        PortGuard {
            held: GuardCore::new(pool, index, generation),
            port,
            position,
        }
    }

    /// The buffer's id (for logs: a port read cannot be detached into an id).
    pub fn id(&self) -> BufferId {
        self.held.id()
    }

    /// A description of the buffer (addresses, size, kind, ownership).
    pub fn buffer(&self) -> Buffer {
        self.held.buffer()
    }

    /// The bytes the producer filled. Fails for memory the CPU cannot access.
    pub fn as_slice(&self) -> Result<&[u8], AccessError> {
        self.held.filled_bytes()
    }

    /// Plane `plane` of the frame, as the producer described it in the metadata (offset, line
    /// size, rows), checked to lie inside the buffer's memory. Works for every frame, including
    /// one whose planes lie in separate allocations (a wrapped decoder frame).
    pub fn plane(&self, plane: usize) -> Result<&[u8], AccessError> {
        self.held.plane(plane)
    }

    /// A copy of the metadata record the producer wrote.
    pub fn meta(&self) -> FrameMeta {
        self.held.meta()
    }
}

impl Drop for PortGuard<'_> {
    fn drop(&mut self) {
        let pool = self.held.pool;
        // The cell goes first: a reference whose cell is gone and which is still counted is
        // dropped by a reaper if this process dies right here.
        if pool.peers {
            pool.inner.local.end_shared(self.held.index);
        }
        pool.block()
            .port_queue(usize::from(self.port))
            .release_unpassed(self.position);
        pool.drop_port_reference(self.port, self.held.index, self.held.generation);
    }
}

impl fmt::Debug for PortGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.held.fmt_as("PortGuard", f)
    }
}

impl Drop for WriteGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.held
            .pool
            .release(self.held.index, self.held.generation);
    }
}

impl Drop for ReadGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.held
            .pool
            .release(self.held.index, self.held.generation);
    }
}

impl GuardCore<'_> {
    /// Both guards' `Debug`: the guard's name, the id and the size.
    fn fmt_as(&self, guard: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(guard)
            .field("id", &self.id())
            .field("len", &self.len())
            .finish()
    }
}

impl fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.held.fmt_as("WriteGuard", f)
    }
}

impl fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.held.fmt_as("ReadGuard", f)
    }
}
