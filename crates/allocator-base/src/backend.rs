//! What a backend implements: how to create one buffer's memory and how to release it.

use buffer_core::{MemoryKind, Ownership};

/// One buffer's memory, just created by a backend.
///
/// # Examples
///
/// ```
/// use allocator_base::Created;
///
/// let mut memory = vec![0u8; 16].into_boxed_slice();
/// let created = Created { addr: memory.as_mut_ptr(), memory, phys: None };
/// assert_eq!(created.memory.len(), 16);
/// ```
#[derive(Debug)]
pub struct Created<M> {
    /// The backend's handle of the memory, given back to [`Backend::release`].
    pub memory: M,
    /// Where the memory starts in this process (a device address for device memory).
    pub addr: *mut u8,
    /// Physical or bus address, where the memory has one.
    pub phys: Option<u64>,
}

/// A kind of memory: creates one buffer's memory and releases it. Everything else about pools
/// (creation with many buffers, growth, shrinking, destruction, registration) is written once in
/// [`BackendPools`](crate::BackendPools).
///
/// # Safety
///
/// An implementation promises that for every `Ok(created)` returned by [`Backend::create`] with
/// `size` bytes, `created.addr` points to `size` bytes of [`Backend::memory_kind`] memory,
/// aligned to [`Backend::alignment`], that stay valid and are accessed by nobody else until
/// `created.memory` is passed to [`Backend::release`]; and, when the kind is host-accessible, that
/// this process may read and write them.
///
/// # Examples
///
/// ```
/// use allocator_base::{Backend, BackendPools, Created, PoolAllocator};
/// use buffer_core::MemoryKind;
///
/// /// Buffers in leaked boxes, for illustration (allocator-normal is the real thing).
/// struct Boxes;
///
/// // SAFETY: each buffer is its own boxed slice of `size` bytes, freed only in `release`.
/// unsafe impl Backend for Boxes {
///     type Memory = Box<[u8]>;
///     type Error = std::convert::Infallible;
///     fn name(&self) -> &'static str { "boxes" }
///     fn memory_kind(&self) -> MemoryKind { MemoryKind::Host }
///     fn create(&self, size: usize) -> Result<Created<Box<[u8]>>, Self::Error> {
///         let mut memory = vec![0u8; size].into_boxed_slice();
///         let addr = memory.as_mut_ptr();
///         Ok(Created { memory, addr, phys: None })
///     }
///     fn release(&self, memory: Box<[u8]>) { drop(memory) }
/// }
///
/// let allocator = BackendPools::new(Boxes);
/// let pool = allocator.allocate_pool_with_buffers(2, 100, "boxes", "demo").unwrap();
/// assert_eq!(allocator.pool(pool).unwrap().counts().free, 2);
/// ```
pub unsafe trait Backend: Send + Sync + 'static {
    /// The backend's handle of one buffer's memory.
    type Memory: Send + Sync + 'static;
    /// Why a buffer could not be created.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A short name for messages ("normal", "cuda-device", ...).
    fn name(&self) -> &'static str;

    /// The kind of memory this backend's buffers are (and that external memory injected into its
    /// pools is taken to be).
    fn memory_kind(&self) -> MemoryKind;

    /// Alignment every buffer has, and that external memory must have. 1 unless overridden.
    fn alignment(&self) -> usize {
        1
    }

    /// Who owns the memory of the buffers this backend creates: [`Ownership::Owned`] (the
    /// default) when `release` frees it, [`Ownership::External`] when the backend only lends
    /// memory someone else owns (mapped regions, framebuffer pages) and `release` hands it back.
    fn ownership(&self) -> Ownership {
        Ownership::Owned
    }

    /// Creates memory for one buffer of `size` bytes (`size > 0`).
    fn create(&self, size: usize) -> Result<Created<Self::Memory>, Self::Error>;

    /// Releases memory made by [`Backend::create`]. Called exactly once per buffer.
    fn release(&self, memory: Self::Memory);
}
