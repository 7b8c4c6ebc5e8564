//! The process table of a block: one entry per attached process, so that what a process holds
//! can be recorded by a small index (its *actor* number) and reclaimed when the process dies.
//!
//! An entry holds the process id and the process's start time (field 22 of `/proc/PID/stat`, in
//! clock ticks since boot): a pid reused by a new process has another start time, so the new
//! process is never mistaken for the dead one.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::shm_safe::ShmSafe;

/// Most processes that can be attached to one pool at a time.
pub const MAX_PROCESSES: usize = 64;

/// Entry status: nobody.
const FREE: u64 = 0;
/// Entry status: a process is filling the entry in.
const CLAIMING: u64 = 1;
/// Entry status: a process is attached.
const ACTIVE: u64 = 2;

/// One attached process.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ProcessEntry {
    /// Status (low 8 bits) and pid (high 32 bits), changed only by compare-and-swap.
    word: AtomicU64,
    /// The process's start time, written while the entry is CLAIMING.
    start_time: AtomicU64,
}

// SAFETY: `#[repr(C)]`, two `AtomicU64`.
unsafe impl ShmSafe for ProcessEntry {}

/// Who an entry names, as read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessRecord {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
    /// Whether the process finished attaching (rather than being in the middle of it).
    pub(crate) active: bool,
    word: u64,
}

impl ProcessEntry {
    /// Claims this entry for the calling process, if it is free.
    pub(crate) fn claim(&self, me: Identity) -> bool {
        let claiming = u64::from(me.pid) << 32 | CLAIMING;
        if self
            .word
            .compare_exchange(FREE, claiming, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.start_time.store(me.start_time, Ordering::Relaxed);
        self.word
            .store(u64::from(me.pid) << 32 | ACTIVE, Ordering::Release);
        true
    }

    /// Who holds the entry; `None` if it is free (or corrupt).
    pub(crate) fn read(&self) -> Option<ProcessRecord> {
        let word = self.word.load(Ordering::Acquire);
        let active = match word & 0xff {
            CLAIMING => false,
            ACTIVE => true,
            _ => return None,
        };
        Some(ProcessRecord {
            pid: (word >> 32) as u32,
            start_time: self.start_time.load(Ordering::Relaxed),
            active,
            word,
        })
    }

    /// Frees the entry if it still names `record` (after its process detached or was reaped).
    pub(crate) fn free(&self, record: ProcessRecord) -> bool {
        self.word
            .compare_exchange(record.word, FREE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

/// A process as recorded in an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
}

impl Identity {
    /// The calling process.
    pub(crate) fn current() -> Identity {
        let pid = std::process::id();
        Identity {
            pid,
            start_time: status(pid).map_or(0, |status| status.start_time),
        }
    }
}

/// What `/proc/PID/stat` says about a process.
struct Status {
    /// Whether it has exited (a zombie, or being reaped by its parent).
    exited: bool,
    start_time: u64,
}

/// Reads `/proc/PID/stat` without allocating (it runs while acquisitions wait).
fn status(pid: u32) -> Option<Status> {
    use std::io::Write;
    let mut path = [0u8; 32];
    let path_len = {
        let mut cursor = &mut path[..];
        write!(cursor, "/proc/{pid}/stat").ok()?;
        32 - cursor.len()
    };
    let path = std::str::from_utf8(&path[..path_len]).ok()?;
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut buffer = [0u8; 1024];
    let mut len = 0;
    while len < buffer.len() {
        match rustix::io::read(&fd, &mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
    let stat = std::str::from_utf8(&buffer[..len]).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split after the
    // last ')'. The fields after it start with field 3 (state); start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Status {
        exited: matches!(state, "Z" | "X" | "x"),
        start_time,
    })
}

impl ProcessRecord {
    /// Whether a process with this pid is running (for records that have only a pid).
    pub(crate) fn pid_alive(pid: u32) -> bool {
        status(pid).is_some_and(|status| !status.exited)
    }

    /// Whether the process is still running. One that is attaching is judged by its pid alone
    /// (its start time may not be written yet).
    pub(crate) fn is_alive(&self) -> bool {
        match status(self.pid) {
            None => false,
            Some(status) => {
                !status.exited && (!self.active || status.start_time == self.start_time)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_claimed_once_and_freed_once() {
        let entry = ProcessEntry::default();
        let me = Identity::current();
        assert!(entry.claim(me));
        assert!(!entry.claim(me));
        let record = entry.read().unwrap();
        assert_eq!((record.pid, record.start_time), (me.pid, me.start_time));
        assert!(record.is_alive());
        assert!(entry.free(record));
        assert!(!entry.free(record));
        assert_eq!(entry.read(), None);
    }

    #[test]
    fn a_reused_pid_with_another_start_time_is_dead() {
        let me = Identity::current();
        assert_ne!(me.start_time, 0, "/proc/self/stat gave a start time");
        let entry = ProcessEntry::default();
        assert!(entry.claim(Identity {
            start_time: me.start_time + 1,
            ..me
        }));
        assert!(!entry.read().unwrap().is_alive());
    }

    #[test]
    fn an_exited_child_is_dead_before_and_after_it_is_waited_for() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let entry = ProcessEntry::default();
        assert!(entry.claim(Identity {
            pid,
            start_time: status(pid).map_or(0, |s| s.start_time),
        }));
        // Not yet waited for: a zombie, or already gone.
        while status(pid).is_some_and(|s| !s.exited) {
            std::thread::yield_now();
        }
        assert!(!entry.read().unwrap().is_alive());
        child.wait().unwrap();
        assert!(!entry.read().unwrap().is_alive());
    }
}
