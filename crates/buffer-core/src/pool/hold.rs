//! [`BufferHold`]: a held free buffer that owns a handle of its pool instead of borrowing it, for
//! code that must keep a buffer beyond a borrow's reach, such as a decoder's frame allocator
//! whose buffers are released from a C callback on any thread.

use std::fmt;

use crate::block::meta::{FrameMeta, MetaMut};
use crate::pool::error::AccessError;
use crate::pool::guard::{GuardCore, WriteGuard};
use crate::pool::handle::BufferPool;
use crate::pool::ids::BufferId;

/// A free buffer held for writing, like a [`WriteGuard`], that keeps its pool alive itself: it
/// is `'static`, so it can be boxed and handed to foreign code. Dropping it puts the buffer back
/// on the free queue; [`BufferHold::submit`] passes it to the filled queue.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferHold, BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("h"), 1, 64).unwrap();
/// let hold: BufferHold = pool.acquire_free(Wait::NoWait).unwrap().into_hold();
/// let boxed: Box<dyn Send + Sync> = Box::new(hold); // no borrow of `pool` left
/// drop(boxed);
/// assert_eq!(pool.counts().free, 1);
/// ```
#[must_use = "dropping a hold returns the buffer unused"]
pub struct BufferHold {
    pool: BufferPool,
    index: u32,
    generation: u32,
    /// Set once the buffer went to a queue: dropping the hold then releases nothing.
    handed_on: bool,
    /// Set once the buffer was delivered to ports: dropping the hold then ends this holder's
    /// reference, and the ports keep the buffer.
    delivered: bool,
}

impl WriteGuard<'_> {
    /// Turns the guard into a [`BufferHold`] that owns a handle of the pool.
    pub fn into_hold(self) -> BufferHold {
        let (pool, index, generation) = self.into_parts();
        BufferHold {
            pool: pool.clone(),
            index,
            generation,
            handed_on: false,
            delivered: false,
        }
    }
}

impl BufferHold {
    /// The buffer's id.
    pub fn id(&self) -> BufferId {
        BufferId::new(self.pool.id(), self.index, self.generation)
    }

    /// The pool the buffer belongs to.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// The buffer's size in bytes.
    pub fn len(&self) -> usize {
        self.pool.len_of(self.index)
    }

    /// Whether the buffer has no bytes (never true: pools refuse empty memory).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn core(&self) -> GuardCore<'_> {
        GuardCore::new(&self.pool, self.index, self.generation)
    }

    /// `Err` once the buffer was published: its subscribers may be reading it.
    fn check_unpublished(&self) -> Result<(), AccessError> {
        if self.delivered {
            return Err(AccessError::Published { id: self.id() });
        }
        Ok(())
    }

    /// The buffer's start, for writing through foreign code, if the CPU may access it and it
    /// was not [`publish`](Self::publish)ed. The pointer is valid for
    /// [`len`](BufferHold::len) bytes while the hold lives.
    pub fn as_mut_ptr(&mut self) -> Result<*mut u8, AccessError> {
        self.check_unpublished()?;
        Ok(self.core().host()?.0)
    }

    /// The whole buffer, for reading. Fails for memory the CPU cannot access.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("h"), 1, 4).unwrap();
    /// let mut hold = pool.acquire_free(Wait::NoWait).unwrap().into_hold();
    /// hold.as_mut_slice().unwrap().copy_from_slice(b"abcd");
    /// // On any thread, with no borrow of `pool`:
    /// let read = std::thread::spawn(move || hold.as_slice().unwrap().to_vec()).join().unwrap();
    /// assert_eq!(read, b"abcd");
    /// ```
    pub fn as_slice(&self) -> Result<&[u8], AccessError> {
        let (addr, len) = self.core().host_memory()?;
        // SAFETY: the memory is host-accessible (checked) and `len` bytes long at `addr` (the
        // injector's contract in `BufferMemory`); it stays valid while the buffer is in the pool,
        // which it is while this hold lives; the hold owns the buffer, and ports given it by
        // `publish` only read it, so `&self` borrows are all readers.
        Ok(unsafe { std::slice::from_raw_parts(addr, len) })
    }

    /// The whole buffer, for writing. Fails for memory the CPU cannot access, and once the
    /// buffer was [`publish`](Self::publish)ed (subscribers may be reading it).
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8], AccessError> {
        self.check_unpublished()?;
        let (addr, len) = self.core().host_memory()?;
        // SAFETY: as in `as_slice`, and no port reads it (never published), so the hold is the
        // buffer's only user and `&mut self` makes this the only borrow.
        Ok(unsafe { std::slice::from_raw_parts_mut(addr, len) })
    }

    /// A copy of the buffer's metadata record.
    pub fn meta(&self) -> FrameMeta {
        self.core().meta()
    }

    /// The buffer's metadata record, to fill before publishing (a copy, written back when the
    /// returned [`MetaMut`] drops). Refused once the buffer was
    /// [`publish`](Self::publish)ed: its subscribers read the record.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{AccessError, BufferPool, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("h").with_ports(["p"]), 1, 8)?;
    /// let port = pool.port("p")?;
    /// let _reader = pool.subscribe(port)?;
    /// let mut hold = pool.acquire_free(Wait::NoWait)?.into_hold();
    /// hold.meta_mut()?.sequence = 4;
    /// hold.publish(&[port]);
    /// assert!(matches!(hold.meta_mut(), Err(AccessError::Published { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn meta_mut(&mut self) -> Result<MetaMut<'_>, AccessError> {
        self.check_unpublished()?;
        Ok(MetaMut::new(&self.pool.slot(self.index).meta))
    }

    /// Gives each of `ports` a reference to the buffer (see the [`port`](crate::port) module)
    /// while this hold keeps its own: subscribers may read the buffer now, and it goes back to
    /// the free queue once the hold and every port's subscriber have dropped it. For a buffer a
    /// producer must keep after handing it on, such as a decoder's reference frame. Call it
    /// again to reach more ports; write the buffer only before the first delivery.
    pub fn publish(&mut self, ports: &[crate::pool::port::Port]) -> crate::pool::port::Published {
        if !self.delivered && self.pool.peers {
            // From now on the hold only reads, beside this process's subscribers.
            self.pool.inner.local.downgrade(self.index);
        }
        self.delivered = true;
        self.pool.deliver(self.index, ports)
    }

    /// Whether [`publish`](Self::publish) was called.
    pub fn is_published(&self) -> bool {
        self.delivered
    }

    /// Passes the buffer to the filled queue (only if it was never [`publish`](Self::publish)ed:
    /// a delivered buffer stays with its ports).
    pub fn submit(mut self) {
        if self.delivered {
            return;
        }
        self.pool.submit(self.index, self.generation);
        self.handed_on = true;
    }
}

