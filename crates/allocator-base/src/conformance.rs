//! The conformance suite every backend crate runs against its backend.
//!
//! [`conformance_tests!`](crate::conformance_tests) expands to one `#[test]` per check; each check
//! wraps the backend in a [`DebugBackend`] that records every create and release (and can be
//! told to fail), so the checks can assert that each buffer is released through the backend
//! exactly once, whatever the drop order, and that the allocator's accounting agrees.
//!
//! ```text
//! // in a backend crate's tests/conformance.rs
//! allocator_base::conformance_tests!(my_backend::MyBackend::default());
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use buffer_core::{AcquireError, Ownership, PoolConfig, Queue, Wait};

use crate::{
    AllocatePoolError, Backend, BackendPools, DebugBackend, DebugProbe, InjectBufferError,
    OwnershipError, PoolAllocator, Registry, RemoveBufferError,
};

/// Size of the buffers the checks create: not a multiple of any alignment, to catch rounding bugs.
pub const BUFFER_SIZE: usize = 4096 + 100;

/// An allocator over `backend` wrapped in a [`DebugBackend`], and the probe that tells what the
/// backend saw.
fn counting<B: Backend>(backend: B) -> (BackendPools<DebugBackend<B>>, Arc<DebugProbe>) {
    let backend = DebugBackend::new(backend);
    let probe = backend.probe();
    (BackendPools::new(backend), probe)
}

/// A pool of `count` buffers has them all free, of the right size, kind and alignment, at
/// distinct addresses, and (for host memory) keeps what is written.
pub fn creates_pools<B: Backend>(backend: B) {
    let (allocator, ledger) = counting(backend);
    let kind = allocator.backend().memory_kind();
    let id = allocator
        .allocate_pool_with_buffers(4, BUFFER_SIZE, "conformance-create", "test")
        .unwrap();
    assert_eq!(ledger.created(), 4);
    let pool = allocator.pool(id).unwrap();
    assert_eq!(
        (pool.name(), pool.category()),
        ("conformance-create", "test")
    );
    let counts = pool.counts();
    assert_eq!((counts.total, counts.free), (4, 4));
    let mut guards: Vec<_> = (0..4)
        .map(|_| pool.acquire_free(Wait::NoWait).unwrap())
        .collect();
    let addrs: HashSet<usize> = guards.iter().map(|g| g.buffer().virt_addr).collect();
    assert_eq!(addrs.len(), 4, "buffers share memory");
    for (i, guard) in guards.iter_mut().enumerate() {
        let buffer = guard.buffer();
        assert_eq!(buffer.size, BUFFER_SIZE);
        assert_eq!(buffer.kind, kind);
        assert_eq!(buffer.ownership, allocator.backend().ownership());
        assert_eq!(
            buffer.virt_addr % allocator.backend().alignment(),
            0,
            "misaligned"
        );
        if kind.is_host_accessible() {
            guard.as_mut_slice().unwrap().fill(i as u8 + 1);
        } else {
            assert!(
                guard.as_mut_slice().is_err(),
                "device memory must refuse host access"
            );
        }
    }
    for guard in guards {
        guard.submit();
    }
    if kind.is_host_accessible() {
        let mut seen = HashSet::new();
        while let Ok(read) = pool.acquire_filled(Wait::NoWait) {
            let data = read.as_slice().unwrap();
            assert!(
                data.iter().all(|&b| b == data[0]),
                "a buffer did not keep its bytes"
            );
            seen.insert(data[0]);
        }
        assert_eq!(seen.len(), 4);
    }
    drop(pool);
    drop(allocator);
    assert_eq!(
        (ledger.created(), ledger.released(), ledger.live().len()),
        (4, 4, 0)
    );
}

