//! Pools shared between real processes: the test binary re-runs itself as the other process.

mod common;

use std::io::{BufReader, Write};
use std::time::Duration;

use buffer_core::{BufferId, BufferPool, PoolConfig, ReceiveError, Wait};
use common::{checksum, fill, read_until, role, spawn, wait_exit};

const FRAMES: u64 = 10_000;
const FRAME_LEN: usize = 4096;
const LIMIT: Duration = Duration::from_secs(120);

/// The child processes' entry point; does nothing when run as a test.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let segment = std::env::var("SEGMENT").unwrap();
    let pool = BufferPool::attach(&segment).unwrap();
    match role.as_str() {
        "consumer" => consume_filled(&pool),
        "redeemer" => redeem_ids(&pool),
        "subscriber" => {
            let port = pool.port(&std::env::var("PORT").unwrap()).unwrap();
            receive_port(&pool, port)
        }
        "hoarder" => hoard(&pool),
        other => panic!("unknown role {other}"),
    }
}

/// Takes every free buffer (as guards and as detached ids), says so, and waits to be killed.
fn hoard(pool: &BufferPool) {
    let mut guards = Vec::new();
    let mut ids = Vec::new();
    while let Ok(guard) = pool.acquire_free(Wait::NoWait) {
        if guards.len() % 2 == 0 {
            guards.push(guard);
        } else {
            ids.push(guard.into_id());
        }
    }
    println!("holding {}", guards.len() + ids.len());
    std::thread::sleep(Duration::from_secs(600));
}

/// Reads filled frames until the pool is closed and drained; checks every payload.
fn consume_filled(pool: &BufferPool) {
    let (mut frames, mut bad, mut next) = (0u64, 0u64, 0u64);
    let mut expected = vec![0u8; FRAME_LEN];
    while let Ok(frame) = pool.acquire_filled(Wait::Forever) {
        let sequence = frame.meta().sequence;
        fill(&mut expected, sequence);
        if sequence != next || checksum(frame.as_slice().unwrap()) != checksum(&expected) {
            bad += 1;
        }
        next = sequence + 1;
        frames += 1;
    }
    println!("done frames={frames} bad={bad}");
}

/// Reads ids from stdin, one per line, redeems each as a write guard and checks its payload.
fn redeem_ids(pool: &BufferPool) {
    let (mut frames, mut bad) = (0u64, 0u64);
    let mut expected = vec![0u8; FRAME_LEN];
    for line in std::io::stdin().lines() {
        let bits: u128 = line.unwrap().trim().parse().unwrap();
        let mut guard = pool.redeem_write(BufferId::from_bits(bits)).unwrap();
        let sequence = guard.meta().sequence;
        fill(&mut expected, sequence);
        if guard.as_mut_slice().unwrap() != expected.as_slice() {
            bad += 1;
        }
        frames += 1;
        drop(guard); // back to the free queue, in the other process's pool
    }
    println!("done frames={frames} bad={bad}");
}

/// Subscribes to `port`, says so, and receives until the pool is closed and the port empty.
fn receive_port(pool: &BufferPool, port: buffer_core::Port) {
    let subscription = pool.subscribe(port).unwrap();
    println!("ready");
    let (mut frames, mut bad, mut next) = (0u64, 0u64, 0u64);
    let mut expected = vec![0u8; FRAME_LEN];
    loop {
        match subscription.receive(Wait::Forever) {
            Ok(frame) => {
                let sequence = frame.meta().sequence;
                fill(&mut expected, sequence);
                if sequence != next || frame.as_slice().unwrap() != expected.as_slice() {
                    bad += 1;
                }
                next = sequence + 1;
                frames += 1;
            }
            Err(ReceiveError::Closed { .. }) => break,
            Err(err) => panic!("{err}"),
        }
    }
    println!("done frames={frames} bad={bad}");
}

fn shared_pool(test: &str, config: PoolConfig, count: u32) -> (buffer_core::PoolOwner, String) {
    let segment = common::segment_name(test);
    let pool = BufferPool::create_shared(&segment, config, count, FRAME_LEN).unwrap();
    (pool, segment)
}

fn produce(pool: &BufferPool, sequence: u64) -> buffer_core::WriteGuard<'_> {
    let mut frame = pool.acquire_free(Wait::Timeout(LIMIT)).unwrap();
    fill(frame.as_mut_slice().unwrap(), sequence);
    frame.meta_mut().sequence = sequence;
    frame
}

#[test]
fn a_consumer_process_receives_10000_frames_intact() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = shared_pool("filled", PoolConfig::new("filled").with_capacity(8), 8);
    let mut child = spawn("child_entry", "consumer", &[("SEGMENT", segment)]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for sequence in 0..FRAMES {
        produce(&pool, sequence).submit();
    }
    pool.close();
    assert_eq!(
        read_until(&mut out, "done "),
        format!("frames={FRAMES} bad=0")
    );
    assert!(wait_exit(&mut child, LIMIT).success());
    let counts = pool.counts();
    assert_eq!(
        (counts.free, counts.total),
        (8, 8),
        "every buffer back: {counts}"
    );
    assert_eq!(pool.audit(), Vec::<String>::new());
    assert_eq!(pool.processes().len(), 1, "the consumer detached");
}

