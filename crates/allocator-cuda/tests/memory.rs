//! Device and pinned buffers on a real GPU: kinds, host access, pointers, and release in any
//! drop order with the right context. Skips without a GPU.

mod common;

use allocator_base::PoolAllocator;
use allocator_cuda::{
    DEVICE_ALIGNMENT, DeviceAllocator, DeviceBackend, PinnedAllocator, PinnedBackend, device_ptr,
};
use buffer_core::{MemoryKind, Wait};

const FRAME: usize = 8 << 20;

#[test]
fn device_buffers_refuse_host_access_and_give_their_pointer() {
    let Some(device) = common::device() else {
        return;
    };
    let allocator = DeviceAllocator::new(DeviceBackend::new(device));
    let id = allocator
        .allocate_pool_with_buffers(3, FRAME, "gpu-frames", "test")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
    let buffer = frame.buffer();
    assert_eq!(buffer.kind, MemoryKind::Device { ordinal: 0 });
    assert_eq!(device_ptr(&buffer) % DEVICE_ALIGNMENT as u64, 0);
    let err = frame.as_mut_slice().unwrap_err();
    assert!(err.to_string().contains("device memory"), "{err}");
    assert_eq!(allocator.memory().bytes_current, 3 * FRAME as u64);
}

#[test]
fn pinned_buffers_are_host_memory_the_device_reaches() {
    let Some(device) = common::device() else {
        return;
    };
    let allocator = PinnedAllocator::new(PinnedBackend::new(device));
    let id = allocator
        .allocate_pool_with_buffers(2, FRAME, "pinned-frames", "test")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
    assert_eq!(frame.buffer().kind, MemoryKind::PinnedHost { ordinal: 0 });
    let bytes = frame.as_mut_slice().unwrap();
    assert!(bytes.iter().all(|&b| b == 0), "pinned buffers start zeroed");
    bytes.fill(0x5a);
    frame.submit();
    let read = pool.acquire_filled(Wait::NoWait).unwrap();
    assert!(read.as_slice().unwrap().iter().all(|&b| b == 0x5a));
}

#[test]
fn buffers_outliving_their_allocator_are_freed_later_on_another_thread() {
    let Some(device) = common::device() else {
        return;
    };
    let allocator = DeviceAllocator::new(DeviceBackend::new(device));
    let id = allocator
        .allocate_pool_with_buffers(2, FRAME, "gpu-late", "test")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let held = pool.acquire_free(Wait::NoWait).unwrap().into_id();
    drop(allocator);
    // Released on a thread that never made the context current: the backend must.
    std::thread::spawn(move || drop(pool.redeem_write(held).unwrap()))
        .join()
        .unwrap();
}
