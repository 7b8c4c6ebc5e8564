//! The pools of one backend: the pool lifecycle, written once for every backend.

use std::sync::Arc;

use buffer_core::{BufferMemory, BufferPool, MemoryKind, Ownership, PoolConfig, PoolId, Queue};

use crate::accounting::{CreateFailure, Ledger, MemoryLimit};
use crate::backend::{Backend, Created};
use crate::created_pools::{CreatedPools, common_lifecycle_methods};
use crate::error::{AllocatePoolError, BackendError, InjectBufferError};
use crate::pool_allocator::PoolAllocator;

/// Releases one backend buffer exactly once, when the pool drops it, and counts the release.
struct BackendOwned<B: Backend> {
    backend: Arc<B>,
    memory: Option<B::Memory>,
    ledger: Arc<Ledger>,
    size: u64,
}

impl<B: Backend> Drop for BackendOwned<B> {
    fn drop(&mut self) {
        if let Some(memory) = self.memory.take() {
            self.backend.release(memory);
            self.ledger.released(1, self.size);
        }
    }
}

/// The pools of one [`Backend`]: creates pools whose buffers the backend makes, grows, shrinks
/// and destroys them.
///
/// Every pool it creates is registered in [`Registry::global`](crate::Registry::global); users
/// reach it by id. Dropping the allocator destroys its pools (buffers still held by guards are
/// released when their guards drop, through the backend, which the buffers keep alive). For pools
/// in shared memory, whose buffers are the segment's own memory, see
/// [`SharedMemoryPools`](crate::SharedMemoryPools).
///
/// # Examples
///
/// ```
/// use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
/// use buffer_core::{MemoryKind, Queue, Wait};
/// # struct Boxes;
/// # // SAFETY: each buffer is its own boxed slice, freed only in `release`.
/// # unsafe impl Backend for Boxes {
/// #     type Memory = Box<[u8]>;
/// #     type Error = std::convert::Infallible;
/// #     fn name(&self) -> &'static str { "boxes" }
/// #     fn memory_kind(&self) -> MemoryKind { MemoryKind::Host }
/// #     fn create(&self, size: usize) -> Result<Created<Box<[u8]>>, Self::Error> {
/// #         let mut memory = vec![0u8; size].into_boxed_slice();
/// #         let addr = memory.as_mut_ptr();
/// #         Ok(Created { memory, addr, phys: None })
/// #     }
/// #     fn release(&self, memory: Box<[u8]>) { drop(memory) }
/// # }
///
/// let allocator = BackendPools::new(Boxes);
/// let id = allocator.allocate_pool_with_buffers(2, 4096, "frames", "video")?;
/// allocator.inject_buffer(id, 4096, Queue::Free)?;
/// allocator.remove_buffer(id, Wait::NoWait)?;
/// assert_eq!(allocator.pool(id)?.counts().total, 2);
/// allocator.destroy_pools();
/// assert!(allocator.pool(id).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BackendPools<B: Backend> {
    backend: Arc<B>,
    pools: CreatedPools<()>,
}

impl<B: Backend> BackendPools<B> {
    /// The pools of `backend` (none yet).
    pub fn new(backend: B) -> BackendPools<B> {
        BackendPools {
            pools: CreatedPools::new(backend.name()),
            backend: Arc::new(backend),
        }
    }

    /// This allocator, holding at most `limit` of memory: creating a pool or a buffer that would
    /// pass it fails with a [`LimitExceeded`](crate::LimitExceeded) error and creates nothing;
    /// crossing the limit's warning threshold logs a `tracing` warning once per crossing. See
    /// [`MemoryLimit`].
    ///
    /// # Examples
    ///
    /// ```
    /// use allocator_base::{AllocatePoolError, Backend, BackendPools, Created, MemoryLimit, PoolAllocator};
    /// use buffer_core::MemoryKind;
    /// # struct Boxes;
    /// # // SAFETY: each buffer is its own boxed slice, freed only in `release`.
    /// # unsafe impl Backend for Boxes {
    /// #     type Memory = Box<[u8]>;
    /// #     type Error = std::convert::Infallible;
    /// #     fn name(&self) -> &'static str { "boxes" }
    /// #     fn memory_kind(&self) -> MemoryKind { MemoryKind::Host }
    /// #     fn create(&self, size: usize) -> Result<Created<Box<[u8]>>, Self::Error> {
    /// #         let mut memory = vec![0u8; size].into_boxed_slice();
    /// #         let addr = memory.as_mut_ptr();
    /// #         Ok(Created { memory, addr, phys: None })
    /// #     }
    /// #     fn release(&self, memory: Box<[u8]>) { drop(memory) }
    /// # }
    ///
    /// let allocator = BackendPools::new(Boxes).with_limit(MemoryLimit::new(64 << 10));
    /// let frames = allocator.allocate_pool_with_buffers(3, 16 << 10, "frames", "video")?;
    /// let too_many = allocator.allocate_pool_with_buffers(2, 16 << 10, "more", "video");
    /// assert!(matches!(too_many, Err(AllocatePoolError::Limit(_))));
    /// // The first pool is untouched.
    /// assert_eq!(allocator.pool(frames)?.counts().free, 3);
    /// assert_eq!(allocator.memory().bytes_current, 48 << 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_limit(self, limit: MemoryLimit) -> BackendPools<B> {
        self.pools.ledger().set_limit(Some(limit));
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Creates one buffer's memory through the backend, within the limit, and counts it.
    fn create_memory(&self, size: usize) -> Result<BufferMemory, CreateFailure<BackendError>> {
        let bytes = size as u64;
        let ledger = self.pools.ledger();
        let Created { memory, addr, phys } = ledger.create_within(1, bytes, || {
            self.backend.create(size).map_err(BackendError::from)
        })?;
        let owner = BackendOwned {
            backend: Arc::clone(&self.backend),
            memory: Some(memory),
            ledger: Arc::clone(ledger),
            size: bytes,
        };
        debug_assert!(!addr.is_null());
        let kind = self.backend.memory_kind();
        let owner = Box::new(owner);
        Ok(match self.backend.ownership() {
            // SAFETY: the `Backend` contract: `addr` points to `size` bytes of the backend's
            // kind, valid and untouched by others until `memory` is released, which happens only
            // when the pool drops `owner`.
            Ownership::Owned => unsafe { BufferMemory::owned(addr, size, kind, phys, owner) },
            // SAFETY: as above; the backend only lends the memory.
            Ownership::External => unsafe { BufferMemory::lent(addr, size, kind, phys, owner) },
        })
    }
}