#[test]
fn ids_sent_over_a_pipe_are_redeemed_by_another_process() {
    if role().is_some() {
        return;
    }
    const IDS: u64 = 2_000;
    let (pool, segment) = shared_pool("ids", PoolConfig::new("ids").with_capacity(4), 4);
    let mut child = spawn("child_entry", "redeemer", &[("SEGMENT", segment)]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    for sequence in 0..IDS {
        let id = produce(&pool, sequence).into_id();
        writeln!(stdin, "{}", id.to_bits()).unwrap();
    }
    drop(stdin);
    assert_eq!(read_until(&mut out, "done "), format!("frames={IDS} bad=0"));
    assert!(wait_exit(&mut child, LIMIT).success());
    assert_eq!(pool.counts().free, 4);
    assert_eq!(pool.audit(), Vec::<String>::new());
}

#[test]
fn fan_out_reaches_three_consumer_processes_without_copies() {
    if role().is_some() {
        return;
    }
    let ports = ["c0", "c1", "c2"];
    // As many buffers as a port's depth: a port can never be full, so none refuses a frame.
    let config = PoolConfig::new("fanout")
        .with_capacity(4)
        .with_ports(ports)
        .with_port_depth(4);
    let (pool, segment) = shared_pool("fanout", config, 4);
    let mut children: Vec<_> = ports
        .iter()
        .map(|port| {
            let mut child = spawn(
                "child_entry",
                "subscriber",
                &[("SEGMENT", segment.clone()), ("PORT", port.to_string())],
            );
            let mut out = BufReader::new(child.stdout.take().unwrap());
            read_until(&mut out, "ready");
            (child, out)
        })
        .collect();
    let targets: Vec<_> = ports.iter().map(|p| pool.port(p).unwrap()).collect();
    for sequence in 0..FRAMES {
        let published = produce(&pool, sequence).publish(&targets);
        assert_eq!(published.delivered(), 3, "frame {sequence}");
    }
    pool.close();
    for (child, out) in &mut children {
        assert_eq!(read_until(out, "done "), format!("frames={FRAMES} bad=0"));
        assert!(wait_exit(child, LIMIT).success());
    }
    assert_eq!(pool.counts().free, 4, "every buffer back in the free queue");
    assert_eq!(pool.audit(), Vec::<String>::new());
    let delivered: Vec<u64> = pool.port_infos().iter().map(|p| p.delivered).collect();
    assert_eq!(delivered, vec![FRAMES; 3]);
}

/// A child that takes every buffer, then dies.
fn killed_hoarder(segment: &str) {
    let mut child = spawn("child_entry", "hoarder", &[("SEGMENT", segment.to_owned())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(read_until(&mut out, "holding "), "4");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_waiting_acquire_reclaims_what_a_dead_process_held() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = shared_pool("wait-reclaim", PoolConfig::new("w").with_capacity(4), 4);
    let mut child = spawn("child_entry", "hoarder", &[("SEGMENT", segment)]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(read_until(&mut out, "holding "), "4");
    let err = pool
        .acquire_free(Wait::Timeout(Duration::from_millis(50)))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("4 held by pid {}", child.id())),
        "{err}"
    );
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        child.kill().unwrap();
        child.wait().unwrap();
    });
    // No explicit reclaim: the waiting acquisition finds the dead holder itself.
    let frame = pool
        .acquire_free(Wait::Timeout(Duration::from_secs(10)))
        .unwrap();
    drop(frame);
    killer.join().unwrap();
    assert_eq!(pool.counts().free, 4);
    assert_eq!(pool.stats().reclaimed, 4);
    assert_eq!(pool.audit(), Vec::<String>::new());
}

#[test]
fn attaching_reclaims_what_a_dead_process_held() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = shared_pool("attach-reclaim", PoolConfig::new("a").with_capacity(4), 4);
    killed_hoarder(&segment);
    assert_eq!(pool.counts().free, 0, "nothing reclaimed yet");
    let attached = BufferPool::attach(&segment).unwrap();
    assert_eq!(
        attached.counts().free,
        4,
        "attaching reclaimed the dead process's buffers"
    );
    assert_eq!(pool.audit(), Vec::<String>::new());
}

#[test]
fn detaching_gives_back_ids_nobody_redeemed() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = shared_pool("detach", PoolConfig::new("d").with_capacity(2), 2);
    let attached = BufferPool::attach(&segment).unwrap();
    let id = attached.acquire_free(Wait::NoWait).unwrap().into_id();
    assert_eq!(pool.counts().free, 1);
    drop(attached);
    assert_eq!(
        pool.counts().free,
        2,
        "the detached id went back with its process's handle"
    );
    assert!(pool.redeem_write(id).is_err(), "and the id is stale");
}
