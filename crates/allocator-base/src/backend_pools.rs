//! The pool lifecycle, written once for every backend.

use std::any::Any;
use std::sync::Arc;

use buffer_core::{
    BufferMemory, BufferPool, MemoryKind, Ownership, PoolConfig, PoolId, PoolOwner, Queue, Wait,
};
use parking_lot::Mutex;

use crate::accounting::{Ledger, LimitExceeded, MemoryLimit, MemoryStats};
use crate::backend::{Backend, Created};
use crate::error::{
    AllocatePoolError, BackendError, InjectBufferError, LookupError, OwnershipError,
    RemoveBufferError,
};
use crate::pool_allocator::PoolAllocator;
use crate::registry::{AllocatorId, Registry};

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

/// A pool this allocator created and has not destroyed.
struct CreatedPool {
    id: PoolId,
    /// For a shared-memory pool: its buffers' memory, released from the accounting when the
    /// pool is destroyed.
    _charge: Option<SharedCharge>,
}

/// Why one buffer's memory could not be created.
enum CreateFailure {
    Limit(LimitExceeded),
    Backend(BackendError),
}

/// The pools of one [`Backend`]: creates pools whose buffers the backend makes, grows, shrinks
/// and destroys them.
///
/// Every pool it creates is registered in [`Registry::global`]; users reach it by id. Dropping
/// the allocator destroys its pools (buffers still held by guards are released when their guards
/// drop, through the backend, which the buffers keep alive).
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
    id: AllocatorId,
    backend: Arc<B>,
    pools: Mutex<Vec<CreatedPool>>,
    /// Whether pools go into named shared-memory segments.
    shared: bool,
    ledger: Arc<Ledger>,
}

impl<B: Backend> BackendPools<B> {
    /// An allocator using `backend`.
    pub fn new(backend: B) -> BackendPools<B> {
        let id = AllocatorId::next();
        let ledger = Arc::new(Ledger::new(id, backend.name(), None));
        BackendPools {
            id,
            backend: Arc::new(backend),
            pools: Mutex::new(Vec::new()),
            shared: false,
            ledger,
        }
    }

