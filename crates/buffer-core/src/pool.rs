//! The process-local handles of a pool: [`BufferPool`] for everyone, [`PoolOwner`] for whoever
//! created the pool (it alone adds and removes memory, and dropping it destroys the pool).

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::async_acquire::{AsyncWaiters, WaitSource};
use crate::block::{
    AttachedBuffer, BUFFER_ALIGN, Block, BlockIdentity, BlockLayout, BlockView, MAX_CATEGORY_LEN,
    MAX_NAME_LEN, PoolIdentity, Shape, align_up,
};
use crate::error::{
    AcquireError, AttachError, Counts, CreatePoolError, InjectError, Queue, RedeemError,
    RemoveError, SlotStateName,
};
use crate::fork::ForkTracking;
use crate::guard::{ReadGuard, WriteGuard};
use crate::liveness::Liveness;
use crate::local::{LocalBuffer, LocalSlots};
use crate::memory::{BufferMemory, MemoryOwner};
use crate::meta::FrameMeta;
use crate::port::{DEFAULT_PORT_DEPTH, MAX_PORT_NAME_LEN};
use crate::process::{MAX_PROCESSES, ProcessRecord};
use crate::queue::Stalled;
use crate::region::{REGION_ALIGN, Region};
use crate::segment::{DEFAULT_SEGMENT_MODE, Mapped, Segment, SegmentName, Unnamed, mode_is_safe};
use crate::slot::{ONE_TIME, Slot, SlotState, SlotWord};
use crate::wait::{Sleepers, Wait, WaitFailure, Waitable, wait_for, wake_all, wake_one};
use crate::{Buffer, BufferId, MemoryKind, Ownership, PoolId};

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
    ports: Vec<String>,
    port_depth: u32,
    segment_mode: u32,
    alignment: usize,
}

