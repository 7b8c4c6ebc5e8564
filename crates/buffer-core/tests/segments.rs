//! Shared segments against bad input: corrupt blocks (attached in a child process, which must
//! neither crash nor hang), stale, foreign and random ids, wrong owners and permissions.

mod common;

use std::io::BufReader;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::Duration;

use buffer_core::{AttachError, BufferId, BufferPool, PoolConfig, PoolId, Queue, Wait};
use common::{Rng, read_until, role, spawn, wait_exit};
use proptest::prelude::*;

const BUFFERS: u32 = 4;
const SIZE: usize = 256;

fn shm_path(segment: &str) -> String {
    format!("/dev/shm/bufpool.{segment}")
}

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "attach-and-use");
    let segment = std::env::var("SEGMENT").unwrap();
    match BufferPool::attach(&segment) {
        Err(err) => println!("outcome error: {err}"),
        Ok(pool) => {
            // Whatever the block says, these must end in results or errors.
            for _ in 0..8 {
                if let Ok(mut frame) = pool.acquire_free(Wait::NoWait) {
                    if let Ok(bytes) = frame.as_mut_slice() {
                        bytes.fill(1);
                    }
                    frame.submit();
                }
                if let Ok(frame) = pool.acquire_filled(Wait::NoWait) {
                    let _ = frame
                        .as_slice()
                        .map(|bytes| bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
                    let id = frame.into_id();
                    let _ = pool.redeem_read(id);
                }
                if let Ok(port) = pool.port("p")
                    && let Ok(subscription) = pool.subscribe(port)
                {
                    let _ = subscription.receive(Wait::NoWait);
                }
            }
            let _ = pool.acquire_filled(Wait::Timeout(Duration::from_millis(5)));
            pool.reclaim_dead();
            let _ = (pool.counts(), pool.buffers(), pool.holders(), pool.audit());
            let _ = (pool.processes(), pool.port_infos(), pool.stats());
            println!("outcome attached: {}", pool.counts());
        }
    }
}

/// A pool with some history: frames filled, published and held.
fn busy_pool(segment: &str) -> buffer_core::PoolOwner {
    let config = PoolConfig::new("busy")
        .with_capacity(BUFFERS)
        .with_ports(["p"])
        .with_port_depth(2);
    let pool = BufferPool::create_shared(segment, config, BUFFERS, SIZE).unwrap();
    for _ in 0..3 {
        pool.acquire_free(Wait::NoWait).unwrap().submit();
        drop(pool.acquire_filled(Wait::NoWait).unwrap());
    }
    pool.acquire_free(Wait::NoWait).unwrap().submit();
    pool
}

