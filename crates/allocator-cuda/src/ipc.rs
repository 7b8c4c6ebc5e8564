//! Device-memory pools shared between processes: the control block in a shared-memory segment,
//! each buffer's device memory opened by the other processes through its CUDA IPC handle.

use std::sync::Arc;

use buffer_core::{
    AttachError, BufferMemory, BufferPool, CreatePoolError, ForeignBuffer, ForeignToken,
    MemoryKind, PoolConfig, PoolOwner, SHARE_TOKEN_LEN,
};
use cudarc::driver::sys;

use crate::context::{CudaDevice, CudaError};
use crate::device_memory::DeviceBackend;

/// A device-memory IPC pool could not be created.
#[derive(Debug, thiserror::Error)]
pub enum IpcPoolError {
    /// The driver refused to allocate or to export.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// The pool could not be created.
    #[error(transparent)]
    Pool(#[from] CreatePoolError),
}

/// Device-memory pools whose control block lives in shared memory, with the same ids,
/// references, ports and dead-process reclamation as host pools: buffers travel between
/// processes as ids, and every process reaches the same device memory through the buffer's CUDA
/// IPC memory handle (opened once, when it attaches).
///
/// # Examples
///
/// ```no_run
/// use allocator_cuda::{CudaDevice, DeviceIpcPool};
/// use buffer_core::{PoolConfig, Wait};
///
/// // Process A: 4 buffers of 8 MiB on device 0.
/// let pool = DeviceIpcPool::create("gpu-frames", PoolConfig::new("frames"), CudaDevice::open(0)?, 4, 8 << 20)?;
/// // Process B: the same buffers, mapped through their IPC handles.
/// let seen = DeviceIpcPool::attach("gpu-frames", CudaDevice::open(0)?)?;
/// let frame = seen.acquire_free(Wait::NoWait)?;
/// let ptr = allocator_cuda::device_ptr(&frame.buffer()); // valid in process B
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DeviceIpcPool;

/// A device allocation exported to other processes, freed when the creator's pool goes.
struct Exported {
    backend: DeviceBackend,
    ptr: sys::CUdeviceptr,
}

impl Drop for Exported {
    fn drop(&mut self) {
        self.backend.free(self.ptr);
    }
}

/// Device memory another process exported, opened here; closed when this process lets go.
struct Imported {
    device: Arc<CudaDevice>,
    ptr: sys::CUdeviceptr,
}

impl Drop for Imported {
    fn drop(&mut self) {
        if self.device.bind().is_ok() {
            // SAFETY: `ptr` was opened by `cuIpcOpenMemHandle` in `open` and is closed only
            // here, once, when the pool lets the buffer go in this process.
            let _ = unsafe { sys::cuIpcCloseMemHandle(self.ptr) };
        }
    }
}

impl DeviceIpcPool {
    /// Creates a shared pool named `segment` of `count` device buffers of `size` bytes on
    /// `device`, all free, exporting each buffer's IPC handle into the segment. The device
    /// memory is freed when the returned owner is dropped (other processes must have detached
    /// by then: CUDA invalidates their mappings when the exporting memory is freed).
    pub fn create(
        segment: &str,
        config: PoolConfig,
        device: Arc<CudaDevice>,
        count: u32,
        size: usize,
    ) -> Result<PoolOwner, IpcPoolError> {
        config.check_initial_buffers(count, size)?;
        let backend = DeviceBackend::new(device);
        let kind = MemoryKind::Device {
            ordinal: backend.device().ordinal(),
        };
        let mut buffers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let exported = Exported {
                ptr: backend.allocate(size)?,
                backend: backend.clone(),
            };
            let token = export(exported.ptr)?;
            let addr = exported.ptr as usize as *mut u8;
            // SAFETY: `exported` owns `size` bytes of device memory at `addr`, freed when the pool
            // drops it; the host never touches device memory.
            let memory = unsafe { BufferMemory::owned(addr, size, kind, None, Box::new(exported)) };
            buffers.push(ForeignBuffer { memory, token });
        }
        Ok(BufferPool::create_shared_foreign(segment, config, buffers)?)
    }

    /// Attaches to the pool named `segment`, opening every buffer's device memory through its
    /// IPC handle on `device` (which must be the device the pool's memory is on).
    pub fn attach(segment: &str, device: Arc<CudaDevice>) -> Result<BufferPool, AttachError> {
        BufferPool::attach_foreign(segment, &mut |token| open(&device, token))
    }
}

/// The IPC handle of device allocation `ptr`, as a share token.
fn export(ptr: sys::CUdeviceptr) -> Result<[u8; SHARE_TOKEN_LEN], CudaError> {
    let mut handle = sys::CUipcMemHandle {
        reserved: [0; SHARE_TOKEN_LEN],
    };
    // SAFETY: `ptr` is a live `cuMemAlloc` allocation (the context was made current when it was
    // allocated, on this thread); `handle` is a valid place for the result.
    unsafe { sys::cuIpcGetMemHandle(&mut handle, ptr) }
        .result()
        .map_err(|e| CudaError::driver("cuIpcGetMemHandle", e))?;
    Ok(handle.reserved.map(|byte| byte as u8))
}

/// Opens one exported buffer on `device`.
fn open(device: &Arc<CudaDevice>, token: ForeignToken<'_>) -> Result<BufferMemory, String> {
    let MemoryKind::Device { ordinal } = token.kind else {
        return Err(format!("it is {}, not device memory", token.kind));
    };
    if ordinal != device.ordinal() {
        return Err(format!(
            "it lies on device {ordinal}; attach with that device, not device {}",
            device.ordinal()
        ));
    }
    device.bind().map_err(|e| e.to_string())?;
    let handle = sys::CUipcMemHandle {
        reserved: token.token.map(|byte| byte as std::ffi::c_char),
    };
    let mut ptr: sys::CUdeviceptr = 0;
    // SAFETY: the context is current; `handle` is the creator's handle (the driver validates
    // it); `ptr` is a valid place for the result.
    unsafe {
        sys::cuIpcOpenMemHandle_v2(
            &mut ptr,
            handle,
            sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32,
        )
    }
    .result()
    .map_err(|e| CudaError::driver("cuIpcOpenMemHandle", e).to_string())?;
    let imported = Imported {
        device: Arc::clone(device),
        ptr,
    };
    // SAFETY: `imported` keeps the mapping of `size` bytes of device memory open until the pool
    // drops it in this process; the host never touches device memory.
    Ok(unsafe {
        BufferMemory::owned(
            ptr as usize as *mut u8,
            token.size,
            token.kind,
            None,
            Box::new(imported),
        )
    })
}
