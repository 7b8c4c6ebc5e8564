//! One error type per operation. Messages say what happened and what to do about it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::block::layout::{LAYOUT_VERSION, MAX_CAPACITY, MAX_CATEGORY_LEN, MAX_NAME_LEN};
use crate::block::memory_kind::MemoryKind;
use crate::block::port_entry::MAX_PORT_NAME_LEN;
use crate::block::slot::SlotState;
use crate::block::view::{BlockDefect, Queue};
use crate::pool::ids::{BufferId, PoolId};
use crate::pool::stats::Counts;
use crate::shm::segment::{OpenError, SegmentError, SegmentName, SegmentNameError};

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
    /// The ports or the port depth are out of range.
    #[error("pool shape is not usable: {reason}")]
    Shape {
        /// What is out of range, and the range.
        reason: String,
    },
    /// A port name is empty, too long, or given twice.
    #[error(
        "port name {name:?} is not usable: give 1 to {MAX_PORT_NAME_LEN} bytes, different from the other ports' names"
    )]
    PortName {
        /// The name given.
        name: String,
    },
    /// The segment mode would let someone other than the owner write the segment, or not let
    /// the owner read and write it.
    #[error(
        "segment mode {mode:o} is not usable: the owner must read and write, nobody else may write (e.g. 600, 640, 644)"
    )]
    SegmentMode {
        /// The mode given.
        mode: u32,
    },
    /// The alignment of a shared pool's buffers is not a power of two from 64 to the page size.
    #[error(
        "buffer alignment {alignment} is not usable: choose a power of two from 64 to 4096 (the page size)"
    )]
    Alignment {
        /// The alignment asked for.
        alignment: usize,
    },
    /// The buffers would not fit in an address space.
    #[error(
        "{count} buffers of {size} bytes do not fit in one segment; ask for fewer or smaller buffers"
    )]
    TooLarge {
        /// The buffers asked for.
        count: u32,
        /// Their size.
        size: usize,
    },
    /// The segment name is not usable.
    #[error(transparent)]
    SegmentName(#[from] SegmentNameError),
    /// The shared-memory segment could not be made.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The memory for the pool block could not be allocated.
    #[error(transparent)]
    Region(#[from] crate::shm::region::RegionError),
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
/// let holder = Holder { pid: 4711, buffers: 6, bytes: 6 << 20, longest: Some(Duration::from_secs(12)) };
/// assert_eq!(holder.buffers, 6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The holder's process id.
    pub pid: u32,
    /// How many buffers it holds.
    pub buffers: u32,
    /// Their size in bytes.
    pub bytes: u64,
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
///     Holder { pid: 4711, buffers: 6, bytes: 6 << 20, longest: Some(Duration::from_secs(12)) },
///     Holder { pid: 4800, buffers: 1, bytes: 1 << 20, longest: None },
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
    /// The pool's block says the slot holds a detached buffer, but this process knows no buffer
    /// in that slot (it was vacant when this process attached, or removed since): a peer wrote
    /// the slot's state, or the block is damaged. Nothing is handed out.
    #[error(
        "buffer id {id} names slot {} of pool '{pool}', which holds no buffer this process knows; the id is forged or the pool's block is damaged", id.slot
    )]
    Unknown {
        /// The id given.
        id: BufferId,
        /// The pool's name.
        pool: Arc<str>,
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
    /// The pool is shared: its buffers are part of its segment.
    #[error(
        "pool '{pool}' is shared between processes: its buffers are part of its segment and are fixed when it is created"
    )]
    Shared {
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
    /// The pool is shared: its buffers are part of its segment.
    #[error(
        "pool '{pool}' is shared between processes: its buffers are part of its segment and stay until it is destroyed"
    )]
    Shared {
        /// The pool's name.
        pool: Arc<str>,
    },
}

