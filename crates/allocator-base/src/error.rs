//! One error type per allocator operation.

use buffer_core::{CreatePoolError, InjectError, PoolId, RemoveError};

use crate::{AllocatorId, LimitExceeded};

/// A boxed backend error.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// A pool id was not found in the registry.
///
/// # Examples
///
/// ```
/// use allocator_base::Registry;
/// use buffer_core::PoolId;
///
/// let err = Registry::global().get(PoolId::from_raw(u64::MAX)).unwrap_err();
/// assert!(err.to_string().contains("never created or has been destroyed"));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("no pool {pool} is registered: it was never created or has been destroyed")]
pub struct LookupError {
    /// The id looked up.
    pub pool: PoolId,
}

/// An allocator was asked to change a pool that it did not create, or that is gone.
///
/// # Examples
///
/// ```
/// # use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
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
/// use allocator_base::OwnershipError;
///
/// let (creator, other) = (BackendPools::new(Boxes), BackendPools::new(Boxes));
/// let id = creator.allocate_pool_with_buffers(1, 64, "mine", "test").unwrap();
/// assert!(matches!(other.destroy_pool(id), Err(OwnershipError::NotOwner { .. })));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OwnershipError {
    /// The pool does not exist (any more).
    #[error(transparent)]
    Unknown(#[from] LookupError),
    /// Another allocator created the pool; only that one may change or destroy it.
    #[error(
        "pool {pool} was created by allocator {owner}, not by allocator {caller}; ask the allocator that created it"
    )]
    NotOwner {
        /// The pool.
        pool: PoolId,
        /// The allocator that created it.
        owner: AllocatorId,
        /// The allocator that asked.
        caller: AllocatorId,
    },
}

/// [`PoolAllocator::allocate_pool_with_buffers`](crate::PoolAllocator::allocate_pool_with_buffers) failed;
/// nothing it created is left behind.
///
/// # Examples
///
/// ```
/// # use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
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
/// use allocator_base::AllocatePoolError;
///
/// let allocator = BackendPools::new(Boxes);
/// let err = allocator.allocate_pool_with_buffers(1, 0, "empty", "test").unwrap_err();
/// assert!(matches!(err, AllocatePoolError::Pool(_)));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum AllocatePoolError {
    /// The pool itself could not be created.
    #[error(transparent)]
    Pool(#[from] CreatePoolError),
    /// The pool's buffers would take the allocator past its memory limit.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The backend could not create one of the buffers.
    #[error(
        "{backend} backend could not create buffer {index} of {count} ({size} bytes) for pool '{name}': {source}"
    )]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The pool's name.
        name: String,
        /// Which buffer failed (0-based).
        index: u32,
        /// How many buffers were asked for.
        count: u32,
        /// The buffer size asked for.
        size: usize,
        /// The backend's error.
        source: BackendError,
    },
}

/// A buffer could not be added to a pool.
///
/// # Examples
///
/// ```
/// # use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
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
/// use allocator_base::InjectBufferError;
/// use buffer_core::Queue;
///
/// let allocator = BackendPools::new(Boxes);
/// let id = allocator.allocate_pool_with_buffers(0, 64, "ext", "test").unwrap();
/// // SAFETY: a null address is refused before it is recorded.
/// let err = unsafe { allocator.inject_external(id, std::ptr::null_mut(), None, 64, Queue::Free) };
/// assert!(matches!(err, Err(InjectBufferError::BadExternal { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum InjectBufferError {
    /// The pool is unknown or belongs to another allocator.
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    /// The buffer would take the allocator past its memory limit.
    #[error(transparent)]
    Limit(LimitExceeded),
    /// The backend could not create the buffer.
    #[error("{backend} backend could not create a {size}-byte buffer: {source}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The size asked for.
        size: usize,
        /// The backend's error.
        source: BackendError,
    },
    /// External memory is null, empty or not aligned as the backend requires.
    #[error("external memory at {addr:#x} ({size} bytes) is unusable: {reason}")]
    BadExternal {
        /// The address given.
        addr: usize,
        /// The size given.
        size: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The pool refused the buffer (full or closed); the memory was released again.
    #[error(transparent)]
    Pool(#[from] InjectError),
}

/// A buffer could not be removed from a pool.
///
/// # Examples
///
/// ```
/// # use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
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
/// use allocator_base::RemoveBufferError;
/// use buffer_core::Wait;
///
/// let allocator = BackendPools::new(Boxes);
/// let id = allocator.allocate_pool_with_buffers(0, 64, "none", "test").unwrap();
/// assert!(matches!(allocator.remove_buffer(id, Wait::NoWait), Err(RemoveBufferError::Pool(_))));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum RemoveBufferError {
    /// The pool is unknown or belongs to another allocator.
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    /// No free buffer could be taken.
    #[error(transparent)]
    Pool(#[from] RemoveError),
}
