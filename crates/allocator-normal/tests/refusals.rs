//! What allocators refuse, and that a refusal changes no counter. In a process of its own:
//! a reservation too large for the byte counter wraps it until taken back, which a test reading
//! this process's total at that moment would see.

use allocator_base::{InjectBufferError, PoolAllocator, SharedMemoryPools};
use allocator_normal::{NormalAllocator, NormalBackend};
use buffer_core::Queue;

/// A pool or buffer too large to make is an error that leaves the counters exactly as they
/// were, never a panic (the reservation wraps the byte counter; taking it back must too). Found
/// by review.
#[test]
fn a_pool_or_buffer_too_large_to_make_fails_and_changes_no_counter() {
    let name = format!("accounting-huge-{}", std::process::id());
    let shared = SharedMemoryPools::new(64);
    shared
        .allocate_pool_with_buffers(1, 4096, &format!("{name}-base"), "test")
        .unwrap();
    let before = shared.memory();
    assert!(
        shared
            .allocate_pool_with_buffers(2, 1 << 63, &name, "test")
            .is_err()
    );
    assert_eq!(shared.memory(), before);

    let normal = NormalAllocator::new(NormalBackend::default());
    let id = normal
        .allocate_pool_with_buffers(1, 4096, "huge", "test")
        .unwrap();
    let before = normal.memory();
    let result = normal.inject_buffer(id, usize::MAX, Queue::Free);
    assert!(
        matches!(result, Err(InjectBufferError::Backend { .. })),
        "{result:?}"
    );
    assert_eq!(normal.memory(), before);
}

/// Shared pools' buffers are aligned as asked; an alignment that is not a power of two is
/// refused, not rounded to one it does not divide. Found by review.
#[test]
fn a_shared_alignment_that_is_not_a_power_of_two_is_refused() {
    let name = format!("accounting-align48-{}", std::process::id());
    let allocator = SharedMemoryPools::new(48);
    let result = allocator.allocate_pool_with_buffers(4, 1000, &name, "test");
    assert!(result.is_err(), "{result:?}");
    assert_eq!(allocator.memory().buffers_current, 0);
}