/// A process could not attach to a shared pool.
///
/// # Examples
///
/// ```
/// use buffer_core::{AttachError, BufferPool};
///
/// let err = BufferPool::attach("no-such-pool-anywhere").unwrap_err();
/// assert!(matches!(err, AttachError::NotFound { .. }));
/// assert!(err.to_string().contains("bufpool inspect"));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// The segment name is not usable.
    #[error(transparent)]
    Name(SegmentNameError),
    /// No segment has that name.
    #[error(
        "no shared pool named '{name}': is its creator running? `bufpool inspect` lists the pools on this machine"
    )]
    NotFound {
        /// The name asked for.
        name: SegmentName,
    },
    /// The segment's owner or permissions make it unsafe to use.
    #[error("refusing shared pool '{name}': {reason}")]
    Permission {
        /// The segment's name.
        name: SegmentName,
        /// Why.
        reason: String,
    },
    /// The system refused an operation on the segment.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The segment is too short for what it claims to hold.
    #[error(
        "the segment is {len} bytes, too short for a pool block ({needed} needed); it is not a pool or it is damaged"
    )]
    Truncated {
        /// The segment's length.
        len: usize,
        /// The length needed.
        needed: usize,
    },
    /// The segment does not start with a pool block.
    #[error(
        "the segment holds no initialised pool (magic {magic:#018x}); it is not a pool, or its creator has not finished creating it"
    )]
    NotAPool {
        /// The first 8 bytes.
        magic: u64,
    },
    /// The block was made by another version of this library.
    #[error(
        "the pool block has layout version {found}, this library reads version {supported}; use the same library version in every process"
    )]
    Version {
        /// The version found.
        found: u32,
        /// The version this library reads.
        supported: u32,
    },
    /// The block's shape is out of range.
    #[error("the pool block is damaged: {reason} is out of range")]
    Shape {
        /// What is out of range.
        reason: String,
    },
    /// The block's length disagrees with its shape or the segment.
    #[error(
        "the pool block is damaged: it says it is {stored} bytes, its shape makes {computed}, and {mapped} are mapped"
    )]
    Layout {
        /// The length stored in the header.
        stored: u64,
        /// The length computed from the shape.
        computed: u64,
        /// The segment's length.
        mapped: usize,
    },
    /// Something the block records is out of range.
    #[error("the pool block is damaged: {what}")]
    Corrupt {
        /// What.
        what: String,
    },
    /// The pool's buffers are memory each process opens itself (device memory shared by
    /// handle), and this one is host-accessible, so attaching without opening it is refused.
    #[error(
        "the pool's buffers are memory each process opens itself: attach with the backend that made the pool (BufferPool::attach_foreign)"
    )]
    NeedsOpener,
    /// Opening one foreign buffer failed.
    #[error("cannot open buffer {index} of the pool: {reason}")]
    Open {
        /// The buffer's slot.
        index: u32,
        /// Why, as the opener said.
        reason: String,
    },
    /// Every process slot of the pool is taken by a live process.
    #[error("{max} processes are attached to the pool already; detach one first")]
    TooManyProcesses {
        /// The most processes one pool takes.
        max: usize,
    },
}

impl AttachError {
    /// The error of opening segment `name` (the segment layer's [`OpenError`]).
    pub(crate) fn opening(name: &SegmentName, err: OpenError) -> AttachError {
        match err {
            OpenError::NotFound => AttachError::NotFound { name: name.clone() },
            OpenError::Refused(reason) => AttachError::Permission {
                name: name.clone(),
                reason,
            },
            OpenError::System(err) => AttachError::Segment(err),
            OpenError::Empty => AttachError::Truncated { len: 0, needed: 1 },
        }
    }
}

impl From<BlockDefect> for AttachError {
    fn from(defect: BlockDefect) -> AttachError {
        match defect {
            BlockDefect::Truncated { len, needed } => AttachError::Truncated { len, needed },
            BlockDefect::NotAPool { magic } => AttachError::NotAPool { magic },
            BlockDefect::Version { found } => AttachError::Version {
                found,
                supported: LAYOUT_VERSION,
            },
            BlockDefect::Shape(reason) => AttachError::Shape { reason },
            BlockDefect::Layout {
                stored,
                computed,
                mapped,
            } => AttachError::Layout {
                stored,
                computed,
                mapped,
            },
            BlockDefect::Corrupt(what) => AttachError::Corrupt { what },
        }
    }
}

