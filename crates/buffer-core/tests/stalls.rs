//! Stalled processes delay nobody: a process stopped (SIGSTOP here; a debugger or a cgroup
//! freezer alike) in the middle of a queue operation is caught in exactly that window, and the
//! others go on.
//!
//! - A taker stopped between its cell CAS and its cell release: a lap later every release
//!   still finds a cell at once, and no buffer is lost.
//! - A publisher stopped between reserving a port's cell and publishing it: a subscriber waiting
//!   behind the reservation sleeps (blocking and async) instead of spinning.
//!
//! The window is a few instructions wide, so the test stops the child again and again until
//! the pool's audit shows the child caught in it.

mod common;
mod peer;

use std::io::BufReader;
use std::process::Child;
use std::time::{Duration, Instant};

use buffer_core::{BufferPool, PoolConfig, ReceiveError, Wait};
use common::{Rng, read_until, role, spawn};

const BUFFERS: u32 = 4;

/// The tests take turns: one measures the CPU time of the whole process.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    // These children never stop by themselves: they go with the test that started them.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).unwrap();
    let pool = BufferPool::attach(&std::env::var("SEGMENT").unwrap()).unwrap();
    println!("actor {}", pool.actor());
    match role.as_str() {
        "churner" => loop {
            if let Ok(guard) = pool.acquire_free(Wait::NoWait) {
                drop(guard);
            }
        },
        "publisher" => {
            let port = pool.port("p").unwrap();
            loop {
                if let Ok(frame) = pool.acquire_free(Wait::Timeout(Duration::from_millis(100))) {
                    frame.publish(&[port]);
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// A child in `role`, and its actor number.
fn child(segment: &str, role: &str) -> (Child, u8) {
    let mut child = spawn("child_entry", role, &[("SEGMENT", segment.to_owned())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let actor = read_until(&mut out, "actor ").parse().unwrap();
    (child, actor)
}

/// Stops `child` until the pool's audit reports `window` (a cell state) of actor `actor`;
/// returns with the child stopped there. `between` runs while the child runs between tries.
fn stop_inside(
    pool: &BufferPool,
    child: &Child,
    actor: u8,
    window: &str,
    mut between: impl FnMut(),
) {
    let mut rng = Rng::new(u64::from(child.id()));
    let caught = format!("is {window} (actor {actor},");
    for _ in 0..20_000 {
        signal(child, rustix::process::Signal::STOP);
        // The stop lands asynchronously: wait until the child is stopped.
        let stat = format!("/proc/{}/stat", child.id());
        while !std::fs::read_to_string(&stat).unwrap().contains(") T") {
            std::thread::yield_now();
        }
        let problems = pool.audit();
        if std::env::var_os("STALL_DEBUG").is_some() {
            eprintln!("{problems:?}");
        }
        if problems.iter().any(|problem| problem.contains(&caught)) {
            return;
        }
        signal(child, rustix::process::Signal::CONT);
        between();
        std::thread::sleep(Duration::from_micros(rng.below(50)));
    }
    panic!("never caught the child with a cell {window}");
}

fn finish(pool: &BufferPool, mut child: Child, buffers: u32) {
    signal(&child, rustix::process::Signal::CONT);
    child.kill().unwrap();
    child.wait().unwrap();
    pool.reclaim_dead();
    while let Ok(frame) = pool.acquire_filled(Wait::NoWait) {
        drop(frame);
    }
    assert_eq!(pool.audit(), Vec::<String>::new());
    assert_eq!(pool.counts().free, buffers, "every buffer came back");
    assert_eq!(pool.audit(), Vec::<String>::new());
}

#[test]
fn a_taker_stopped_inside_its_take_delays_nobody_and_loses_nothing() {
    if role().is_some() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let segment = common::segment_name("stalled-taker");
    let config = PoolConfig::new("stalled-taker").with_capacity(BUFFERS);
    let pool = BufferPool::create_shared(&segment, config, BUFFERS, 64).unwrap();
    let (churner, actor) = child(&segment, "churner");
    stop_inside(&pool, &churner, actor, "Taken", || {});
    // Many laps of the free queue (8 cells) go by with the churner's cell taken.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..200 {
        let held: Vec<_> = std::iter::from_fn(|| pool.acquire_free(Wait::NoWait).ok()).collect();
        assert!(
            held.len() >= BUFFERS as usize - 1,
            "only the stopped take is missing"
        );
        for guard in held {
            let release = Instant::now();
            drop(guard);
            slowest = slowest.max(release.elapsed());
        }
    }
    println!(
        "200 rounds past a stopped taker in {:?}, slowest release {slowest:?}",
        started.elapsed()
    );
    // A release that waits for the stopped taker would take seconds.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    finish(&pool, churner, BUFFERS);
}

#[test]
fn a_subscriber_behind_a_stopped_publishers_reservation_sleeps() {
    if role().is_some() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Room in the port for all the buffers: the publisher always has one to reserve a cell for.
    const FRAMES: u32 = 64;
    let segment = common::segment_name("stalled-reservation");
    let config = PoolConfig::new("stalled-reservation")
        .with_capacity(FRAMES)
        .with_ports(["p"])
        .with_port_depth(FRAMES);
    let pool = BufferPool::create_shared(&segment, config, FRAMES, 64).unwrap();
    let port = pool.port("p").unwrap();
    let subscription = pool.subscribe(port).unwrap();
    let (publisher, actor) = child(&segment, "publisher");
    stop_inside(&pool, &publisher, actor, "Reserved", || {
        while let Ok(frame) = subscription.receive(Wait::NoWait) {
            drop(frame);
        }
    });
    // What was published before the reservation is received; then the port waits at it.
    while let Ok(frame) = subscription.receive(Wait::NoWait) {
        drop(frame);
    }

    let wait = Duration::from_millis(500);
    let cpu = peer::thread_cpu_time();
    let err = subscription.receive(Wait::Timeout(wait)).unwrap_err();
    let blocking_cpu = peer::thread_cpu_time() - cpu;
    assert!(matches!(err, ReceiveError::Timeout { .. }), "{err}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let cpu = peer::process_cpu_time();
    let result =
        runtime.block_on(async { tokio::time::timeout(wait, subscription.receive_async()).await });
    let async_cpu = peer::process_cpu_time() - cpu;
    assert!(result.is_err(), "timed out");
    println!(
        "waiting {wait:?} behind a stopped publisher's reservation: {blocking_cpu:?} of CPU (blocking), {async_cpu:?} (async, all threads)"
    );
    // A wait that spins uses the whole wait in CPU time; one that sleeps, next to nothing.
    assert!(blocking_cpu < wait / 5, "{blocking_cpu:?}");
    assert!(async_cpu < wait / 5, "{async_cpu:?}");
    drop(subscription);
    finish(&pool, publisher, FRAMES);
}
