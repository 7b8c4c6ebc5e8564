//! Memory accounting: what each allocator, and the whole process, has created through backends
//! and not yet released; the per-allocator limit and its warning threshold.
//!
//! Counting happens when a buffer's memory is created or released, never when a buffer is
//! acquired or released to its pool: the fast path is untouched.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::registry::AllocatorId;

/// Counts of created and released buffer memory: of one allocator
/// ([`PoolAllocator::memory`](crate::PoolAllocator::memory)) or of the whole process
/// ([`process_memory`]).
///
/// Backend buffers count from creation until their memory is released; a shared-memory pool's
/// buffers count from the pool's creation until it is destroyed. External memory
/// ([`inject_external`](crate::PoolAllocator::inject_external)) is someone else's and does not
/// count.
///
/// # Examples
///
/// ```
/// use allocator_base::MemoryStats;
///
/// let stats = MemoryStats { allocations: 3, releases: 1, bytes_allocated: 3072,
///     bytes_current: 2048, bytes_peak: 3072, buffers_current: 2, buffers_peak: 3 };
/// assert_eq!(
///     stats.to_string(),
///     "2 buffers (2.0 KiB) now, peak 3 buffers (3.0 KiB); 3 created (3.0 KiB), 1 released"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Buffers created.
    pub allocations: u64,
    /// Buffers whose memory was released.
    pub releases: u64,
    /// Bytes created in all.
    pub bytes_allocated: u64,
    /// Bytes created and not yet released.
    pub bytes_current: u64,
    /// Most bytes held at once.
    pub bytes_peak: u64,
    /// Buffers created and not yet released.
    pub buffers_current: u64,
    /// Most buffers held at once.
    pub buffers_peak: u64,
}

impl fmt::Display for MemoryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} buffers ({}) now, peak {} buffers ({}); {} created ({}), {} released",
            self.buffers_current,
            ByteCount(self.bytes_current),
            self.buffers_peak,
            ByteCount(self.bytes_peak),
            self.allocations,
            ByteCount(self.bytes_allocated),
            self.releases
        )
    }
}

/// A byte count printed in binary units ("1.5 MiB").
///
/// # Examples
///
/// ```
/// use allocator_base::ByteCount;
///
/// assert_eq!(ByteCount(512).to_string(), "512 B");
/// assert_eq!(ByteCount(3 << 19).to_string(), "1.5 MiB");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount(pub u64);

impl fmt::Display for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

/// How much memory an allocator may hold, and when to warn that it is getting close.
///
/// Creating a pool or injecting a buffer that would take the allocator past the limit fails
/// with [`LimitExceeded`] before any memory is created. Crossing the warning threshold (80 % by
/// default) upwards logs one `tracing` warning; falling back below it logs once at info level,
/// and the next crossing warns again.
///
/// # Examples
///
/// ```
/// use allocator_base::MemoryLimit;
///
/// let limit = MemoryLimit::new(1 << 30);
/// assert_eq!(limit.warning_at(), 858_993_459);
/// assert_eq!(limit.with_warning_percent(50).warning_at(), 1 << 29);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    bytes: u64,
    warn_percent: u8,
}

impl MemoryLimit {
    /// Default warning threshold, in percent of the limit.
    pub const DEFAULT_WARNING_PERCENT: u8 = 80;

    /// A limit of `bytes`, warning at 80 %.
    pub const fn new(bytes: u64) -> MemoryLimit {
        MemoryLimit {
            bytes,
            warn_percent: Self::DEFAULT_WARNING_PERCENT,
        }
    }

    /// Warns when `percent` of the limit is reached (100: only when it is reached exactly).
    ///
    /// # Panics
    ///
    /// If `percent` is over 100.
    pub const fn with_warning_percent(self, percent: u8) -> MemoryLimit {
        assert!(
            percent <= 100,
            "the warning threshold is a percentage of the limit: 0 to 100"
        );
        MemoryLimit {
            bytes: self.bytes,
            warn_percent: percent,
        }
    }

    /// The limit in bytes.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The byte count at which the warning fires.
    pub const fn warning_at(&self) -> u64 {
        (self.bytes as u128 * self.warn_percent as u128 / 100) as u64
    }
}

/// Creating memory would take an allocator past its [`MemoryLimit`]; nothing was created.
///
/// # Examples
///
/// ```
/// use allocator_base::{AllocatorId, LimitExceeded};
///
/// let err = LimitExceeded { allocator: AllocatorId::next(), backend: "normal",
///     requested: 4096, current: 6144, limit: 8192 };
/// assert!(err.to_string().contains("raise the limit"));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "{allocator} ({backend} backend) may hold at most {limit} bytes; it holds {current} and {requested} more were asked for: destroy pools or remove buffers first, or raise the limit (with_limit or PoolAllocator::set_limit)"
)]
pub struct LimitExceeded {
    /// The allocator.
    pub allocator: AllocatorId,
    /// Its backend's name.
    pub backend: &'static str,
    /// Bytes asked for.
    pub requested: u64,
    /// Bytes the allocator held when asked.
    pub current: u64,
    /// Its limit.
    pub limit: u64,
}

