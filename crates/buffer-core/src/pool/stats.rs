//! A pool's accounting as users read it: [`Counts`] (where the buffers are now) and [`Stats`]
//! (what happened since the pool was created).

use std::fmt;

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
    /// Buffers taken back from processes that died holding them.
    pub reclaimed: u64,
}

impl Stats {
    /// The share of acquisitions that found a buffer without waiting (0.0 to 1.0): the pool's
    /// hit rate. A waiting acquisition is a miss, whether it got a buffer in the end or timed
    /// out. `None` before the first acquisition.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::Stats;
    ///
    /// let stats = Stats { acquisitions: 10, waits: 3, timeouts: 1, ..Stats::default() };
    /// // 8 of 10 acquisitions were immediate; 2 waited and got a buffer, 1 waited and timed out.
    /// assert_eq!(stats.hit_rate(), Some(8.0 / 11.0));
    /// assert_eq!(Stats::default().hit_rate(), None);
    /// // Whatever a damaged pool's counters say, no overflow:
    /// let wild = Stats { acquisitions: 1, waits: u64::MAX, timeouts: u64::MAX, ..Stats::default() };
    /// assert!(wild.hit_rate().is_some());
    /// ```
    pub fn hit_rate(&self) -> Option<f64> {
        // The counters come from shared memory, where anything can be written: saturate.
        let waited_and_got = self.waits.saturating_sub(self.timeouts);
        let hits = self.acquisitions.saturating_sub(waited_and_got);
        let attempts = hits.saturating_add(self.waits);
        (attempts > 0).then(|| hits as f64 / attempts as f64)
    }
}

/// How many buffers a pool has and where they are, at one moment.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig};
///
/// let pool = BufferPool::create(PoolConfig::new("empty")).unwrap();
/// let counts = pool.counts();
/// assert_eq!((counts.total, counts.free, counts.filled, counts.in_use), (0, 0, 0, 0));
/// assert_eq!(counts.to_string(), "0 buffers: 0 free, 0 filled, 0 in use");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Buffers in the pool.
    pub total: u32,
    /// Buffers on the free queue.
    pub free: u32,
    /// Buffers on the filled queue.
    pub filled: u32,
    /// Buffers held by guards or detached ids (`total - free - filled`).
    pub in_use: u32,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} buffers: {} free, {} filled, {} in use",
            self.total, self.free, self.filled, self.in_use
        )
    }
}
