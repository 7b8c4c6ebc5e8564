//! Copies on a stream: a pinned frame up to the device and back, data checked; pageable memory
//! too; buffers held until the copy is done, even when the transfer is dropped unwaited. Skips
//! without a GPU.

mod common;

use allocator_cuda::{
    CudaStream, DeviceAllocator, DeviceBackend, PinnedAllocator, PinnedBackend, TransferError,
};
use buffer_core::{BufferPool, PoolConfig, Wait};

const FRAME: usize = 8 << 20;

fn pattern(frame: u64) -> impl Fn(usize) -> u8 {
    move |i| (i as u64).wrapping_mul(2_654_435_761).wrapping_add(frame) as u8
}

#[test]
fn a_frame_goes_up_and_comes_back_unchanged() {
    let Some(device) = common::device() else {
        return;
    };
    let pinned = PinnedAllocator::new(PinnedBackend::new(device.clone()));
    let gpu = DeviceAllocator::new(DeviceBackend::new(device.clone()));
    let host_pool = common::pool_of(&pinned, 2, FRAME, "up");
    let gpu_pool = common::pool_of(&gpu, 1, FRAME, "on-gpu");
    let stream = CudaStream::new(device).unwrap();
    for round in 0..4u64 {
        let mut up = host_pool.acquire_free(Wait::NoWait).unwrap();
        let draw = pattern(round);
        for (i, byte) in up.as_mut_slice().unwrap().iter_mut().enumerate() {
            *byte = draw(i);
        }
        let upload = stream
            .copy(up, gpu_pool.acquire_free(Wait::NoWait).unwrap())
            .unwrap();
        assert_eq!(
            (host_pool.counts().free, gpu_pool.counts().free),
            (1, 0),
            "the transfer holds both buffers"
        );
        let (up, on_gpu) = upload.wait().unwrap();
        drop(up);
        let down = host_pool.acquire_free(Wait::NoWait).unwrap();
        let (on_gpu, down) = stream.copy(on_gpu, down).unwrap().wait().unwrap();
        drop(on_gpu);
        let mut down = down;
        let bytes = down.as_mut_slice().unwrap();
        let wrong = bytes
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b != draw(i))
            .count();
        assert_eq!(
            wrong, 0,
            "round {round}: {wrong} bytes differ after the round trip"
        );
    }
    assert_eq!((host_pool.counts().free, gpu_pool.counts().free), (2, 1));
}

#[test]
fn pageable_memory_uploads_too() {
    let Some(device) = common::device() else {
        return;
    };
    let heap = BufferPool::with_heap_buffers(PoolConfig::new("pageable"), 2, FRAME).unwrap();
    let gpu = DeviceAllocator::new(DeviceBackend::new(device.clone()));
    let gpu_pool = common::pool_of(&gpu, 1, FRAME, "on-gpu");
    let stream = CudaStream::new(device).unwrap();
    let mut up = heap.acquire_free(Wait::NoWait).unwrap();
    up.as_mut_slice().unwrap().fill(0x3c);
    let (_, on_gpu) = stream
        .copy(up, gpu_pool.acquire_free(Wait::NoWait).unwrap())
        .unwrap()
        .wait()
        .unwrap();
    let (_, mut down) = stream
        .copy(on_gpu, heap.acquire_free(Wait::NoWait).unwrap())
        .unwrap()
        .wait()
        .unwrap();
    assert!(down.as_mut_slice().unwrap().iter().all(|&b| b == 0x3c));
}

#[test]
fn a_dropped_transfer_waits_before_releasing_its_buffers() {
    let Some(device) = common::device() else {
        return;
    };
    let pinned = PinnedAllocator::new(PinnedBackend::new(device.clone()));
    let gpu = DeviceAllocator::new(DeviceBackend::new(device.clone()));
    let host_pool = common::pool_of(&pinned, 1, FRAME, "up");
    let gpu_pool = common::pool_of(&gpu, 1, FRAME, "on-gpu");
    let stream = CudaStream::new(device).unwrap();
    for _ in 0..16 {
        let transfer = stream
            .copy(
                host_pool.acquire_free(Wait::NoWait).unwrap(),
                gpu_pool.acquire_free(Wait::NoWait).unwrap(),
            )
            .unwrap();
        drop(transfer); // waits for the copy, then releases both buffers
        assert_eq!((host_pool.counts().free, gpu_pool.counts().free), (1, 1));
    }
    // Destroying the pools right after a dropped transfer frees memory the device is done with.
    let transfer = stream
        .copy(
            host_pool.acquire_free(Wait::NoWait).unwrap(),
            gpu_pool.acquire_free(Wait::NoWait).unwrap(),
        )
        .unwrap();
    drop(transfer);
    drop((pinned, gpu));
    stream.synchronize().unwrap();
}

#[test]
fn impossible_copies_are_refused() {
    let Some(device) = common::device() else {
        return;
    };
    let pinned = PinnedAllocator::new(PinnedBackend::new(device.clone()));
    let gpu = DeviceAllocator::new(DeviceBackend::new(device.clone()));
    let host_pool = common::pool_of(&pinned, 2, FRAME, "up");
    let small = common::pool_of(&gpu, 1, FRAME / 2, "small");
    let stream = CudaStream::new(device).unwrap();
    let a = host_pool.acquire_free(Wait::NoWait).unwrap();
    let b = host_pool.acquire_free(Wait::NoWait).unwrap();
    match stream.copy(a, b) {
        Err(err @ TransferError::HostToHost { .. }) => {
            assert!(err.to_string().contains("with the CPU"), "{err}")
        }
        _ => panic!("expected HostToHost"),
    }
    let a = host_pool.acquire_free(Wait::NoWait).unwrap();
    match stream.copy(a, small.acquire_free(Wait::NoWait).unwrap()) {
        Err(TransferError::TooSmall { src, dst }) => assert_eq!((src, dst), (FRAME, FRAME / 2)),
        _ => panic!("expected TooSmall"),
    }
    assert_eq!(
        host_pool.counts().free,
        2,
        "refused copies released their buffers"
    );
}