impl PoolConfig {
    /// A pool called `name`, category `"default"`, capacity [`DEFAULT_CAPACITY`].
    pub fn new(name: impl Into<String>) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            category: "default".to_owned(),
            capacity: DEFAULT_CAPACITY,
            hold_times: true,
            ports: Vec::new(),
            port_depth: DEFAULT_PORT_DEPTH,
            segment_mode: DEFAULT_SEGMENT_MODE,
            alignment: BUFFER_ALIGN as usize,
        }
    }

    /// The alignment of every buffer a shared pool ([`BufferPool::create_shared`]) places in
    /// its segment: a power of two from 64 (the default, one cache line) to the page size
    /// ([`REGION_ALIGN`](crate::REGION_ALIGN), 4096: a segment is mapped at a page boundary,
    /// in each process at another one). Pools whose buffers come from elsewhere (injected,
    /// foreign) have their memory's own alignment.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let name = format!("doc-align-{}", std::process::id());
    /// let pool = BufferPool::create_shared(&name, PoolConfig::new("a").with_alignment(4096), 2, 1000)?;
    /// for _ in 0..2 {
    ///     let frame = pool.acquire_free(Wait::NoWait)?;
    ///     assert_eq!(frame.buffer().virt_addr % 4096, 0);
    ///     std::mem::forget(frame.into_id());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_alignment(mut self, alignment: usize) -> PoolConfig {
        self.alignment = alignment;
        self
    }

    /// The alignment set.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// The permissions of the segment of a shared pool ([`BufferPool::create_shared`]):
    /// [`DEFAULT_SEGMENT_MODE`] (0600) by default; 0640 or 0644 let other users of the group, or
    /// everyone, read the frames. No mode that lets anyone but the owner write is accepted, and
    /// only the owner can attach (attaching maps the segment for writing).
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::PoolConfig;
    ///
    /// assert_eq!(PoolConfig::new("p").segment_mode(), 0o600);
    /// assert_eq!(PoolConfig::new("p").with_segment_mode(0o640).segment_mode(), 0o640);
    /// ```
    pub fn with_segment_mode(mut self, mode: u32) -> PoolConfig {
        self.segment_mode = mode;
        self
    }

    /// The segment mode set.
    pub fn segment_mode(&self) -> u32 {
        self.segment_mode
    }

    /// Adds fan-out ports with these names (at most [`MAX_PORTS`](crate::MAX_PORTS) in all): named queues through
    /// which one buffer reaches several consumers (see [`BufferPool::port`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::PoolConfig;
    ///
    /// let config = PoolConfig::new("camera").with_ports(["display", "encoder"]).with_port_depth(8);
    /// assert_eq!(config.ports(), ["display", "encoder"]);
    /// assert_eq!(config.port_depth(), 8);
    /// ```
    pub fn with_ports<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> PoolConfig {
        self.ports.extend(names.into_iter().map(Into::into));
        self
    }

    /// How many buffers each port can hold at once, queued and being read together (a power of
    /// two, 2 to [`MAX_PORT_DEPTH`](crate::MAX_PORT_DEPTH); [`DEFAULT_PORT_DEPTH`] by default).
    /// A port that is full refuses further buffers, so a slow consumer holds at most this many.
    /// A received buffer keeps its place in the port until dropped (see the [`port`](crate::port)
    /// module), so keep a port's buffers no longer than the ones received after them.
    pub fn with_port_depth(mut self, depth: u32) -> PoolConfig {
        self.port_depth = depth;
        self
    }

    /// The port names set.
    pub fn ports(&self) -> &[String] {
        &self.ports
    }

    /// The port depth set.
    pub fn port_depth(&self) -> u32 {
        self.port_depth
    }

    /// Sets the category (a free-form grouping such as "video" or "audio").
    pub fn with_category(mut self, category: impl Into<String>) -> PoolConfig {
        self.category = category.into();
        self
    }

    /// Sets the most buffers the pool can ever hold (1 to [`MAX_CAPACITY`](crate::MAX_CAPACITY)).
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

    pub(crate) fn shape(&self) -> Shape {
        Shape {
            capacity: self.capacity,
            ports: self.ports.len().try_into().unwrap_or(u32::MAX),
            port_depth: self.port_depth,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), CreatePoolError> {
        if self.capacity == 0 || self.capacity > crate::MAX_CAPACITY {
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
        for (index, port) in self.ports.iter().enumerate() {
            if port.is_empty()
                || port.len() > MAX_PORT_NAME_LEN
                || self.ports[..index].contains(port)
            {
                return Err(CreatePoolError::PortName { name: port.clone() });
            }
        }
        if !self.alignment.is_power_of_two()
            || !(BUFFER_ALIGN as usize..=REGION_ALIGN).contains(&self.alignment)
        {
            return Err(CreatePoolError::Alignment {
                alignment: self.alignment,
            });
        }
        if !mode_is_safe(self.segment_mode) {
            return Err(CreatePoolError::SegmentMode {
                mode: self.segment_mode,
            });
        }
        self.shape()
            .check()
            .map_err(|reason| CreatePoolError::Shape { reason })
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

/// `CLOCK_MONOTONIC_COARSE` packed as seconds (high 32 bits) and nanoseconds (low 32 bits): a
/// vDSO read (no system call, ~4 ms resolution, enough to tell how long a buffer has been held),
/// with no division on the acquire path.
#[inline(always)]
pub(crate) fn coarse_now() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (now.tv_sec as u64) << 32 | now.tv_nsec as u64
}

/// A slot's acquire time when the pool records none.
const NOT_RECORDED: u64 = 0;

/// Converts a [`coarse_now`] value to a duration since the clock's origin; `None` for
/// [`NOT_RECORDED`].
pub(crate) fn coarse_to_duration(packed: u64) -> Option<Duration> {
    (packed != NOT_RECORDED).then(|| Duration::new(packed >> 32, packed as u32))
}

/// The allocations of a frame's planes: (start address, length) each, length 0 for none.
pub(crate) type PlaneRegions = [(usize, usize); crate::MAX_PLANES];

/// The state one process keeps beside a block.
///
/// Fields drop in order: the fork tracking goes before the segment file is closed (a child
/// forked later would have its handler replace whatever file reused the number) and before
/// the block's memory is unmapped.
pub(crate) struct PoolInner {
    /// A shared pool's mapping, tracked so that forked children get a private copy.
    _fork: Option<ForkTracking>,
    /// How this process asks the kernel which other processes live, and holds its own entry's
    /// lock (through the segment file, for a shared pool).
    pub(crate) liveness: Liveness,
    block: Block,
    id: PoolId,
    name: Arc<str>,
    category: Arc<str>,
    /// Each slot's buffer as this process knows it (see the `local` module).
    pub(crate) local: LocalSlots,
    /// Each port's name, read once.
    ports: Box<[String]>,
    /// Each slot's memory owner, dropped when the buffer leaves the pool. Touched only when
    /// buffers are added or removed, never on the acquire/release path.
    pub(crate) owners: Mutex<Vec<Option<MemoryOwner>>>,
    /// Set once the pool is destroyed: buffers then leave the pool as soon as they are released.
    destroyed: AtomicBool,
    /// For one-time buffers whose planes lie in separate allocations: each plane's allocation
    /// (start, length; length 0 for none), within which reads of that plane are checked.
    regions: Mutex<Vec<Option<PlaneRegions>>>,
    /// This process's entry in the block's process table.
    actor: u8,
    record: ProcessRecord,
    /// The shared-memory segment's name, for a shared pool.
    segment: Option<SegmentName>,
    /// Futures of this process waiting for a free buffer (index 0), a filled one (index 1), or a
    /// buffer on port `p` (index 2 + `p`).
    async_waiters: Box<[AsyncWaiters]>,
    /// This process's threads asleep on each wait word, indexed as `async_waiters`.
    sleepers: Box<[Sleepers]>,
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
    /// The block's view, kept here (not behind the `Arc`) so that the fast path reaches the
    /// block with one load less. Valid as long as `inner`, which owns the block, is alive.
    pub(crate) block: BlockView,
    /// This process's actor number, recorded in the slots of the buffers it holds.
    pub(crate) actor: u8,
    /// Whether acquiring records the time (the block's `FLAG_HOLD_TIMES`, copied so that the
    /// fast path does not read the header for it).
    hold_times: bool,
    /// Whether other processes may use (and scribble on) the block: a shared pool. Its queues
    /// pass stalled takers' cells, and its guards are claimed in this process's slot table
    /// (see the `local` module); a private pool's are neither.
    pub(crate) peers: bool,
    pub(crate) inner: Arc<PoolInner>,
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

/// Where a new block goes, and what it is called there.
pub(crate) struct Placement {
    pub(crate) region: Region,
    /// For a shared pool: its name, the unnamed segment to name once the pool is complete, and
    /// the segment file.
    pub(crate) segment: Option<(SegmentName, Unnamed, std::os::fd::OwnedFd)>,
    pub(crate) pool_id: PoolId,
}

impl Placement {
    /// A new shared-memory segment of `len` bytes named `name` (not visible before the pool
    /// in it is complete).
    pub(crate) fn shared(
        name: SegmentName,
        len: usize,
        mode: u32,
    ) -> Result<Placement, CreatePoolError> {
        let (Mapped { region, file }, unnamed) = Segment::create(&name, len, mode)?;
        Ok(Placement {
            region,
            segment: Some((name, unnamed, file)),
            pool_id: PoolId::unique(),
        })
    }
}

impl BufferPool {
    /// Creates an empty pool in private memory; add buffers with [`PoolOwner::inject`].
    pub fn create(config: PoolConfig) -> Result<PoolOwner, CreatePoolError> {
        config.validate()?;
        let layout = BlockLayout::new(config.shape());
        let placement = Placement {
            region: Region::private(layout.len)?,
            segment: None,
            pool_id: PoolId::next(),
        };
        BufferPool::init(&config, layout, placement, |_| {})
    }

    /// Creates a pool in a new shared-memory segment named `segment`, with `count` buffers of
    /// `size` bytes each (64-byte aligned) in the same segment, all on the free queue. Other
    /// processes attach to it by name with [`BufferPool::attach`]; the segment (mode 0600 unless
    /// [`PoolConfig::with_segment_mode`] says otherwise) is
    /// removed from the namespace when the returned owner is dropped, and its memory is freed
    /// when the last process unmaps it.
    ///
    /// Buffers cannot be added to or removed from a shared pool later: their memory is part of
    /// the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let name = format!("doc-create-{}", std::process::id());
    /// let owner = BufferPool::create_shared(&name, PoolConfig::new("camera").with_capacity(4), 4, 4096)?;
    /// let other = BufferPool::attach(&name)?; // as another process would
    /// let mut frame = owner.acquire_free(Wait::NoWait)?;
    /// frame.as_mut_slice()?.fill(7);
    /// frame.submit();
    /// assert_eq!(other.acquire_filled(Wait::NoWait)?.as_slice()?[0], 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_shared(
        segment: &str,
        config: PoolConfig,
        count: u32,
        size: usize,
    ) -> Result<PoolOwner, CreatePoolError> {
        config.validate()?;
        config.check_initial_buffers(count, size)?;
        let layout = BlockLayout::new(config.shape());
        // The block's length is a multiple of the page, and so of every alignment allowed.
        let stride = align_up(size, config.alignment);
        let len = stride
            .checked_mul(count as usize)
            .and_then(|payload| payload.checked_add(layout.len))
            .map(|len| align_up(len, REGION_ALIGN))
            .ok_or(CreatePoolError::TooLarge { count, size })?;
        let placement = Placement::shared(SegmentName::new(segment)?, len, config.segment_mode)?;
        BufferPool::init(&config, layout, placement, |pool| {
            for index in 0..count {
                let offset = layout.len + index as usize * stride;
                pool.add_segment_buffer(offset, size);
            }
        })
    }

    /// Attaches to the shared pool in segment `segment`, created by another process (or this
    /// one) with [`BufferPool::create_shared`]. Everything this process will follow in the
    /// segment is checked first; then buffers that processes which died held are reclaimed.
    ///
    /// The pool is detached when the last clone of the handle is dropped. Buffers this process
    /// still holds then (ids it detached and nobody redeemed) go back to the pool.
    pub fn attach(segment: &str) -> Result<BufferPool, AttachError> {
        BufferPool::attach_opening(segment, None)
    }

    /// [`BufferPool::attach`], opening foreign buffers (see
    /// [`BufferPool::create_shared_foreign`]) with `open`; without an opener, foreign buffers of
    /// memory the host cannot access stay unmapped in this process and host-accessible ones
    /// refuse the attachment.
    pub(crate) fn attach_opening(
        segment: &str,
        mut open: Option<&mut crate::foreign::Opener<'_>>,
    ) -> Result<BufferPool, AttachError> {
        let name = SegmentName::new(segment).map_err(AttachError::Name)?;
        let Mapped { region, file } = Segment::open(&name)?;
        let (block, identity, buffers) = Block::attach(region)?;
        let pool = BufferPool::adopt(block, identity, Liveness::of_segment(file), Some(name))
            .ok_or(AttachError::TooManyProcesses { max: MAX_PROCESSES })?;
        let base = pool.block.base().as_ptr();
        for AttachedBuffer {
            index,
            offset,
            size,
            kind,
            foreign,
        } in buffers
        {
            // SAFETY: `offset` plus the buffer's (or token's) length lies inside the segment, as
            // `Block::attach` checked on the very values used here.
            let at = unsafe { base.add(offset) };
            if foreign {
                crate::foreign::open_foreign(&pool, index, size, kind, at, open.as_deref_mut())?;
            } else {
                pool.inner.local.set(
                    index,
                    LocalBuffer {
                        addr: at,
                        len: size,
                        kind,
                    },
                );
            }
        }
        pool.reclaim_dead();
        Ok(pool)
    }

    /// Initialises a new block in `placement` and makes the owner's handle; `fill` adds the
    /// initial buffers before anyone else can see the pool.
    pub(crate) fn init(
        config: &PoolConfig,
        layout: BlockLayout,
        placement: Placement,
        fill: impl FnOnce(&BufferPool),
    ) -> Result<PoolOwner, CreatePoolError> {
        let block = Block::init(
            placement.region,
            layout,
            &BlockIdentity {
                pool_id: placement.pool_id.as_raw(),
                name: &config.name,
                category: &config.category,
                hold_times: config.hold_times,
                port_names: &config.ports,
            },
        );
        let identity = PoolIdentity {
            pool_id: placement.pool_id.as_raw(),
            name: config.name.clone(),
            category: config.category.clone(),
            hold_times: config.hold_times,
            ports: config.ports.clone(),
        };
        let (segment, liveness) = match placement.segment {
            Some((name, unnamed, file)) => (Some((name, unnamed)), Liveness::of_segment(file)),
            None => (None, Liveness::private()),
        };
        let name = segment.as_ref().map(|(name, _)| name.clone());
        let pool = BufferPool::adopt(block, identity, liveness, name)
            .expect("a new block has a free process entry");
        fill(&pool);
        // Only now, complete, does the pool get its name: nobody attaches to a half-made pool.
        if let Some((_, unnamed)) = segment {
            let file = pool
                .inner
                .liveness
                .file()
                .expect("a shared pool has its file");
            unnamed.publish(file)?;
        }
        Ok(PoolOwner { pool })
    }

    /// Makes this process's handle of `block`: registers the process in the block's process
    /// table (holding its entry's liveness lock); `None` if the table is full even after
    /// reclaiming dead processes' entries.
    fn adopt(
        block: Block,
        identity: PoolIdentity,
        liveness: Liveness,
        segment: Option<SegmentName>,
    ) -> Option<BufferPool> {
        // SAFETY: the view is stored beside the `Arc` that will own the block, in `BufferPool`
        // and its clones, so the block outlives every use of it.
        let view = unsafe { block.view() };
        let pid = std::process::id();
        // Tracked before the lock is taken: a child forked from now on drops the file the lock
        // is held through, and never keeps this process alive in the kernel's eyes.
        let fork = liveness.file().and_then(|file| {
            let (base, len) = block.region();
            crate::fork::track(base.as_ptr(), len, file)
        });
        // The entry's lock first, then the entry: an entry in use always has its lock held
        // (see the `liveness` module).
        let claim = || {
            view.processes().find_map(|(actor, entry)| {
                if !liveness.lock_entry(actor) {
                    return None;
                }
                let record = entry.claim(pid);
                if record.is_none() {
                    liveness.unlock_entry(actor);
                }
                Some((actor, record?))
            })
        };
        let (actor, record) = match claim() {
            Some(claimed) => claimed,
            None => {
                crate::reclaim::reclaim_dead_with(view, &liveness, 0);
                claim()?
            }
        };
        let capacity = view.capacity();
        let waits = 2 + view.shape().ports as usize;
        let inner = PoolInner {
            _fork: fork,
            liveness,
            block,
            id: PoolId::from_raw(identity.pool_id),
            name: identity.name.into(),
            category: identity.category.into(),
            local: LocalSlots::new(capacity),
            ports: identity.ports.into(),
            owners: Mutex::new((0..capacity).map(|_| None).collect()),
            destroyed: AtomicBool::new(false),
            regions: Mutex::new(vec![None; capacity as usize]),
            actor,
            record,
            segment,
            async_waiters: (0..waits).map(|_| AsyncWaiters::default()).collect(),
            sleepers: (0..waits).map(|_| Sleepers::of(actor)).collect(),
        };
        Some(BufferPool {
            block: view,
            actor,
            hold_times: identity.hold_times,
            peers: inner.segment.is_some(),
            inner: Arc::new(inner),
        })
    }

    /// Puts a buffer of the segment at `offset` into a vacant slot, on the free queue (while
    /// creating a shared pool).
    fn add_segment_buffer(&self, offset: usize, size: usize) {
        let (index, generation) = self
            .block
            .claim_vacant_slot(self.actor)
            .expect("a new pool has a slot for every initial buffer");
        let slot = self.block.slot(index);
        slot.set_description(size, MemoryKind::SharedHost, Ownership::Owned, None);
        slot.data_offset.store(offset as u64, Ordering::Relaxed);
        // SAFETY: `offset + size` lies inside the segment, which was sized for every buffer.
        let addr = unsafe { self.block.base().as_ptr().add(offset) };
        let buffer = LocalBuffer {
            addr,
            len: size,
            kind: MemoryKind::SharedHost,
        };
        self.publish_new_buffer(index, generation, buffer, None, Queue::Free);
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
        self.block.capacity()
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
        self.block.slot(index).reset_meta(self.len_of(index) as u64);
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
    fn take(&self, queue: Queue, wait: Wait) -> Result<(u32, u32), AcquireError> {
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
        let (ring, _) = self.block.queue(queue);
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
        let slot = self.block.slot_checked(index)?;
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
        let header = self.block.header();
        let closed = || AcquireError::Closed {
            pool: self.inner.name.clone(),
            queue,
        };
        if queue == Queue::Free && self.is_closed() {
            return Err(closed());
        }
        let (_, word) = self.block.queue(queue);
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
        let header = self.block.header();
        header.open.store(0, Ordering::SeqCst);
        wake_all(&header.free_wait);
        wake_all(&header.filled_wait);
        for index in 0..self.block.shape().ports as usize {
            wake_all(&self.block.port(index).wait);
        }
    }

    /// Whether [`BufferPool::close`] was called (or the pool destroyed).
    #[inline(always)]
    pub fn is_closed(&self) -> bool {
        self.block.header().open.load(Ordering::SeqCst) == 0
    }

    /// How many buffers there are and where (a snapshot; it scans the queues' cells, so it is
    /// meant for diagnostics and decisions off the fast path).
    pub fn counts(&self) -> Counts {
        let block = &self.block;
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
        let block = &self.block;
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
        self.block.slot(index)
    }

    /// Slot `index`'s buffer as this process knows it.
    #[inline]
    pub(crate) fn local(&self, index: u32) -> LocalBuffer {
        self.inner.local.get(index)
    }

    /// The plane allocations of slot `index`'s buffer, if it is a frame whose planes lie in
    /// separate allocations (only one-time buffers are: others cost one load of the slot).
    #[inline]
    pub(crate) fn plane_regions(&self, index: u32) -> Option<PlaneRegions> {
        if !self.slot(index).is_one_time() {
            return None;
        }
        self.inner.regions.lock()[index as usize]
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
        let (ring, word) = self.block.queue(queue);
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
        let (ring, word) = self.block.queue(queue);
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
        let Some(slot) = self.block.slot_checked(id.slot) else {
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
    pub(crate) fn publish_new_buffer(
        &self,
        index: u32,
        generation: u32,
        buffer: LocalBuffer,
        owner: Option<MemoryOwner>,
        queue: Queue,
    ) {
        let mut meta = FrameMeta::default();
        meta.reset(buffer.len as u64);
        self.publish_new_buffer_with(index, generation, (buffer, owner), meta, queue);
    }

    /// [`BufferPool::publish_new_buffer`] with the metadata record given.
    fn publish_new_buffer_with(
        &self,
        index: u32,
        generation: u32,
        (buffer, owner): (LocalBuffer, Option<MemoryOwner>),
        meta: FrameMeta,
        queue: Queue,
    ) {
        let slot = self.block.slot(index);
        slot.meta.store(meta);
        self.inner.local.set(index, buffer);
        self.inner.owners.lock()[index as usize] = owner;
        self.block.header().buffers.fetch_add(1, Ordering::SeqCst);
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
    /// memory owner; the caller drops it (releasing the memory) outside any lock.
    fn take_out(&self, index: u32) -> Option<MemoryOwner> {
        // SAFETY: used only within this call, while `self` (owning the block) is borrowed.
        let block = unsafe { self.block.view() };
        let slot = block.slot(index);
        let generation = slot.word().generation;
        slot.set(SlotWord::new(generation, SlotState::Removing).by(self.actor));
        let owner = self.owners.lock()[index as usize].take();
        if slot.is_one_time() {
            slot.flags.store(0, Ordering::Relaxed);
            self.regions.lock()[index as usize] = None;
        }
        self.local.clear(index);
        block.header().buffers.fetch_sub(1, Ordering::SeqCst);
        slot.set(SlotWord::new(generation.wrapping_add(1), SlotState::Vacant));
        owner
    }

    /// Takes every queued buffer out of the pool, releasing its memory (used once a private
    /// pool is destroyed).
    fn release_queued_buffers(&self) {
        // SAFETY: used only within this call, while `self` (owning the block) is borrowed.
        let block = unsafe { self.block.view() };
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

impl PoolOwner {
    /// Adds a buffer to the pool, on the `queue` given (a decoder's frames go straight to
    /// `Filled`). Fails when every slot holds a buffer, the pool is closed, or it is a shared
    /// pool (whose buffers are part of its segment); the memory's owner is then dropped,
    /// releasing it.
    pub fn inject(&self, memory: BufferMemory, queue: Queue) -> Result<(), InjectError> {
        let (index, generation) = self.claim_slot_for(&memory)?;
        let buffer = memory.local();
        self.pool
            .publish_new_buffer(index, generation, buffer, memory.owner, queue);
        Ok(())
    }

    /// Adds a buffer that already holds a finished frame, described by `meta` (all of the
    /// buffer counted as used), to the filled queue, for one reader: when its reader releases it,
    /// it leaves the pool and its memory's owner is dropped (instead of going to the free queue for reuse). The memory is released
    /// exactly once: then, or when the pool is destroyed, whichever comes first. For frames that
    /// someone else allocated, such as a decoder's (`allocator-avframe` wraps `AVFrame`s so).
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferMemory, BufferPool, FrameMeta, MemoryKind, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::create(PoolConfig::new("wrapped")).unwrap();
    /// let mut frame = vec![7u8; 64].into_boxed_slice();
    /// let addr = frame.as_mut_ptr();
    /// // SAFETY: the boxed slice holds 64 bytes and moves into the pool with its owner.
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
    /// (start, length), `owner` keeps them all alive, and `meta` describes each plane with an
    /// offset from the lowest plane's start. Readers reach the planes with
    /// [`ReadGuard::plane`], each checked to lie inside its own allocation; the buffer as one
    /// slice is refused ([`AccessError::Scattered`](crate::AccessError::Scattered)).
    ///
    /// # Safety
    ///
    /// Each `(start, length)` must be readable host memory that stays valid and unwritten
    /// until `owner` is dropped, which the pool does when the buffer leaves it.
    pub unsafe fn inject_scattered_frame(
        &self,
        planes: &[(*const u8, usize)],
        owner: MemoryOwner,
        meta: FrameMeta,
    ) -> Result<(), InjectError> {
        let name = || self.pool.inner.name.clone();
        let mut regions: PlaneRegions = [(0, 0); crate::MAX_PLANES];
        if planes.is_empty()
            || planes.len() > crate::MAX_PLANES
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
            BufferMemory::owned(start as *mut u8, end - start, MemoryKind::Host, None, owner)
        };
        self.inject_once(memory, meta, Some(regions))
    }

    /// Adds a one-time buffer (see [`PoolOwner::inject_frame`]).
    fn inject_once(
        &self,
        memory: BufferMemory,
        mut meta: FrameMeta,
        regions: Option<PlaneRegions>,
    ) -> Result<(), InjectError> {
        meta.bytes_used = memory.len as u64;
        let (index, generation) = self.claim_slot_for(&memory)?;
        let slot = self.pool.block.slot(index);
        self.pool.inner.regions.lock()[index as usize] = regions;
        slot.flags.store(ONE_TIME, Ordering::Relaxed);
        let buffer = memory.local();
        self.pool.publish_new_buffer_with(
            index,
            generation,
            (buffer, memory.owner),
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
                .block
                .claim_vacant_slot(self.pool.actor)
                .ok_or(InjectError::Full {
                    pool: name(),
                    capacity: self.pool.capacity(),
                })?;
        let slot = self.pool.block.slot(index);
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
        self.pool
            .block
            .header()
            .destroyed
            .store(1, Ordering::SeqCst);
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

impl Drop for PoolInner {
    /// Detaches: what this process still holds (ids it detached that nobody redeemed) goes back
    /// to the pool, then its process entry is freed and its lock given up. If another process
    /// is reclaiming right now, the entry is left as it is instead: once this attachment's file
    /// is closed, its lock is gone and the next reaper reclaims what it held, as for a process
    /// that died. Either way, ids it held become stale; none is handed to the next process that
    /// gets the entry.
    fn drop(&mut self) {
        // SAFETY: used only within this call, while `self` (owning the block) is alive.
        let block = unsafe { self.block.view() };
        if let Some(entry) = block.process(self.actor) {
            if self.segment.is_some() {
                if let Some(_lock) = self.liveness.cleanup_within(Duration::from_millis(10)) {
                    crate::reclaim::reap(block, self.actor, self.actor);
                    entry.free(self.record);
                }
            } else {
                entry.free(self.record);
            }
        }
        self.liveness.unlock_entry(self.actor);
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
            .field("segment", &self.segment())
            .field("counts", &self.counts())
            .finish()
    }
}

impl std::fmt::Debug for PoolOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PoolOwner").field(&self.pool).finish()
    }
}
