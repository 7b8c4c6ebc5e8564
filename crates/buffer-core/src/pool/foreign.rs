//! Shared pools of foreign memory: the pool's control block lives in a shared-memory segment as
//! usual, but each buffer's memory lies outside it (device memory, say) and every process maps it
//! itself, from a share token the creator stored in the segment (a CUDA IPC memory handle, for
//! instance). Ids, references, ports and dead-process reclamation are those of any shared pool.

use std::sync::atomic::Ordering;

use crate::block::layout::{BlockLayout, SHARE_TOKEN_LEN, align_up};
use crate::block::local::LocalBuffer;
use crate::block::memory_kind::MemoryKind;
use crate::block::slot::FOREIGN;
use crate::block::view::Queue;
use crate::pool::config::PoolConfig;
use crate::pool::error::{AttachError, CreatePoolError};
use crate::pool::handle::BufferPool;
use crate::pool::memory::BufferMemory;
use crate::pool::open::Placement;
use crate::pool::owner::PoolOwner;
use crate::shm::region::REGION_ALIGN;
use crate::shm::segment::SegmentName;
use crate::sync::shm_safe::copy_from_shared;

/// One buffer of a foreign shared pool, as its creator adds it: its memory in the creating
/// process, and the token other processes open it by.
pub struct ForeignBuffer {
    /// The memory in this process (its keep-alive is dropped when the pool is destroyed).
    pub memory: BufferMemory,
    /// What another process passes to its opener to map the same memory.
    pub token: [u8; SHARE_TOKEN_LEN],
}

/// One foreign buffer as an attaching process is asked to open it.
#[derive(Debug, Clone, Copy)]
pub struct ForeignToken<'a> {
    /// The buffer's slot in the pool.
    pub index: u32,
    /// Its size in bytes.
    pub size: usize,
    /// Its kind of memory.
    pub kind: MemoryKind,
    /// The token its creator stored.
    pub token: &'a [u8; SHARE_TOKEN_LEN],
}

/// Opens one foreign buffer in this process: its memory here, at least `size` bytes, whose
/// keep-alive (dropped when this process detaches) unmaps it; or why not.
pub type Opener<'o> = dyn FnMut(ForeignToken<'_>) -> Result<BufferMemory, String> + 'o;

