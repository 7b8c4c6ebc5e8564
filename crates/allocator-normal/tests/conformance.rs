//! The generic allocator conformance suite, for the normal backend with its default alignment
//! and with page alignment.

allocator_base::conformance_tests!(allocator_normal::NormalBackend::default());

mod page_aligned {
    allocator_base::conformance_tests!(
        allocator_normal::NormalBackend::with_alignment(4096).unwrap()
    );
}
