//! Asynchronous copies between pool buffers on a CUDA stream, holding both buffers until the
//! copy is done.

use std::sync::Arc;

use buffer_core::{Buffer, MemoryKind, PortGuard, ReadGuard, WriteGuard};
use cudarc::driver::result::{self, stream::StreamKind};
use cudarc::driver::sys;

use crate::context::{CudaDevice, CudaError};

/// A held pool buffer that a copy can read or write: the guards of `buffer-core`.
pub trait Endpoint {
    /// The buffer the guard holds.
    fn buffer(&self) -> Buffer;
}

impl Endpoint for ReadGuard<'_> {
    fn buffer(&self) -> Buffer {
        ReadGuard::buffer(self)
    }
}

impl Endpoint for WriteGuard<'_> {
    fn buffer(&self) -> Buffer {
        WriteGuard::buffer(self)
    }
}

impl Endpoint for PortGuard<'_> {
    fn buffer(&self) -> Buffer {
        PortGuard::buffer(self)
    }
}

/// A copy could not be queued (the buffers went back to their pools).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TransferError {
    /// Neither side is device memory: copy host memory with the CPU.
    #[error(
        "neither buffer is device memory ({src} to {dst}): copy between host buffers with the CPU"
    )]
    HostToHost {
        /// The source's kind.
        src: MemoryKind,
        /// The destination's kind.
        dst: MemoryKind,
    },
    /// Device memory of another device than the stream's.
    #[error(
        "the buffer is memory of device {buffer}, but the stream runs on device {stream}: use a stream of that device"
    )]
    WrongDevice {
        /// The buffer's device.
        buffer: u32,
        /// The stream's device.
        stream: u32,
    },
    /// The destination is smaller than the source.
    #[error(
        "the destination holds {dst} bytes, the source {src}: use a destination at least as large"
    )]
    TooSmall {
        /// Source size.
        src: usize,
        /// Destination size.
        dst: usize,
    },
    /// The driver refused.
    #[error(transparent)]
    Cuda(#[from] CudaError),
}

/// A CUDA stream (non-blocking) on one device, for copies between pool buffers.
///
/// # Examples
///
/// ```no_run
/// use allocator_base::PoolAllocator;
/// use allocator_cuda::{CudaDevice, CudaStream, DeviceAllocator, DeviceBackend, PinnedAllocator, PinnedBackend};
/// use buffer_core::Wait;
///
/// let device = CudaDevice::open(0)?;
/// let pinned = PinnedAllocator::new(PinnedBackend::new(device.clone()));
/// let on_gpu = DeviceAllocator::new(DeviceBackend::new(device.clone()));
/// let host_pool = pinned.pool(pinned.allocate_pool_with_buffers(2, 1 << 20, "up", "gpu")?)?;
/// let gpu_pool = on_gpu.pool(on_gpu.allocate_pool_with_buffers(2, 1 << 20, "frames", "gpu")?)?;
///
/// let mut frame = host_pool.acquire_free(Wait::Forever)?;
/// frame.as_mut_slice()?.fill(7); // a decoder would write here
/// let stream = CudaStream::new(device)?;
/// let upload = stream.copy(frame, gpu_pool.acquire_free(Wait::Forever)?)?;
/// // ... queue more work; both buffers stay held meanwhile ...
/// let (_frame, on_device) = upload.wait()?;
/// on_device.submit();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CudaStream {
    device: Arc<CudaDevice>,
    stream: sys::CUstream,
}

// SAFETY: a stream handle may be used from any thread with its context current, which every use
// makes it (`CudaDevice::bind`).
unsafe impl Send for CudaStream {}
// SAFETY: as for `Send`; the driver serialises work queued on one stream.
unsafe impl Sync for CudaStream {}

impl CudaStream {
    /// A new non-blocking stream on `device`.
    pub fn new(device: Arc<CudaDevice>) -> Result<CudaStream, CudaError> {
        device.bind()?;
        let stream = result::stream::create(StreamKind::NonBlocking)
            .map_err(|e| CudaError::driver("cuStreamCreate", e))?;
        Ok(CudaStream { device, stream })
    }

