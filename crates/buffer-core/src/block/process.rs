//! The process table of a block: one entry per attached process, so that what a process holds
//! can be recorded by a small index (its *actor* number) and reclaimed when the process dies.
//!
//! An entry only says who claimed it and in which state it is; whether its process still lives
//! is not written in the block at all but held by the kernel (see the `liveness` module): the
//! process holds a lock on byte `actor` of the segment file for as long as it is attached, and
//! the kernel drops that lock when the process dies, however it dies and in whatever PID
//! namespace it runs.
//!
//! # The entry word
//!
//! ```text
//! bits 63..32  pid         the claimer's process id as it saw itself (for diagnostics only:
//!                          another PID namespace numbers processes differently)
//! bits 31..8   generation  grows by one at every claim, so a record read before a detach and a
//!                          new claim is never mistaken for the new claim's
//! bits 7..0    status      FREE, ACTIVE (a process is attached) or REAPING (a reaper is
//!                          reclaiming what the dead process held)
//! ```
//!
//! Every change is a compare-and-swap from a word read before: `FREE → ACTIVE` by the claimer
//! (after it took the entry's lock byte), `ACTIVE → FREE` by the claimer when it detaches (before
//! it lets the lock go), `ACTIVE → REAPING → FREE` by a reaper holding the cleanup lock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::shm_safe::ShmSafe;

/// Most processes that can be attached to one pool at a time.
pub const MAX_PROCESSES: usize = 64;

/// Entry status: nobody.
const FREE: u64 = 0;
/// Entry status: a process is attached.
const ACTIVE: u64 = 1;
/// Entry status: a reaper is reclaiming what the entry's dead process held.
const REAPING: u64 = 2;
const STATUS_MASK: u64 = 0xff;
const GENERATION_MASK: u64 = 0xff_ffff << 8;

/// One attached process.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ProcessEntry {
    /// Pid, generation and status; see the module docs.
    word: AtomicU64,
}

// SAFETY: `#[repr(C)]`, one `AtomicU64`.
unsafe impl ShmSafe for ProcessEntry {}

/// An entry as read at one moment: who claimed it and whether a reaper has taken it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessRecord {
    /// The claimer's pid, as it saw itself.
    pub(crate) pid: u32,
    word: u64,
}

impl ProcessRecord {
    /// Whether a reaper took the entry over (its process died).
    pub(crate) fn is_reaping(self) -> bool {
        self.word & STATUS_MASK == REAPING
    }

    /// The entry word this record's entry gets when freed: the same generation, no pid.
    fn freed(self) -> u64 {
        self.word & GENERATION_MASK | FREE
    }
}

impl ProcessEntry {
    /// Claims this entry for process `pid` if it is free; the caller holds the entry's lock.
    pub(crate) fn claim(&self, pid: u32) -> Option<ProcessRecord> {
        let word = self.word.load(Ordering::Acquire);
        if word & STATUS_MASK != FREE {
            return None;
        }
        let generation = (word & GENERATION_MASK).wrapping_add(1 << 8) & GENERATION_MASK;
        let claimed = u64::from(pid) << 32 | generation | ACTIVE;
        self.word
            .compare_exchange(word, claimed, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(ProcessRecord { pid, word: claimed })
    }

    /// Who holds the entry; `None` if it is free (or its status is corrupt).
    pub(crate) fn read(&self) -> Option<ProcessRecord> {
        let word = self.word.load(Ordering::Acquire);
        matches!(word & STATUS_MASK, ACTIVE | REAPING).then_some(ProcessRecord {
            pid: (word >> 32) as u32,
            word,
        })
    }

    /// Marks the entry of `record`, whose process was found dead, as being reaped; `None` if
    /// the entry no longer reads `record` (its process detached meanwhile).
    pub(crate) fn begin_reaping(&self, record: ProcessRecord) -> Option<ProcessRecord> {
        let reaping = record.word & !STATUS_MASK | REAPING;
        self.word
            .compare_exchange(record.word, reaping, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(ProcessRecord {
            word: reaping,
            ..record
        })
    }

    /// Frees the entry if it still reads `record` (after its process detached or was reaped).
    pub(crate) fn free(&self, record: ProcessRecord) -> bool {
        self.word
            .compare_exchange(
                record.word,
                record.freed(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_claimed_once_and_freed_once() {
        let entry = ProcessEntry::default();
        let record = entry.claim(42).unwrap();
        assert_eq!(record.pid, 42);
        assert!(entry.claim(43).is_none());
        assert_eq!(entry.read(), Some(record));
        assert!(entry.free(record));
        assert!(!entry.free(record));
        assert_eq!(entry.read(), None);
    }

    #[test]
    fn a_new_claim_is_never_mistaken_for_an_old_one() {
        let entry = ProcessEntry::default();
        let first = entry.claim(7).unwrap();
        assert!(entry.free(first));
        // The same pid claims the same entry again: another generation.
        let second = entry.claim(7).unwrap();
        assert_ne!(first, second);
        assert!(
            entry.begin_reaping(first).is_none(),
            "a stale record is refused"
        );
        assert!(!entry.free(first));
        assert_eq!(entry.read(), Some(second));
    }

    #[test]
    fn a_reaped_entry_is_freed_by_its_reaper_only() {
        let entry = ProcessEntry::default();
        let record = entry.claim(9).unwrap();
        let reaping = entry.begin_reaping(record).unwrap();
        assert!(reaping.is_reaping());
        assert!(
            !entry.free(record),
            "the dead process's own record no longer frees it"
        );
        assert!(
            entry.claim(10).is_none(),
            "nobody claims an entry being reaped"
        );
        assert!(entry.free(reaping));
        assert!(entry.claim(10).is_some());
    }

    #[test]
    fn the_generation_wraps_without_touching_pid_or_status() {
        let entry = ProcessEntry {
            word: AtomicU64::new(GENERATION_MASK | FREE),
        };
        let record = entry.claim(u32::MAX).unwrap();
        assert_eq!(record.pid, u32::MAX);
        assert_eq!(record.word & GENERATION_MASK, 0);
        assert!(entry.free(record));
        assert_eq!(entry.read(), None);
    }
}