/// Injected buffers join the queue asked for; a full pool refuses one and releases it again.
pub fn injects_buffers<B: Backend>(backend: B) {
    let (allocator, ledger) = counting(backend);
    let config = PoolConfig::new("conformance-inject").with_capacity(3);
    let id = allocator.allocate_pool(config, 1, BUFFER_SIZE).unwrap();
    allocator
        .inject_buffer(id, BUFFER_SIZE, Queue::Free)
        .unwrap();
    allocator
        .inject_buffer(id, 2 * BUFFER_SIZE, Queue::Filled)
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    assert_eq!((pool.counts().free, pool.counts().filled), (2, 1));
    assert_eq!(
        pool.acquire_filled(Wait::NoWait).unwrap().buffer().size,
        2 * BUFFER_SIZE
    );
    let err = allocator
        .inject_buffer(id, BUFFER_SIZE, Queue::Free)
        .unwrap_err();
    assert!(matches!(err, InjectBufferError::Pool(_)), "{err}");
    assert_eq!(ledger.created(), 4);
    assert_eq!(
        ledger.live().len(),
        3,
        "the refused buffer was released at once"
    );
    assert!(
        allocator.inject_buffer(id, 0, Queue::Free).is_err(),
        "0 bytes"
    );
    drop(allocator);
    assert_eq!(ledger.live().len(), 0);
}

/// External memory is used but never released through the backend, and bad external memory
/// (null, empty, misaligned) is refused.
pub fn wraps_external_memory<B: Backend>(backend: B) {
    let (allocator, ledger) = counting(backend);
    let kind = allocator.backend().memory_kind();
    let align = allocator.backend().alignment().max(1);
    let id = allocator
        .allocate_pool_with_buffers(0, BUFFER_SIZE, "conformance-external", "test")
        .unwrap();
    // Memory the test owns, aligned as the backend wants. For device backends it is never
    // dereferenced (host access is refused), so host memory stands in for it.
    let mut storage = vec![0u8; BUFFER_SIZE + align];
    let offset = storage.as_ptr().align_offset(align);
    let region = storage[offset..offset + BUFFER_SIZE].as_mut_ptr();
    // SAFETY: `storage` outlives the pool (the allocator is dropped below, before it) and is
    // untouched while the pool uses it.
    unsafe { allocator.inject_external(id, region, Some(0x1000_0000), BUFFER_SIZE, Queue::Free) }
        .unwrap();
    {
        let pool = allocator.pool(id).unwrap();
        let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
        let buffer = guard.buffer();
        assert_eq!(buffer.ownership, Ownership::External);
        assert_eq!(buffer.virt_addr, region as usize);
        assert_eq!(buffer.phys_addr, Some(0x1000_0000));
        if let Ok(bytes) = guard.as_mut_slice() {
            bytes.fill(0xab);
        }
    }
    // SAFETY: refused before the memory is recorded (null), so it is never accessed.
    let null =
        unsafe { allocator.inject_external(id, std::ptr::null_mut(), None, 64, Queue::Free) };
    assert!(matches!(null, Err(InjectBufferError::BadExternal { .. })));
    // SAFETY: refused before the memory is recorded (0 bytes), so it is never accessed.
    let empty = unsafe { allocator.inject_external(id, region, None, 0, Queue::Free) };
    assert!(matches!(empty, Err(InjectBufferError::BadExternal { .. })));
    if align > 1 {
        // SAFETY: refused before the memory is recorded (misaligned), so it is never accessed.
        let skewed =
            unsafe { allocator.inject_external(id, region.wrapping_add(1), None, 64, Queue::Free) };
        let err = skewed.unwrap_err();
        assert!(err.to_string().contains("alignment"), "{err}");
    }
    allocator.remove_buffer(id, Wait::NoWait).unwrap();
    drop(allocator);
    assert_eq!(
        (ledger.created(), ledger.released()),
        (0, 0),
        "external memory is never released"
    );
    // Host memory got the guard's writes; device memory refused them, so it was never touched.
    let expected = if kind.is_host_accessible() { 0xab } else { 0 };
    assert!(
        storage[offset..offset + BUFFER_SIZE]
            .iter()
            .all(|&b| b == expected)
    );
}

