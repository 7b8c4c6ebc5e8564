//! One error type per operation. Messages say what happened and what to do about it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::block::{MAX_CAPACITY, MAX_CATEGORY_LEN, MAX_NAME_LEN};
use crate::{BufferId, MemoryKind, PoolId, SlotState};

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

/// A pool could not be created.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, CreatePoolError, PoolConfig};
///
/// let err = BufferPool::create(PoolConfig::new("cam").with_capacity(0)).unwrap_err();
/// assert_eq!(err, CreatePoolError::Capacity { capacity: 0 });
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CreatePoolError {
    /// The capacity is 0 or above [`MAX_CAPACITY`].
    #[error("pool capacity {capacity} is out of range: choose 1 to {MAX_CAPACITY} buffers")]
    Capacity {
        /// The capacity asked for.
        capacity: u32,
    },
    /// The name is empty, too long or contains a NUL byte.
    #[error("pool name {name:?} is not usable: give 1 to {MAX_NAME_LEN} bytes without NUL")]
    Name {
        /// The name given.
        name: String,
    },
    /// The category is too long or contains a NUL byte.
    #[error(
        "pool category {category:?} is not usable: give at most {MAX_CATEGORY_LEN} bytes without NUL"
    )]
    Category {
        /// The category given.
        category: String,
    },
    /// More initial buffers were asked for than the capacity allows.
    #[error(
        "cannot put {count} buffers in a pool of capacity {capacity}: raise the capacity or ask for fewer buffers"
    )]
    TooManyBuffers {
        /// The buffers asked for.
        count: u32,
        /// The pool's capacity.
        capacity: u32,
    },
    /// Buffers of 0 bytes were asked for.
    #[error("buffers must hold at least 1 byte")]
    ZeroSize,
    /// The memory for the pool block could not be allocated.
    #[error(transparent)]
    Region(#[from] crate::RegionError),
}

/// No buffer could be acquired.
///
/// # Examples
///
/// ```
/// use buffer_core::{AcquireError, BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("cam0"), 1, 64).unwrap();
/// let _held = pool.acquire_free(Wait::NoWait).unwrap();
/// let err = pool.acquire_free(Wait::NoWait).unwrap_err();
/// assert!(matches!(err, AcquireError::Empty { .. }));
/// assert!(err.to_string().starts_with("pool 'cam0' has no free buffer right now"));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AcquireError {
    /// [`Wait::NoWait`](crate::Wait::NoWait) found the queue empty.
    #[error(
        "pool '{pool}' has no {queue} buffer right now ({counts}); wait, or release buffers sooner"
    )]
    Empty {
        /// The pool's name.
        pool: Arc<str>,
        /// The queue that was empty.
        queue: Queue,
        /// The pool's counts when it gave up.
        counts: Counts,
    },
    /// The queue stayed empty for the whole timeout.
    #[error(
        "pool '{pool}' had no {queue} buffer within {waited:?} ({counts}{holders}); release buffers sooner, enlarge the pool, or wait longer"
    )]
    Timeout {
        /// The pool's name.
        pool: Arc<str>,
        /// The queue waited on.
        queue: Queue,
        /// How long it waited.
        waited: Duration,
        /// The pool's counts when it gave up.
        counts: Counts,
        /// Who held the pool's buffers when it gave up.
        holders: Holders,
    },
    /// The pool was closed (before or during the wait).
    #[error("pool '{pool}' is closed: no more {queue} buffers will come")]
    Closed {
        /// The pool's name.
        pool: Arc<str>,
        /// The queue asked for.
        queue: Queue,
    },
}

/// One process holding buffers of a pool.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use buffer_core::Holder;
///
/// let holder = Holder { pid: 4711, buffers: 6, longest: Some(Duration::from_secs(12)) };
/// assert_eq!(holder.buffers, 6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The holder's process id.
    pub pid: u32,
    /// How many buffers it holds.
    pub buffers: u32,
    /// How long it has held the oldest of them; `None` if the pool records no hold times
    /// ([`PoolConfig::with_hold_times`](crate::PoolConfig::with_hold_times)).
    pub longest: Option<Duration>,
}

/// Who holds a pool's buffers, most buffers first.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use buffer_core::{Holder, Holders};
///
/// let holders = Holders(vec![
///     Holder { pid: 4711, buffers: 6, longest: Some(Duration::from_secs(12)) },
///     Holder { pid: 4800, buffers: 1, longest: None },
/// ]);
/// assert_eq!(holders.to_string(), "; 6 held by pid 4711 (the oldest for 12.0 s), 1 by pid 4800");
/// assert_eq!(Holders::default().to_string(), "");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holders(pub Vec<Holder>);

impl fmt::Display for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, holder) in self.0.iter().enumerate() {
            let (count, pid) = (holder.buffers, holder.pid);
            if i == 0 {
                write!(f, "; {count} held by pid {pid}")?;
            } else {
                write!(f, ", {count} by pid {pid}")?;
            }
            if let Some(longest) = holder.longest {
                let secs = longest.as_secs_f64();
                if i == 0 {
                    write!(f, " (the oldest for {secs:.1} s)")?;
                } else {
                    write!(f, " ({secs:.1} s)")?;
                }
            }
        }
        Ok(())
    }
}

