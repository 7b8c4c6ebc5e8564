//! `bufpool inspect` and `bufpool stats` against a shared pool this test holds buffers of.

use std::process::Command;
use std::sync::Mutex;

use buffer_core::{BufferPool, PoolConfig, Wait};

/// Held by tests that list every pool: listing attaches to each pool for a moment, and a test
/// that checks which processes use its pool must not see another test's listing among them.
static LISTING: Mutex<()> = Mutex::new(());

fn inspect(args: &[&str]) -> String {
    bufpool("inspect", args)
}

/// Runs `bufpool COMMAND ARGS`, which must succeed; its standard output.
fn bufpool(command: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bufpool"))
        .arg(command)
        .args(args)
        .output()
        .expect("the bufpool binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn inspect_lists_pools_and_flags_a_starved_one() {
    let segment = format!("inspect-test-{}", std::process::id());
    let config = PoolConfig::new("cams")
        .with_capacity(2)
        .with_ports(["display"]);
    let pool = BufferPool::create_shared(&segment, config, 2, 1024).unwrap();
    let _a = pool.acquire_free(Wait::NoWait).unwrap();
    let _b = pool.acquire_free(Wait::NoWait).unwrap();
    let me = std::process::id();

    let _listing = LISTING.lock().unwrap_or_else(|e| e.into_inner());
    let listing = inspect(&[]);
    let line = listing
        .lines()
        .find(|line| line.starts_with(&segment))
        .unwrap_or_else(|| panic!("{segment} not listed:\n{listing}"));
    assert!(line.contains("cams"), "{line}");
    assert!(
        line.contains(&format!("STARVED: all 2 buffers held by pid {me}")),
        "{line}"
    );

    let detail = inspect(&[&segment]);
    assert!(detail.contains("pool 'cams'"), "{detail}");
    assert!(
        detail.contains(&format!("STARVED: all 2 buffers held by pid {me}")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("pid {me}")) && detail.contains("alive"),
        "{detail}"
    );
    assert!(
        detail.contains("display") && detail.contains("subscriber none"),
        "{detail}"
    );
    assert_eq!(
        detail
            .lines()
            .filter(|line| line.contains("Writing"))
            .count(),
        2,
        "{detail}"
    );
}

#[test]
fn inspecting_a_missing_pool_says_how_to_find_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_bufpool"))
        .args(["inspect", "no-such-pool-here"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no shared pool named 'no-such-pool-here'"),
        "{stderr}"
    );
}

/// Run as a child by `remove_deletes_only_pools_nobody_uses`: creates a pool and exits without
/// destroying it, as a crashed creator would.
#[test]
fn orphan_maker() {
    let Ok(segment) = std::env::var("BUFPOOL_TEST_ORPHAN") else {
        return;
    };
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("orphan").with_capacity(1), 1, 64)
            .unwrap();
    std::mem::forget(pool);
}

#[test]
fn remove_deletes_only_pools_nobody_uses() {
    if std::env::var("BUFPOOL_TEST_ORPHAN").is_ok() {
        return;
    }
    let remove = |segment: &str| {
        Command::new(env!("CARGO_BIN_EXE_bufpool"))
            .args(["remove", segment])
            .output()
            .unwrap()
    };
    let segment = format!("remove-test-{}", std::process::id());
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("r").with_capacity(1), 1, 64).unwrap();
    let refused = remove(&segment);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("in use by a live process"));
    drop(pool);

    let orphan = format!("orphan-test-{}", std::process::id());
    let made = Command::new(std::env::current_exe().unwrap())
        .args(["orphan_maker", "--exact", "-q"])
        .env("BUFPOOL_TEST_ORPHAN", &orphan)
        .output()
        .unwrap();
    assert!(made.status.success());
    let _listing = LISTING.lock().unwrap_or_else(|e| e.into_inner());
    let listing = inspect(&[]);
    let line = listing
        .lines()
        .find(|line| line.starts_with(&orphan))
        .unwrap();
    assert!(line.contains("ORPHANED"), "{line}");
    let removed = remove(&orphan);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert!(!std::path::Path::new(&format!("/dev/shm/bufpool.{orphan}")).exists());
}

#[test]
fn stats_account_for_bytes_by_state_and_by_process() {
    let segment = format!("stats-test-{}", std::process::id());
    let pool = BufferPool::create_shared(&segment, PoolConfig::new("meters"), 4, 1000).unwrap();
    let _a = pool.acquire_free(Wait::NoWait).unwrap();
    let _b = pool.acquire_free(Wait::NoWait).unwrap();
    pool.acquire_free(Wait::NoWait).unwrap().submit();
    let me = std::process::id();

    let _listing = LISTING.lock().unwrap_or_else(|e| e.into_inner());
    let listing = bufpool("stats", &[]);
    let line = listing
        .lines()
        .find(|line| line.starts_with(&segment))
        .unwrap_or_else(|| panic!("{segment} not listed:\n{listing}"));
    assert!(
        line.contains("meters") && line.contains("3.9 KiB") && line.contains("100.0 %"),
        "{line}"
    );

    let detail = bufpool("stats", &[&segment, "--buffers"]);
    for expected in [
        "pool 'meters'".to_owned(),
        "memory:   4 buffers (3.9 KiB)".to_owned(),
        "free:     1 buffer (1000 B); filled: 1 buffer (1000 B); in use: 2 buffers (2.0 KiB)"
            .to_owned(),
        "peak:     3 of 4 buffers in use at once".to_owned(),
        "acquired: 3 times, hit rate 100.0 % (0 waited, 0 timed out)".to_owned(),
        format!("pid {me:<8} alive holds 2 buffers (2.0 KiB)"),
        "holds nothing (this command)".to_owned(),
    ] {
        assert!(
            detail.contains(&expected),
            "missing '{expected}' in:\n{detail}"
        );
    }
    let live: Vec<&str> = detail
        .lines()
        .skip_while(|line| !line.starts_with("live buffers"))
        .filter(|line| line.contains("shared host memory"))
        .collect();
    assert_eq!(live.len(), 4, "{detail}");
    assert_eq!(
        live.iter()
            .filter(|line| line.contains("Writing") && line.contains(&format!("pid {me}")))
            .count(),
        2,
        "{detail}"
    );
}
