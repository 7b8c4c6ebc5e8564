//! Peers that write while we read, and the defects of the publication protocol: each case is a
//! peer (another process with the segment mapped, here a mapping of our own) or a sequence of
//! public calls that broke a promise, and must now get an error or lose nothing.

mod common;
mod peer;

use std::io::BufReader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use buffer_core::testing::{self, slot};
use buffer_core::{
    AccessError, AttachError, BufferId, BufferMemory, BufferPool, ForeignBuffer, MemoryKind,
    PoolConfig, RedeemError, SlotState, Wait,
};
use common::{read_until, role, spawn};
use peer::RawSegment;

const SIZE: usize = 256;

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "bystander");
    let _pool = BufferPool::attach(&std::env::var("SEGMENT").unwrap()).unwrap();
    println!("attached");
    std::thread::sleep(Duration::from_secs(600));
}

/// A shared pool of `capacity` slots, `count` of them with buffers, and its segment.
fn shared(
    test: &str,
    capacity: u32,
    count: u32,
    ports: &[&str],
) -> (buffer_core::PoolOwner, String) {
    let segment = common::segment_name(test);
    let config = PoolConfig::new(test)
        .with_capacity(capacity)
        .with_ports(ports.iter().copied())
        .with_port_depth(4);
    let pool = BufferPool::create_shared(&segment, config, count, SIZE).unwrap();
    (pool, segment)
}

fn slot_at(layout: &testing::Layout, index: u32, field: usize) -> usize {
    layout.slots + index as usize * layout.slot_len + field
}

#[test]
fn a_vacant_slot_a_peer_makes_free_and_queues_is_never_handed_out() {
    let (owner, segment) = shared("forged-free", 4, 2, &[]);
    let attached = BufferPool::attach(&segment).unwrap(); // before the peer writes
    let layout = testing::layout(4, 0, 2);
    let raw = RawSegment::map(&segment);
    // The peer: slot 2 (vacant) becomes "free", and its index goes into the free queue.
    raw.store_u64(
        slot_at(&layout, 2, slot::STATE),
        testing::slot_word(0, SlotState::Free, 0, 0),
    );
    let tail = raw.load_u64(layout.free_tail);
    let cell = layout.free_cells + (tail as usize & (layout.queue_cells - 1)) * 8;
    raw.store_u64(cell, testing::full_cell(tail, 2));
    raw.store_u64(layout.free_tail, tail + 1);
    // And slot 3 (vacant) "holds a detached buffer".
    raw.store_u64(
        slot_at(&layout, 3, slot::STATE),
        testing::slot_word(0, SlotState::WritingDetached, 1, 0),
    );

    // (A process attaching from now on refuses the block: slot 2 is "free" but has no memory.)
    assert!(matches!(
        BufferPool::attach(&segment),
        Err(AttachError::Corrupt { .. })
    ));
    for pool in [(*owner).clone(), attached] {
        let mut guards = Vec::new();
        while let Ok(mut guard) = pool.acquire_free(Wait::NoWait) {
            assert_ne!(guard.id().slot, 2, "a guard over a slot with no buffer");
            assert_eq!(guard.as_mut_slice().unwrap().len(), SIZE);
            guards.push(guard);
        }
        assert_eq!(guards.len(), 2);
        let forged = BufferId::new(pool.id(), 3, 0);
        let err = pool.redeem_write(forged).unwrap_err();
        assert!(matches!(err, RedeemError::Unknown { .. }), "{err}");
        drop(guards);
    }
}