/// A [`BufferId`] could not be turned back into a guard.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, RedeemError, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("ids"), 1, 64).unwrap();
/// let guard = pool.acquire_free(Wait::NoWait).unwrap();
/// let id = guard.id();
/// drop(guard); // released: the id is stale now
/// assert!(matches!(pool.redeem_write(id), Err(RedeemError::Stale { .. })));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RedeemError {
    /// The id names another pool.
    #[error(
        "buffer id {id} belongs to another pool than '{pool}' ({pool_id}); redeem it with the pool it came from"
    )]
    WrongPool {
        /// The id given.
        id: BufferId,
        /// The name of the pool asked.
        pool: Arc<str>,
        /// The id of the pool asked.
        pool_id: PoolId,
    },
    /// The slot index is beyond the pool's capacity (a garbage id).
    #[error("buffer id {id} names slot {}, but pool '{pool}' has only {capacity} slots; the id is corrupt", id.slot)]
    NoSuchSlot {
        /// The id given.
        id: BufferId,
        /// The pool's name.
        pool: Arc<str>,
        /// The pool's capacity.
        capacity: u32,
    },
    /// The buffer was released (or removed) since the id was made.
    #[error(
        "buffer id {id} is stale: the buffer went back to pool '{pool}' since (slot generation is now {current}); an id is valid only until its buffer is released"
    )]
    Stale {
        /// The id given.
        id: BufferId,
        /// The pool's name.
        pool: Arc<str>,
        /// The slot's current generation.
        current: u32,
    },
    /// The buffer is not waiting to be redeemed this way: it was already redeemed, or it was
    /// detached from the other kind of guard.
    #[error(
        "buffer id {id} is not waiting to become a {wanted} guard (its slot is {state}); redeem each id exactly once, with the method matching the guard it came from"
    )]
    NotDetached {
        /// The id given.
        id: BufferId,
        /// "write" or "read".
        wanted: &'static str,
        /// What the slot is doing.
        state: SlotStateName,
    },
}

/// A slot state as shown in error messages (including states a corrupt block may hold).
///
/// # Examples
///
/// ```
/// use buffer_core::{SlotState, SlotStateName};
///
/// assert_eq!(SlotStateName(Some(SlotState::Free)).to_string(), "Free");
/// assert_eq!(SlotStateName(None).to_string(), "in an unknown (corrupt) state");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotStateName(pub Option<SlotState>);

impl fmt::Display for SlotStateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(state) => write!(f, "{state:?}"),
            None => f.write_str("in an unknown (corrupt) state"),
        }
    }
}

/// A buffer could not be added to a pool.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferMemory, BufferPool, InjectError, MemoryKind, PoolConfig, Queue};
///
/// let pool = BufferPool::create(PoolConfig::new("grow")).unwrap();
/// let mut byte = 0u8;
/// // SAFETY: 0 bytes are never accessed; the pool refuses them.
/// let empty = unsafe { BufferMemory::external(&mut byte, 0, MemoryKind::Host, None) };
/// assert!(matches!(pool.inject(empty, Queue::Free), Err(InjectError::Empty { .. })));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InjectError {
    /// Every slot holds a buffer already.
    #[error(
        "pool '{pool}' is full: all {capacity} slots hold a buffer; remove one first or create the pool with a larger capacity"
    )]
    Full {
        /// The pool's name.
        pool: Arc<str>,
        /// The pool's capacity.
        capacity: u32,
    },
    /// The pool is closed.
    #[error("pool '{pool}' is closed; buffers can no longer be added")]
    Closed {
        /// The pool's name.
        pool: Arc<str>,
    },
    /// The memory is empty.
    #[error("cannot add a 0-byte buffer to pool '{pool}'")]
    Empty {
        /// The pool's name.
        pool: Arc<str>,
    },
}

/// A buffer could not be removed from a pool.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, RemoveError, Wait};
///
/// let pool = BufferPool::create(PoolConfig::new("empty")).unwrap();
/// assert!(matches!(pool.remove(Wait::NoWait), Err(RemoveError::NoFreeBuffer(_))));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RemoveError {
    /// No free buffer could be taken (only free buffers are removed).
    #[error("cannot remove a buffer: {0}")]
    NoFreeBuffer(#[source] AcquireError),
}

/// The CPU cannot access the buffer's memory.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferMemory, BufferPool, MemoryKind, PoolConfig, Queue, Wait};
///
/// let pool = BufferPool::create(PoolConfig::new("gpu")).unwrap();
/// // SAFETY: device memory is never dereferenced by the pool; the address is only recorded.
/// let memory = unsafe {
///     BufferMemory::external(0x1000 as *mut u8, 4096, MemoryKind::Device { ordinal: 0 }, None)
/// };
/// pool.inject(memory, Queue::Free).unwrap();
/// let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
/// let err = guard.as_mut_slice().unwrap_err();
/// assert_eq!(err.kind, MemoryKind::Device { ordinal: 0 });
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error(
    "buffer {id} is {kind}, which the CPU cannot read or write; use the backend's device API (copies, kernels) instead"
)]
pub struct HostAccessError {
    /// The buffer.
    pub id: BufferId,
    /// Its kind of memory.
    pub kind: MemoryKind,
}

/// A producer claimed to have filled more than the buffer holds.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("p"), 1, 16).unwrap();
/// let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
/// let err = guard.set_bytes_used(17).unwrap_err();
/// assert_eq!((err.requested, err.size), (17, 16));
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("cannot mark {requested} bytes used in buffer {id}, which holds only {size} bytes")]
pub struct BytesUsedError {
    /// The buffer.
    pub id: BufferId,
    /// The byte count given.
    pub requested: u64,
    /// The buffer's size.
    pub size: u64,
}
