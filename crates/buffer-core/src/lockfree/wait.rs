//! Blocking until a queue has a value: a short spin, then a futex wait on a word in the block.
//!
//! # Why no wake-up is lost
//!
//! A waker pushes a value (its cell CAS is `SeqCst`) and then reads `sleepers` (`SeqCst`); it
//! makes the `futex` system call only if that word is non-zero. A waiter registers (sets its
//! process's bit in `sleepers`, `SeqCst`), reads `seq`, and sleeps only if a take then finds no
//! value (its cell read is `SeqCst`) and `seq` is still what it read. In the single total order
//! of `SeqCst` operations, either the waker's read of `sleepers` comes after the waiter's
//! registration (and the waker bumps `seq` and wakes it), or it comes before, and then the
//! waker's cell CAS also precedes the waiter's look at the cell, so the waiter sees the value
//! and does not sleep. Futexes are not private, so the same holds between processes that map
//! the block.
//!
//! # Who sleeps: one bit per process
//!
//! `sleepers` has one bit per attached process (its actor number), set while any of its
//! threads is registered; each process counts its own registered threads in process-local
//! memory ([`Sleepers`]). A process killed while one of its threads waited leaves its bit set;
//! the reaper clears it with the rest of what the process held, so the wakers of the queue do
//! not go on making a futex system call for every push. (A shared count would leak for good:
//! nobody could tell how much of it the dead process had added.) A process-local lock keeps the
//! count and the bit in step (set while the count is above 0); it is only taken on the way to
//! sleeping and back, never by a waker.
//!
//! Between sleeps the waiter lets the pool look for dead processes whose buffers it may be
//! waiting for ([`Waitable::on_idle`]): as it begins to sleep, then after 1 ms, and each time
//! twice as long after the last look, up to every [`IDLE_SLICE`] (a process that dies just
//! before or during a wait is found within milliseconds; a long wait costs ten wake-ups a
//! second). Tests of the blocking paths turn that re-poll off ([`disable_idle_polling`]), so
//! that a lost wake-up shows as a wait that times out rather than one that takes longer.
//!
//! A woken waiter may lose the value to a thread that did not wait; it then sleeps again. A
//! waiter whose timeout expires tries the queue once more before giving up, so a wake-up meant
//! for it is never swallowed while a value sits in the queue.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::sync::primitives::{
    AtomicU32, AtomicU64, Mutex, futex_wait, futex_wake, seqcst_order_for_loom, spin_loop,
    yield_now,
};
#[cfg(not(loom))]
use crate::sync::shm_safe::ShmSafe;

/// A futex word and the processes with threads about to sleep on it.
#[repr(C)]
#[derive(Default)]
pub(crate) struct WaitWord {
    /// Bumped by every wake-up; sleepers wait for it to change.
    pub(crate) seq: AtomicU32,
    /// One bit per process (actor `n`: bit `n - 1`) with threads registered as waiting; wakers
    /// skip the system call while it is 0.
    pub(crate) sleepers: AtomicU64,
}

// SAFETY: `#[repr(C)]`, an `AtomicU32` and an `AtomicU64`. (Not under loom, whose atomics are
// model objects.)
#[cfg(not(loom))]
unsafe impl ShmSafe for WaitWord {}

/// One process's threads registered on one wait word (process-local), and that process's bit.
pub(crate) struct Sleepers {
    /// How many threads are registered.
    count: Mutex<u32>,
    bit: u64,
}

impl Sleepers {
    /// The sleepers of actor `actor` (1 to 64).
    pub(crate) fn of(actor: u8) -> Sleepers {
        Sleepers {
            count: Mutex::new(0),
            bit: actor_bit(actor),
        }
    }

    fn count(&self) -> crate::sync::primitives::MutexGuard<'_, u32> {
        self.count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Actor `actor`'s bit in [`WaitWord::sleepers`].
pub(crate) fn actor_bit(actor: u8) -> u64 {
    1u64.checked_shl(u32::from(actor).wrapping_sub(1))
        .unwrap_or(0)
}

impl WaitWord {
    /// Registers a thread of the process `me` as about to sleep. When it returns, `me`'s bit
    /// is set (by this thread or by one registered before it, and not cleared since).
    pub(crate) fn register(&self, me: &Sleepers) {
        let mut count = me.count();
        *count += 1;
        if *count == 1 {
            self.sleepers.fetch_or(me.bit, Ordering::SeqCst);
        }
        drop(count);
        seqcst_order_for_loom();
    }

    /// Ends a registration made by [`WaitWord::register`]; the last of `me`'s threads clears
    /// its bit.
    pub(crate) fn unregister(&self, me: &Sleepers) {
        let mut count = me.count();
        *count -= 1;
        if *count == 0 {
            self.sleepers.fetch_and(!me.bit, Ordering::SeqCst);
        }
    }

    /// Clears the bit of a process that died (the reaper).
    pub(crate) fn forget(&self, actor: u8) {
        self.sleepers.fetch_and(!actor_bit(actor), Ordering::SeqCst);
    }
}

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
    /// Whether the wait should end with [`WaitFailure::Closed`].
    fn is_closed(&self) -> bool;
    /// Called when the waiter is about to sleep and then every [`IDLE_SLICE`] while it sleeps:
    /// the pool reclaims there what dead processes held, which may be what it waits for.
    fn on_idle(&self) {}
}

