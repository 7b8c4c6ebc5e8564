//! Making a pool handle: creating a pool in private memory or in a new shared-memory segment,
//! attaching to a segment another process created, and taking this process's entry in the block.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::block::layout::{BlockLayout, align_up};
use crate::block::local::{LocalBuffer, LocalSlots};
use crate::block::memory_kind::{MemoryKind, Ownership};
use crate::block::process::MAX_PROCESSES;
use crate::block::view::{AttachedBuffer, Block, BlockIdentity, PoolIdentity, Queue};
use crate::lockfree::wait::Sleepers;
use crate::pool::async_acquire::AsyncWaiters;
use crate::pool::attachment::Attachment;
use crate::pool::config::PoolConfig;
use crate::pool::error::{AttachError, CreatePoolError};
use crate::pool::handle::{BufferPool, PoolInner};
use crate::pool::ids::PoolId;
use crate::pool::memory::BufferMemory;
use crate::pool::owner::PoolOwner;
use crate::shm::liveness::Liveness;
use crate::shm::region::{REGION_ALIGN, Region};
use crate::shm::segment::{Mapped, Segment, SegmentName, Unnamed};

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
        mut open: Option<&mut crate::pool::foreign::Opener<'_>>,
    ) -> Result<BufferPool, AttachError> {
        let name = SegmentName::new(segment).map_err(AttachError::Name)?;
        let Mapped { region, file } =
            Segment::open(&name).map_err(|err| AttachError::opening(&name, err))?;
        let (block, identity, buffers) = Block::attach(region)?;
        let pool = BufferPool::adopt(block, identity, Liveness::of_segment(file), Some(name))
            .ok_or(AttachError::TooManyProcesses { max: MAX_PROCESSES })?;
        let base = pool.block().base().as_ptr();
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
                crate::pool::foreign::open_foreign(
                    &pool,
                    index,
                    size,
                    kind,
                    at,
                    open.as_deref_mut(),
                )?;
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
            unnamed.link(file)?;
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
        let view = block.view();
        let pid = std::process::id();
        // Tracked before the lock is taken: a child forked from now on drops the file the lock
        // is held through, and never keeps this process alive in the kernel's eyes.
        let fork = liveness.file().and_then(|file| {
            let (base, len) = block.region();
            crate::shm::fork::track(base.as_ptr(), len, file)
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
                crate::block::reclaim::reclaim_dead_with(view, &liveness, 0);
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
            keep_alives: Mutex::new((0..capacity).map(|_| None).collect()),
            destroyed: AtomicBool::new(false),
            plane_spans: Mutex::new(vec![None; capacity as usize]),
            actor,
            record,
            segment,
            async_waiters: (0..waits).map(|_| AsyncWaiters::default()).collect(),
            sleepers: (0..waits).map(|_| Sleepers::of(actor)).collect(),
        };
        Some(BufferPool {
            actor,
            hold_times: identity.hold_times,
            peers: inner.segment.is_some(),
            inner: Attachment::new(inner),
        })
    }

    /// Puts a buffer of the segment at `offset` into a vacant slot, on the free queue (while
    /// creating a shared pool).
    fn add_segment_buffer(&self, offset: usize, size: usize) {
        let (index, generation) = self
            .block()
            .claim_vacant_slot(self.actor)
            .expect("a new pool has a slot for every initial buffer");
        let slot = self.block().slot(index);
        slot.set_description(size, MemoryKind::SharedHost, Ownership::Owned, None);
        slot.data_offset.store(offset as u64, Ordering::Relaxed);
        // SAFETY: `offset + size` lies inside the segment, which was sized for every buffer.
        let addr = unsafe { self.block().base().as_ptr().add(offset) };
        let buffer = LocalBuffer {
            addr,
            len: size,
            kind: MemoryKind::SharedHost,
        };
        self.enqueue_new_buffer(index, generation, buffer, None, Queue::Free);
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
            // SAFETY: `storage` holds at least `size` bytes, is moved into the keep-alive (a boxed
            // slice's heap memory does not move with it) and is freed only when the pool drops
            // the keep-alive; nothing else accesses it.
            let memory = unsafe {
                BufferMemory::owned(
                    addr,
                    size,
                    crate::block::memory_kind::MemoryKind::Host,
                    None,
                    Box::new(storage),
                )
            };
            owner
                .inject(memory, Queue::Free)
                .expect("a new pool with room for every buffer accepts a non-empty buffer");
        }
        Ok(owner)
    }
}
