//! A peer that writes into a segment behind the pool's back: its own shared mapping of the
//! segment file, with atomic word access at the offsets `buffer_core::testing::layout` gives.

#![allow(dead_code)] // each test file uses a part

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// A shared mapping of a whole segment file.
pub struct RawSegment {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for RawSegment {}
// SAFETY: as for `Send`.
unsafe impl Sync for RawSegment {}

impl RawSegment {
    /// Maps `/dev/shm/bufpool.SEGMENT` for reading and writing.
    pub fn map(segment: &str) -> RawSegment {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/bufpool.{segment}"))
            .unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a new shared mapping of the whole file, at an address the kernel picks; it
        // aliases no Rust object and is unmapped only in `drop`.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                file.as_fd(),
                0,
            )
        }
        .unwrap();
        RawSegment {
            base: base.cast(),
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        assert!(
            offset + std::mem::size_of::<T>() <= self.len,
            "offset {offset} outside"
        );
        assert_eq!(
            offset % std::mem::align_of::<T>(),
            0,
            "offset {offset} misaligned"
        );
        self.base.wrapping_add(offset).cast()
    }

    /// The byte at `offset`, to access atomically as every process does.
    pub fn u8_at(&self, offset: usize) -> &AtomicU8 {
        // SAFETY: inside the mapping (checked in `at`), which lives as long as `self`; every
        // process touches the block's words atomically, as this does.
        unsafe { AtomicU8::from_ptr(self.at(offset)) }
    }

    /// The `u32` at `offset` (4-aligned), to access atomically.
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `u8_at`; `at` checked the alignment.
        unsafe { AtomicU32::from_ptr(self.at(offset)) }
    }

    /// The `u64` at `offset` (8-aligned), to access atomically.
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as in `u8_at`; `at` checked the alignment.
        unsafe { AtomicU64::from_ptr(self.at(offset)) }
    }

    pub fn load_u64(&self, offset: usize) -> u64 {
        self.u64_at(offset).load(Ordering::SeqCst)
    }

    pub fn store_u64(&self, offset: usize, value: u64) {
        self.u64_at(offset).store(value, Ordering::SeqCst)
    }

    pub fn store_u32(&self, offset: usize, value: u32) {
        self.u32_at(offset).store(value, Ordering::SeqCst)
    }

    pub fn load_u32(&self, offset: usize) -> u32 {
        self.u32_at(offset).load(Ordering::SeqCst)
    }
}

impl Drop for RawSegment {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), self.len) };
    }
}

/// The CPU time this thread used so far.
pub fn thread_cpu_time() -> std::time::Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU time this process used so far (every thread).
pub fn process_cpu_time() -> std::time::Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