/// Removing takes a free buffer out and releases it through the backend, exactly once; with no
/// free buffer it fails (and waits no longer than asked).
pub fn removes_buffers<B: Backend>(backend: B) {
    let (allocator, ledger) = counting(backend);
    let id = allocator
        .allocate_pool_with_buffers(2, BUFFER_SIZE, "conformance-remove", "test")
        .unwrap();
    allocator.remove_buffer(id, Wait::NoWait).unwrap();
    assert_eq!(ledger.released(), 1);
    let pool = allocator.pool(id).unwrap();
    let held = pool.acquire_free(Wait::NoWait).unwrap();
    let err = allocator
        .remove_buffer(id, Wait::Timeout(std::time::Duration::from_millis(20)))
        .unwrap_err();
    assert!(matches!(err, RemoveBufferError::Pool(_)), "{err}");
    drop(held);
    allocator.remove_buffer(id, Wait::NoWait).unwrap();
    assert_eq!(
        (pool.counts().total, ledger.released(), ledger.live().len()),
        (0, 2, 0)
    );
}

/// Destroying releases every buffer, unregisters the pool, and wakes its waiters.
pub fn destroys_pools<B: Backend>(backend: B) {
    let (allocator, ledger) = counting(backend);
    let a = allocator
        .allocate_pool_with_buffers(2, BUFFER_SIZE, "conformance-destroy-a", "test")
        .unwrap();
    let b = allocator
        .allocate_pool_with_buffers(3, BUFFER_SIZE, "conformance-destroy-b", "test")
        .unwrap();
    assert_eq!(allocator.pool_ids(), vec![a, b]);
    let pool_b = allocator.pool(b).unwrap();
    pool_b.acquire_free(Wait::NoWait).unwrap().submit();
    let pool_a = allocator.pool(a).unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| pool_a.acquire_free(Wait::NoWait).unwrap())
        .collect();
    std::thread::scope(|s| {
        // Every buffer of `a` is held, so this wait ends only by destruction, whether it starts
        // before the destruction (woken) or after it (refused at once).
        let waiter = s.spawn(|| pool_a.acquire_free(Wait::Forever).map(drop));
        std::thread::sleep(std::time::Duration::from_millis(50));
        allocator.destroy_pools();
        assert!(matches!(
            waiter.join().unwrap(),
            Err(AcquireError::Closed { .. })
        ));
    });
    assert_eq!(
        ledger.live().len(),
        2,
        "the two held buffers stay until released"
    );
    drop(held);
    assert!(allocator.pool(a).is_err() && allocator.pool(b).is_err());
    assert!(allocator.pool_ids().is_empty());
    assert!(pool_b.is_closed());
    assert_eq!(pool_b.counts().total, 0, "a kept handle sees an empty pool");
    assert_eq!(
        (ledger.created(), ledger.released(), ledger.live().len()),
        (5, 5, 0)
    );
}

/// Guards alive when the pool is destroyed, or the allocator dropped, keep their memory valid
/// until they drop; then it is released, exactly once.
pub fn survives_any_drop_order<B: Backend>(backend: B) {
    let (allocator, ledger) = counting(backend);
    let host = allocator.backend().memory_kind().is_host_accessible();
    let id = allocator
        .allocate_pool_with_buffers(3, BUFFER_SIZE, "conformance-drop", "test")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let mut writer = pool.acquire_free(Wait::NoWait).unwrap();
    let detached = pool.acquire_free(Wait::NoWait).unwrap().into_id();
    drop(allocator); // destroys the pool while a guard and a detached id hold buffers
    assert_eq!(ledger.live().len(), 2, "held buffers outlive the allocator");
    if host {
        writer.as_mut_slice().unwrap().fill(7); // still valid memory
    }
    writer.submit();
    assert_eq!(ledger.live().len(), 1);
    drop(pool.redeem_write(detached).unwrap());
    assert_eq!(ledger.live().len(), 0);
    drop(pool);
    assert_eq!((ledger.created(), ledger.released()), (3, 3));
}