/// Why [`Ledger::create_within`] created nothing.
pub(crate) enum CreateFailure<E> {
    /// The memory would pass the limit; nothing was tried.
    Limit(LimitExceeded),
    /// Creating it failed.
    Failed(E),
}

/// The counters behind [`MemoryStats`].
#[derive(Default)]
struct Counters {
    allocations: AtomicU64,
    releases: AtomicU64,
    bytes_allocated: AtomicU64,
    bytes_current: AtomicU64,
    bytes_peak: AtomicU64,
    buffers_current: AtomicU64,
    buffers_peak: AtomicU64,
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            allocations: AtomicU64::new(0),
            releases: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_current: AtomicU64::new(0),
            bytes_peak: AtomicU64::new(0),
            buffers_current: AtomicU64::new(0),
            buffers_peak: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> MemoryStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MemoryStats {
            allocations: load(&self.allocations),
            releases: load(&self.releases),
            bytes_allocated: load(&self.bytes_allocated),
            bytes_current: load(&self.bytes_current),
            bytes_peak: load(&self.bytes_peak),
            buffers_current: load(&self.buffers_current),
            buffers_peak: load(&self.buffers_peak),
        }
    }

    /// Counts `bytes` as held (reserved before creation, so that a limit holds under races).
    fn hold(&self, bytes: u64) {
        self.bytes_current.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes back what [`Counters::hold`] counted. Both wrap, so that a reservation too large
    /// for the counter (a buffer no backend can make) is taken back exactly, without a panic.
    fn unhold(&self, bytes: u64) -> u64 {
        self.bytes_current
            .fetch_sub(bytes, Ordering::Relaxed)
            .wrapping_sub(bytes)
    }

    /// Counts `buffers` created, holding `bytes` already counted by [`Counters::hold`].
    fn created(&self, buffers: u64, bytes: u64) {
        self.allocations.fetch_add(buffers, Ordering::Relaxed);
        self.bytes_allocated.fetch_add(bytes, Ordering::Relaxed);
        let now = self.buffers_current.fetch_add(buffers, Ordering::Relaxed) + buffers;
        self.buffers_peak.fetch_max(now, Ordering::Relaxed);
        let bytes_now = self.bytes_current.load(Ordering::Relaxed);
        self.bytes_peak.fetch_max(bytes_now, Ordering::Relaxed);
    }

    fn released(&self, buffers: u64, bytes: u64) -> u64 {
        self.releases.fetch_add(buffers, Ordering::Relaxed);
        self.buffers_current.fetch_sub(buffers, Ordering::Relaxed);
        self.unhold(bytes)
    }
}

/// Every allocator's memory in this process together.
static PROCESS: Counters = Counters::new();

/// The memory that every allocator of this process holds, together.
///
/// # Examples
///
/// ```
/// use allocator_base::process_memory;
///
/// let stats = process_memory();
/// assert!(stats.bytes_peak >= stats.bytes_current);
/// ```
pub fn process_memory() -> MemoryStats {
    PROCESS.snapshot()
}

/// One allocator's accounting: its counters, its limit, and whether it is above the warning
/// threshold. Every change is applied to the process's counters too.
pub(crate) struct Ledger {
    allocator: AllocatorId,
    backend: &'static str,
    counters: Counters,
    /// Read when memory is created, never on the fast path.
    limit: RwLock<Option<MemoryLimit>>,
    /// Set while the allocator is at or above the warning threshold.
    warned: AtomicBool,
}

impl Ledger {
    pub(crate) fn new(
        allocator: AllocatorId,
        backend: &'static str,
        limit: Option<MemoryLimit>,
    ) -> Ledger {
        Ledger {
            allocator,
            backend,
            counters: Counters::new(),
            limit: RwLock::new(limit),
            warned: AtomicBool::new(false),
        }
    }

    pub(crate) fn limit(&self) -> Option<MemoryLimit> {
        *self.limit.read()
    }

    /// Replaces the limit; memory already held stays, even above a lower limit.
    pub(crate) fn set_limit(&self, limit: Option<MemoryLimit>) {
        *self.limit.write() = limit;
        self.warned.store(false, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MemoryStats {
        self.counters.snapshot()
    }

    /// Fails if `bytes` more would pass the limit, without reserving them (a check before
    /// creating many buffers, so that a pool that cannot fit fails before the first).
    pub(crate) fn check(&self, bytes: u64) -> Result<(), LimitExceeded> {
        let current = self.counters.bytes_current.load(Ordering::Relaxed);
        self.within_limit(self.limit(), current, bytes)
    }

    fn within_limit(
        &self,
        limit: Option<MemoryLimit>,
        current: u64,
        bytes: u64,
    ) -> Result<(), LimitExceeded> {
        match limit {
            Some(limit) if current.saturating_add(bytes) > limit.bytes => Err(LimitExceeded {
                allocator: self.allocator,
                backend: self.backend,
                requested: bytes,
                current,
                limit: limit.bytes,
            }),
            _ => Ok(()),
        }
    }

    /// Reserves `bytes` under the limit, before the memory is created. Follow with
    /// [`Ledger::created`] once it is, or [`Ledger::cancel`] if creating it failed.
    fn reserve(&self, bytes: u64) -> Result<(), LimitExceeded> {
        let current = &self.counters.bytes_current;
        let limit = self.limit();
        if limit.is_some() {
            current
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                    self.within_limit(limit, now, bytes)
                        .ok()
                        .map(|()| now + bytes)
                })
                .map_err(|now| {
                    self.within_limit(limit, now, bytes)
                        .expect_err("the update failed only because of the limit")
                })?;
        } else {
            self.counters.hold(bytes);
        }
        PROCESS.hold(bytes);
        Ok(())
    }

