//! The pool's state machine seen from outside: queues, guards, ids, metadata, growth and shrinking.

use buffer_core::{
    AccessError, AcquireError, BufferMemory, BufferPool, CreatePoolError, InjectError, MemoryKind,
    Ownership, PixelFormat, PoolConfig, Queue, RedeemError, RemoveError, VideoFormat, Wait,
};

fn pool(count: u32, size: usize) -> buffer_core::PoolOwner {
    BufferPool::with_heap_buffers(PoolConfig::new("test").with_capacity(8), count, size).unwrap()
}

#[test]
fn producer_consumer_cycle_moves_data_and_metadata() {
    let pool = pool(2, 64);
    let mut w = pool.acquire_free(Wait::NoWait).unwrap();
    w.as_mut_slice().unwrap()[..3].copy_from_slice(b"abc");
    w.set_bytes_used(3).unwrap();
    w.meta_mut().sequence = 9;
    w.meta_mut().timestamp_ns = -5;
    w.meta_mut().video = VideoFormat::packed(PixelFormat::RGBA, 2, 1, 4);
    let addr = w.buffer().virt_addr;
    w.submit();
    assert_eq!(pool.counts().filled, 1);

    let r = pool.acquire_filled(Wait::NoWait).unwrap();
    assert_eq!(r.as_slice().unwrap(), b"abc");
    assert_eq!(r.meta().sequence, 9);
    assert_eq!(r.meta().timestamp_ns, -5);
    assert_eq!(r.meta().video.planes()[0].stride, 8);
    assert_eq!(
        r.buffer().virt_addr,
        addr,
        "the consumer sees the producer's memory: no copy"
    );
    assert_eq!(pool.counts().in_use, 1);
    drop(r);
    assert_eq!(pool.counts().free, 2);
}

#[test]
fn acquiring_resets_the_metadata() {
    let pool = pool(1, 32);
    let mut w = pool.acquire_free(Wait::NoWait).unwrap();
    w.meta_mut().sequence = 4;
    w.set_bytes_used(1).unwrap();
    w.submit();
    drop(pool.acquire_filled(Wait::NoWait).unwrap());
    let w = pool.acquire_free(Wait::NoWait).unwrap();
    assert_eq!(w.meta().sequence, 0);
    assert_eq!(w.meta().bytes_used(), 32);
}

#[test]
fn bytes_used_beyond_the_buffer_is_refused() {
    let pool = pool(1, 32);
    let mut w = pool.acquire_free(Wait::NoWait).unwrap();
    let err = w.set_bytes_used(33).unwrap_err();
    assert_eq!((err.requested, err.size), (33, 32));
    assert!(err.to_string().contains("holds only 32 bytes"));
}

#[test]
fn dropping_a_write_guard_returns_the_buffer_unused() {
    let pool = pool(1, 8);
    drop(pool.acquire_free(Wait::NoWait).unwrap());
    assert_eq!(pool.counts().free, 1);
    assert_eq!(pool.counts().filled, 0);
}