/// A backend failure part-way through creating a pool releases what was created and registers
/// nothing; a failed injection leaves the pool as it was.
pub fn cleans_up_after_failures<B: Backend>(backend: B) {
    let (allocator, ledger) = counting(backend);
    let registered = |name: &str| {
        let registry = Registry::global();
        registry
            .pool_ids()
            .into_iter()
            .any(|id| registry.get(id).is_ok_and(|p| p.name() == name))
    };
    ledger.fail_after(2, 1);
    let err = allocator
        .allocate_pool_with_buffers(5, BUFFER_SIZE, "conformance-fail", "test")
        .unwrap_err();
    assert!(
        matches!(
            err,
            AllocatePoolError::Backend {
                index: 2,
                count: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("conformance-fail"), "{err}");
    assert_eq!(
        (ledger.created(), ledger.live().len()),
        (2, 0),
        "created buffers were released"
    );
    assert!(allocator.pool_ids().is_empty());
    assert!(!registered("conformance-fail"), "nothing registered");

    let id = allocator
        .allocate_pool_with_buffers(1, BUFFER_SIZE, "conformance-fail", "test")
        .unwrap();
    ledger.fail_after(0, 1);
    let err = allocator
        .inject_buffer(id, BUFFER_SIZE, Queue::Free)
        .unwrap_err();
    assert!(matches!(err, InjectBufferError::Backend { .. }), "{err}");
    assert_eq!(allocator.pool(id).unwrap().counts().total, 1);
    drop(allocator);
    assert_eq!(ledger.live().len(), 0);
}

/// Only the allocator that created a pool may change or destroy it.
pub fn guards_pool_ownership<B: Backend>(make: impl Fn() -> B) {
    let (creator, _) = counting(make());
    let (other, other_ledger) = counting(make());
    let id = creator
        .allocate_pool_with_buffers(1, BUFFER_SIZE, "conformance-owner", "test")
        .unwrap();
    let not_owner = |e: &OwnershipError| matches!(e, OwnershipError::NotOwner { .. });
    match other.inject_buffer(id, BUFFER_SIZE, Queue::Free) {
        Err(InjectBufferError::Ownership(e)) => assert!(not_owner(&e), "{e}"),
        other => panic!("expected NotOwner, got {other:?}"),
    }
    match other.remove_buffer(id, Wait::NoWait) {
        Err(RemoveBufferError::Ownership(e)) => assert!(not_owner(&e), "{e}"),
        other => panic!("expected NotOwner, got {other:?}"),
    }
    assert!(other.destroy_pool(id).is_err());
    drop(other);
    assert!(
        creator.pool(id).is_ok(),
        "another allocator's drop left the pool alone"
    );
    assert_eq!(other_ledger.created(), 0);
    creator.destroy_pool(id).unwrap();
    assert!(matches!(
        creator.destroy_pool(id),
        Err(OwnershipError::Unknown(_))
    ));
}

/// The allocator's accounting agrees with what the backend did: creations, releases, bytes and
/// peaks, including a held buffer released after its pool is destroyed.
pub fn accounts_for_every_buffer<B: Backend>(backend: B) {
    let (allocator, probe) = counting(backend);
    let size = BUFFER_SIZE as u64;
    let id = allocator
        .allocate_pool_with_buffers(3, BUFFER_SIZE, "conformance-accounting", "test")
        .unwrap();
    allocator
        .inject_buffer(id, BUFFER_SIZE, Queue::Free)
        .unwrap();
    allocator.remove_buffer(id, Wait::NoWait).unwrap();
    let memory = allocator.memory();
    assert_eq!(
        (
            memory.allocations,
            memory.releases,
            memory.buffers_current,
            memory.buffers_peak
        ),
        (4, 1, 3, 4)
    );
    assert_eq!(
        (
            memory.bytes_allocated,
            memory.bytes_current,
            memory.bytes_peak
        ),
        (4 * size, 3 * size, 4 * size)
    );
    assert_eq!((probe.created(), probe.released()), (4, 1));
    let pool = allocator.pool(id).unwrap();
    let held = pool.acquire_free(Wait::NoWait).unwrap();
    allocator.destroy_pools();
    assert_eq!(
        (
            allocator.memory().buffers_current,
            allocator.memory().bytes_current
        ),
        (1, size),
        "the held buffer stays counted until it is released"
    );
    drop(held);
    let memory = allocator.memory();
    assert_eq!((memory.buffers_current, memory.bytes_current), (0, 0));
    assert_eq!(memory.releases, probe.released());
    assert!(probe.live().is_empty());
}

/// A memory limit refuses pools and buffers that would pass it before the backend creates
/// anything, and leaves earlier pools as they were.
pub fn respects_the_memory_limit<B: Backend>(backend: B) {
    let (allocator, probe) = counting(backend);
    let allocator = allocator.with_limit(crate::MemoryLimit::new(5 * BUFFER_SIZE as u64 / 2));
    let first = allocator
        .allocate_pool_with_buffers(2, BUFFER_SIZE, "conformance-limit", "test")
        .unwrap();
    match allocator.allocate_pool_with_buffers(1, BUFFER_SIZE, "conformance-over", "test") {
        Err(AllocatePoolError::Limit(exceeded)) => {
            assert_eq!(exceeded.current, 2 * BUFFER_SIZE as u64);
            assert_eq!(exceeded.requested, BUFFER_SIZE as u64);
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    match allocator.inject_buffer(first, BUFFER_SIZE, Queue::Free) {
        Err(InjectBufferError::Limit(_)) => {}
        other => panic!("expected a limit error, got {other:?}"),
    }
    assert_eq!(probe.created(), 2, "nothing was created past the limit");
    assert_eq!(allocator.pool_ids(), vec![first]);
    assert_eq!(allocator.pool(first).unwrap().counts().free, 2);
    // Room again once memory is released.
    allocator.remove_buffer(first, Wait::NoWait).unwrap();
    allocator
        .inject_buffer(first, BUFFER_SIZE, Queue::Free)
        .unwrap();
    assert_eq!(allocator.memory().bytes_current, 2 * BUFFER_SIZE as u64);
}

/// Expands to one `#[test]` per conformance check, each given a fresh backend from `$make`.
///
/// With `if $available`, each test first evaluates `$available` and, when it is false, returns
/// without checking anything (for backends over hardware the machine may lack; the expression
/// should print why it skips).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!($make, if true);
    };
    ($make:expr, if $available:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance as check;

            #[test]
            fn creates_pools() {
                if !$available {
                    return;
                }
                check::creates_pools($make);
            }
            #[test]
            fn injects_buffers() {
                if !$available {
                    return;
                }
                check::injects_buffers($make);
            }
            #[test]
            fn wraps_external_memory() {
                if !$available {
                    return;
                }
                check::wraps_external_memory($make);
            }
            #[test]
            fn removes_buffers() {
                if !$available {
                    return;
                }
                check::removes_buffers($make);
            }
            #[test]
            fn destroys_pools() {
                if !$available {
                    return;
                }
                check::destroys_pools($make);
            }
            #[test]
            fn survives_any_drop_order() {
                if !$available {
                    return;
                }
                check::survives_any_drop_order($make);
            }
            #[test]
            fn cleans_up_after_failures() {
                if !$available {
                    return;
                }
                check::cleans_up_after_failures($make);
            }
            #[test]
            fn accounts_for_every_buffer() {
                if !$available {
                    return;
                }
                check::accounts_for_every_buffer($make);
            }
            #[test]
            fn respects_the_memory_limit() {
                if !$available {
                    return;
                }
                check::respects_the_memory_limit($make);
            }
            #[test]
            fn guards_pool_ownership() {
                if !$available {
                    return;
                }
                check::guards_pool_ownership(|| $make);
            }
        }
    };
}
