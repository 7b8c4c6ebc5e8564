//! The generic allocator conformance suite on device memory and on pinned host memory (skipped,
//! with the reason printed, where no GPU is usable).

mod common;

mod device_memory {
    use super::common;
    allocator_base::conformance_tests!(
        allocator_cuda::DeviceBackend::new(common::device0()),
        if common::gpu()
    );
}

mod pinned_memory {
    use super::common;
    allocator_base::conformance_tests!(
        allocator_cuda::PinnedBackend::new(common::device0()),
        if common::gpu()
    );
}
