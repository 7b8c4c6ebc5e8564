//! Async acquire→release against the blocking path, under tokio's current-thread runtime, on a
//! pool with a free buffer (the common case: the future is ready at its first poll).
//!
//! Run: `cargo bench -p buffer-core --bench async_acquire`.

use std::hint::black_box;
use std::time::Instant;

use buffer_core::{BufferPool, PoolConfig, Wait};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("async"), 4, 4096).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("acquire_release_4KiB");
    group.bench_function("sync", |b| {
        b.iter(|| drop(black_box(pool.acquire_free(Wait::NoWait).unwrap())))
    });
    group.bench_function("async_under_tokio", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    drop(black_box(pool.acquire_free_async().await.unwrap()));
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
