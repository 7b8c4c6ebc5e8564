//! Blocking acquisition: wake-ups on release, timeouts, and close waking every waiter.
//!
//! Every test turns the waiters' 100 ms re-poll off first ([`no_idle_polling`]): a wake-up that
//! is lost then makes the wait run into its (long) timeout and the test fail, instead of only
//! delaying it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use buffer_core::{AcquireError, BufferPool, PoolConfig, Wait};

/// Long enough for any wake-up to arrive on a loaded machine; short enough to fail, not hang.
const LOST: Duration = Duration::from_secs(10);

/// Waiters in this test binary sleep until woken: no re-poll hides a lost wake-up.
fn no_idle_polling() {
    buffer_core::testing::disable_idle_polling();
}

/// Runs `waits` (which waits with [`Wait::Forever`]) on a thread while this thread runs
/// `wakes`, and returns what `waits` returned. If `waits` has not returned [`LOST`] later, a
/// wake-up was lost: the pool is closed, which ends every wait, and the test fails. (A bounded
/// wait would not do: one that times out still takes the buffer it finds then, so a lost
/// wake-up would only be late.)
fn woken<T: Send>(pool: &BufferPool, waits: impl FnOnce() -> T + Send, wakes: impl FnOnce()) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let waiter = s.spawn(move || {
            let result = waits();
            let _ = done.send(());
            result
        });
        wakes();
        let lost = finished.recv_timeout(LOST).is_err();
        if lost {
            pool.close();
        }
        let result = waiter.join();
        assert!(
            !lost,
            "a wake-up was lost: the waiter still slept {LOST:?} later"
        );
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[test]
fn a_waiter_wakes_when_a_buffer_is_released() {
    no_idle_polling();
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("wake"), 1, 8).unwrap();
    let held = pool.acquire_free(Wait::NoWait).unwrap();
    let slot = woken(
        &pool,
        || pool.acquire_free(Wait::Forever).map(|g| g.id().slot),
        || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        },
    );
    assert_eq!(slot.unwrap(), 0);
}

#[test]
fn a_consumer_wakes_when_a_buffer_is_submitted() {
    no_idle_polling();
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("fill"), 1, 8).unwrap();
    let sequence = woken(
        &pool,
        || {
            pool.acquire_filled(Wait::Forever)
                .map(|g| g.meta().sequence)
        },
        || {
            std::thread::sleep(Duration::from_millis(50));
            let mut w = pool.acquire_free(Wait::NoWait).unwrap();
            w.meta_mut().sequence = 77;
            w.submit();
        },
    );
    assert_eq!(sequence.unwrap(), 77);
}

#[test]
fn a_timeout_returns_an_error_after_at_least_the_timeout() {
    no_idle_polling();
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("slow"), 1, 8).unwrap();
    let _held = pool.acquire_free(Wait::NoWait).unwrap();
    let timeout = Duration::from_millis(80);
    let start = Instant::now();
    let err = pool.acquire_free(Wait::Timeout(timeout)).unwrap_err();
    assert!(start.elapsed() >= timeout);
    assert!(
        matches!(err, AcquireError::Timeout { waited, .. } if waited == timeout),
        "{err}"
    );
    assert!(err.to_string().contains("1 in use"), "{err}");
    let me = std::process::id();
    let named = format!("1 held by pid {me} (the oldest for ");
    assert!(err.to_string().contains(&named), "{err}");
    let holders = pool.holders().0;
    assert_eq!(
        (holders.len(), holders[0].pid, holders[0].buffers),
        (1, me, 1)
    );
    // Held since before the 80 ms wait (the clock's resolution is a few ms).
    let longest = holders[0]
        .longest
        .expect("hold times are recorded by default");
    assert!(longest >= Duration::from_millis(60), "{:?}", holders[0]);
    assert_eq!((pool.stats().waits, pool.stats().timeouts), (1, 1));
}

#[test]
fn close_wakes_every_waiter_with_an_error() {
    no_idle_polling();
    const WAITERS: u32 = 6;
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("close"), 1, 8).unwrap();
    let _held = pool.acquire_free(Wait::NoWait).unwrap();
    let closed = AtomicU32::new(0);
    std::thread::scope(|s| {
        for i in 0..WAITERS {
            let (pool, closed) = (&pool, &closed);
            s.spawn(move || {
                let result = if i % 2 == 0 {
                    pool.acquire_free(Wait::Forever).map(drop)
                } else {
                    pool.acquire_filled(Wait::Forever).map(drop)
                };
                if matches!(result, Err(AcquireError::Closed { .. })) {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        pool.close();
    });
    assert_eq!(closed.load(Ordering::SeqCst), WAITERS);
}

#[test]
fn consumers_drain_filled_buffers_after_close() {
    no_idle_polling();
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("drain"), 2, 8).unwrap();
    pool.acquire_free(Wait::NoWait).unwrap().submit();
    pool.close();
    assert!(matches!(
        pool.acquire_free(Wait::NoWait),
        Err(AcquireError::Closed { .. })
    ));
    drop(pool.acquire_filled(Wait::Forever).unwrap());
    assert!(matches!(
        pool.acquire_filled(Wait::Forever),
        Err(AcquireError::Closed { .. })
    ));
}

#[test]
fn many_threads_contending_for_few_buffers_all_finish() {
    no_idle_polling();
    const THREADS: usize = 8;
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 2_000 };
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("contend"), 2, 64).unwrap();
    let contend = || {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let pool = &pool;
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        if t % 2 == 0 {
                            let mut w = pool.acquire_free(Wait::Forever).unwrap();
                            w.as_mut_slice().unwrap().fill(t as u8);
                            w.submit();
                        } else {
                            let r = pool.acquire_filled(Wait::Forever).unwrap();
                            let data = r.as_slice().unwrap();
                            assert!(data.iter().all(|&b| b == data[0]), "torn frame");
                        }
                    }
                });
            }
        })
    };
    woken(&pool, contend, || {});
    let counts = pool.counts();
    assert_eq!((counts.free, counts.filled, counts.in_use), (2, 0, 0));
}

#[test]
fn a_subscriber_wakes_when_a_buffer_is_published_to_its_port() {
    no_idle_polling();
    let pool =
        BufferPool::with_heap_buffers(PoolConfig::new("port").with_ports(["p"]), 1, 8).unwrap();
    let port = pool.port("p").unwrap();
    let subscription = pool.subscribe(port).unwrap();
    let sequence = woken(
        &pool,
        || {
            subscription
                .receive(Wait::Forever)
                .map(|g| g.meta().sequence)
        },
        || {
            std::thread::sleep(Duration::from_millis(50));
            let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
            frame.meta_mut().sequence = 5;
            assert_eq!(frame.publish(&[port]).delivered(), 1);
        },
    );
    assert_eq!(sequence.unwrap(), 5);
}
