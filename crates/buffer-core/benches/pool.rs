//! Our pool against the usual alternatives, side by side, 4 KiB and 8 MiB buffers:
//!
//! - `acquire_release`: take a free buffer and give it back, one thread;
//! - `full_cycle`: acquire free → submit → acquire filled → release, one thread (peers with two
//!   queues: a free one and a filled one);
//! - `spsc`: one producer thread and one consumer thread passing every buffer through the
//!   filled queue and back (time per frame).
//!
//! `bufpool_no_hold_times` is our pool with `PoolConfig::with_hold_times(false)`: no clock read
//! when acquiring. `bufpool_shared` is our pool in a shared-memory segment
//! (`BufferPool::create_shared`), the same code on a mapping another process could attach to.
//!
//! Peers: a fresh `Vec<u8>` per frame (allocated, every page touched), a `Mutex<Vec<Box<[u8]>>>`
//! pool, a `crossbeam_queue::ArrayQueue` pool, `lockfree-object-pool` and `object-pool`.
//! Run: `cargo bench -p buffer-core --bench pool`.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use buffer_core::{BufferPool, PoolConfig, PoolOwner, Wait};
use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;

const BUFFERS: usize = 8;
const SIZES: [(usize, &str); 2] = [(4 << 10, "4KiB"), (8 << 20, "8MiB")];
const PAGE: usize = 4096;

fn our_pool(size: usize) -> PoolOwner {
    BufferPool::with_heap_buffers(PoolConfig::new("bench"), BUFFERS as u32, size).unwrap()
}

/// Our pool without hold times: no clock read when acquiring.
fn our_pool_without_hold_times(size: usize) -> PoolOwner {
    let config = PoolConfig::new("bench").with_hold_times(false);
    BufferPool::with_heap_buffers(config, BUFFERS as u32, size).unwrap()
}

/// Our pool in a shared-memory segment, as several processes would use it.
fn our_shared_pool(size: usize) -> PoolOwner {
    let segment = format!("bench-{}-{size}", std::process::id());
    BufferPool::create_shared(&segment, PoolConfig::new("bench"), BUFFERS as u32, size).unwrap()
}

/// The configurations of our pool, named for the report.
fn our_pools(size: usize) -> [(&'static str, PoolOwner); 3] {
    [
        ("bufpool", our_pool(size)),
        ("bufpool_no_hold_times", our_pool_without_hold_times(size)),
        ("bufpool_shared", our_shared_pool(size)),
    ]
}

fn boxes(size: usize) -> impl Iterator<Item = Box<[u8]>> {
    (0..BUFFERS).map(move |_| vec![0u8; size].into_boxed_slice())
}

fn array_queue(size: usize) -> ArrayQueue<Box<[u8]>> {
    let queue = ArrayQueue::new(BUFFERS);
    for buffer in boxes(size) {
        queue.push(buffer).unwrap();
    }
    queue
}

/// A new frame the naive way: allocate it (zeroed, as `vec!` does: `calloc`, which maps fresh
/// pages for large sizes) and touch every page, as writing a frame would.
fn fresh_vec(size: usize) -> Vec<u8> {
    let mut frame = vec![0u8; size];
    for page in frame.chunks_mut(PAGE) {
        page[0] = 1;
    }
    frame
}

fn acquire_release(c: &mut Criterion) {
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("acquire_release/{label}"));
        for (name, pool) in our_pools(size) {
            group.bench_function(name, |b| {
                b.iter(|| black_box(pool.acquire_free(Wait::NoWait).unwrap()))
            });
        }
        let queue = array_queue(size);
        group.bench_function("crossbeam_array_queue", |b| {
            b.iter(|| queue.push(black_box(queue.pop().unwrap())).unwrap())
        });
        let mutex = Mutex::new(boxes(size).collect::<Vec<_>>());
        group.bench_function("mutex_vec", |b| {
            b.iter(|| {
                let buffer = mutex.lock().unwrap().pop().unwrap();
                mutex.lock().unwrap().push(black_box(buffer));
            })
        });
        let lockfree = lockfree_object_pool::LinearObjectPool::new(
            move || vec![0u8; size].into_boxed_slice(),
            |_| {},
        );
        let warm: Vec<_> = (0..BUFFERS).map(|_| lockfree.pull()).collect();
        drop(warm);
        group.bench_function("lockfree_object_pool", |b| {
            b.iter(|| black_box(lockfree.pull()))
        });
        let object_pool =
            object_pool::Pool::new(BUFFERS, move || vec![0u8; size].into_boxed_slice());
        group.bench_function("object_pool", |b| {
            b.iter(|| black_box(object_pool.try_pull().unwrap()))
        });
        group.bench_function("fresh_vec", |b| b.iter(|| black_box(fresh_vec(size))));
        group.finish();
    }
}