impl BufferPool {
    /// Creates a pool in a new shared-memory segment named `segment` whose buffers are
    /// `buffers`, memory outside the segment that each other process opens from its token when it
    /// attaches with [`BufferPool::attach_foreign`] (a plain [`BufferPool::attach`] leaves memory
    /// the host cannot access unmapped, and refuses host memory). All buffers start on the free
    /// queue; like every shared pool, the pool neither grows nor shrinks later.
    ///
    /// # Examples
    ///
    /// Host memory "opened" by looking its token up, to show the mechanism (a CUDA backend opens
    /// IPC memory handles instead):
    ///
    /// ```
    /// use buffer_core::{BufferMemory, BufferPool, ForeignBuffer, MemoryKind, PoolConfig, Wait};
    ///
    /// let memory: &'static mut [u8] = Box::leak(vec![0u8; 256].into_boxed_slice());
    /// let addr = memory.as_mut_ptr();
    /// // SAFETY: leaked memory lives forever; only the pool touches it.
    /// let buffer = unsafe { BufferMemory::external(addr, 256, MemoryKind::Host, None) };
    /// let mut token = [0u8; 64];
    /// token[..8].copy_from_slice(&(addr as u64).to_le_bytes());
    /// let name = format!("doc-foreign-{}", std::process::id());
    /// let owner = BufferPool::create_shared_foreign(&name, PoolConfig::new("f"), vec![ForeignBuffer { memory: buffer, token }])?;
    /// let other = BufferPool::attach_foreign(&name, &mut |t| {
    ///     let addr = u64::from_le_bytes(t.token[..8].try_into().unwrap()) as *mut u8;
    ///     // SAFETY: the same leaked memory, in the same process.
    ///     Ok(unsafe { BufferMemory::external(addr, t.size, t.kind, None) })
    /// })?;
    /// owner.acquire_free(Wait::NoWait)?.as_mut_slice()?[0] = 5;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_shared_foreign(
        segment: &str,
        config: PoolConfig,
        buffers: Vec<ForeignBuffer>,
    ) -> Result<PoolOwner, CreatePoolError> {
        config.validate()?;
        let count = u32::try_from(buffers.len()).unwrap_or(u32::MAX);
        config.check_initial_buffers(count, 1)?;
        if buffers.iter().any(|buffer| buffer.memory.is_empty()) {
            return Err(CreatePoolError::ZeroSize);
        }
        let layout = BlockLayout::new(config.shape());
        let len = align_up(layout.len + buffers.len() * SHARE_TOKEN_LEN, REGION_ALIGN);
        let placement = Placement::shared(SegmentName::new(segment)?, len, config.segment_mode())?;
        BufferPool::init(&config, layout, placement, move |pool| {
            for (i, buffer) in buffers.into_iter().enumerate() {
                pool.add_foreign_buffer(layout.len + i * SHARE_TOKEN_LEN, buffer);
            }
        })
    }

    /// Attaches to a pool made by [`BufferPool::create_shared_foreign`] (or any shared pool),
    /// opening each foreign buffer with `open`. A buffer that cannot be opened fails the attach.
    pub fn attach_foreign(segment: &str, open: &mut Opener<'_>) -> Result<BufferPool, AttachError> {
        BufferPool::attach_opening(segment, Some(open))
    }

    /// Puts a foreign buffer into a vacant slot, its token at `offset` of the segment, on the
    /// free queue (while creating the pool).
    fn add_foreign_buffer(&self, offset: usize, buffer: ForeignBuffer) {
        let (index, generation) = self
            .block()
            .claim_vacant_slot(self.actor)
            .expect("a new pool has a slot for every initial buffer");
        let slot = self.block().slot(index);
        let memory = buffer.memory;
        slot.set_description(memory.len, memory.kind, memory.ownership(), memory.phys);
        slot.data_offset.store(offset as u64, Ordering::Relaxed);
        slot.flags.store(FOREIGN, Ordering::Relaxed);
        // SAFETY: the segment was sized for one token per buffer after the block, so
        // `offset + SHARE_TOKEN_LEN` lies inside it.
        let at = unsafe { self.block().base().as_ptr().add(offset) };
        // SAFETY: `at` has room for the token (above); nobody else sees the pool yet (the
        // segment has no name).
        unsafe { std::ptr::copy_nonoverlapping(buffer.token.as_ptr(), at, SHARE_TOKEN_LEN) };
        let local = memory.local();
        self.enqueue_new_buffer(index, generation, local, memory.keep_alive, Queue::Free);
    }
}

/// Maps foreign buffer `index` of `pool` (`size` bytes of `kind`, as read and checked when
/// attaching) in this process, from the token at `token`, with `open`.
pub(crate) fn open_foreign(
    pool: &BufferPool,
    index: u32,
    size: usize,
    kind: MemoryKind,
    token: *const u8,
    open: Option<&mut Opener<'_>>,
) -> Result<(), AttachError> {
    let Some(open) = open else {
        if kind.is_host_accessible() {
            return Err(AttachError::NeedsOpener);
        }
        // Stays unmapped here: the buffer can be held and passed on, never touched by the host.
        let unmapped = LocalBuffer {
            addr: std::ptr::null_mut(),
            len: size,
            kind,
        };
        pool.inner.local.set(index, unmapped);
        return Ok(());
    };
    let mut copy = [0u8; SHARE_TOKEN_LEN];
    // SAFETY: the caller checked that `SHARE_TOKEN_LEN` bytes at `token` lie in the segment;
    // copying them first means a concurrent writer cannot change what the opener sees.
    unsafe { copy_from_shared(token, &mut copy) };
    let memory = open(ForeignToken {
        index,
        size,
        kind,
        token: &copy,
    })
    .map_err(|reason| AttachError::Open { index, reason })?;
    if memory.len < size || memory.addr.is_null() {
        return Err(AttachError::Open {
            index,
            reason: format!(
                "the opener mapped {} bytes, the buffer has {size}",
                memory.len
            ),
        });
    }
    let mapped = LocalBuffer {
        addr: memory.addr,
        len: size,
        kind,
    };
    pool.inner.local.set(index, mapped);
    pool.inner.keep_alives.lock()[index as usize] = memory.keep_alive;
    Ok(())
}