#[test]
fn attach_uses_only_what_it_checked_while_a_peer_flips_it() {
    let (owner, segment) = shared("toctou", 2, 2, &[]);
    let layout = testing::layout(2, 0, 2);
    let raw = RawSegment::map(&segment);
    let stop = AtomicBool::new(false);
    let (flags, size) = (
        slot_at(&layout, 0, slot::FLAGS),
        slot_at(&layout, 0, slot::SIZE),
    );
    let (mut attached, mut refused) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Foreign (its token fits in the segment whatever the size), 1 TiB; then plain.
            while !stop.load(Ordering::Relaxed) {
                raw.store_u32(flags, 2);
                raw.store_u64(size, 1 << 40);
                raw.store_u32(flags, 0);
                raw.store_u64(size, SIZE as u64);
            }
        });
        for _ in 0..2000 {
            match BufferPool::attach(&segment) {
                Ok(pool) => {
                    attached += 1;
                    for buffer in pool.buffers() {
                        assert!(buffer.size <= SIZE, "{buffer:?}");
                    }
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!("{attached} attached, {refused} refused while a peer flipped slot 0");
    assert!(
        attached > 0 && refused > 0,
        "the peer's writes raced the attaches"
    );
    drop(owner);
}

#[test]
fn a_peer_calling_device_memory_host_memory_gets_no_slice() {
    let buffers = (0..2)
        .map(|i| ForeignBuffer {
            // SAFETY: device memory: the host never touches it (the address is only a name).
            memory: unsafe {
                BufferMemory::external(
                    (0x1000 * (i + 1)) as *mut u8,
                    SIZE,
                    MemoryKind::Device { ordinal: 0 },
                    None,
                )
            },
            token: [i as u8; 64],
        })
        .collect();
    let segment = common::segment_name("kind-flip");
    let owner = BufferPool::create_shared_foreign(
        &segment,
        PoolConfig::new("kind-flip").with_capacity(2),
        buffers,
    )
    .unwrap();
    let pool = BufferPool::attach(&segment).unwrap(); // device buffers stay unmapped here
    let layout = testing::layout(2, 0, 2);
    let raw = RawSegment::map(&segment);
    for index in 0..2 {
        raw.store_u32(slot_at(&layout, index, slot::MEMORY_KIND), 0); // "host memory"
    }
    let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
    let err = guard.as_mut_slice().unwrap_err();
    assert!(matches!(err, AccessError::Device(_)), "{err}");
    assert_eq!(guard.buffer().kind, MemoryKind::Device { ordinal: 0 });
    drop(guard);
    drop(owner);
}

#[test]
fn port_bits_of_ports_the_pool_does_not_have_are_cleared() {
    let (pool, segment) = shared("stray-ports", 2, 2, &["p"]);
    let layout = testing::layout(2, 1, 4);
    let raw = RawSegment::map(&segment);
    let port = pool.port("p").unwrap();
    let subscription = pool.subscribe(port).unwrap();
    let frame = pool.acquire_free(Wait::NoWait).unwrap();
    let index = frame.id().slot;
    assert_eq!(frame.publish(&[port]).delivered(), 1);
    // The peer adds a reference of port 5, which this pool does not have.
    let at = slot_at(&layout, index, slot::STATE);
    raw.store_u64(at, raw.load_u64(at) | 1 << 5);
    drop(subscription.receive(Wait::NoWait).unwrap());
    assert_eq!(pool.counts().free, 1, "held by the stray reference");
    // Any reclamation clears it (here, after a bystander process died).
    let mut bystander = spawn("child_entry", "bystander", &[("SEGMENT", segment.clone())]);
    let mut out = BufReader::new(bystander.stdout.take().unwrap());
    read_until(&mut out, "attached");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    pool.reclaim_dead();
    assert_eq!(pool.counts().free, 2, "the stray reference was dropped");
    assert_eq!(pool.audit(), Vec::<String>::new());
}

#[test]
fn symbolic_links_are_refused_never_followed() {
    let (_target, segment) = shared("link-target", 1, 1, &[]);
    let outside = std::env::temp_dir().join(format!("bufpool-link-{}", std::process::id()));
    std::fs::write(&outside, vec![0u8; 8192]).unwrap();
    for (name, points_to) in [
        ("into-another-pool", format!("/dev/shm/bufpool.{segment}")),
        ("outside-dev-shm", outside.display().to_string()),
    ] {
        let link = common::segment_name(name);
        let path = format!("/dev/shm/bufpool.{link}");
        std::os::unix::fs::symlink(&points_to, &path).unwrap();
        let err = BufferPool::attach(&link).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(&err, AttachError::Permission { reason, .. } if reason.contains("symbolic link")),
            "{name}: {err}"
        );
        // Nor does creating a pool of that name write through a link.
        std::os::unix::fs::symlink(&points_to, &path).unwrap();
        let created = BufferPool::create_shared(&link, PoolConfig::new("x").with_capacity(1), 1, 8);
        std::fs::remove_file(&path).unwrap();
        assert!(created.is_err(), "{name}: created through a symbolic link");
    }
    assert!(std::fs::read(&outside).unwrap().iter().all(|&b| b == 0));
    std::fs::remove_file(outside).unwrap();
}

#[test]
fn a_pool_is_never_attached_before_its_creator_has_filled_it() {
    const BUFFERS: u32 = 10_000;
    for round in 0..3 {
        let segment = common::segment_name(&format!("filling-{round}"));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(pool) = BufferPool::attach(&segment) {
                        return Some(pool.counts().total);
                    }
                }
                None
            });
            let config = PoolConfig::new("filling").with_capacity(BUFFERS);
            let owner = BufferPool::create_shared(&segment, config, BUFFERS, 64).unwrap();
            let seen = loop {
                if watcher.is_finished() {
                    break watcher.join().unwrap();
                }
                std::thread::yield_now();
            };
            assert_eq!(
                seen,
                Some(BUFFERS),
                "round {round}: attached a pool being filled"
            );
            stop.store(true, Ordering::Relaxed);
            drop(owner);
        });
    }
}

