//! What the GPU tests (and the benchmark) share: the device, or why they skip.
//!
//! Every skip goes through [`skip`], which prints `skipped: REASON`, or panics with that reason
//! where `BUFPOOL_REQUIRE_GPU` is set (as `run.sh` of `cargo xtask gpu-bundle` sets it), so on
//! the GPU machine nothing passes without having run.

#![allow(dead_code)] // each test binary uses part of it

use std::fmt::Display;
use std::sync::Arc;

use allocator_cuda::{CudaDevice, CudaError};

/// Set where the GPU must be there (the GPU machine running `cargo xtask gpu-bundle`'s bundle).
pub const REQUIRE: &str = "BUFPOOL_REQUIRE_GPU";

/// Says why the calling test (or check) skips; panics with that reason instead where
/// [`REQUIRE`] is set.
pub fn skip(reason: impl Display) {
    if std::env::var_os(REQUIRE).is_some() {
        panic!("{REQUIRE} is set, so this may not skip: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Device 0, or `None` (having [`skip`]ped) on a machine without a usable GPU.
pub fn device() -> Option<Arc<CudaDevice>> {
    match CudaDevice::open(0) {
        Ok(device) => Some(device),
        Err(err @ (CudaError::NoDriver | CudaError::NoDevice(_))) => {
            skip(format_args!(
                "{err} (run the GPU bundle on a GPU machine: `cargo xtask gpu-bundle`)"
            ));
            None
        }
        Err(other) => panic!("the CUDA driver is present but failed: {other}"),
    }
}

/// Whether a GPU is usable ([`skip`]ping when not).
pub fn gpu() -> bool {
    device().is_some()
}

/// Device 0; only called once [`gpu`] said it is there.
pub fn device0() -> Arc<CudaDevice> {
    CudaDevice::open(0).expect("device 0 opened a moment ago")
}

/// A pool of `count` buffers of `size` bytes made by `allocator`.
pub fn pool_of(
    allocator: &impl allocator_base::PoolAllocator,
    count: u32,
    size: usize,
    name: &str,
) -> buffer_core::BufferPool {
    let id = allocator
        .allocate_pool_with_buffers(count, size, name, "test")
        .unwrap();
    allocator.pool(id).unwrap()
}
