//! Pools in named shared-memory segments, whose buffers are the segment's own memory.

use std::sync::Arc;

use buffer_core::{BufferPool, InjectError, MemoryKind, PoolConfig, PoolId, Queue};

use crate::accounting::{CreateFailure, Ledger, MemoryLimit};
use crate::created_pools::{CreatedPools, common_lifecycle_methods};
use crate::error::{AllocatePoolError, InjectBufferError};
use crate::pool_allocator::PoolAllocator;

/// What [`PoolAllocator::backend_name`] says, and messages call the allocator's backend.
const NAME: &str = "shared-memory";

/// A shared-memory pool's buffers, counted as the allocator's until it destroys the pool.
struct SharedCharge {
    ledger: Arc<Ledger>,
    buffers: u64,
    bytes: u64,
}

impl Drop for SharedCharge {
    fn drop(&mut self) {
        self.ledger.released(self.buffers, self.bytes);
    }
}

/// Creates pools in shared memory and destroys them: each pool lives in a named segment (named
/// after the pool, so pool names must be valid segment names and unique on the machine) that
/// holds its block and its buffers, and other processes attach to it with
/// [`BufferPool::attach`].
///
/// No [`Backend`](crate::Backend) is involved: the buffers are the segment's host memory
/// ([`MemoryKind::SharedHost`]), aligned as asked (up to the page size: an alignment beyond it
/// fails creation), and are fixed when the pool is created: injecting and removing buffers are
/// refused ([`InjectError::Shared`], [`RemoveError::Shared`](buffer_core::RemoveError::Shared)).
/// A pool's buffers count in [`PoolAllocator::memory`] and against the limit from its creation
/// until it is destroyed. Dropping the allocator destroys its pools; each segment is freed when
/// the last process unmaps it.
///
/// # Examples
///
/// ```
/// use allocator_base::{InjectBufferError, PoolAllocator, SharedMemoryPools};
/// use buffer_core::{BufferPool, InjectError, MemoryKind, Queue};
///
/// let allocator = SharedMemoryPools::new(64);
/// let name = format!("doc-shared-{}", std::process::id());
/// let id = allocator.allocate_pool_with_buffers(2, 4096, &name, "video")?;
/// let other_process_view = BufferPool::attach(&name)?;
/// assert_eq!(other_process_view.id(), id);
/// assert_eq!(allocator.memory_kind(), MemoryKind::SharedHost);
/// assert!(matches!(
///     allocator.inject_buffer(id, 4096, Queue::Free),
///     Err(InjectBufferError::Pool(InjectError::Shared { .. }))
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedMemoryPools {
    /// The least alignment of every buffer.
    alignment: usize,
    pools: CreatedPools<SharedCharge>,
}

impl SharedMemoryPools {
    /// An allocator whose pools' buffers are aligned to at least `alignment` bytes (and at least
    /// [`PoolConfig::alignment`]); a pool whose alignment is not a power of two from 64 to the
    /// page size fails to be created.
    pub fn new(alignment: usize) -> SharedMemoryPools {
        SharedMemoryPools {
            alignment,
            pools: CreatedPools::new(NAME),
        }
    }

    /// This allocator, holding at most `limit` of memory: creating a pool that would pass it
    /// fails with a [`LimitExceeded`](crate::LimitExceeded) error and creates no segment. See
    /// [`MemoryLimit`].
    ///
    /// # Examples
    ///
    /// ```
    /// use allocator_base::{AllocatePoolError, MemoryLimit, PoolAllocator, SharedMemoryPools};
    ///
    /// let allocator = SharedMemoryPools::new(64).with_limit(MemoryLimit::new(16 << 10));
    /// let name = format!("doc-shared-limit-{}", std::process::id());
    /// let too_large = allocator.allocate_pool_with_buffers(2, 16 << 10, &name, "video");
    /// assert!(matches!(too_large, Err(AllocatePoolError::Limit(_))));
    /// assert_eq!(allocator.memory().bytes_current, 0);
    /// ```
    pub fn with_limit(self, limit: MemoryLimit) -> SharedMemoryPools {
        self.pools.ledger().set_limit(Some(limit));
        self
    }

    /// The least alignment of every buffer, as given to [`SharedMemoryPools::new`].
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Why a buffer cannot be added to `pool`: it is not this allocator's, or its buffers are
    /// fixed.
    fn refuse_injection(&self, pool: PoolId) -> InjectBufferError {
        match self.pools.creator_handle(pool) {
            Ok(owner) => InjectError::Shared {
                pool: owner.name().into(),
            }
            .into(),
            Err(err) => err.into(),
        }
    }
}

impl PoolAllocator for SharedMemoryPools {
    common_lifecycle_methods!();

    fn allocate_pool(
        &self,
        config: PoolConfig,
        count: u32,
        size: usize,
    ) -> Result<PoolId, AllocatePoolError> {
        config.check_initial_buffers(count, size)?;
        let buffers = u64::from(count);
        let bytes = buffers.saturating_mul(size as u64);
        let segment = config.name().to_owned();
        // The larger of the two; an alignment that is not a power of two goes to the pool as
        // given, which refuses it.
        let alignment = if self.alignment.is_power_of_two() {
            self.alignment.max(config.alignment())
        } else {
            self.alignment
        };
        let config = config.with_alignment(alignment);
        let ledger = self.pools.ledger();
        let owner = ledger
            .create_within(buffers, bytes, || {
                BufferPool::create_shared(&segment, config, count, size)
            })
            .map_err(|failure| match failure {
                CreateFailure::Limit(exceeded) => AllocatePoolError::Limit(exceeded),
                CreateFailure::Failed(err) => AllocatePoolError::Pool(err),
            })?;
        let charge = SharedCharge {
            ledger: Arc::clone(ledger),
            buffers,
            bytes,
        };
        Ok(self.pools.register(owner, charge))
    }

    fn inject_buffer(
        &self,
        pool: PoolId,
        _size: usize,
        _queue: Queue,
    ) -> Result<(), InjectBufferError> {
        Err(self.refuse_injection(pool))
    }

    unsafe fn inject_external(
        &self,
        pool: PoolId,
        _virt: *mut u8,
        _phys: Option<u64>,
        _size: usize,
        _queue: Queue,
    ) -> Result<(), InjectBufferError> {
        Err(self.refuse_injection(pool))
    }

    fn backend_name(&self) -> &'static str {
        NAME
    }

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::SharedHost
    }
}

impl std::fmt::Debug for SharedMemoryPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("SharedMemoryPools");
        debug.field("alignment", &self.alignment);
        self.pools.debug_fields(&mut debug);
        debug.finish()
    }
}
