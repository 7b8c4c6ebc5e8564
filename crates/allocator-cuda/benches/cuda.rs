//! The CUDA figures, side by side in one run (a bench binary: `cargo bench -p allocator-cuda`):
//! 8 MiB frames from a pool (acquire → release) against `cuMemAlloc`/`cuMemFree` and
//! `cuMemHostAlloc`/`cuMemFreeHost` per frame, and host-to-device bandwidth from a pinned pool
//! buffer against pageable memory. Interleaved rounds, medians. Without a GPU it says so and
//! exits (fails, with `BUFPOOL_REQUIRE_GPU` set, as in `cargo xtask gpu-bundle`'s `run.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use allocator_base::PoolAllocator;
use allocator_cuda::{CudaStream, DeviceAllocator, DeviceBackend, PinnedAllocator, PinnedBackend};
use buffer_core::{BufferPool, PoolConfig, Wait};
use cudarc::driver::{result, sys};

const FRAME: usize = 8 << 20;
const ROUNDS: usize = 7;

/// The median of `samples`.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Time per operation of `f`, which does `ops` operations.
fn per_op(ops: u32, f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed() / ops
}

fn main() {
    let Some(device) = common::device() else {
        return;
    };
    println!(
        "device 0: {}; 8 MiB frames; {ROUNDS} interleaved rounds, medians",
        device.name()
    );
    let gpu = DeviceAllocator::new(DeviceBackend::new(device.clone()));
    let gpu_pool = gpu
        .pool(
            gpu.allocate_pool_with_buffers(4, FRAME, "bench-gpu", "bench")
                .unwrap(),
        )
        .unwrap();
    let pinned = PinnedAllocator::new(PinnedBackend::new(device.clone()));
    let pinned_pool = pinned
        .pool(
            pinned
                .allocate_pool_with_buffers(4, FRAME, "bench-pinned", "bench")
                .unwrap(),
        )
        .unwrap();
    let pageable =
        BufferPool::with_heap_buffers(PoolConfig::new("bench-pageable"), 1, FRAME).unwrap();
    let stream = CudaStream::new(device.clone()).unwrap();

    let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut bandwidth = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        t[0].push(per_op(10_000, || {
            for _ in 0..10_000 {
                drop(std::hint::black_box(
                    gpu_pool.acquire_free(Wait::NoWait).unwrap(),
                ));
            }
        }));
        t[1].push(per_op(200, || {
            for _ in 0..200 {
                // SAFETY: never accessed; the context is current (the pool allocation made it so
                // on this thread).
                let ptr = unsafe { result::malloc_sync(FRAME) }.unwrap();
                // SAFETY: `ptr` was just allocated and is freed once.
                unsafe { result::free_sync(std::hint::black_box(ptr)) }.unwrap();
            }
        }));
        t[2].push(per_op(10_000, || {
            for _ in 0..10_000 {
                drop(std::hint::black_box(
                    pinned_pool.acquire_free(Wait::NoWait).unwrap(),
                ));
            }
        }));
        t[3].push(per_op(20, || {
            for _ in 0..20 {
                // SAFETY: never accessed; the context is current.
                let ptr = unsafe { result::malloc_host(FRAME, sys::CU_MEMHOSTALLOC_PORTABLE) };
                // SAFETY: `ptr` was just allocated and is freed once.
                unsafe { result::free_host(std::hint::black_box(ptr.unwrap())) }.unwrap();
            }
        }));
        for (i, source) in [&pinned_pool, &pageable].into_iter().enumerate() {
            let copies = 50;
            let elapsed = per_op(copies, || {
                for _ in 0..copies {
                    let up = source.acquire_free(Wait::NoWait).unwrap();
                    let dst = gpu_pool.acquire_free(Wait::NoWait).unwrap();
                    drop(stream.copy(up, dst).unwrap().wait().unwrap());
                }
            });
            bandwidth[i].push(elapsed);
        }
    }
    let [pool_dev, malloc, pool_pin, host_alloc] = t.map(|mut s| median(&mut s));
    println!(
        "device pool acquire→release:   {:>10.0?} per frame",
        pool_dev
    );
    println!(
        "cuMemAlloc + cuMemFree:         {:>10.0?} per frame  ({:.0}× slower than the pool)",
        malloc,
        malloc.as_secs_f64() / pool_dev.as_secs_f64()
    );
    println!(
        "pinned pool acquire→release:   {:>10.0?} per frame",
        pool_pin
    );
    println!(
        "cuMemHostAlloc + cuMemFreeHost: {:>10.0?} per frame  ({:.0}× slower than the pool)",
        host_alloc,
        host_alloc.as_secs_f64() / pool_pin.as_secs_f64()
    );
    let [pinned_copy, pageable_copy] = bandwidth.map(|mut s| median(&mut s));
    let gbps = |d: Duration| FRAME as f64 / d.as_secs_f64() / 1e9;
    println!(
        "host→device from a pinned pool buffer: {:.1} GB/s; from pageable memory: {:.1} GB/s ({:.1}×)",
        gbps(pinned_copy),
        gbps(pageable_copy),
        pageable_copy.as_secs_f64() / pinned_copy.as_secs_f64()
    );
}
