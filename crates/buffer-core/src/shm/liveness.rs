//! Whether the process of a process-table entry still lives, as the kernel knows it.
//!
//! Each process attached to a shared pool holds a write lock on one byte of the segment file
//! for as long as it is attached: byte `actor` (1 to [`MAX_PROCESSES`](crate::MAX_PROCESSES)),
//! taken before it claims its entry and given up after it frees it. The locks are
//! open-file-description locks (`F_OFD_SETLK`), owned by the attachment's open file, not by a
//! pid: the kernel releases them when the last reference to that open file goes, which is when
//! the process exits, is killed, or detaches. Another process asks with `F_OFD_GETLK` whether
//! someone holds the byte. That answer needs no new file descriptor (it works when the
//! observer is out of them), does not depend on pids (it holds across PID namespaces and
//! containers sharing `/dev/shm`, and across pid reuse), and keeps a process whose main thread
//! exited alive while its other threads run.
//!
//! "Cannot tell" never means "dead": if the kernel's answer is an error, the process is taken
//! to be alive.
//!
//! Byte 0 is the block's *cleanup lock*, held by whoever reclaims what dead processes held, so
//! that two reapers never run at once; the kernel releases it too if its holder dies, whatever
//! became of the holder's pid.
//!
//! Private pools have no file and a single process: every entry is alive, and the cleanup lock
//! is only this process's.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

/// The byte of the segment file whose lock is the cleanup lock; the byte of actor `n` is `n`.
pub const CLEANUP_LOCK_BYTE: u64 = 0;

/// This process's means to ask the kernel about the other processes of one pool.
pub(crate) struct Liveness {
    /// The attachment's open segment file (the one mapped); `None` for a private pool.
    file: Option<OwnedFd>,
    /// Serialises this process's own reapers: open-file-description locks do not exclude
    /// threads sharing the description.
    reaping: Mutex<()>,
}

/// The block's cleanup lock, held; released when dropped.
pub(crate) struct CleanupLock<'a> {
    liveness: &'a Liveness,
    _threads: MutexGuard<'a, ()>,
}

impl Liveness {
    /// For a private pool: one process, no file.
    pub(crate) fn private() -> Liveness {
        Liveness {
            file: None,
            reaping: Mutex::new(()),
        }
    }

    /// For a shared pool, through `file`, this attachment's open segment file.
    pub(crate) fn of_segment(file: OwnedFd) -> Liveness {
        Liveness {
            file: Some(file),
            reaping: Mutex::new(()),
        }
    }

    /// The segment file, for a shared pool.
    pub(crate) fn file(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.file.as_ref().map(AsFd::as_fd)
    }

    /// Takes the lock of `actor`'s byte, before claiming its entry; `false` if another
    /// attachment holds it (its process is alive, or claiming the entry right now).
    pub(crate) fn lock_entry(&self, actor: u8) -> bool {
        match &self.file {
            None => true,
            Some(file) => set_lock(file, u64::from(actor), Lock::Write) == Ok(true),
        }
    }

    /// Gives up the lock of `actor`'s byte (after freeing its entry, or failing to claim it).
    pub(crate) fn unlock_entry(&self, actor: u8) {
        if let Some(file) = &self.file {
            // Unlocking cannot conflict; an error would leave the byte locked until this
            // attachment closes the file, which only delays a claim of the entry.
            let _ = set_lock(file, u64::from(actor), Lock::Unlock);
        }
    }

    /// Whether the kernel says nobody holds `actor`'s byte: its process died or detached.
    /// `false` when it cannot tell. Never asked about this attachment's own actor (its own
    /// locks never conflict with it).
    pub(crate) fn is_dead(&self, actor: u8) -> bool {
        match &self.file {
            None => false,
            Some(file) => is_locked(file, u64::from(actor)) == Ok(false),
        }
    }