#[test]
fn empty_queues_report_counts_in_the_error() {
    let pool = pool(1, 8);
    let _held = pool.acquire_free(Wait::NoWait).unwrap();
    let err = pool.acquire_free(Wait::NoWait).unwrap_err();
    assert!(
        matches!(
            err,
            AcquireError::Empty {
                queue: Queue::Free,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("1 buffers: 0 free, 0 filled, 1 in use"),
        "{err}"
    );
    let err = pool.acquire_filled(Wait::NoWait).unwrap_err();
    assert!(
        matches!(
            err,
            AcquireError::Empty {
                queue: Queue::Filled,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn ids_round_trip_exactly_once() {
    let pool = pool(2, 8);
    let mut w = pool.acquire_free(Wait::NoWait).unwrap();
    w.as_mut_slice().unwrap()[0] = 7;
    let id = w.into_id();
    assert_eq!(pool.counts().in_use, 1, "a detached buffer stays held");

    let w = pool.redeem_write(id).unwrap();
    assert!(matches!(
        pool.redeem_write(id),
        Err(RedeemError::NotDetached { .. })
    ));
    w.submit();

    let r = pool.acquire_filled(Wait::NoWait).unwrap();
    let id = r.into_id();
    assert!(
        matches!(
            pool.redeem_write(id),
            Err(RedeemError::NotDetached {
                wanted: "write",
                ..
            })
        ),
        "a read id does not become a write guard"
    );
    let r = pool.redeem_read(id).unwrap();
    assert_eq!(r.as_slice().unwrap()[0], 7);
    drop(r);
    assert!(
        matches!(pool.redeem_read(id), Err(RedeemError::Stale { .. })),
        "released"
    );
}

#[test]
fn ids_can_cross_threads() {
    let pool = pool(1, 8);
    let id = pool.acquire_free(Wait::NoWait).unwrap().into_id();
    let bits = id.to_bits();
    std::thread::scope(|s| {
        s.spawn(|| {
            let id = buffer_core::BufferId::from_bits(bits);
            pool.redeem_write(id).unwrap().submit();
        });
    });
    assert_eq!(pool.counts().filled, 1);
}

#[test]
fn stale_garbage_and_foreign_ids_are_rejected() {
    let pool = pool(2, 8);
    let other = self::pool(1, 8);
    let id = pool.acquire_free(Wait::NoWait).unwrap().into_id();

    let foreign = other.acquire_free(Wait::NoWait).unwrap().into_id();
    assert!(matches!(
        pool.redeem_write(foreign),
        Err(RedeemError::WrongPool { .. })
    ));

    let mut garbage = id;
    garbage.slot = 1_000;
    let err = pool.redeem_write(garbage).unwrap_err();
    assert!(
        matches!(err, RedeemError::NoSuchSlot { capacity: 8, .. }),
        "{err}"
    );

    let mut wrong_generation = id;
    wrong_generation.generation += 1;
    assert!(matches!(
        pool.redeem_write(wrong_generation),
        Err(RedeemError::Stale { .. })
    ));

    for bits in [0u128, u128::MAX, 0xdead_beef] {
        assert!(
            pool.redeem_read(buffer_core::BufferId::from_bits(bits))
                .is_err()
        );
    }
    drop(pool.redeem_write(id).unwrap());
}

#[test]
fn ids_of_removed_buffers_are_stale() {
    let pool = pool(1, 8);
    let w = pool.acquire_free(Wait::NoWait).unwrap();
    let id = w.id();
    drop(w);
    pool.remove(Wait::NoWait).unwrap();
    assert!(matches!(
        pool.redeem_write(id),
        Err(RedeemError::Stale { .. })
    ));
    assert_eq!(pool.counts().total, 0);
}

#[test]
fn pools_grow_and_shrink_up_to_capacity() {
    let pool = BufferPool::create(PoolConfig::new("grow").with_capacity(2)).unwrap();
    assert_eq!(pool.counts().total, 0, "a pool may start empty");
    for _ in 0..2 {
        let storage: &'static mut [u8] = Box::leak(vec![0u8; 16].into_boxed_slice());
        // SAFETY: leaked storage lives forever and only the pool uses it.
        let memory =
            unsafe { BufferMemory::external(storage.as_mut_ptr(), 16, MemoryKind::Host, None) };
        pool.inject(memory, Queue::Filled).unwrap();
    }
    assert_eq!(pool.counts().filled, 2);
    let storage: &'static mut [u8] = Box::leak(vec![0u8; 16].into_boxed_slice());
    // SAFETY: as above.
    let memory =
        unsafe { BufferMemory::external(storage.as_mut_ptr(), 16, MemoryKind::Host, None) };
    let err = pool.inject(memory, Queue::Free).unwrap_err();
    assert!(
        matches!(err, InjectError::Full { capacity: 2, .. }),
        "{err}"
    );

    let r = pool.acquire_filled(Wait::NoWait).unwrap();
    assert_eq!(r.buffer().ownership, Ownership::External);
    drop(r);
    pool.remove(Wait::NoWait).unwrap();
    assert_eq!(pool.counts().total, 1);
    assert!(
        matches!(pool.remove(Wait::NoWait), Err(RemoveError::NoFreeBuffer(_))),
        "filled buffers are not removed"
    );
}

#[test]
fn empty_memory_is_refused() {
    let pool = BufferPool::create(PoolConfig::new("e")).unwrap();
    let mut byte = 0u8;
    // SAFETY: a 0-byte region is never accessed.
    let memory = unsafe { BufferMemory::external(&mut byte, 0, MemoryKind::Host, None) };
    assert!(matches!(
        pool.inject(memory, Queue::Free),
        Err(InjectError::Empty { .. })
    ));
}

#[test]
fn device_memory_refuses_host_slices() {
    let pool = BufferPool::create(PoolConfig::new("gpu")).unwrap();
    // A made-up device address: it is never dereferenced, which is what this test shows.
    let fake_device_addr = 0x7000_0000_0000usize as *mut u8;
    // SAFETY: device memory is never accessed by the pool; the address is only recorded.
    let memory = unsafe {
        BufferMemory::external(
            fake_device_addr,
            4096,
            MemoryKind::Device { ordinal: 0 },
            None,
        )
    };
    pool.inject(memory, Queue::Free).unwrap();
    let mut w = pool.acquire_free(Wait::NoWait).unwrap();
    let err = w.as_mut_slice().unwrap_err();
    assert!(
        matches!(err, buffer_core::AccessError::Device(e) if e.kind == MemoryKind::Device { ordinal: 0 })
    );
    assert!(err.to_string().contains("cannot read or write"));
    assert_eq!(w.buffer().virt_addr, fake_device_addr as usize);
    w.submit();
    let r = pool.acquire_filled(Wait::NoWait).unwrap();
    assert!(r.as_slice().is_err());
}

#[test]
fn bad_configs_are_refused_with_reasons() {
    let long = "x".repeat(64);
    for (config, want) in [
        (PoolConfig::new(""), "name"),
        (PoolConfig::new(long.clone()), "name"),
        (PoolConfig::new("a\0b"), "name"),
        (PoolConfig::new("ok").with_category(long), "category"),
        (PoolConfig::new("ok").with_capacity(0), "capacity"),
        (PoolConfig::new("ok").with_capacity(u32::MAX), "capacity"),
    ] {
        let err = BufferPool::create(config).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
    assert_eq!(
        BufferPool::with_heap_buffers(PoolConfig::new("ok").with_capacity(2), 3, 8).unwrap_err(),
        CreatePoolError::TooManyBuffers {
            count: 3,
            capacity: 2
        }
    );
    assert_eq!(
        BufferPool::with_heap_buffers(PoolConfig::new("ok"), 1, 0).unwrap_err(),
        CreatePoolError::ZeroSize
    );
}

#[test]
fn stats_count_acquisitions_and_water_marks() {
    let pool = pool(3, 8);
    let a = pool.acquire_free(Wait::NoWait).unwrap();
    let b = pool.acquire_free(Wait::NoWait).unwrap();
    a.submit();
    b.submit();
    drop(pool.acquire_filled(Wait::NoWait).unwrap());
    let stats = pool.stats();
    assert_eq!(stats.acquisitions, 3);
    assert_eq!(stats.min_free, Some(1));
    assert_eq!(stats.max_filled, 2);
    assert_eq!((stats.waits, stats.timeouts), (0, 0));
}

#[test]
fn buffers_are_64_byte_aligned_heap_memory() {
    let pool = pool(4, 100);
    let guards: Vec<_> = (0..4)
        .map(|_| pool.acquire_free(Wait::NoWait).unwrap())
        .collect();
    for g in &guards {
        assert_eq!(g.buffer().virt_addr % 64, 0);
        assert_eq!(g.len(), 100);
        assert_eq!(g.buffer().kind, MemoryKind::Host);
    }
}

#[test]
fn destroying_a_pool_with_guards_alive_releases_them_on_drop() {
    struct Counted(
        std::sync::Arc<std::sync::atomic::AtomicU32>,
        #[allow(dead_code)] Box<[u8]>,
    );
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let released = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let owner = BufferPool::create(PoolConfig::new("d")).unwrap();
    for _ in 0..3 {
        let mut storage = vec![0u8; 8].into_boxed_slice();
        let addr = storage.as_mut_ptr();
        // SAFETY: the storage moves into the owner, which the pool drops when done with it.
        let memory = unsafe {
            BufferMemory::owned(
                addr,
                8,
                MemoryKind::Host,
                None,
                Box::new(Counted(released.clone(), storage)),
            )
        };
        owner.inject(memory, Queue::Free).unwrap();
    }
    let user = owner.pool().clone();
    let mut held = user.acquire_free(Wait::NoWait).unwrap();
    drop(owner);
    assert_eq!(
        released.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "free buffers go at once"
    );
    held.as_mut_slice().unwrap().fill(1); // still valid memory
    drop(held);
    assert_eq!(
        released.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the held one on release"
    );
    assert!(matches!(
        user.acquire_free(Wait::NoWait),
        Err(AcquireError::Closed { .. })
    ));
    drop(user);
    assert_eq!(
        released.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "exactly once each"
    );
}

#[test]
fn holders_are_named_with_or_without_hold_times() {
    let me = std::process::id();
    for hold_times in [true, false] {
        let config = PoolConfig::new("h").with_hold_times(hold_times);
        let pool = BufferPool::with_heap_buffers(config, 3, 8).unwrap();
        let _a = pool.acquire_free(Wait::NoWait).unwrap();
        let _b = pool.acquire_free(Wait::NoWait).unwrap();
        let holders = pool.holders().0;
        assert_eq!(
            (holders.len(), holders[0].pid, holders[0].buffers),
            (1, me, 2)
        );
        assert_eq!(holders[0].longest.is_some(), hold_times);
        let text = pool.holders().to_string();
        assert_eq!(text.contains("the oldest for"), hold_times, "{text}");
        assert_eq!(pool.stats().acquisitions, 2, "counted either way");
    }
}

#[test]
fn planes_described_outside_the_buffer_are_errors_not_reads() {
    let pool = pool(1, 100);
    for (offset, stride, rows) in [
        (90, 10, 2),
        (0, 101, 1),
        (u64::MAX, 1, 1),
        (1, u32::MAX, u32::MAX),
    ] {
        let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
        let mut video = VideoFormat::packed(PixelFormat::RGBA, 1, 1, 4);
        video.plane_slots[0] = buffer_core::Plane {
            offset,
            stride,
            rows,
        };
        frame.meta_mut().video = video;
        frame.submit();
        let frame = pool.acquire_filled(Wait::NoWait).unwrap();
        assert!(
            matches!(
                frame.plane(0),
                Err(AccessError::PlaneOutside { plane: 0, .. })
            ),
            "offset {offset}, stride {stride}, rows {rows}: {:?}",
            frame.plane(0)
        );
        assert!(matches!(
            frame.plane(1),
            Err(AccessError::NoSuchPlane { plane: 1, .. })
        ));
        assert_eq!(
            frame.as_slice().unwrap().len(),
            100,
            "the whole buffer stays readable"
        );
    }
}