    /// The device.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// Waits until everything queued on the stream is done.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.device.bind()?;
        // SAFETY: `stream` is alive until `Drop`.
        unsafe { result::stream::synchronize(self.stream) }
            .map_err(|e| CudaError::driver("cuStreamSynchronize", e))
    }

    /// Queues a copy of all of `src` into the start of `dst` (host to device, device to host
    /// or device to device, as their memory kinds say) and returns the transfer, which holds
    /// both buffers until the copy is done: neither can go back to its pool, be reused or be
    /// freed while the device still reads or writes it.
    pub fn copy<S: Endpoint, D: Endpoint>(
        &self,
        src: S,
        dst: D,
    ) -> Result<Transfer<'_, S, D>, TransferError> {
        let (from, to) = (src.buffer(), dst.buffer());
        self.check(&from)?;
        self.check(&to)?;
        if to.size < from.size {
            return Err(TransferError::TooSmall {
                src: from.size,
                dst: to.size,
            });
        }
        let (len, from_ptr, to_ptr) = (from.size, from.virt_addr, to.virt_addr);
        self.device.bind()?;
        let device = |kind: MemoryKind| matches!(kind, MemoryKind::Device { .. });
        // Every arm: both guards hold their buffers (moved into the transfer below, which waits
        // for the copy before letting them go), the sizes were checked, the pointers are of the
        // kinds each call wants, and the context is current.
        let queued = match (device(from.kind), device(to.kind)) {
            // SAFETY: see above; host source, device destination.
            (false, true) => unsafe {
                sys::cuMemcpyHtoDAsync_v2(to_ptr as u64, from_ptr as *const _, len, self.stream)
            },
            // SAFETY: see above; device source, host destination.
            (true, false) => unsafe {
                sys::cuMemcpyDtoHAsync_v2(to_ptr as *mut _, from_ptr as u64, len, self.stream)
            },
            // SAFETY: see above; both device memory of this stream's device.
            (true, true) => unsafe {
                sys::cuMemcpyDtoDAsync_v2(to_ptr as u64, from_ptr as u64, len, self.stream)
            },
            (false, false) => {
                return Err(TransferError::HostToHost {
                    src: from.kind,
                    dst: to.kind,
                });
            }
        };
        queued
            .result()
            .map_err(|e| CudaError::driver("cuMemcpyAsync", e))?;
        let event = result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(|e| CudaError::driver("cuEventCreate", e));
        let event = event.and_then(|event| {
            // SAFETY: `event` was just created, `stream` is alive.
            unsafe { result::event::record(event, self.stream) }
                .map(|()| event)
                .map_err(|e| CudaError::driver("cuEventRecord", e))
        });
        // Without an event, waiting falls back to the whole stream.
        let event = event.ok();
        Ok(Transfer {
            stream: self,
            event,
            ends: Some((src, dst)),
        })
    }

    /// Device memory of another device, or a buffer without memory, is refused.
    fn check(&self, buffer: &Buffer) -> Result<(), TransferError> {
        match buffer.kind {
            MemoryKind::Device { ordinal } if ordinal != self.device.ordinal() => {
                Err(TransferError::WrongDevice {
                    buffer: ordinal,
                    stream: self.device.ordinal(),
                })
            }
            _ => Ok(()),
        }
    }
}

impl Drop for CudaStream {
    fn drop(&mut self) {
        if self.device.bind().is_ok() {
            // SAFETY: `stream` was created in `new` and is destroyed only here; transfers borrow
            // the stream, so none outlives it.
            let _ = unsafe { result::stream::destroy(self.stream) };
        }
    }
}

/// A queued copy that holds its source and destination buffers until it is done. Dropping it
/// waits for the copy first, so a buffer never goes back to its pool while the device uses it.
#[must_use = "dropping a transfer waits for it; call wait() to get the buffers back"]
pub struct Transfer<'s, S: Endpoint, D: Endpoint> {
    stream: &'s CudaStream,
    event: Option<sys::CUevent>,
    ends: Option<(S, D)>,
}

impl<S: Endpoint, D: Endpoint> Transfer<'_, S, D> {
    /// Whether the copy is done (without waiting).
    pub fn is_done(&self) -> bool {
        let Some(event) = self.event else {
            return false;
        };
        // SAFETY: `event` is alive until `finish`.
        self.stream.device.bind().is_ok() && unsafe { result::event::query(event) }.is_ok()
    }

    /// Waits for the copy and hands back both buffers.
    pub fn wait(mut self) -> Result<(S, D), CudaError> {
        self.finish()?;
        Ok(self
            .ends
            .take()
            .expect("ends are taken only here or in drop"))
    }

    /// Waits for the copy (its event, or the whole stream) and destroys the event.
    fn finish(&mut self) -> Result<(), CudaError> {
        self.stream.device.bind()?;
        match self.event.take() {
            Some(event) => {
                // SAFETY: `event` was recorded on the stream in `copy` and is destroyed here,
                // once, after waiting for it.
                let waited = unsafe { result::event::synchronize(event) };
                // SAFETY: as above.
                let _ = unsafe { result::event::destroy(event) };
                waited.map_err(|e| CudaError::driver("cuEventSynchronize", e))
            }
            None => self.stream.synchronize(),
        }
    }
}

impl<S: Endpoint, D: Endpoint> Drop for Transfer<'_, S, D> {
    fn drop(&mut self) {
        if self.ends.is_some() && self.finish().is_err() {
            // The device may still be using the buffers and cannot say when it stops: keep them
            // (a leak) rather than hand memory in use back to the pools.
            std::mem::forget(self.ends.take());
        }
    }
}
