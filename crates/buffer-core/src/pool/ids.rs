//! Identifiers of pools and buffers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one pool for as long as the process lives.
///
/// Pool ids are never reused within a process, so an id that outlived its pool is recognised as
/// unknown instead of silently naming a newer pool.
///
/// # Examples
///
/// ```
/// use buffer_core::PoolId;
///
/// let a = PoolId::next();
/// let b = PoolId::next();
/// assert_ne!(a, b);
/// assert_eq!(PoolId::from_raw(a.as_raw()), a);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(u64);

impl PoolId {
    /// A fresh id, distinct from every id handed out before in this process.
    pub fn next() -> PoolId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PoolId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh id for a pool shared between processes: unique across processes and across
    /// runs (it mixes the process id, the time and a counter), so that an id of one shared pool
    /// is never mistaken for an id of another.
    pub fn unique() -> PoolId {
        use std::hash::{BuildHasher, Hasher};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hasher.write_u128(now.as_nanos());
        // The high bit keeps shared pools' ids apart from private ones (small counters).
        PoolId(hasher.finish() | 1 << 63)
    }

    /// Rebuilds an id from [`PoolId::as_raw`]; whether a pool has it is checked where it is used.
    pub const fn from_raw(raw: u64) -> PoolId {
        PoolId(raw)
    }

    /// The id as a plain number, for logs and for sending to another process.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool#{}", self.0)
    }
}

/// A plain, copyable name for one buffer while someone holds it: which pool, which slot, and the
/// slot's generation.
///
/// A guard becomes an id with `into_id` and the id becomes a guard again, exactly once, with
/// [`BufferPool::redeem_write`](crate::BufferPool::redeem_write) or
/// [`BufferPool::redeem_read`](crate::BufferPool::redeem_read). The generation changes every time
/// the buffer goes back to the free queue, so an id kept after that is recognised as stale.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferId, PoolId};
///
/// let id = BufferId::new(PoolId::from_raw(7), 3, 42);
/// assert_eq!(BufferId::from_bits(id.to_bits()), id);
/// assert_eq!(id.to_string(), "pool#7/slot 3/gen 42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct BufferId {
    /// The pool the buffer belongs to.
    pub pool: PoolId,
    /// Index of the buffer's slot in the pool's slot table.
    pub slot: u32,
    /// The slot's generation when the id was made.
    pub generation: u32,
}

impl BufferId {
    /// Builds an id from its parts (for example after receiving them from another process).
    pub const fn new(pool: PoolId, slot: u32, generation: u32) -> BufferId {
        BufferId {
            pool,
            slot,
            generation,
        }
    }

    /// Packs the id into 128 bits, for sending over a pipe, a socket or a queue.
    pub const fn to_bits(self) -> u128 {
        ((self.pool.0 as u128) << 64) | ((self.slot as u128) << 32) | self.generation as u128
    }

    /// Unpacks an id packed by [`BufferId::to_bits`]. Any value is accepted here; a pool rejects
    /// ids that do not name one of its held buffers when they are redeemed.
    pub const fn from_bits(bits: u128) -> BufferId {
        BufferId {
            pool: PoolId((bits >> 64) as u64),
            slot: (bits >> 32) as u32,
            generation: bits as u32,
        }
    }
}

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/slot {}/gen {}",
            self.pool, self.slot, self.generation
        )
    }
}