#[test]
fn a_hold_publishes_to_a_port_once_while_the_port_holds_it() {
    let pool =
        BufferPool::with_heap_buffers(PoolConfig::new("twice").with_ports(["p"]), 1, 8).unwrap();
    let port = pool.port("p").unwrap();
    let subscription = pool.subscribe(port).unwrap();
    let mut hold = pool.acquire_free(Wait::NoWait).unwrap().into_hold();
    assert_eq!(hold.publish(&[port]).delivered(), 1);
    let again = hold.publish(&[port]);
    assert_eq!(
        (again.delivered(), again.refused()),
        (0, 1),
        "the port holds it already"
    );
    let first = subscription.receive(Wait::NoWait).unwrap();
    assert!(
        subscription.receive(Wait::NoWait).is_err(),
        "one reference, one receipt"
    );
    drop(first);
    // Received and dropped: the port may have it again.
    assert_eq!(hold.publish(&[port]).delivered(), 1);
    drop(hold);
    drop(subscription.receive(Wait::NoWait).unwrap());
    assert_eq!(pool.counts().free, 1);
    assert_eq!(pool.audit(), Vec::<String>::new());
}

#[test]
fn a_published_holds_record_is_no_longer_written() {
    let pool =
        BufferPool::with_heap_buffers(PoolConfig::new("alias").with_ports(["p"]), 1, 8).unwrap();
    let port = pool.port("p").unwrap();
    let subscription = pool.subscribe(port).unwrap();
    let mut hold = pool.acquire_free(Wait::NoWait).unwrap().into_hold();
    hold.meta_mut().unwrap().sequence = 7;
    hold.publish(&[port]);
    assert!(matches!(
        hold.meta_mut(),
        Err(AccessError::Published { .. })
    ));
    assert!(matches!(
        hold.as_mut_ptr(),
        Err(AccessError::Published { .. })
    ));
    let frame = subscription.receive(Wait::NoWait).unwrap();
    assert_eq!((frame.meta().sequence, hold.meta().sequence), (7, 7));
}