/// A pool has no port of that name.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig};
///
/// let pool = BufferPool::create(PoolConfig::new("p").with_ports(["a", "b"])).unwrap();
/// let err = pool.port("c").unwrap_err();
/// assert_eq!(err.to_string(), "pool 'p' has no port 'c'; its ports are: a, b");
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("pool '{pool}' has no port '{name}'; its ports are: {}", .known.join(", "))]
pub struct PortError {
    /// The pool's name.
    pub pool: Arc<str>,
    /// The name asked for.
    pub name: String,
    /// The pool's ports.
    pub known: Vec<String>,
}

/// A port could not be subscribed to.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// The port belongs to another pool.
    #[error("{port} belongs to another pool; subscribe through the pool it came from")]
    WrongPool {
        /// The port.
        port: String,
    },
    /// Another live subscriber holds the port.
    #[error(
        "port '{port}' has a subscriber already (pid {pid}); a port has one subscriber at a time, add a port per consumer"
    )]
    Taken {
        /// The port's name.
        port: String,
        /// The subscriber's process id.
        pid: u32,
    },
}

/// Nothing could be received from a port.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReceiveError {
    /// [`Wait::NoWait`](crate::Wait::NoWait) found the port empty.
    #[error("port '{port}' of pool '{pool}' has no buffer right now")]
    Empty {
        /// The pool's name.
        pool: Arc<str>,
        /// The port's name.
        port: String,
    },
    /// Nothing came within the timeout.
    #[error(
        "port '{port}' of pool '{pool}' got no buffer within {waited:?}; is the producer running?"
    )]
    Timeout {
        /// The pool's name.
        pool: Arc<str>,
        /// The port's name.
        port: String,
        /// How long the receive waited.
        waited: Duration,
    },
    /// The pool is closed and the port empty.
    #[error("pool '{pool}' is closed and port '{port}' is empty")]
    Closed {
        /// The pool's name.
        pool: Arc<str>,
        /// The port's name.
        port: String,
    },
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
/// assert!(matches!(err, buffer_core::AccessError::Device(e) if e.kind == MemoryKind::Device { ordinal: 0 }));
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

/// A buffer's bytes, or one plane's, cannot be reached as a slice.
///
/// # Examples
///
/// ```
/// use buffer_core::{AccessError, BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("p"), 1, 64).unwrap();
/// pool.acquire_free(Wait::NoWait).unwrap().submit();
/// let frame = pool.acquire_filled(Wait::NoWait).unwrap();
/// // The producer described no planes.
/// assert!(matches!(frame.plane(0), Err(AccessError::NoSuchPlane { planes: 0, .. })));
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// The memory is not host memory.
    #[error(transparent)]
    Device(#[from] HostAccessError),
    /// The buffer is a frame whose planes lie in separate allocations.
    #[error(
        "buffer {id} holds a frame whose {planes} planes lie in separate allocations; read it plane by plane with plane()"
    )]
    Scattered {
        /// The buffer.
        id: BufferId,
        /// Its planes.
        planes: u32,
    },
    /// The frame has no such plane.
    #[error("buffer {id} has no plane {plane}: its metadata describes {planes}")]
    NoSuchPlane {
        /// The buffer.
        id: BufferId,
        /// The plane asked for.
        plane: usize,
        /// The planes described.
        planes: u32,
    },
    /// The buffer was handed to ports, whose subscribers may be reading it: it can no longer be
    /// written.
    #[error(
        "buffer {id} was published to ports and may be being read: write a buffer before publishing it"
    )]
    Published {
        /// The buffer.
        id: BufferId,
    },
    /// The metadata places the plane outside the buffer's memory.
    #[error(
        "plane {plane} of buffer {id} lies outside its memory (offset {offset}, {len} bytes); its producer described it wrongly"
    )]
    PlaneOutside {
        /// The buffer.
        id: BufferId,
        /// The plane.
        plane: usize,
        /// Its offset in the buffer.
        offset: u64,
        /// Its length (line size times rows).
        len: u64,
    },
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
