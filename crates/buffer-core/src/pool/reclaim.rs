//! [`BufferPool::reclaim_dead`]: what a pool handle asks of the reaper (the block layer's
//! `reclaim` module, which says how a dead process's buffers are found and taken back).

use crate::block::reclaim::reclaim_dead_with;
use crate::pool::handle::BufferPool;

impl BufferPool {
    /// Looks for processes attached to this pool that died, and reclaims exactly what they held:
    /// their guards, their detached ids, their port reads and publications in flight, their port
    /// subscriptions. Returns how many buffers went back to the free queue from dead processes.
    /// Also drops what waits in ports nobody subscribes to any more.
    ///
    /// This runs by itself when a process attaches and while an acquisition waits (when it
    /// begins to sleep, then after 1, 2, 4 ... ms, and every 100 ms at the longest); call it to
    /// reclaim at other moments. A process whose acquisitions never wait (only
    /// [`Wait::NoWait`](crate::Wait::NoWait)) reclaims nothing by itself: it should call this
    /// when an acquisition fails. It costs one `fcntl` system call per attached process (asking
    /// the kernel whether it still holds its lock), and a scan of the block only when one died.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("p"), 2, 64).unwrap();
    /// assert_eq!(pool.reclaim_dead(), 0); // nobody died
    /// ```
    pub fn reclaim_dead(&self) -> usize {
        let back = reclaim_dead_with(self.block(), &self.inner.liveness, self.actor);
        // Buffers published to subscriptions that ended go back too, if nobody subscribed
        // since to drop them on the way (see `Subscription`).
        for port in 0..self.block().shape().ports as u8 {
            if self.block().port(usize::from(port)).subscriber() == 0 {
                self.sweep_port(port);
            }
        }
        back
    }
}
