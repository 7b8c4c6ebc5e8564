//! Kill torture: a child process acquires, submits, publishes, detaches ids, redeems and reads
//! in a random pattern and is killed with SIGKILL at a random moment; once its death is
//! reclaimed, every buffer must be in exactly one place and none lost.
//!
//! Rounds: `BUFPOOL_KILL_ROUNDS` (default 200; `cargo xtask stress` runs 10,000).

mod common;

use std::io::BufReader;
use std::time::Duration;

use buffer_core::{BufferPool, PoolConfig, SlotState, Wait};
use common::{Rng, read_until, role, spawn};

const BUFFERS: u32 = 8;

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "chaos");
    let pool = BufferPool::attach(&std::env::var("SEGMENT").unwrap()).unwrap();
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    chaos(&pool, seed);
}

/// Random operations for ever (until killed).
fn chaos(pool: &BufferPool, seed: u64) {
    let mut rng = Rng::new(seed);
    let port = pool.port("p").unwrap();
    let subscription = pool.subscribe(port).unwrap();
    let mut writing = Vec::new();
    let mut reading = Vec::new();
    let mut received = Vec::new();
    let mut write_ids = Vec::new();
    let mut read_ids = Vec::new();
    println!("ready");
    loop {
        match rng.below(10) {
            0 | 1 => {
                if let Ok(guard) = pool.acquire_free(Wait::NoWait) {
                    writing.push(guard);
                }
            }
            2 => {
                if let Some(guard) = writing.pop() {
                    match rng.below(4) {
                        0 => guard.submit(),
                        1 => drop(guard.publish(&[port])),
                        2 => write_ids.push(guard.into_id()),
                        _ => drop(guard),
                    }
                }
            }
            3 => {
                if let Ok(guard) = pool.acquire_filled(Wait::NoWait) {
                    if rng.below(2) == 0 {
                        read_ids.push(guard.into_id());
                    } else {
                        reading.push(guard);
                    }
                }
            }
            4 => drop(reading.pop()),
            5 => {
                if let Some(id) = write_ids.pop() {
                    writing.push(pool.redeem_write(id).unwrap());
                }
            }
            6 => {
                if let Some(id) = read_ids.pop() {
                    reading.push(pool.redeem_read(id).unwrap());
                }
            }
            7 => {
                if let Ok(guard) = subscription.receive(Wait::NoWait) {
                    received.push(guard);
                }
            }
            8 => drop(received.pop()),
            _ => {
                if let Some(mut guard) = writing.pop() {
                    guard.as_mut_slice().unwrap().fill(rng.next() as u8);
                    writing.push(guard);
                }
            }
        }
    }
}

#[test]
fn buffers_of_processes_killed_at_random_moments_all_come_back() {
    if role().is_some() {
        return;
    }
    let rounds: u64 = std::env::var("BUFPOOL_KILL_ROUNDS")
        .ok()
        .map_or(200, |rounds| rounds.parse().unwrap());
    let segment = common::segment_name("kill");
    let config = PoolConfig::new("kill")
        .with_capacity(BUFFERS)
        .with_ports(["p"])
        .with_port_depth(4);
    let pool = BufferPool::create_shared(&segment, config, BUFFERS, 256).unwrap();
    let mut rng = Rng::new(0x5eed ^ u64::from(std::process::id()));
    let mut reclaimed = 0;
    for round in 0..rounds {
        let seed = rng.next();
        let mut child = spawn(
            "child_entry",
            "chaos",
            &[("SEGMENT", segment.clone()), ("SEED", seed.to_string())],
        );
        let mut out = BufReader::new(child.stdout.take().unwrap());
        read_until(&mut out, "ready");
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reclaimed += pool.reclaim_dead();
        let problems = pool.audit();
        assert!(
            problems.is_empty(),
            "round {round} (seed {seed}): {problems:#?}\n{:#?}",
            pool.buffers()
        );
        for buffer in pool.buffers() {
            assert!(
                matches!(buffer.state, Some(SlotState::Free | SlotState::Filled)),
                "round {round} (seed {seed}): buffer {} left {:?} by a dead process",
                buffer.id.slot,
                buffer.state
            );
        }
        assert_eq!(
            pool.processes().len(),
            1,
            "round {round}: the dead child's entry is freed"
        );
        // Start the next round from a full free queue.
        while let Ok(frame) = pool.acquire_filled(Wait::NoWait) {
            drop(frame);
        }
        assert_eq!(pool.counts().free, BUFFERS, "round {round} (seed {seed})");
    }
    println!("{rounds} kills, {reclaimed} buffers reclaimed");
    assert_eq!(pool.stats().reclaimed, reclaimed as u64);
}
