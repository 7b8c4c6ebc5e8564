//! The object-safe face of every allocator, so that one can be chosen at run time.

use std::any::Any;

use buffer_core::{BufferPool, MemoryKind, PoolConfig, PoolId, PoolOwner, Queue, Wait};

use crate::accounting::{MemoryLimit, MemoryStats};
use crate::error::{
    AllocatePoolError, InjectBufferError, LookupError, OwnershipError, RemoveBufferError,
};
use crate::registry::{AllocatorId, Registry};

/// What every allocator does, whatever places its buffers: the pool lifecycle. Implemented by
/// [`BackendPools`](crate::BackendPools) for every backend and by
/// [`SharedMemoryPools`](crate::SharedMemoryPools), and object-safe, so that a
/// `Box<dyn PoolAllocator>` can hold any of them (as `allocator-facade` does).
///
/// # Examples
///
/// ```
/// use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
/// # struct Boxes;
/// # // SAFETY: each buffer is its own boxed slice, freed only in `release`.
/// # unsafe impl Backend for Boxes {
/// #     type Memory = Box<[u8]>;
/// #     type Error = std::convert::Infallible;
/// #     fn name(&self) -> &'static str { "boxes" }
/// #     fn memory_kind(&self) -> buffer_core::MemoryKind { buffer_core::MemoryKind::Host }
/// #     fn create(&self, size: usize) -> Result<Created<Box<[u8]>>, Self::Error> {
/// #         let mut memory = vec![0u8; size].into_boxed_slice();
/// #         let addr = memory.as_mut_ptr();
/// #         Ok(Created { memory, addr, phys: None })
/// #     }
/// #     fn release(&self, memory: Box<[u8]>) { drop(memory) }
/// # }
///
/// let any: Box<dyn PoolAllocator> = Box::new(BackendPools::new(Boxes));
/// let id = any.allocate_pool_with_buffers(1, 64, "dyn", "demo").unwrap();
/// assert_eq!(any.backend_name(), "boxes");
/// assert_eq!(any.pool_ids(), vec![id]);
/// assert!(any.as_any().downcast_ref::<BackendPools<Boxes>>().is_some());
/// ```
pub trait PoolAllocator: Send + Sync + 'static {
    /// This allocator's id.
    fn id(&self) -> AllocatorId;

    /// Creates a pool of `count` buffers of `size` bytes on the free queue, registers it and
    /// returns its id. The pool's capacity is the larger of `count` and
    /// [`DEFAULT_CAPACITY`](buffer_core::DEFAULT_CAPACITY); use
    /// [`PoolAllocator::allocate_pool`] to choose it.
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

    /// Creates a pool as `config` says with `count` buffers of `size` bytes on the free queue,
    /// registers it and returns its id. If any buffer cannot be created, everything created so
    /// far is released and nothing is registered.
    fn allocate_pool(
        &self,
        config: PoolConfig,
        count: u32,
        size: usize,
    ) -> Result<PoolId, AllocatePoolError>;

    /// Grows a pool this allocator created by one new `size`-byte buffer, put on `queue`.
    fn inject_buffer(
        &self,
        pool: PoolId,
        size: usize,
        queue: Queue,
    ) -> Result<(), InjectBufferError>;

    /// Grows a pool this allocator created by a buffer over memory someone else owns (ownership
    /// [`External`](buffer_core::Ownership::External): never freed by the pool). The memory is
    /// taken to be of the backend's kind and must have the backend's alignment.
    ///
    /// # Safety
    ///
    /// `virt` must point to `size` bytes of the backend's kind of memory that stay valid until
    /// the pool is destroyed and every guard of it dropped, and that nothing else accesses while
    /// a guard holds the buffer.
    unsafe fn inject_external(
        &self,
        pool: PoolId,
        virt: *mut u8,
        phys: Option<u64>,
        size: usize,
        queue: Queue,
    ) -> Result<(), InjectBufferError>;

    /// Shrinks a pool this allocator created by one free buffer (waiting for one as `wait`
    /// says), releasing its memory through the backend (external memory is only forgotten).
    fn remove_buffer(&self, pool: PoolId, wait: Wait) -> Result<(), RemoveBufferError>;

    /// Destroys one pool this allocator created.
    fn destroy_pool(&self, pool: PoolId) -> Result<(), OwnershipError>;

    /// Destroys every pool this allocator created: waiters wake with an error, free and filled
    /// buffers are released through the backend now, held ones when their guards drop.
    fn destroy_pools(&self);

    /// Ids of the pools this allocator created and has not destroyed.
    fn pool_ids(&self) -> Vec<PoolId>;

    /// What this allocator's backend created and has not released, with totals and peaks (see
    /// [`MemoryStats`]). [`process_memory`](crate::process_memory) gives the same for every
    /// allocator of the process together; each pool's hit rate is in its
    /// [`stats`](BufferPool::stats).
    fn memory(&self) -> MemoryStats;

    /// The memory limit, if any.
    fn limit(&self) -> Option<MemoryLimit>;

    /// Sets or removes the memory limit. Memory already held stays, even above a lower limit;
    /// only later creations are refused.
    fn set_limit(&self, limit: Option<MemoryLimit>);

    /// Temporary access to a registered pool (any allocator's).
    fn pool(&self, pool: PoolId) -> Result<BufferPool, LookupError> {
        Registry::global().get(pool)
    }

    /// Runs `f` with the creator's handle of `pool`, which this allocator made: for adding
    /// buffers that are not the backend's, such as a decoder's frames
    /// ([`PoolOwner::inject_frame`]). The handle is lent, not given: the pool stays this
    /// allocator's, destroyed with it.
    fn with_owner(&self, pool: PoolId, f: &mut dyn FnMut(&PoolOwner))
    -> Result<(), OwnershipError>;

    /// The backend's name ("normal", ...; "shared-memory" for
    /// [`SharedMemoryPools`](crate::SharedMemoryPools)).
    fn backend_name(&self) -> &'static str;

    /// The kind of memory this allocator's buffers are.
    fn memory_kind(&self) -> MemoryKind;

    /// The allocator itself, to downcast to its concrete type.
    fn as_any(&self) -> &dyn Any;
}
