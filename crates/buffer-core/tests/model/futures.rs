//! The futures ([`BufferPool::acquire_free_async`], [`BufferPool::acquire_filled_async`],
//! [`Subscription::receive_async`]) against an exact model, polled by hand with counting
//! wakers beside the blocking calls.
//!
//! The model (the one of `ports.rs`, with one port) predicts each poll: `Ready` with exactly
//! the buffer the queue's FIFO order says if one is there, `Pending` otherwise. A pending
//! future takes nothing (the counts after every step say so), dropping it loses nothing, and
//! once a buffer it waits for is there, its waker is called (within a generous deadline: a
//! notifier thread does it), so that the next poll returns the buffer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use buffer_core::{
    AcquireFilled, AcquireFree, BufferPool, PoolConfig, PortGuard, ReadGuard, Receive, Wait,
    WriteGuard,
};
use proptest::prelude::*;

use super::ports::{At, Model, acquire_write, check_published, port_token};
use super::{pick, read_token, stamp};

const BUFFERS: u32 = 3;
const PORT: u8 = 0;

/// How long a pending future's waker may take to be called once its buffer is there.
const WAKE_DEADLINE: Duration = Duration::from_secs(10);

/// A waker that counts its calls.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Free,
    Filled,
    Port,
}

enum Pending<'s, 'p> {
    Free(AcquireFree<'p>),
    Filled(AcquireFilled<'p>),
    Port(Receive<'s, 'p>),
}

/// A future not yet ready, and its waker.
struct Waiting<'s, 'p> {
    future: Pending<'s, 'p>,
    source: Source,
    wakes: Arc<Counter>,
    /// The waker's calls when it was last polled; `None` before the first poll (it is not
    /// registered anywhere yet).
    polled_at: Option<usize>,
}

/// What a poll gave.
enum Got<'p> {
    Write(WriteGuard<'p>),
    Read(ReadGuard<'p>),
    Port(PortGuard<'p>),
}

impl<'p> Waiting<'_, 'p> {
    fn poll(&mut self) -> Poll<Got<'p>> {
        self.polled_at = Some(self.wakes.0.load(Ordering::SeqCst));
        let waker = Waker::from(self.wakes.clone());
        let mut cx = Context::from_waker(&waker);
        match &mut self.future {
            Pending::Free(f) => Pin::new(f).poll(&mut cx).map(|r| Got::Write(r.unwrap())),
            Pending::Filled(f) => Pin::new(f).poll(&mut cx).map(|r| Got::Read(r.unwrap())),
            Pending::Port(f) => Pin::new(f).poll(&mut cx).map(|r| Got::Port(r.unwrap())),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    NewFuture(Source),
    Poll(usize),
    DropFuture(usize),
    AcquireFree,
    Submit(usize),
    Publish(usize),
    DropWrite(usize),
    AcquireFilled,
    DropRead(usize),
    Receive,
    DropPortGuard(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let source = prop_oneof![Just(Source::Free), Just(Source::Filled), Just(Source::Port)];
    prop_oneof![
        3 => source.prop_map(Op::NewFuture),
        5 => any::<usize>().prop_map(Op::Poll),
        1 => any::<usize>().prop_map(Op::DropFuture),
        2 => Just(Op::AcquireFree),
        2 => any::<usize>().prop_map(Op::Submit),
        2 => any::<usize>().prop_map(Op::Publish),
        1 => any::<usize>().prop_map(Op::DropWrite),
        1 => Just(Op::AcquireFilled),
        2 => any::<usize>().prop_map(Op::DropRead),
        1 => Just(Op::Receive),
        2 => any::<usize>().prop_map(Op::DropPortGuard),
    ]
}

/// Whether a buffer for `source` is there, as the model says.
fn ready(model: &Model, source: Source) -> bool {
    match source {
        Source::Free => !model.free.is_empty(),
        Source::Filled => !model.filled.is_empty(),
        Source::Port => !model.ports[usize::from(PORT)].waiting.is_empty(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 128 }, ..ProptestConfig::default() })]

    #[test]
    fn futures_match_the_model_step_by_step(ops in prop::collection::vec(op(), 1..100)) {
        let config = PoolConfig::new("futures").with_capacity(BUFFERS).with_ports(["p"]).with_port_depth(4);
        let pool = BufferPool::with_heap_buffers(config, BUFFERS, 16).unwrap();
        let port = pool.port("p").unwrap();
        let subscription = pool.subscribe(port).unwrap();
        let mut model = Model::new(BUFFERS, 1, 4);
        model.ports[usize::from(PORT)].subscribed = true;
        let mut futures: Vec<Waiting<'_, '_>> = Vec::new();
        let mut writes: Vec<(u32, WriteGuard<'_>)> = Vec::new();
        let mut reads: Vec<(u32, ReadGuard<'_>)> = Vec::new();
        let mut port_reads: Vec<(u64, u32, PortGuard<'_>)> = Vec::new();
        let mut token = 0u64;

        for op in ops {
            match op {
                Op::NewFuture(source) => futures.push(Waiting {
                    future: match source {
                        Source::Free => Pending::Free(pool.acquire_free_async()),
                        Source::Filled => Pending::Filled(pool.acquire_filled_async()),
                        Source::Port => Pending::Port(subscription.receive_async()),
                    },
                    source,
                    wakes: Arc::default(),
                    polled_at: None,
                }),
                Op::Poll(i) => if !futures.is_empty() {
                    let i = i % futures.len();
                    let source = futures[i].source;
                    let want = ready(&model, source);
                    match futures[i].poll() {
                        Poll::Pending => {
                            prop_assert!(!want, "a {:?} future pending with a buffer there", source)
                        }
                        Poll::Ready(got) => {
                            prop_assert!(want, "a {:?} future ready with no buffer there", source);
                            // Ready: the future is done (polling it again is not allowed).
                            drop(futures.swap_remove(i));
                            match got {
                                Got::Write(mut g) => {
                                    let slot = model.acquire_free(At::Write).unwrap();
                                    prop_assert_eq!(g.id().slot, slot);
                                    token += 1;
                                    stamp(&mut g, token);
                                    model.slots[slot as usize].token = token;
                                    writes.push((slot, g));
                                }
                                Got::Read(g) => {
                                    let slot = model.filled.pop_front().unwrap();
                                    prop_assert_eq!(g.id().slot, slot);
                                    prop_assert_eq!(read_token(&g), model.slots[slot as usize].token);
                                    model.slots[slot as usize].at = At::Read;
                                    reads.push((slot, g));
                                }
                                Got::Port(g) => {
                                    let (position, slot) = model.receive(PORT).unwrap();
                                    prop_assert_eq!(g.id().slot, slot);
                                    prop_assert_eq!(port_token(&g), model.slots[slot as usize].token);
                                    port_reads.push((position, slot, g));
                                }
                            }
                        }
                    }
                },
                Op::DropFuture(i) => drop(pick(&mut futures, i)),
                Op::AcquireFree => writes.extend(acquire_write(&mut model, &pool, &mut token)?),
                Op::Submit(i) => if let Some((slot, g)) = pick(&mut writes, i) {
                    g.submit();
                    model.push_filled(slot);
                },
                Op::Publish(i) => if let Some((slot, g)) = pick(&mut writes, i) {
                    let published = g.publish(&[port]);
                    let bits = model.deliver(slot, &[PORT]);
                    model.end_holder(slot);
                    check_published(published, &[port], bits)?;
                },
                Op::DropWrite(i) => if let Some((slot, g)) = pick(&mut writes, i) {
                    drop(g);
                    model.push_free(slot);
                },
                Op::AcquireFilled => match model.filled.pop_front() {
                    Some(slot) => {
                        let g = pool.acquire_filled(Wait::NoWait).unwrap();
                        prop_assert_eq!(g.id().slot, slot);
                        prop_assert_eq!(read_token(&g), model.slots[slot as usize].token);
                        model.slots[slot as usize].at = At::Read;
                        reads.push((slot, g));
                    }
                    None => prop_assert!(pool.acquire_filled(Wait::NoWait).is_err()),
                },
                Op::DropRead(i) => if let Some((slot, g)) = pick(&mut reads, i) {
                    drop(g);
                    model.push_free(slot);
                },
                Op::Receive => match model.receive(PORT) {
                    Some((position, slot)) => {
                        let g = subscription.receive(Wait::NoWait).unwrap();
                        prop_assert_eq!(g.id().slot, slot);
                        prop_assert_eq!(port_token(&g), model.slots[slot as usize].token);
                        port_reads.push((position, slot, g));
                    }
                    None => prop_assert!(subscription.receive(Wait::NoWait).is_err()),
                },
                Op::DropPortGuard(i) => if let Some((position, slot, g)) = pick(&mut port_reads, i) {
                    drop(g);
                    model.drop_port_reference(PORT, position, slot);
                },
            }
            model.check(&pool, &["p"])?;
            // Every pending future whose buffer is there has been woken since its last poll.
            let deadline = Instant::now() + WAKE_DEADLINE;
            for waiting in &futures {
                let Some(polled_at) = waiting.polled_at else { continue };
                if !ready(&model, waiting.source) {
                    continue;
                }
                while waiting.wakes.0.load(Ordering::SeqCst) == polled_at {
                    prop_assert!(
                        Instant::now() < deadline,
                        "a pending {:?} future was not woken within {:?} of its buffer coming",
                        waiting.source,
                        WAKE_DEADLINE
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        drop(futures);
        drop((port_reads, reads, writes, subscription));
        let counts = pool.counts();
        prop_assert_eq!(counts.in_use, 0);
        prop_assert_eq!(pool.audit(), Vec::<String>::new());
    }
}