    /// Creates `buffers` buffers of `bytes` in all with `create`, within the limit, and counts
    /// them: reserves the bytes first, takes the reservation back if `create` fails.
    pub(crate) fn create_within<T, E>(
        &self,
        buffers: u64,
        bytes: u64,
        create: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CreateFailure<E>> {
        self.reserve(bytes).map_err(CreateFailure::Limit)?;
        let created = create().map_err(|err| {
            self.cancel(bytes);
            CreateFailure::Failed(err)
        })?;
        self.created(buffers, bytes);
        Ok(created)
    }

    /// Takes back a reservation whose memory could not be created.
    fn cancel(&self, bytes: u64) {
        self.counters.unhold(bytes);
        PROCESS.unhold(bytes);
    }

    /// Counts `buffers` just created over `bytes` already reserved.
    fn created(&self, buffers: u64, bytes: u64) {
        self.counters.created(buffers, bytes);
        PROCESS.created(buffers, bytes);
        let Some(limit) = self.limit() else { return };
        let now = self.counters.bytes_current.load(Ordering::Relaxed);
        if now >= limit.warning_at() && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                allocator = %self.allocator,
                backend = self.backend,
                bytes = now,
                limit = limit.bytes,
                "{} ({} backend) holds {} of its {} limit: past the {} % warning threshold",
                self.allocator,
                self.backend,
                ByteCount(now),
                ByteCount(limit.bytes),
                limit.warn_percent,
            );
        }
    }

    /// Counts `buffers` whose `bytes` were released.
    pub(crate) fn released(&self, buffers: u64, bytes: u64) {
        let now = self.counters.released(buffers, bytes);
        PROCESS.released(buffers, bytes);
        let Some(limit) = self.limit() else { return };
        if now < limit.warning_at() && self.warned.swap(false, Ordering::Relaxed) {
            tracing::info!(
                allocator = %self.allocator,
                backend = self.backend,
                bytes = now,
                limit = limit.bytes,
                "{} ({} backend) is back below its {} % warning threshold: {} of {}",
                self.allocator,
                self.backend,
                limit.warn_percent,
                ByteCount(now),
                ByteCount(limit.bytes),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(limit: Option<MemoryLimit>) -> Ledger {
        Ledger::new(AllocatorId::next(), "test", limit)
    }

    #[test]
    fn counts_creations_releases_and_peaks() {
        let ledger = ledger(None);
        for _ in 0..3 {
            ledger.reserve(100).unwrap();
            ledger.created(1, 100);
        }
        ledger.released(1, 100);
        ledger.reserve(50).unwrap();
        ledger.cancel(50);
        assert_eq!(
            ledger.snapshot(),
            MemoryStats {
                allocations: 3,
                releases: 1,
                bytes_allocated: 300,
                bytes_current: 200,
                bytes_peak: 300,
                buffers_current: 2,
                buffers_peak: 3,
            }
        );
    }

    #[test]
    fn a_reservation_past_the_limit_fails_and_changes_nothing() {
        let ledger = ledger(Some(MemoryLimit::new(1000)));
        ledger.reserve(600).unwrap();
        ledger.created(1, 600);
        let err = ledger.reserve(500).unwrap_err();
        assert_eq!((err.requested, err.current, err.limit), (500, 600, 1000));
        assert_eq!(ledger.check(500), Err(err));
        assert_eq!(ledger.snapshot().bytes_current, 600);
        ledger.reserve(400).unwrap();
        assert_eq!(ledger.snapshot().bytes_current, 1000);
    }

    #[test]
    fn the_warning_flag_follows_the_threshold_both_ways() {
        let ledger = ledger(Some(MemoryLimit::new(1000)));
        ledger.reserve(790).unwrap();
        ledger.created(1, 790);
        assert!(!ledger.warned.load(Ordering::Relaxed));
        ledger.reserve(10).unwrap();
        ledger.created(1, 10);
        assert!(ledger.warned.load(Ordering::Relaxed));
        ledger.released(1, 10);
        assert!(!ledger.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn bytes_print_in_binary_units() {
        assert_eq!(ByteCount(0).to_string(), "0 B");
        assert_eq!(ByteCount(1024).to_string(), "1.0 KiB");
        assert_eq!(ByteCount(8 << 20).to_string(), "8.0 MiB");
        assert_eq!(ByteCount(5 << 40).to_string(), "5.0 TiB");
    }
}
