//! The atomics, the lock and the futex of the concurrency core (queue and waiting): std's and the kernel's,
//! or loom's when the crate is built with `--cfg loom` for model checking (`cargo xtask ci` runs
//! `RUSTFLAGS="--cfg loom" cargo test -p buffer-core --release --lib loom`).

use std::time::Duration;

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;

#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

/// Sleeps while `word` holds `expected`, at most `timeout` (`None`: no limit). It may return
/// early for any reason (the value changed, a signal, a wake-up meant for another waiter);
/// callers re-check their condition. The futex is not private, so it works between processes
/// that map the same word.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    use rustix::thread::futex;
    let timespec = timeout.map(|left| futex::Timespec {
        tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: left.subsec_nanos().into(),
    });
    // EAGAIN (the value moved on), EINTR and ETIMEDOUT all mean "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, timespec.as_ref());
}

/// Wakes up to `count` threads sleeping on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) {
    use rustix::thread::futex;
    // The kernel reads the count as an `int`; a failure (only EFAULT, impossible for a valid
    // reference) could not be acted on.
    let _ = futex::wake(word, futex::Flags::empty(), count.min(i32::MAX as u32));
}

/// Loom's stand-in for the futex: it blocks until the value changes, and never wakes
/// spuriously or times out. A lost wake-up therefore leaves the waiter blocked for good, which
/// loom reports as a failed model.
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
    while word.load(std::sync::atomic::Ordering::SeqCst) == expected {
        loom::thread::yield_now();
    }
}

/// Under loom, waiters watch the value itself, so waking is the value change the caller made.
#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32, _count: u32) {}

/// Stands in, under loom, for the single total order of `SeqCst` accesses: loom models `SeqCst`
/// loads, stores and read-modify-writes as `AcqRel` (its README, "Unsupported features") but
/// models `fence(SeqCst)` fully. The wake-up protocol's proof (`lockfree/wait.rs`) uses that total order
/// between a waker's queue push and its read of the waiter count, and between a waiter's
/// registration and its look at the queue; a fence at those two points gives loom the same
/// guarantee. Outside loom the accesses are `SeqCst` themselves and this is nothing.
#[inline(always)]
pub(crate) fn seqcst_order_for_loom() {
    #[cfg(loom)]
    loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}