    /// This allocator, holding at most `limit` of memory: creating a pool or a buffer that would
    /// pass it fails with a [`LimitExceeded`] error and creates nothing; crossing the limit's
    /// warning threshold logs a `tracing` warning once per crossing. See [`MemoryLimit`].
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
        self.ledger.set_limit(Some(limit));
        self
    }

    /// This allocator, making its pools in shared memory: each pool lives in a named segment
    /// (named after the pool, so pool names must be valid segment names and unique on the
    /// machine) that holds its block and its buffers, and other processes attach to it with
    /// [`BufferPool::attach`]. The buffers are the segment's host memory
    /// ([`MemoryKind::SharedHost`], which [`PoolAllocator::memory_kind`] then reports), aligned
    /// as the backend's are (up to the page size: an alignment beyond it fails creation), and
    /// are fixed when the pool is created: injecting and removing buffers are refused.
    ///
    /// # Examples
    ///
    /// ```
    /// use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
    /// use buffer_core::{BufferPool, MemoryKind};
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
    /// let allocator = BackendPools::new(Boxes).in_shared_memory();
    /// let name = format!("doc-allocator-{}", std::process::id());
    /// let id = allocator.allocate_pool_with_buffers(2, 4096, &name, "video")?;
    /// let other_process_view = BufferPool::attach(&name)?;
    /// assert_eq!(other_process_view.id(), id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_shared_memory(mut self) -> BackendPools<B> {
        self.shared = true;
        self
    }

    /// Whether this allocator makes its pools in shared memory.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Creates one buffer's memory through the backend, within the limit, and counts it.
    fn create_memory(&self, size: usize) -> Result<BufferMemory, CreateFailure> {
        let bytes = size as u64;
        self.ledger.reserve(bytes).map_err(CreateFailure::Limit)?;
        let Created { memory, addr, phys } = self.backend.create(size).map_err(|err| {
            self.ledger.cancel(bytes);
            CreateFailure::Backend(err.into())
        })?;
        self.ledger.created(1, bytes);
        let owner = BackendOwned {
            backend: Arc::clone(&self.backend),
            memory: Some(memory),
            ledger: Arc::clone(&self.ledger),
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

    /// Registers a pool this allocator just created.
    fn register(&self, owner: PoolOwner, charge: Option<SharedCharge>) -> PoolId {
        let id = Registry::global().register(self.id, owner);
        self.pools.lock().push(CreatedPool {
            id,
            _charge: charge,
        });
        id
    }
}

// The lifecycle, written once for every backend.
impl<B: Backend> PoolAllocator for BackendPools<B> {
    fn id(&self) -> AllocatorId {
        self.id
    }

    fn allocate_pool_with_buffers(
        &self,
        count: u32,
        size: usize,
        name: &str,
        category: &str,
    ) -> Result<PoolId, AllocatePoolError> {
        let config = PoolConfig::new(name)
            .with_category(category)
            .with_capacity(count.max(buffer_core::DEFAULT_CAPACITY));
        self.allocate_pool(config, count, size)
    }

    fn allocate_pool(
        &self,
        config: PoolConfig,
        count: u32,
        size: usize,
    ) -> Result<PoolId, AllocatePoolError> {
        config.check_initial_buffers(count, size)?;
        let bytes = u64::from(count).saturating_mul(size as u64);
        if self.shared {
            self.ledger.reserve(bytes)?;
            let segment = config.name().to_owned();
            // The segment's buffers keep the backend's alignment (at least a cache line).
            let alignment = self.backend.alignment().max(config.alignment());
            let config = config.with_alignment(alignment);
            let owner = BufferPool::create_shared(&segment, config, count, size)
                .inspect_err(|_| self.ledger.cancel(bytes))?;
            self.ledger.created(u64::from(count), bytes);
            let charge = SharedCharge {
                ledger: Arc::clone(&self.ledger),
                buffers: u64::from(count),
                bytes,
            };
            return Ok(self.register(owner, Some(charge)));
        }
        // Fail before creating anything when the whole pool cannot fit; each buffer is then
        // reserved as it is created.
        self.ledger.check(bytes)?;
        let owner = BufferPool::create(config)?;
        for index in 0..count {
            // On failure, dropping `owner` releases the buffers created so far.
            let memory = self.create_memory(size).map_err(|failure| match failure {
                CreateFailure::Limit(exceeded) => AllocatePoolError::Limit(exceeded),
                CreateFailure::Backend(source) => AllocatePoolError::Backend {
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
        Ok(self.register(owner, None))
    }

    fn inject_buffer(
        &self,
        pool: PoolId,
        size: usize,
        queue: Queue,
    ) -> Result<(), InjectBufferError> {
        let owner = Registry::global().pool_created_by(self.id, pool)?;
        if size == 0 {
            return Err(buffer_core::InjectError::Empty {
                pool: owner.name().into(),
            }
            .into());
        }
        let memory = self.create_memory(size).map_err(|failure| match failure {
            CreateFailure::Limit(exceeded) => InjectBufferError::Limit(exceeded),
            CreateFailure::Backend(source) => InjectBufferError::Backend {
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
        let owner = Registry::global().pool_created_by(self.id, pool)?;
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

    fn remove_buffer(&self, pool: PoolId, wait: Wait) -> Result<(), RemoveBufferError> {
        Registry::global()
            .pool_created_by(self.id, pool)?
            .remove(wait)?;
        Ok(())
    }

    fn destroy_pool(&self, pool: PoolId) -> Result<(), OwnershipError> {
        Registry::global().unregister(self.id, pool)?;
        self.pools.lock().retain(|created| created.id != pool);
        Ok(())
    }

    fn destroy_pools(&self) {
        let pools = std::mem::take(&mut *self.pools.lock());
        for pool in pools {
            // Only this allocator unregisters its pools, so each is still registered.
            let _ = Registry::global().unregister(self.id, pool.id);
        }
    }

    fn pool_ids(&self) -> Vec<PoolId> {
        self.pools.lock().iter().map(|created| created.id).collect()
    }

    fn memory(&self) -> MemoryStats {
        self.ledger.snapshot()
    }

    fn limit(&self) -> Option<MemoryLimit> {
        self.ledger.limit()
    }

    fn set_limit(&self, limit: Option<MemoryLimit>) {
        self.ledger.set_limit(limit);
    }

    fn pool(&self, pool: PoolId) -> Result<BufferPool, LookupError> {
        Registry::global().get(pool)
    }

    fn with_owner(
        &self,
        pool: PoolId,
        f: &mut dyn FnMut(&PoolOwner),
    ) -> Result<(), OwnershipError> {
        let owner = Registry::global().pool_created_by(self.id, pool)?;
        f(&owner);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    fn memory_kind(&self) -> MemoryKind {
        if self.shared {
            MemoryKind::SharedHost // the segment's memory, not the backend's
        } else {
            self.backend.memory_kind()
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<B: Backend> Drop for BackendPools<B> {
    fn drop(&mut self) {
        self.destroy_pools();
    }
}

impl<B: Backend> std::fmt::Debug for BackendPools<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendPools")
            .field("id", &self.id)
            .field("backend", &self.backend.name())
            .field("shared", &self.shared)
            .field("limit", &self.limit())
            .field("memory", &self.memory())
            .field("pools", &self.pool_ids())
            .finish()
    }
}
