//! Blocking until a queue has a value: a short spin, then a futex wait on a word in the block.
//!
//! # Why no wake-up is lost
//!
//! A waker pushes a value (its cell CAS is `SeqCst`) and then reads `waiters` (`SeqCst`); it makes
//! the `futex` system call only if that count is non-zero. A waiter adds itself to `waiters`
//! (`SeqCst`), reads `seq`, and sleeps only if a take finds no value (its cell read is `SeqCst`),
//! no push has claimed a position (`SeqCst` loads of head and tail) and `seq` is still what it
//! read. In the single total order of `SeqCst` operations, either the waker's read of `waiters`
//! comes after the waiter's registration (and the waker bumps `seq` and wakes it), or it comes
//! before, and then the waker's cell CAS also precedes the waiter's look at the cell, so the
//! waiter sees the value and does not sleep. Futexes are not private, so the same holds between
//! processes that map the block.
//!
//! Sleeps last at most [`IDLE_SLICE`]: between them the waiter lets the pool look for dead
//! processes whose buffers it may be waiting for ([`Waitable::on_idle`]).
//!
//! A woken waiter may lose the value to a thread that did not wait; it then sleeps again. A waiter
//! whose timeout expires tries the queue once more before giving up, so a wake-up meant for it is
//! never swallowed while a value sits in the queue.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[cfg(not(loom))]
use crate::shm_safe::ShmSafe;
use crate::sync::{AtomicU32, futex_wait, futex_wake, seqcst_order_for_loom, spin_loop, yield_now};

/// A futex word and the number of threads (in any process) about to sleep on it.
#[repr(C)]
#[derive(Default)]
pub(crate) struct WaitWord {
    /// Bumped by every wake-up; sleepers wait for it to change.
    pub(crate) seq: AtomicU32,
    /// Threads registered as waiting; wakers skip the system call while it is 0.
    pub(crate) waiters: AtomicU32,
}

// SAFETY: `#[repr(C)]`, two `AtomicU32`. (Not under loom, whose atomics are model objects.)
#[cfg(not(loom))]
unsafe impl ShmSafe for WaitWord {}

/// How long to wait for a buffer.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use buffer_core::Wait;
///
/// let modes = [Wait::NoWait, Wait::Forever, Wait::Timeout(Duration::from_millis(100))];
/// assert_eq!(modes.len(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(loom, allow(dead_code))] // the pool, which loom builds leave out, uses every variant
pub enum Wait {
    /// Return at once if no buffer is ready.
    NoWait,
    /// Wait until a buffer is ready or the pool is closed.
    Forever,
    /// Wait at most this long.
    Timeout(Duration),
}

/// Backoff before sleeping, as crossbeam's `Backoff`: rounds `0..SPIN_LIMIT` busy-wait 2^round
/// pause instructions each (1 + 2 + ... + 64, a few microseconds in all: a buffer handed over by
/// another core usually arrives within that), the rounds up to `YIELD_LIMIT` give the core away
/// with `sched_yield`, and only then does the waiter register and sleep on the futex.
///
/// Under loom there is no backoff: a yielding thread is not rescheduled until the others block,
/// so backing off would hide the interleavings where the waiter sleeps before the wake-up.
const SPIN_LIMIT: u32 = if cfg!(loom) { 0 } else { 7 };
const YIELD_LIMIT: u32 = if cfg!(loom) { 0 } else { 11 };

/// Why a wait ended without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitFailure {
    /// The queue stayed empty for the whole timeout (or `NoWait` found it empty).
    TimedOut,
    /// The pool was closed.
    Closed,
}

/// What a wait takes from: a queue of the pool, seen through the pool's rules.
pub(crate) trait Waitable {
    /// What a successful take gives.
    type Item;
    /// Takes a value if one is ready.
    fn try_take(&self) -> Option<Self::Item>;
    /// Whether a value is in the queue or about to be (a push claimed a position).
    fn has_claimed(&self) -> bool;
    /// Whether the wait should end with [`WaitFailure::Closed`].
    fn is_closed(&self) -> bool;
    /// Called when the waiter is about to sleep and then every [`IDLE_SLICE`] while it sleeps:
    /// the pool reclaims there what dead processes held, which may be what it waits for.
    fn on_idle(&self) {}
}

/// Longest a sleeper sleeps before it looks for dead processes again.
pub(crate) const IDLE_SLICE: Duration = Duration::from_millis(100);