fn full_cycle(c: &mut Criterion) {
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("full_cycle/{label}"));
        for (name, pool) in our_pools(size) {
            group.bench_function(name, |b| {
                b.iter(|| {
                    pool.acquire_free(Wait::NoWait).unwrap().submit();
                    drop(black_box(pool.acquire_filled(Wait::NoWait).unwrap()));
                })
            });
        }
        let (free, filled) = (array_queue(size), ArrayQueue::new(BUFFERS));
        group.bench_function("crossbeam_array_queue", |b| {
            b.iter(|| {
                filled.push(free.pop().unwrap()).unwrap();
                free.push(black_box(filled.pop().unwrap())).unwrap();
            })
        });
        let (free, filled) = (
            Mutex::new(boxes(size).collect::<Vec<_>>()),
            Mutex::new(Vec::new()),
        );
        group.bench_function("mutex_vec", |b| {
            b.iter(|| {
                let buffer = free.lock().unwrap().pop().unwrap();
                filled.lock().unwrap().push(buffer);
                let buffer = filled.lock().unwrap().pop().unwrap();
                free.lock().unwrap().push(black_box(buffer));
            })
        });
        group.finish();
    }
}

/// Runs `produce` on this thread and `consume` on another, each `frames` times, and returns the
/// time until the producer finished (the consumer is at most a pool's worth of frames behind).
fn handoff(frames: u64, produce: impl Fn() + Sync, consume: impl Fn() + Sync) -> Duration {
    std::thread::scope(|s| {
        let started = Instant::now();
        s.spawn(|| (0..frames).for_each(|_| consume()));
        (0..frames).for_each(|_| produce());
        started
    })
    .elapsed()
}

/// Time per frame passed from a producer thread to a consumer thread and back.
fn spsc(c: &mut Criterion) {
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("spsc/{label}"));
        let pool = our_pool(size);
        group.bench_function("bufpool", |b| {
            b.iter_custom(|frames| {
                handoff(
                    frames,
                    || pool.acquire_free(Wait::Forever).unwrap().submit(),
                    || drop(black_box(pool.acquire_filled(Wait::Forever).unwrap())),
                )
            })
        });
        let (free, filled) = (array_queue(size), ArrayQueue::new(BUFFERS));
        group.bench_function("crossbeam_array_queue", |b| {
            b.iter_custom(|frames| {
                handoff(
                    frames,
                    || filled.push(spin_pop(&free)).unwrap(),
                    || free.push(black_box(spin_pop(&filled))).unwrap(),
                )
            })
        });
        let (free, filled) = (
            Mutex::new(boxes(size).collect::<Vec<_>>()),
            Mutex::new(Vec::new()),
        );
        group.bench_function("mutex_vec", |b| {
            b.iter_custom(|frames| {
                handoff(
                    frames,
                    || {
                        let buffer = spin_lock_pop(&free);
                        filled.lock().unwrap().push(buffer);
                    },
                    || {
                        let buffer = spin_lock_pop(&filled);
                        free.lock().unwrap().push(black_box(buffer));
                    },
                )
            })
        });
        group.finish();
    }
}

/// The peers have no blocking wait: their threads spin (yielding) until a buffer is there.
fn spin_pop<T>(queue: &ArrayQueue<T>) -> T {
    loop {
        if let Some(value) = queue.pop() {
            return value;
        }
        std::thread::yield_now();
    }
}

fn spin_lock_pop<T>(stack: &Mutex<Vec<T>>) -> T {
    loop {
        if let Some(value) = stack.lock().unwrap().pop() {
            return value;
        }
        std::thread::yield_now();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = acquire_release, full_cycle, spsc
}
criterion_main!(benches);
