//! Finding the CUDA driver and a device, and making its primary context current.

use std::sync::Arc;

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

/// The CUDA driver or device cannot be used.
///
/// # Examples
///
/// ```
/// use allocator_cuda::{CudaDevice, CudaError};
///
/// match CudaDevice::open(0) {
///     Ok(device) => println!("{}", device.name()),
///     Err(CudaError::NoDriver) => println!("no NVIDIA driver here"),
///     Err(other) => println!("{other}"),
/// }
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CudaError {
    /// `libcuda.so` cannot be loaded.
    #[error(
        "the NVIDIA driver library (libcuda.so) is not installed or cannot be loaded: install the NVIDIA driver, or use a host-memory allocator"
    )]
    NoDriver,
    /// The driver sees no device.
    #[error("the NVIDIA driver reports no CUDA device ({0}): check `nvidia-smi`")]
    NoDevice(String),
    /// The ordinal asked for does not exist.
    #[error(
        "there is no CUDA device {ordinal}: this machine has {count} (ordinals 0 to {count}-1)"
    )]
    NoSuchDevice {
        /// The ordinal asked for.
        ordinal: u32,
        /// How many devices there are.
        count: u32,
    },
    /// A driver call failed.
    #[error("CUDA {call} failed: {error}")]
    Driver {
        /// The driver call.
        call: &'static str,
        /// The driver's error, by name.
        error: String,
    },
}

impl CudaError {
    /// The error for driver call `call` failing with `error`.
    pub(crate) fn driver(call: &'static str, error: DriverError) -> CudaError {
        let name = error
            .error_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("{:?}", error.0));
        CudaError::Driver { call, error: name }
    }
}

/// Whether the CUDA driver library can be loaded. Every other call of the driver panics (inside
/// `cudarc`) when it cannot, so this is checked before the first.
pub fn driver_present() -> bool {
    // SAFETY: only tries to load the library with `dlopen`; nothing is called in it.
    unsafe { sys::is_culib_present() }
}

/// How many CUDA devices the driver sees (0 without a driver).
///
/// # Examples
///
/// ```
/// println!("{} CUDA device(s)", allocator_cuda::device_count());
/// ```
pub fn device_count() -> u32 {
    if !driver_present() || result::init().is_err() {
        return 0;
    }
    result::device::get_count().map_or(0, |count| count.max(0) as u32)
}

/// One CUDA device, with its primary context retained for as long as this lives (every buffer
/// and stream made on it keeps it).
#[derive(Debug)]
pub struct CudaDevice {
    ordinal: u32,
    device: sys::CUdevice,
    context: sys::CUcontext,
    name: String,
}

// SAFETY: a device handle and its primary context may be used from any thread once made current
// there, which every use does (`CudaDevice::bind`).
unsafe impl Send for CudaDevice {}
// SAFETY: as for `Send`; `&CudaDevice` only reads the handles.
unsafe impl Sync for CudaDevice {}

impl CudaDevice {
    /// Opens device `ordinal`: loads the driver, initialises it, retains the device's primary
    /// context. Errors, never panics, when there is no driver or no such device.
    pub fn open(ordinal: u32) -> Result<Arc<CudaDevice>, CudaError> {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        result::init().map_err(|e| match CudaError::driver("cuInit", e) {
            CudaError::Driver { error, .. } if error.contains("NO_DEVICE") => {
                CudaError::NoDevice(error)
            }
            other => other,
        })?;
        let count = result::device::get_count()
            .map_err(|e| CudaError::driver("cuDeviceGetCount", e))?
            .max(0) as u32;
        if count == 0 {
            return Err(CudaError::NoDevice("cuDeviceGetCount returned 0".into()));
        }
        if ordinal >= count {
            return Err(CudaError::NoSuchDevice { ordinal, count });
        }
        let device =
            result::device::get(ordinal as i32).map_err(|e| CudaError::driver("cuDeviceGet", e))?;
        let name = result::device::get_name(device).unwrap_or_else(|_| "unknown".into());
        // SAFETY: `device` came from `cuDeviceGet`; released in `Drop`.
        let context = unsafe { result::primary_ctx::retain(device) }
            .map_err(|e| CudaError::driver("cuDevicePrimaryCtxRetain", e))?;
        Ok(Arc::new(CudaDevice {
            ordinal,
            device,
            context,
            name,
        }))
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// The device's name (such as "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes the device's primary context current on this thread, as every driver call on its
    /// memory needs.
    pub(crate) fn bind(&self) -> Result<(), CudaError> {
        // SAFETY: `context` is the primary context retained in `open`, alive until `Drop`.
        unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| CudaError::driver("cuCtxSetCurrent", e))
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // SAFETY: `device` came from `cuDeviceGet` and its primary context was retained once in
        // `open`; this is the matching release.
        let _ = unsafe { result::primary_ctx::release(self.device) };
    }
}