/// Takes from `source`, waiting as `mode` says on `word`. `on_wait` runs once if the wait does
/// not succeed at once.
pub(crate) fn wait_for<W: Waitable>(
    source: &W,
    word: &WaitWord,
    mode: Wait,
    on_wait: impl FnOnce(),
) -> Result<W::Item, WaitFailure> {
    if let Some(value) = source.try_take() {
        return Ok(value);
    }
    if source.is_closed() {
        return Err(WaitFailure::Closed);
    }
    let deadline = match mode {
        Wait::NoWait => return Err(WaitFailure::TimedOut),
        Wait::Forever => None,
        Wait::Timeout(timeout) => Some(Instant::now() + timeout),
    };
    on_wait();
    for round in 0..YIELD_LIMIT {
        if round < SPIN_LIMIT {
            for _ in 0..1u32 << round {
                spin_loop();
            }
        } else {
            yield_now();
        }
        if let Some(value) = source.try_take() {
            return Ok(value);
        }
        if source.is_closed() {
            return Err(WaitFailure::Closed);
        }
    }
    word.waiters.fetch_add(1, Ordering::SeqCst);
    seqcst_order_for_loom();
    let result = sleep_until_taken(source, word, deadline);
    word.waiters.fetch_sub(1, Ordering::SeqCst);
    result
}

fn sleep_until_taken<W: Waitable>(
    source: &W,
    word: &WaitWord,
    deadline: Option<Instant>,
) -> Result<W::Item, WaitFailure> {
    source.on_idle();
    let mut last_idle = Instant::now();
    loop {
        let seq = word.seq.load(Ordering::SeqCst);
        if let Some(value) = source.try_take() {
            return Ok(value);
        }
        if source.is_closed() {
            return Err(WaitFailure::Closed);
        }
        if last_idle.elapsed() >= IDLE_SLICE {
            source.on_idle();
            last_idle = Instant::now();
        }
        let left = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(WaitFailure::TimedOut),
            },
        };
        if source.has_claimed() {
            // A push is publishing its value right now; it will be takeable in a moment.
            yield_now();
            continue;
        }
        let slice = left.map_or(IDLE_SLICE, |left| left.min(IDLE_SLICE));
        futex_wait(&word.seq, seq, Some(slice));
    }
}

/// Wakes one waiter of `word`, if any is registered. Costs one load when nobody waits.
#[inline(always)]
pub(crate) fn wake_one(word: &WaitWord) {
    seqcst_order_for_loom();
    if word.waiters.load(Ordering::SeqCst) != 0 {
        word.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&word.seq, 1);
    }
}

/// Wakes every waiter of `word` (used by `close`).
pub(crate) fn wake_all(word: &WaitWord) {
    word.seq.fetch_add(1, Ordering::SeqCst);
    futex_wake(&word.seq, u32::MAX);
}

/// Model checks of the sleep/wake protocol: under loom the futex never wakes spuriously, so a
/// lost wake-up leaves the waiter blocked for good and fails the model.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::queue::TestQueue;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread::{self, JoinHandle};

    struct Fixture {
        test_queue: TestQueue,
        word: WaitWord,
        closed: AtomicBool,
    }

    impl Fixture {
        fn new() -> Arc<Fixture> {
            Arc::new(Fixture {
                test_queue: TestQueue::new(2, &[]),
                word: WaitWord::default(),
                closed: AtomicBool::new(false),
            })
        }

        /// A thread that waits, without limit, for a value or the close.
        fn spawn_waiter(fixture: &Arc<Fixture>) -> JoinHandle<Result<u32, WaitFailure>> {
            let fixture = Arc::clone(fixture);
            thread::spawn(move || wait_for(&*fixture, &fixture.word, Wait::Forever, || {}))
        }
    }

    impl Waitable for Fixture {
        type Item = u32;
        fn try_take(&self) -> Option<u32> {
            self.test_queue.pop()
        }
        fn has_claimed(&self) -> bool {
            self.test_queue.queue().has_claimed()
        }
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn loom_a_push_wakes_a_waiter() {
        loom::model(|| {
            let fixture = Fixture::new();
            let waiter = Fixture::spawn_waiter(&fixture);
            fixture.test_queue.queue().push(3).unwrap();
            wake_one(&fixture.word);
            assert_eq!(waiter.join().unwrap(), Ok(3));
        });
    }

    #[test]
    fn loom_close_wakes_a_waiter() {
        loom::model(|| {
            let fixture = Fixture::new();
            let waiter = Fixture::spawn_waiter(&fixture);
            fixture.closed.store(true, Ordering::SeqCst);
            wake_all(&fixture.word);
            assert_eq!(waiter.join().unwrap(), Err(WaitFailure::Closed));
        });
    }
}
