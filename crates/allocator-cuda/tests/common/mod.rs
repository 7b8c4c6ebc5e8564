//! What the GPU tests share: the device, or why they skip.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;

use allocator_cuda::{CudaDevice, CudaError};

/// Device 0, or `None` (with the reason printed) on a machine without a usable GPU.
pub fn device() -> Option<Arc<CudaDevice>> {
    match CudaDevice::open(0) {
        Ok(device) => Some(device),
        Err(err @ (CudaError::NoDriver | CudaError::NoDevice(_))) => {
            if std::env::var_os("BUFPOOL_REQUIRE_GPU").is_some() {
                panic!("BUFPOOL_REQUIRE_GPU is set, but: {err}");
            }
            eprintln!(
                "skipped: {err} (run the GPU bundle on a GPU machine: `cargo xtask gpu-bundle`)"
            );
            None
        }
        Err(other) => panic!("the CUDA driver is present but failed: {other}"),
    }
}

/// Whether a GPU is usable (printing why not).
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
