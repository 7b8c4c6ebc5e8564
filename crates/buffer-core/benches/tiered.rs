//! A tiered pool against a single-class pool and against `Vec<u8>` allocation, for the same
//! mixed distribution of request sizes (64 B … 16 KiB, packet-like):
//!
//! - `tiered`: `TieredPool::acquire(size)` → release, five classes 512 B … 16 KiB;
//! - `preselected`: the same five class pools, each request's class looked up in advance (the
//!   same pools and memory without the choice: `tiered` minus this is the choice's cost);
//! - `single_class`: `BufferPool::acquire_free` → release on one 16 KiB class (the same work
//!   without the class choice: the difference is the cost of choosing);
//! - `vec`: `vec![0u8; size]` → drop (every request's bytes allocated and zeroed, as a pool's
//!   user gets its bytes ready to write).
//!
//! Run: `cargo bench -p buffer-core --bench tiered`.

use std::hint::black_box;

use buffer_core::{BufferPool, PoolConfig, SizeClass, TieredPool, Wait, WhenEmpty};
use criterion::{Criterion, criterion_group, criterion_main};

/// Request sizes cycled through: a fixed spread over every class.
const REQUESTS: [usize; 16] = [
    64, 700, 1500, 200, 9000, 512, 3000, 16384, 100, 1400, 4096, 40, 12000, 2048, 600, 8000,
];

fn bench(c: &mut Criterion) {
    let classes = [512, 2048, 4096, 8192, 16384].map(|size| SizeClass::new(size, 4));
    let tiered = TieredPool::with_heap_buffers("bench", &classes, WhenEmpty::Wait).unwrap();
    let single = BufferPool::with_heap_buffers(PoolConfig::new("single"), 4, 16384).unwrap();
    let mut group = c.benchmark_group("mixed_sizes");
    group.bench_function("tiered", |b| {
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % REQUESTS.len();
            drop(black_box(
                tiered
                    .acquire(black_box(REQUESTS[next]), Wait::NoWait)
                    .unwrap(),
            ));
        })
    });
    // Each request's class pool, looked up before timing.
    let pools = REQUESTS.map(|size| {
        let class = tiered
            .class_sizes()
            .iter()
            .find(|&&class| class >= size)
            .unwrap();
        tiered.class(*class).unwrap()
    });
    group.bench_function("preselected", |b| {
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % REQUESTS.len();
            drop(black_box(
                black_box(pools[next]).acquire_free(Wait::NoWait).unwrap(),
            ));
        })
    });
    group.bench_function("single_class", |b| {
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % REQUESTS.len();
            black_box(REQUESTS[next]);
            drop(black_box(single.acquire_free(Wait::NoWait).unwrap()));
        })
    });
    group.bench_function("vec", |b| {
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % REQUESTS.len();
            drop(black_box(vec![0u8; black_box(REQUESTS[next])]));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
