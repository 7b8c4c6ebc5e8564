//! Page-locked host memory (`cuMemHostAlloc`) as pool buffers.

use std::sync::Arc;

use allocator_base::{Backend, BackendPools, Created};
use buffer_core::MemoryKind;
use cudarc::driver::{result, sys};

use crate::context::{CudaDevice, CudaError};

/// The pinned-memory allocator: [`BackendPools`] of page-locked host memory.
pub type PinnedAllocator = BackendPools<PinnedBackend>;

/// The pinned-host backend: each buffer is one `cuMemHostAlloc` allocation (portable:
/// page-locked for every context), host-accessible like any memory and copied to and from the
/// device by DMA without a staging copy. Memory kind [`MemoryKind::PinnedHost`]. A decoder
/// fills these buffers; a [`CudaStream`](crate::CudaStream) uploads them.
///
/// # Examples
///
/// ```no_run
/// use allocator_base::PoolAllocator;
/// use allocator_cuda::{CudaDevice, PinnedAllocator, PinnedBackend};
/// use buffer_core::Wait;
///
/// let allocator = PinnedAllocator::new(PinnedBackend::new(CudaDevice::open(0)?));
/// let id = allocator.allocate_pool_with_buffers(4, 8 << 20, "upload", "gpu")?;
/// let pool = allocator.pool(id)?;
/// let mut frame = pool.acquire_free(Wait::NoWait)?;
/// frame.as_mut_slice()?.fill(0x80); // the CPU writes it directly
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PinnedBackend {
    device: Arc<CudaDevice>,
}

/// One pinned allocation, freed through the backend.
#[derive(Debug)]
pub struct PinnedMemory {
    ptr: usize,
}

/// Page size: the alignment `cuMemHostAlloc` gives.
const PAGE: usize = 4096;

impl PinnedBackend {
    /// A backend pinning host memory for `device`.
    pub fn new(device: Arc<CudaDevice>) -> PinnedBackend {
        PinnedBackend { device }
    }

    /// The device.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }
}

// SAFETY: `create` returns a fresh, page-aligned `cuMemHostAlloc` allocation of `size` bytes,
// zeroed, readable and writable by this process, owned by the returned memory and freed only in
// `release`.
unsafe impl Backend for PinnedBackend {
    type Memory = PinnedMemory;
    type Error = CudaError;

    fn name(&self) -> &'static str {
        "cuda-pinned"
    }

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::PinnedHost {
            ordinal: self.device.ordinal(),
        }
    }

    fn alignment(&self) -> usize {
        PAGE
    }

    fn create(&self, size: usize) -> Result<Created<PinnedMemory>, CudaError> {
        self.device.bind()?;
        // SAFETY: the context is current; the allocation is zeroed below before anyone reads it.
        let ptr = unsafe { result::malloc_host(size, sys::CU_MEMHOSTALLOC_PORTABLE) }
            .map_err(|e| CudaError::driver("cuMemHostAlloc", e))?;
        // SAFETY: `ptr` points to `size` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0, size) };
        Ok(Created {
            memory: PinnedMemory { ptr: ptr as usize },
            addr: ptr.cast(),
            phys: None,
        })
    }

    fn release(&self, memory: PinnedMemory) {
        if self.device.bind().is_ok() {
            // SAFETY: `ptr` came from `cuMemHostAlloc` and is freed only here, once.
            let _ = unsafe { result::free_host(memory.ptr as *mut _) };
        }
    }
}
