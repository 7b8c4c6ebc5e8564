//! Async acquire and port receive under tokio: contention, cancellation, timeouts through
//! tokio's timer, filled buffers flowing from a blocking producer thread to an async consumer,
//! and buffers published by another process reaching an awaiting task. Waiters' re-polls are
//! off throughout, so a lost wake-up fails a test.

mod common;

use std::io::BufReader;
use std::time::{Duration, Instant};

use buffer_core::{AcquireError, BufferPool, PoolConfig, ReceiveError, Wait};
use common::{read_until, role, spawn, wait_exit};

/// The child's entry point; does nothing when run as a test.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    buffer_core::testing::disable_idle_polling();
    let pool = BufferPool::attach(&std::env::var("SEGMENT").unwrap()).unwrap();
    match role.as_str() {
        "holder" => {
            let held = pool.acquire_free(Wait::NoWait).unwrap();
            println!("holding");
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
            // Stay attached: the wake-up must come from the release, not from this process
            // detaching. The test kills it.
            std::thread::sleep(Duration::from_secs(60));
        }
        "publisher" => {
            let view = pool.port("view").unwrap();
            for sequence in 0..PUBLISHED {
                let mut frame = pool
                    .acquire_free(Wait::Timeout(LOST))
                    .expect("the consumer's release wakes the publisher");
                frame.meta_mut().sequence = sequence;
                // Slow enough that the consumer often waits.
                std::thread::sleep(Duration::from_micros(200));
                assert_eq!(frame.publish(&[view]).delivered(), 1);
            }
            pool.close();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Frames the publisher process publishes.
const PUBLISHED: u64 = 200;

/// How long a wake-up may take on a loaded machine before the test calls it lost.
const LOST: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test (with `what` should have woken it) if it is not ready
/// [`LOST`] later. Unlike `tokio::time::timeout`, which polls its future once more when the
/// timer fires, this never lets a future that missed its wake-up finish at the deadline.
async fn woken<F: std::future::Future>(future: F, what: &str) -> F::Output {
    tokio::select! {
        biased;
        () = tokio::time::sleep(LOST) => panic!("a wake-up was lost: {what}, {LOST:?} ago"),
        output = future => output,
    }
}

#[tokio::test]
async fn a_port_receives_what_another_process_publishes_then_sees_the_close() {
    // A lost wake-up must time a wait out, not just delay it by a re-poll.
    buffer_core::testing::disable_idle_polling();
    let segment = format!("async-port-{}", std::process::id());
    // As deep as the pool: the port is never full, so no publication is refused.
    let config = PoolConfig::new("ports")
        .with_ports(["view"])
        .with_port_depth(4);
    let owner = BufferPool::create_shared(&segment, config, 4, 64).unwrap();
    let subscription = owner.subscribe(owner.port("view").unwrap()).unwrap();
    // Nothing published yet: a receive times out, and dropping it loses nothing.
    let waited = tokio::time::timeout(Duration::from_millis(5), subscription.receive_async()).await;
    assert!(waited.is_err());
    let mut child = spawn("child_entry", "publisher", &[("SEGMENT", segment.clone())]);
    let mut expected = 0;
    loop {
        let received = woken(
            subscription.receive_async(),
            "each publication wakes the task",
        )
        .await;
        match received {
            Ok(frame) => {
                assert_eq!(frame.meta().sequence, expected);
                expected += 1;
            }
            Err(ReceiveError::Closed { .. }) => break,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(expected, PUBLISHED);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    assert_eq!(owner.counts().free, 4);
    assert_eq!(owner.audit(), Vec::<String>::new());
}

#[tokio::test]
async fn a_release_in_another_process_wakes_an_awaiting_task() {
    // A lost wake-up must time a wait out, not just delay it by a re-poll.
    buffer_core::testing::disable_idle_polling();
    let segment = format!("async-test-{}", std::process::id());
    let owner =
        BufferPool::create_shared(&segment, PoolConfig::new("x").with_capacity(1), 1, 64).unwrap();
    let mut child = spawn("child_entry", "holder", &[("SEGMENT", segment.clone())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "holding");
    assert_eq!(owner.counts().free, 0);
    let started = Instant::now();
    let frame = woken(
        owner.acquire_free_async(),
        "the other process's release wakes the task",
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "it waited for the release"
    );
    drop(frame);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_contending_for_few_buffers_all_complete() {
    // A lost wake-up must time a wait out, not just delay it by a re-poll.
    buffer_core::testing::disable_idle_polling();
    const TASKS: u64 = 64;
    const ROUNDS: u64 = 20;
    let owner = BufferPool::with_heap_buffers(PoolConfig::new("contended"), 2, 64).unwrap();
    let pool: BufferPool = (*owner).clone();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let mut frame = pool.acquire_free_async().await.unwrap();
                    frame.meta_mut().sequence = task * ROUNDS + round;
                    tokio::task::yield_now().await;
                    drop(frame);
                }
            })
        })
        .collect();
    for task in tasks {
        woken(task, "releases wake the waiting tasks")
            .await
            .unwrap();
    }
    assert_eq!(pool.counts().free, 2);
    assert_eq!(pool.stats().acquisitions, TASKS * ROUNDS);
    assert_eq!(pool.audit(), Vec::<String>::new());
}

#[tokio::test]
async fn a_timeout_fires_and_dropped_futures_lose_no_buffer() {
    // A lost wake-up must time a wait out, not just delay it by a re-poll.
    buffer_core::testing::disable_idle_polling();
    let owner = BufferPool::with_heap_buffers(PoolConfig::new("cancel"), 2, 64).unwrap();
    let held = owner.acquire_free(Wait::NoWait).unwrap();
    let other = owner.acquire_free(Wait::NoWait).unwrap();
    for _ in 0..10 {
        let waited =
            tokio::time::timeout(Duration::from_millis(5), owner.acquire_free_async()).await;
        assert!(waited.is_err(), "no buffer is free: the timer fires");
    }
    // A release races with futures being dropped: the buffer stays in the pool.
    let pending = owner.acquire_free_async();
    drop(held);
    drop(pending);
    drop(other);
    assert_eq!(owner.counts().free, 2);
    let both = (
        owner.acquire_free_async().await.unwrap(),
        owner.acquire_free_async().await.unwrap(),
    );
    drop(both);
    assert_eq!(owner.audit(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_consumer_reads_what_a_blocking_thread_submits_then_sees_the_close() {
    // A lost wake-up must time a wait out, not just delay it by a re-poll.
    buffer_core::testing::disable_idle_polling();
    const FRAMES: u64 = 500;
    let owner = BufferPool::with_heap_buffers(PoolConfig::new("filled"), 3, 64).unwrap();
    let producer_pool: BufferPool = (*owner).clone();
    let producer = std::thread::spawn(move || {
        for sequence in 0..FRAMES {
            let mut frame = producer_pool
                .acquire_free(Wait::Timeout(LOST))
                .expect("a consumer's release wakes the producer");
            frame.meta_mut().sequence = sequence;
            frame.submit();
        }
        producer_pool.close();
    });
    let mut expected = 0;
    loop {
        match woken(owner.acquire_filled_async(), "a submit wakes the consumer").await {
            Ok(frame) => {
                assert_eq!(frame.meta().sequence, expected);
                expected += 1;
            }
            Err(AcquireError::Closed { .. }) => break,
            Err(other) => panic!("{other}"),
        }
    }
    producer.join().unwrap();
    assert_eq!(expected, FRAMES);
    assert!(matches!(
        owner.acquire_free_async().await,
        Err(AcquireError::Closed { .. })
    ));
}