/// Writes `bytes` as a new segment file with mode 0600.
fn write_segment(segment: &str, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(segment))
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Cases of the corrupt-segment property: `BUFPOOL_CORRUPT_CASES` (48 by default; `cargo xtask
/// stress` runs 2,000).
fn corrupt_cases() -> u32 {
    std::env::var("BUFPOOL_CORRUPT_CASES").map_or(48, |cases| cases.parse().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: corrupt_cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_corrupt_block_gives_an_error_or_a_usable_pool_never_a_crash(
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        case in any::<u64>(),
    ) {
        if role().is_some() {
            return Ok(());
        }
        let original = common::segment_name("corrupt-src");
        let pool = busy_pool(&original);
        let mut bytes = std::fs::read(shm_path(&original)).unwrap();
        drop(pool);
        // Only the block (header and tables), not the buffers' bytes.
        let block_len = bytes.len() - BUFFERS as usize * SIZE;
        for (index, value) in mutations {
            bytes[index.index(block_len)] = value;
        }
        let segment = common::segment_name(&format!("corrupt-{case}"));
        write_segment(&segment, &bytes);
        let mut child = spawn("child_entry", "attach-and-use", &[("SEGMENT", segment.clone())]);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let outcome = read_until(&mut out, "outcome ");
        eprintln!("corrupt block: {outcome}");
        let status = wait_exit(&mut child, Duration::from_secs(60));
        std::fs::remove_file(shm_path(&segment)).unwrap();
        prop_assert!(status.success(), "child failed ({status}) after: {outcome}");
    }
}

#[test]
fn an_unchanged_copy_attaches_and_works() {
    if role().is_some() {
        return;
    }
    let original = common::segment_name("copy-src");
    let pool = busy_pool(&original);
    let bytes = std::fs::read(shm_path(&original)).unwrap();
    let copy = common::segment_name("copy");
    write_segment(&copy, &bytes);
    let mut child = spawn(
        "child_entry",
        "attach-and-use",
        &[("SEGMENT", copy.clone())],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert!(read_until(&mut out, "outcome ").starts_with("attached"));
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    std::fs::remove_file(shm_path(&copy)).unwrap();
    drop(pool);
}

#[test]
fn stale_foreign_and_random_ids_are_rejected() {
    if role().is_some() {
        return;
    }
    let segment = common::segment_name("ids");
    let pool = BufferPool::create_shared(
        &segment,
        PoolConfig::new("ids").with_capacity(BUFFERS),
        BUFFERS,
        SIZE,
    )
    .unwrap();
    let other = BufferPool::with_heap_buffers(PoolConfig::new("other"), 1, 8).unwrap();
    let live = pool.acquire_free(Wait::NoWait).unwrap().into_id();
    let guard = pool.acquire_filled(Wait::NoWait);
    assert!(guard.is_err());

    // Stale: released, so its generation moved on.
    let stale = pool.acquire_free(Wait::NoWait).unwrap().id();
    assert!(pool.redeem_write(stale).is_err() && pool.redeem_read(stale).is_err());
    // Foreign: a live id of another pool.
    let foreign = other.acquire_free(Wait::NoWait).unwrap().into_id();
    assert!(pool.redeem_write(foreign).is_err());
    // Random: whole ids, and ids with this pool's id and random slot and generation.
    let mut rng = Rng::new(42);
    for round in 0..100_000u32 {
        let id = if round % 2 == 0 {
            BufferId::from_bits(u128::from(rng.next()) << 64 | u128::from(rng.next()))
        } else {
            BufferId::new(
                pool.id(),
                rng.next() as u32 % (BUFFERS * 2),
                rng.next() as u32,
            )
        };
        if id == live {
            continue;
        }
        assert!(pool.redeem_write(id).is_err(), "{id} redeemed as write");
        assert!(pool.redeem_read(id).is_err(), "{id} redeemed as read");
    }
    // The live id still works, exactly once.
    drop(pool.redeem_write(live).unwrap());
    assert!(pool.redeem_write(live).is_err());
    assert_eq!(pool.audit(), Vec::<String>::new());
    assert_ne!(pool.id(), PoolId::from_raw(1));
}

#[test]
fn segments_with_wrong_permissions_or_owner_are_refused() {
    if role().is_some() {
        return;
    }
    let segment = common::segment_name("perm");
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("perm").with_capacity(1), 1, SIZE)
            .unwrap();
    let path = shm_path(&segment);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created with mode 0600");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = BufferPool::attach(&segment).unwrap_err();
    assert!(matches!(err, AttachError::Permission { .. }), "{err}");
    assert!(err.to_string().contains("mode 666"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    BufferPool::attach(&segment).unwrap();

    if rustix::process::geteuid().is_root() {
        // Root can give the segment to another user, as another user's segment would be.
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = BufferPool::attach(&segment).unwrap_err();
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
    } else {
        println!("skipped the other-owner case: changing a segment's owner needs root");
    }
    drop(pool);
    assert!(matches!(
        BufferPool::attach(&segment),
        Err(AttachError::NotFound { .. })
    ));
}

#[test]
fn names_existing_segments_and_non_pools_are_refused() {
    if role().is_some() {
        return;
    }
    for bad in ["", "a/b", "../x"] {
        assert!(
            matches!(BufferPool::attach(bad), Err(AttachError::Name(_))),
            "{bad:?}"
        );
        assert!(BufferPool::create_shared(bad, PoolConfig::new("n"), 1, 8).is_err());
    }
    let segment = common::segment_name("twice");
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("n").with_capacity(1), 1, 8).unwrap();
    let err = BufferPool::create_shared(&segment, PoolConfig::new("n").with_capacity(1), 1, 8)
        .unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    drop(pool);

    let junk = common::segment_name("junk");
    write_segment(&junk, &[0x42; 8192]);
    assert!(matches!(
        BufferPool::attach(&junk),
        Err(AttachError::NotAPool { .. })
    ));
    std::fs::remove_file(shm_path(&junk)).unwrap();
    write_segment(&junk, &[]);
    assert!(matches!(
        BufferPool::attach(&junk),
        Err(AttachError::Truncated { .. })
    ));
    std::fs::remove_file(shm_path(&junk)).unwrap();

    // Shared pools keep their buffers.
    let segment = common::segment_name("fixed");
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("f").with_capacity(2), 1, 8).unwrap();
    assert!(pool.remove(Wait::NoWait).is_err());
    let mut byte = 0u8;
    // SAFETY: the pool refuses the memory without touching it.
    let memory = unsafe {
        buffer_core::BufferMemory::external(&mut byte, 1, buffer_core::MemoryKind::Host, None)
    };
    assert!(pool.inject(memory, Queue::Free).is_err());
}