#[test]
fn a_subscription_ending_never_eats_the_next_subscribers_frames() {
    let pool = BufferPool::with_heap_buffers(
        PoolConfig::new("handover")
            .with_ports(["p"])
            .with_port_depth(8),
        16,
        8,
    )
    .unwrap();
    let port = pool.port("p").unwrap();
    let next_subscribed = AtomicBool::new(false);
    let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
    for round in 0..500 {
        next_subscribed.store(false, Ordering::SeqCst);
        let first = pool.subscribe(port).unwrap();
        std::thread::scope(|s| {
            let publisher = s.spawn(|| {
                // Publish until the next subscriber has had frames published to it.
                let mut for_next = 0;
                while for_next < 3 {
                    let Ok(mut frame) = pool.acquire_free(Wait::Timeout(Duration::from_secs(5)))
                    else {
                        continue;
                    };
                    let tagged = next_subscribed.load(Ordering::SeqCst);
                    frame.meta_mut().sequence = u64::from(tagged);
                    if frame.publish(&[port]).reached(port) && tagged {
                        for_next += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            s.spawn(move || drop(first)); // ends while frames arrive and the next subscribes
            let next = loop {
                if let Ok(next) = pool.subscribe(port) {
                    break next;
                }
            };
            next_subscribed.store(true, Ordering::SeqCst);
            let mut got = 0;
            while !publisher.is_finished() || got < 3 {
                match next.receive(Wait::Timeout(Duration::from_millis(200))) {
                    Ok(frame) => got += frame.meta().sequence,
                    Err(_) if publisher.is_finished() => break,
                    Err(_) => {}
                }
            }
            while let Ok(frame) = next.receive(Wait::NoWait) {
                got += frame.meta().sequence;
            }
            received.fetch_add(got, Ordering::Relaxed);
            assert_eq!(
                got, 3,
                "round {round}: frames published to the next subscriber were eaten"
            );
        });
    }
    assert_eq!(
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed)
    );
}

#[test]
fn receipts_of_fan_out_subscribers_are_all_counted() {
    const FRAMES: u64 = 20_000;
    let ports = ["a", "b", "c", "d"];
    let pool = BufferPool::with_heap_buffers(
        PoolConfig::new("counted")
            .with_ports(ports)
            .with_port_depth(4),
        4,
        8,
    )
    .unwrap();
    let targets: Vec<_> = ports.iter().map(|p| pool.port(p).unwrap()).collect();
    std::thread::scope(|s| {
        for &port in &targets {
            let subscription = pool.subscribe(port).unwrap();
            s.spawn(move || {
                for _ in 0..FRAMES {
                    drop(
                        subscription
                            .receive(Wait::Timeout(Duration::from_secs(30)))
                            .unwrap(),
                    );
                }
            });
        }
        for _ in 0..FRAMES {
            let frame = pool
                .acquire_free(Wait::Timeout(Duration::from_secs(30)))
                .unwrap();
            assert_eq!(frame.publish(&targets).delivered(), 4);
        }
    });
    assert_eq!(
        pool.stats().acquisitions,
        FRAMES * 5,
        "every acquisition and receipt counted"
    );
}

#[test]
fn slots_whose_buffers_overlap_are_refused_at_attach() {
    let (_owner, segment) = shared("overlap", 2, 2, &[]);
    let layout = testing::layout(2, 0, 2);
    let raw = RawSegment::map(&segment);
    // One byte more for slot 0, which now reaches into slot 1's buffer.
    raw.store_u64(slot_at(&layout, 0, slot::SIZE), SIZE as u64 + 1);
    let err = BufferPool::attach(&segment).unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
}

#[test]
fn a_held_buffer_a_peer_queues_again_is_not_handed_out_twice() {
    let (owner, segment) = shared("requeued", 2, 2, &["p"]);
    let layout = testing::layout(2, 1, 4);
    let raw = RawSegment::map(&segment);
    let forge_free = |index: u32| {
        raw.store_u64(
            slot_at(&layout, index, slot::STATE),
            testing::slot_word(0, SlotState::Free, 0, 0),
        );
        let tail = raw.load_u64(layout.free_tail);
        let cell = layout.free_cells + (tail as usize & (layout.queue_cells - 1)) * 8;
        raw.store_u64(cell, testing::full_cell(tail, index));
        raw.store_u64(layout.free_tail, tail + 1);
    };
    // A write guard, then a port guard (a reader), each made "free" by the peer.
    let held = owner.acquire_free(Wait::NoWait).unwrap();
    forge_free(held.id().slot);
    let others: Vec<_> = std::iter::from_fn(|| owner.acquire_free(Wait::NoWait).ok()).collect();
    assert!(
        others.iter().all(|guard| guard.id().slot != held.id().slot),
        "a second guard of a buffer this process holds"
    );
    drop(others);
    let port = owner.port("p").unwrap();
    let subscription = owner.subscribe(port).unwrap();
    held.publish(&[port]);
    let reading = subscription.receive(Wait::NoWait).unwrap();
    forge_free(reading.id().slot);
    let writers: Vec<_> = std::iter::from_fn(|| owner.acquire_free(Wait::NoWait).ok()).collect();
    assert!(
        writers
            .iter()
            .all(|guard| guard.id().slot != reading.id().slot),
        "a write guard beside a port guard of the same buffer"
    );
}
