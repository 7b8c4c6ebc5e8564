//! Device memory (`cuMemAlloc`) as pool buffers.

use std::sync::Arc;

use allocator_base::{Backend, BackendPools, Created};
use buffer_core::MemoryKind;
use cudarc::driver::{result, sys};

use crate::context::{CudaDevice, CudaError};

/// The device-memory allocator: [`BackendPools`] of CUDA device memory.
pub type DeviceAllocator = BackendPools<DeviceBackend>;

/// Alignment `cuMemAlloc` guarantees.
pub const DEVICE_ALIGNMENT: usize = 256;

/// The device-memory backend: each buffer is one `cuMemAlloc` allocation on the device, freed
/// with `cuMemFree` with the device's context current. Memory kind
/// [`MemoryKind::Device`] with the device's ordinal: host slices are refused, and
/// [`Buffer::virt_addr`](buffer_core::Buffer::virt_addr) is the device pointer (see
/// [`device_ptr`](crate::device_ptr)) for kernels and copies.
///
/// # Examples
///
/// ```no_run
/// use allocator_base::PoolAllocator;
/// use allocator_cuda::{CudaDevice, DeviceAllocator, DeviceBackend};
/// use buffer_core::Wait;
///
/// let allocator = DeviceAllocator::new(DeviceBackend::new(CudaDevice::open(0)?));
/// let id = allocator.allocate_pool_with_buffers(4, 8 << 20, "frames", "gpu")?;
/// let pool = allocator.pool(id)?;
/// let mut frame = pool.acquire_free(Wait::NoWait)?;
/// assert!(frame.as_mut_slice().is_err()); // device memory: no host slice
/// let ptr = allocator_cuda::device_ptr(&frame.buffer()); // for a kernel launch
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DeviceBackend {
    device: Arc<CudaDevice>,
}

/// One device allocation, freed through the backend.
#[derive(Debug)]
pub struct DeviceMemory {
    ptr: sys::CUdeviceptr,
}

impl DeviceBackend {
    /// A backend allocating on `device`.
    pub fn new(device: Arc<CudaDevice>) -> DeviceBackend {
        DeviceBackend { device }
    }

    /// The device.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// Allocates `size` bytes on the device (for this backend and the IPC pool).
    pub(crate) fn allocate(&self, size: usize) -> Result<sys::CUdeviceptr, CudaError> {
        self.device.bind()?;
        // SAFETY: the context is current; the memory is uninitialised device memory, which is
        // only ever reached through driver calls.
        unsafe { result::malloc_sync(size) }.map_err(|e| CudaError::driver("cuMemAlloc", e))
    }

    /// Frees memory made by [`DeviceBackend::allocate`], once.
    pub(crate) fn free(&self, ptr: sys::CUdeviceptr) {
        if self.device.bind().is_ok() {
            // SAFETY: `ptr` came from `cuMemAlloc` in this context and is freed only here, once;
            // the pool protocol guarantees no stream still uses it (transfers keep their buffers
            // until the copy is done).
            let _ = unsafe { result::free_sync(ptr) };
        }
    }
}

// SAFETY: `create` returns a fresh `cuMemAlloc` allocation of `size` bytes (aligned to 256),
// owned by the returned memory and freed only in `release`. Its kind is device memory, which
// the pool never lets the host touch.
unsafe impl Backend for DeviceBackend {
    type Memory = DeviceMemory;
    type Error = CudaError;

    fn name(&self) -> &'static str {
        "cuda-device"
    }

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::Device {
            ordinal: self.device.ordinal(),
        }
    }

    fn alignment(&self) -> usize {
        DEVICE_ALIGNMENT
    }

    fn create(&self, size: usize) -> Result<Created<DeviceMemory>, CudaError> {
        let ptr = self.allocate(size)?;
        Ok(Created {
            memory: DeviceMemory { ptr },
            addr: ptr as usize as *mut u8,
            phys: None,
        })
    }

    fn release(&self, memory: DeviceMemory) {
        self.free(memory.ptr);
    }
}