// The lifecycle, written once for every backend.
impl<B: Backend> PoolAllocator for BackendPools<B> {
    common_lifecycle_methods!();

    fn allocate_pool(
        &self,
        config: PoolConfig,
        count: u32,
        size: usize,
    ) -> Result<PoolId, AllocatePoolError> {
        config.check_initial_buffers(count, size)?;
        // Fail before creating anything when the whole pool cannot fit; each buffer is then
        // reserved as it is created.
        let bytes = u64::from(count).saturating_mul(size as u64);
        self.pools.ledger().check(bytes)?;
        let owner = BufferPool::create(config)?;
        for index in 0..count {
            // On failure, dropping `owner` releases the buffers created so far.
            let memory = self.create_memory(size).map_err(|failure| match failure {
                CreateFailure::Limit(exceeded) => AllocatePoolError::Limit(exceeded),
                CreateFailure::Failed(source) => AllocatePoolError::Backend {
                    backend: self.backend.name(),
                    name: owner.name().to_owned(),
                    index,
                    count,
                    size,
                    source,
                },
            })?;
            // Cannot fail: the pool is new, open, and has room for `count` buffers.
            owner
                .inject(memory, Queue::Free)
                .expect("a new pool accepts its initial buffers");
        }
        Ok(self.pools.register(owner, ()))
    }

    fn inject_buffer(
        &self,
        pool: PoolId,
        size: usize,
        queue: Queue,
    ) -> Result<(), InjectBufferError> {
        let owner = self.pools.creator_handle(pool)?;
        if size == 0 {
            return Err(buffer_core::InjectError::Empty {
                pool: owner.name().into(),
            }
            .into());
        }
        let memory = self.create_memory(size).map_err(|failure| match failure {
            CreateFailure::Limit(exceeded) => InjectBufferError::Limit(exceeded),
            CreateFailure::Failed(source) => InjectBufferError::Backend {
                backend: self.backend.name(),
                size,
                source,
            },
        })?;
        owner.inject(memory, queue)?;
        Ok(())
    }

    unsafe fn inject_external(
        &self,
        pool: PoolId,
        virt: *mut u8,
        phys: Option<u64>,
        size: usize,
        queue: Queue,
    ) -> Result<(), InjectBufferError> {
        let bad = |reason: String| InjectBufferError::BadExternal {
            addr: virt as usize,
            size,
            reason,
        };
        let owner = self.pools.creator_handle(pool)?;
        if virt.is_null() {
            return Err(bad("the address is null".into()));
        }
        if size == 0 {
            return Err(bad("the size is 0".into()));
        }
        let align = self.backend.alignment();
        if !(virt as usize).is_multiple_of(align) {
            return Err(bad(format!(
                "the {} backend needs {align}-byte alignment",
                self.backend.name()
            )));
        }
        if (virt as usize).checked_add(size).is_none() {
            return Err(bad("the region wraps around the address space".into()));
        }
        // SAFETY: the caller promises what `BufferMemory::external` requires.
        let memory =
            unsafe { BufferMemory::external(virt, size, self.backend.memory_kind(), phys) };
        owner.inject(memory, queue)?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    fn memory_kind(&self) -> MemoryKind {
        self.backend.memory_kind()
    }
}

impl<B: Backend> std::fmt::Debug for BackendPools<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("BackendPools");
        debug.field("backend", &self.backend.name());
        self.pools.debug_fields(&mut debug);
        debug.finish()
    }
}