/// Longest a sleeper sleeps before it looks for dead processes again.
pub(crate) const IDLE_SLICE: Duration = Duration::from_millis(100);
/// How long a sleeper sleeps before its second look for dead processes (then twice as long
/// each time, up to [`IDLE_SLICE`]).
const FIRST_IDLE_LOOK: Duration = Duration::from_millis(1);

/// Whether sleepers wake every [`IDLE_SLICE`] to look for dead processes (see the module docs).
static IDLE_POLLING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// For tests of the blocking paths: from now on, in this process, waiters sleep until they are
/// woken or their timeout ends, instead of waking every 100 ms to look for dead processes (and
/// the buffer they wait for). A lost wake-up then makes a wait time out instead of only making
/// it slower. Dead processes are still looked for once, when a wait begins.
#[doc(hidden)]
pub fn disable_idle_polling() {
    IDLE_POLLING.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// How long a sleeper sleeps at most before it looks for dead processes again; `None` for as
/// long as its wait lasts. Never under loom: its models must not depend on the clock (and its
/// futex stand-in never times out).
pub(crate) fn idle_slice() -> Option<Duration> {
    (!cfg!(loom) && IDLE_POLLING.load(std::sync::atomic::Ordering::Relaxed)).then_some(IDLE_SLICE)
}

/// Takes from `source`, waiting as `mode` says on `word`, registered as one of `me`'s sleepers.
/// `on_wait` runs once if the wait does not succeed at once.
pub(crate) fn wait_for<W: Waitable>(
    source: &W,
    word: &WaitWord,
    me: &Sleepers,
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
    word.register(me);
    let result = sleep_until_taken(source, word, deadline);
    word.unregister(me);
    result
}

fn sleep_until_taken<W: Waitable>(
    source: &W,
    word: &WaitWord,
    deadline: Option<Instant>,
) -> Result<W::Item, WaitFailure> {
    source.on_idle();
    let mut last_idle = Instant::now();
    let mut interval = FIRST_IDLE_LOOK;
    loop {
        let seq = word.seq.load(Ordering::SeqCst);
        if let Some(value) = source.try_take() {
            return Ok(value);
        }
        if source.is_closed() {
            return Err(WaitFailure::Closed);
        }
        let idle = idle_slice().map(|_| interval);
        if idle.is_some_and(|idle| last_idle.elapsed() >= idle) {
            source.on_idle();
            last_idle = Instant::now();
            interval = (interval * 2).min(IDLE_SLICE);
            continue; // look at the queue again: the dead may have held what is waited for
        }
        let left = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(WaitFailure::TimedOut),
            },
        };
        // Sleep even when a push or a port's reservation is in flight: its pusher wakes the
        // word once the value is takeable (module docs), however long it is stopped meanwhile.
        let slice = match (left, idle) {
            (Some(left), Some(idle)) => Some(left.min(idle)),
            (left, idle) => left.or(idle),
        };
        futex_wait(&word.seq, seq, slice);
    }
}

/// Wakes one waiter of `word`, if any is registered. Costs one load when nobody waits.
#[inline(always)]
pub(crate) fn wake_one(word: &WaitWord) {
    seqcst_order_for_loom();
    if word.sleepers.load(Ordering::SeqCst) != 0 {
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
    use crate::lockfree::queue::TestQueue;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread::{self, JoinHandle};

    struct Fixture {
        test_queue: TestQueue,
        word: WaitWord,
        /// The one process's sleepers.
        sleepers: Sleepers,
        closed: AtomicBool,
    }

    impl Fixture {
        fn new() -> Arc<Fixture> {
            Arc::new(Fixture {
                test_queue: TestQueue::new(2, &[]),
                word: WaitWord::default(),
                sleepers: Sleepers::of(1),
                closed: AtomicBool::new(false),
            })
        }

        /// A thread that waits, without limit, for a value or the close.
        fn spawn_waiter(fixture: &Arc<Fixture>) -> JoinHandle<Result<u32, WaitFailure>> {
            let fixture = Arc::clone(fixture);
            thread::spawn(move || {
                wait_for(
                    &*fixture,
                    &fixture.word,
                    &fixture.sleepers,
                    Wait::Forever,
                    || {},
                )
            })
        }
    }

    impl Waitable for Fixture {
        type Item = u32;
        fn try_take(&self) -> Option<u32> {
            self.test_queue.pop()
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
            fixture.test_queue.push(3).unwrap();
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

    #[test]
    fn loom_a_process_bit_is_set_while_any_of_its_threads_is_registered() {
        loom::model(|| {
            // Two threads of one process register and unregister at once: the bit must be set
            // whenever either is registered (or a push could skip its wake-up), and clear once
            // neither is (or every push would make a futex call for nobody).
            let fixture = Fixture::new();
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let fixture = Arc::clone(&fixture);
                    thread::spawn(move || {
                        fixture.word.register(&fixture.sleepers);
                        let set = fixture.word.sleepers.load(Ordering::SeqCst) & 1 != 0;
                        fixture.word.unregister(&fixture.sleepers);
                        set
                    })
                })
                .collect();
            for thread in threads {
                assert!(thread.join().unwrap(), "registered, yet the bit was clear");
            }
            assert_eq!(fixture.word.sleepers.load(Ordering::SeqCst), 0);
        });
    }
}
