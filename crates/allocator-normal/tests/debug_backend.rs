//! The debug decorator over the normal backend: every create and release is logged, live
//! buffers are listed, and injected failures reach the allocator's callers as clear errors.

mod common;

use allocator_base::{AllocatePoolError, BackendPools, DebugBackend, PoolAllocator};
use allocator_normal::NormalBackend;
use buffer_core::Wait;
use common::logged;

#[test]
fn logs_every_create_and_release() {
    let backend = DebugBackend::new(NormalBackend::default());
    let probe = backend.probe();
    let allocator = BackendPools::new(backend);
    let log = logged(|| {
        let id = allocator
            .allocate_pool_with_buffers(2, 3000, "debug-log", "test")
            .unwrap();
        let live = probe.live();
        assert_eq!(live.len(), 2);
        assert!(
            live.iter()
                .all(|buffer| buffer.size == 3000 && buffer.addr % 64 == 0)
        );
        allocator.destroy_pool(id).unwrap();
    });
    let created: Vec<&str> = log.lines().filter(|l| l.contains(" created ")).collect();
    let released: Vec<&str> = log.lines().filter(|l| l.contains(" released ")).collect();
    assert_eq!((created.len(), released.len()), (2, 2), "{log}");
    for (call, line) in created.iter().enumerate() {
        assert!(
            line.contains("bufpool::backend")
                && line.contains("backend=\"normal\"")
                && line.contains(&format!("call={}", call + 1))
                && line.contains("size=3000"),
            "{line}"
        );
    }
    assert!(
        released.iter().all(|line| line.contains("size=3000")),
        "{log}"
    );
    assert!(probe.live().is_empty());
}

#[test]
fn injected_failures_fail_cleanly_and_then_stop() {
    let backend = DebugBackend::new(NormalBackend::default());
    let probe = backend.probe();
    let allocator = BackendPools::new(backend);
    probe.fail_next(1);
    let err = allocator
        .allocate_pool_with_buffers(3, 64, "debug-fail", "test")
        .unwrap_err();
    assert!(
        matches!(err, AllocatePoolError::Backend { index: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("injected failure of normal creation #1 (64 bytes)"),
        "{err}"
    );
    assert!(allocator.pool_ids().is_empty());
    assert_eq!(allocator.memory().bytes_current, 0);

    // The plan is spent: the same request works now.
    let id = allocator
        .allocate_pool_with_buffers(3, 64, "debug-fail", "test")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let held = pool.acquire_free(Wait::NoWait).unwrap();
    drop(allocator);
    assert_eq!(
        probe.live().len(),
        1,
        "the held buffer outlives its allocator"
    );
    drop(held);
    assert!(probe.live().is_empty());
    assert_eq!(
        (probe.created(), probe.released(), probe.failed()),
        (3, 3, 1)
    );
}
