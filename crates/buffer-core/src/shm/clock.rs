//! The coarse monotonic clock that stamps acquisitions: a vDSO read, no system call.

use std::time::Duration;

/// `CLOCK_MONOTONIC_COARSE` packed as seconds (high 32 bits) and nanoseconds (low 32 bits): a
/// vDSO read (no system call, ~4 ms resolution, enough to tell how long a buffer has been held),
/// with no division on the acquire path.
#[inline(always)]
pub(crate) fn coarse_now() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (now.tv_sec as u64) << 32 | now.tv_nsec as u64
}

/// A slot's acquire time when the pool records none.
pub(crate) const NOT_RECORDED: u64 = 0;

/// Converts a [`coarse_now`] value to a duration since the clock's origin; `None` for
/// [`NOT_RECORDED`].
pub(crate) fn coarse_to_duration(packed: u64) -> Option<Duration> {
    (packed != NOT_RECORDED).then(|| Duration::new(packed >> 32, packed as u32))
}
