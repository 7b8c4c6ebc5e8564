//! CUDA memory for bufpool pools: device memory and pinned host memory in the same pools as every
//! other kind, copies between them on streams that keep their buffers alive until done, and
//! device-memory pools shared between processes through CUDA IPC handles.
//!
//! `cudarc` loads `libcuda.so` at run time, so this builds everywhere; without a driver or a
//! device, [`CudaDevice::open`] returns [`CudaError`] (never panics).
//!
//! ```text
//!   CudaDevice (primary context) ─┬─ DeviceBackend: cuMemAlloc    → MemoryKind::Device
//!                                 ├─ PinnedBackend: cuMemHostAlloc → MemoryKind::PinnedHost
//!                                 ├─ CudaStream::copy(src guard, dst guard) → Transfer (holds both)
//!                                 └─ DeviceIpcPool: control block in shared memory, buffers
//!                                    opened by other processes with cuIpcOpenMemHandle
//! ```

mod context;
mod device_memory;
mod ipc;
mod pinned;
mod stream;

pub use context::{CudaDevice, CudaError, device_count, driver_present};
pub use device_memory::{DEVICE_ALIGNMENT, DeviceAllocator, DeviceBackend, DeviceMemory};
pub use ipc::{DeviceIpcPool, IpcPoolError};
pub use pinned::{PinnedAllocator, PinnedBackend, PinnedMemory};
pub use stream::{CudaStream, Endpoint, Transfer, TransferError};

/// The device pointer of a device-memory buffer (its `virt_addr`), for kernel arguments and
/// driver calls.
///
/// # Examples
///
/// ```
/// # use buffer_core::{Buffer, BufferPool, PoolConfig, Wait};
/// # let pool = BufferPool::with_heap_buffers(PoolConfig::new("d"), 1, 8).unwrap();
/// # let buffer: Buffer = pool.acquire_free(Wait::NoWait).unwrap().buffer();
/// let ptr: u64 = allocator_cuda::device_ptr(&buffer);
/// assert_eq!(ptr, buffer.virt_addr as u64);
/// ```
pub fn device_ptr(buffer: &buffer_core::Buffer) -> u64 {
    buffer.virt_addr as u64
}
