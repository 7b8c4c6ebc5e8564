//! What a child forked from a process attached to shared pools finds of them.
//!
//! A forked child is a new process. To use a shared pool it attaches itself, with
//! [`BufferPool::attach`](crate::BufferPool::attach), and gets a process entry of its own. What
//! it inherited of its parent's attachments neither acts for the parent nor keeps the parent
//! alive in the kernel's eyes:
//!
//! - each segment mapping of the parent is replaced, in the child, by zeroed private memory of
//!   the same size. The child's inherited handles see a closed, empty pool of their own:
//!   acquisitions and receives fail with `Closed`, and dropping inherited guards and handles
//!   changes nothing that the parent or any other process uses. The parent's entry is never
//!   reaped or freed by the child.
//! - each segment file the parent held its liveness lock through (see the `liveness` module) is
//!   replaced, in the child, by an empty file. The lock belongs to the open file, which the
//!   child would otherwise share, so without this a child that outlived its parent would keep
//!   the dead parent "alive" and its buffers unreclaimed.
//!
//! A `pthread_atfork` child handler does both, in the child, as `fork()` returns and before any
//! other code of the child runs; it makes only system calls. It covers `fork()` from any
//! library that goes through the C library (Rust's `std::process::Command` execs at once, and
//! closes the files, which are close-on-exec, anyway). A child made by a raw `clone` system
//! call bypasses it. Up to [`MAX_TRACKED`] mappings per process are covered; a process
//! attached to more pools at once leaves the rest shared with its children. A pool is tracked
//! from the moment it is mapped, before its entry's lock is taken; a child forked by another
//! thread in the instant between opening a segment and tracking it shares that open file,
//! and with it the lock taken later (until the child exits).

use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Most shared segments per process whose mapping a forked child gets a private copy of.
pub(crate) const MAX_TRACKED: usize = 1024;

/// One mapping to replace in a forked child. `len` is written last when tracking and first
/// when untracking, so the child handler only acts on complete entries.
struct Tracked {
    /// Start of the mapping; 0 while the entry is free (claimed by CAS).
    base: AtomicUsize,
    /// Length of the mapping; 0 while the entry is incomplete.
    len: AtomicUsize,
    /// The segment file holding the attachment's liveness lock, or -1.
    file: AtomicI32,
}

static TRACKED: [Tracked; MAX_TRACKED] = [const {
    Tracked {
        base: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        file: AtomicI32::new(-1),
    }
}; MAX_TRACKED];

/// An empty file the child's copies of the lock files are replaced by (-1 if none could be
/// made: the child then keeps them).
static SPARE_FILE: AtomicI32 = AtomicI32::new(-1);

static INSTALL: Once = Once::new();

/// A mapping tracked for forked children; untracked when dropped (before the mapping goes).
pub(crate) struct ForkTracking {
    index: usize,
}

/// Tracks the mapping of `len` bytes at `base` and the segment file `file`, so that a child
/// forked from now on gets a private, closed copy and drops the file. `None` if
/// [`MAX_TRACKED`] mappings are tracked already.
pub(crate) fn track(base: *mut u8, len: usize, file: BorrowedFd<'_>) -> Option<ForkTracking> {
    INSTALL.call_once(install);
    let base = base as usize;
    debug_assert!(base != 0 && len != 0);
    let index = TRACKED.iter().position(|entry| {
        entry
            .base
            .compare_exchange(0, base, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    let entry = &TRACKED[index];
    entry.file.store(file.as_raw_fd(), Ordering::Release);
    entry.len.store(len, Ordering::Release);
    Some(ForkTracking { index })
}

impl Drop for ForkTracking {
    fn drop(&mut self) {
        let entry = &TRACKED[self.index];
        entry.len.store(0, Ordering::Release);
        entry.file.store(-1, Ordering::Release);
        entry.base.store(0, Ordering::Release);
    }
}

/// Makes the spare file and registers the child handler, once per process.
fn install() {
    if let Ok(spare) =
        rustix::fs::memfd_create("bufpool-forked-child", rustix::fs::MemfdFlags::CLOEXEC)
    {
        SPARE_FILE.store(spare.into_raw_fd(), Ordering::Release);
    }
    // SAFETY: `in_child` is an `extern "C"` function without arguments that makes only system
    // calls, as a handler running in a freshly forked child must.
    let registered = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    debug_assert_eq!(registered, 0, "pthread_atfork fails only without memory");
}

/// Runs in a forked child, before anything else: see the module docs.
extern "C" fn in_child() {
    let spare = SPARE_FILE.load(Ordering::Acquire);
    for entry in &TRACKED {
        let len = entry.len.load(Ordering::Acquire);
        let base = entry.base.load(Ordering::Acquire);
        if len == 0 || base == 0 {
            continue;
        }
        // SAFETY: `base..base + len` is a mapping of this (copied) address space, tracked while
        // it lives; `MAP_FIXED` replaces it in place by zeroed private memory, so every pointer
        // into it stays valid (the pool code reads zeros: a closed, empty pool). Only the child
        // runs, on this one thread, so nothing uses the range meanwhile.
        let replaced = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        debug_assert_ne!(replaced, libc::MAP_FAILED);
        let file = entry.file.load(Ordering::Acquire);
        if file >= 0 && spare >= 0 {
            // SAFETY: both are open descriptors of this process; `dup3` makes `file` a copy of
            // the spare file, closing the child's copy of the segment file (its lock stays the
            // parent's). The pool code that owns `file` closes it later as usual.
            unsafe { libc::dup3(spare, file, libc::O_CLOEXEC) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_freed_when_untracked() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&file);
        let region = crate::shm::region::Region::private(8192).unwrap();
        let a = track(region.base().as_ptr(), 4096, fd).unwrap();
        // SAFETY: 4096 bytes into an 8192-byte region.
        let b = track(unsafe { region.base().as_ptr().add(4096) }, 4096, fd).unwrap();
        assert_ne!(a.index, b.index);
        let index = a.index;
        assert_eq!(TRACKED[index].len.load(Ordering::Relaxed), 4096);
        drop(a);
        assert_eq!(TRACKED[index].len.load(Ordering::Relaxed), 0);
        assert_eq!(TRACKED[index].file.load(Ordering::Relaxed), -1);
        drop(b);
    }
}