impl Drop for BufferHold {
    fn drop(&mut self) {
        if self.delivered {
            if self.pool.peers {
                self.pool.inner.local.end_shared(self.index);
            }
            self.pool.end_publication(self.index, self.generation);
        } else if !self.handed_on {
            self.pool.release(self.index, self.generation);
        }
    }
}

impl fmt::Debug for BufferHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferHold")
            .field("id", &self.id())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{lockfree::wait::Wait, pool::config::PoolConfig};

    #[test]
    fn a_published_hold_keeps_its_reference_until_dropped() {
        let owner =
            BufferPool::with_heap_buffers(PoolConfig::new("h").with_ports(["a"]), 1, 64).unwrap();
        let port = owner.port("a").unwrap();
        let reader = owner.subscribe(port).unwrap();
        let mut hold = owner.acquire_free(Wait::NoWait).unwrap().into_hold();
        assert_eq!(hold.publish(&[port]).delivered(), 1);
        drop(reader.receive(Wait::NoWait).unwrap());
        assert_eq!(owner.counts().free, 0, "the hold still references it");
        drop(hold);
        assert_eq!(owner.counts().free, 1);

        // Dropped first, the hold leaves the buffer to the port.
        let mut hold = owner.acquire_free(Wait::NoWait).unwrap().into_hold();
        hold.publish(&[port]);
        drop(hold);
        assert_eq!(owner.counts().free, 0);
        drop(reader.receive(Wait::NoWait).unwrap());
        assert_eq!(owner.counts().free, 1);
        assert_eq!(owner.audit(), Vec::<String>::new());
    }

    #[test]
    fn a_published_hold_reads_but_no_longer_writes() {
        let owner =
            BufferPool::with_heap_buffers(PoolConfig::new("h").with_ports(["a"]), 1, 4).unwrap();
        let port = owner.port("a").unwrap();
        let reader = owner.subscribe(port).unwrap();
        let mut hold = owner.acquire_free(Wait::NoWait).unwrap().into_hold();
        hold.as_mut_slice().unwrap().copy_from_slice(b"wxyz");
        hold.publish(&[port]);
        assert_eq!(
            hold.as_mut_slice().unwrap_err(),
            AccessError::Published { id: hold.id() }
        );
        assert_eq!(hold.as_slice().unwrap(), b"wxyz");
        assert_eq!(
            reader.receive(Wait::NoWait).unwrap().as_slice().unwrap(),
            b"wxyz"
        );
    }

    #[test]
    fn a_hold_outlives_the_handle_it_came_from_and_goes_back_once() {
        let owner = BufferPool::with_heap_buffers(PoolConfig::new("h"), 2, 64).unwrap();
        let pool = owner.pool().clone();
        let mut hold = pool.acquire_free(Wait::NoWait).unwrap().into_hold();
        drop(pool);
        // SAFETY: the pointer is valid for `len` bytes while the hold lives.
        unsafe { hold.as_mut_ptr().unwrap().write_bytes(7, hold.len()) };
        hold.meta_mut().unwrap().sequence = 3;
        hold.submit();
        let frame = owner.acquire_filled(Wait::NoWait).unwrap();
        assert_eq!(
            (frame.as_slice().unwrap()[63], frame.meta().sequence),
            (7, 3)
        );
        drop(frame);
        drop(owner.acquire_free(Wait::NoWait).unwrap().into_hold());
        assert_eq!(owner.counts().free, 2);
        assert_eq!(owner.audit(), Vec::<String>::new());
    }
}