    /// The cleanup lock if nobody holds it; `None` at once if someone does.
    pub(crate) fn cleanup(&self) -> Option<CleanupLock<'_>> {
        let threads = self.reaping.try_lock()?;
        self.cleanup_with(threads)
    }

    /// The cleanup lock, waiting at most `patience` for the reaper that holds it.
    pub(crate) fn cleanup_within(&self, patience: Duration) -> Option<CleanupLock<'_>> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(lock) = self.cleanup() {
                return Some(lock);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn cleanup_with<'a>(&'a self, threads: MutexGuard<'a, ()>) -> Option<CleanupLock<'a>> {
        if let Some(file) = &self.file
            && set_lock(file, CLEANUP_LOCK_BYTE, Lock::Write) != Ok(true)
        {
            return None;
        }
        Some(CleanupLock {
            liveness: self,
            _threads: threads,
        })
    }
}

impl Drop for CleanupLock<'_> {
    fn drop(&mut self) {
        if let Some(file) = &self.liveness.file {
            let _ = set_lock(file, CLEANUP_LOCK_BYTE, Lock::Unlock);
        }
    }
}

/// A lock operation on one byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    Write,
    Unlock,
}

/// A description of one byte's lock, as `fcntl` takes it.
fn one_byte(byte: u64, kind: Lock) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers, for which all zeros is a valid value
    // (and `l_pid` must be 0 for open-file-description locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = match kind {
        Lock::Write => libc::F_WRLCK,
        Lock::Unlock => libc::F_UNLCK,
    } as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte as libc::off_t;
    lock.l_len = 1;
    lock
}

/// Sets (or clears) the open-file-description lock of `byte` of `file` without waiting:
/// `Ok(false)` if another open file holds a conflicting lock.
fn set_lock(file: &OwnedFd, byte: u64, kind: Lock) -> Result<bool, i32> {
    let mut lock = one_byte(byte, kind);
    loop {
        // SAFETY: `file` is an open descriptor and `lock` a valid `flock` that lives across
        // the call; `F_OFD_SETLK` only reads it.
        let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if result == 0 {
            return Ok(true);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            code => return Err(code.unwrap_or(0)),
        }
    }
}

/// Whether another open file holds a lock on `byte` of `file`.
fn is_locked(file: &OwnedFd, byte: u64) -> Result<bool, i32> {
    let mut lock = one_byte(byte, Lock::Write);
    loop {
        // SAFETY: as in `set_lock`; `F_OFD_GETLK` writes the conflicting lock (if any) into
        // `lock`, which is valid for writes.
        let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        if result == 0 {
            return Ok(lock.l_type != libc::F_UNLCK as libc::c_short);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            code => return Err(code.unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two open file descriptions of one new file, as two attachments have.
    fn two_openings() -> (Liveness, Liveness, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "bufpool-liveness-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let open = || {
            OwnedFd::from(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .unwrap(),
            )
        };
        (
            Liveness::of_segment(open()),
            Liveness::of_segment(open()),
            path.clone(),
        )
    }

    #[test]
    fn a_held_byte_is_alive_and_a_released_one_dead() {
        let (a, b, path) = two_openings();
        assert!(b.is_dead(3), "nobody holds byte 3 yet");
        assert!(a.lock_entry(3));
        assert!(!b.is_dead(3));
        assert!(!b.lock_entry(3), "another attachment cannot take it");
        a.unlock_entry(3);
        assert!(b.is_dead(3));
        assert!(a.lock_entry(3));
        drop(a); // closing the file releases its locks, as a process's death does
        assert!(b.is_dead(3));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_cleanup_lock_excludes_other_attachments_and_threads() {
        let (a, b, path) = two_openings();
        let held = a.cleanup().unwrap();
        assert!(b.cleanup().is_none(), "another attachment");
        assert!(
            a.cleanup().is_none(),
            "another thread of the same attachment"
        );
        assert!(b.cleanup_within(Duration::from_millis(5)).is_none());
        drop(held);
        // Its holder goes away without unlocking: the kernel releases it.
        std::mem::forget(b.cleanup().unwrap());
        drop(b);
        assert!(a.cleanup().is_some());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn private_pools_have_one_live_process() {
        let private = Liveness::private();
        assert!(private.lock_entry(1));
        assert!(!private.is_dead(2));
        let held = private.cleanup().unwrap();
        assert!(private.cleanup().is_none());
        drop(held);
    }
}
