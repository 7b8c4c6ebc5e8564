//! The same pool code on private memory and on a shared-memory segment, measured interleaved
//! (A, B, A, B, ...) so that drift on a shared, noisy machine hits both alike; prints the median
//! of the per-round ratios. Run: `cargo bench -p buffer-core --bench shared_vs_private`.

use std::hint::black_box;
use std::time::Instant;

use buffer_core::{BufferPool, PoolConfig, PoolOwner, Wait};

const BUFFERS: u32 = 8;
const SIZE: usize = 4096;
const OPS: u32 = 200_000;
const ROUNDS: usize = 41;

/// Nanoseconds per acquire→release.
fn acquire_release(pool: &PoolOwner) -> f64 {
    let started = Instant::now();
    for _ in 0..OPS {
        drop(black_box(pool.acquire_free(Wait::NoWait).unwrap()));
    }
    started.elapsed().as_nanos() as f64 / f64::from(OPS)
}

/// Nanoseconds per acquire free → submit → acquire filled → release.
fn full_cycle(pool: &PoolOwner) -> f64 {
    let started = Instant::now();
    for _ in 0..OPS {
        pool.acquire_free(Wait::NoWait).unwrap().submit();
        drop(black_box(pool.acquire_filled(Wait::NoWait).unwrap()));
    }
    started.elapsed().as_nanos() as f64 / f64::from(OPS)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; any other run (e.g. `cargo test --benches`) does one round.
    let rounds = if std::env::args().any(|arg| arg == "--bench") {
        ROUNDS
    } else {
        1
    };
    let private = BufferPool::with_heap_buffers(PoolConfig::new("private"), BUFFERS, SIZE).unwrap();
    let segment = format!("bench-shared-vs-private-{}", std::process::id());
    let shared =
        BufferPool::create_shared(&segment, PoolConfig::new("shared"), BUFFERS, SIZE).unwrap();
    println!("{rounds} interleaved rounds of {OPS} operations, {BUFFERS} buffers of {SIZE} bytes");
    for (name, op) in [
        ("acquire_release", acquire_release as fn(&PoolOwner) -> f64),
        ("full_cycle", full_cycle),
    ] {
        let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let p = op(&private);
            let s = op(&shared);
            a.push(p);
            b.push(s);
            ratios.push(s / p);
        }
        println!(
            "{name:<16} private {:6.2} ns   shared {:6.2} ns   shared/private (median of rounds) {:.3}",
            median(&mut a),
            median(&mut b),
            median(&mut ratios)
        );
    }
}
