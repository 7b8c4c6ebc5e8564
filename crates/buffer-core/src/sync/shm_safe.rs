//! The marker for types that may be placed in memory shared between processes.

use std::cell::UnsafeCell;
use std::mem::{MaybeUninit, align_of, size_of};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Marks a type whose values may live in a pool block, which another process may map at another
/// address (and which a buggy or hostile process may scribble over).
///
/// # Safety
///
/// An implementor must be `#[repr(C)]` (or `#[repr(transparent)]`) and built only from integers,
/// atomics, arrays of these and other `ShmSafe` types, so that:
/// - it holds no pointer, reference, `Box`, file descriptor or other process-local handle (a
///   value written by one process means the same in every process);
/// - every bit pattern, including all zeros, is a valid value (reading a corrupt block can give
///   wrong numbers, never undefined behaviour);
/// - it needs no `Drop` (a block is released by unmapping it).
///
/// # Examples
///
/// ```
/// use buffer_core::{FrameMeta, ShmSafe};
///
/// /// Only `ShmSafe` types may be read straight out of a mapped segment.
/// fn fits_in_shared_memory<T: ShmSafe>() -> usize {
///     std::mem::size_of::<T>()
/// }
/// assert!(fits_in_shared_memory::<FrameMeta>() > 0);
/// ```
pub unsafe trait ShmSafe: Sized {}

// SAFETY: plain integers: no pointers, every bit pattern valid, no drop glue.
unsafe impl ShmSafe for u8 {}
// SAFETY: as above.
unsafe impl ShmSafe for u32 {}
// SAFETY: as above.
unsafe impl ShmSafe for u64 {}
// SAFETY: as above.
unsafe impl ShmSafe for i64 {}
// SAFETY: an atomic integer has the layout of its integer.
unsafe impl ShmSafe for AtomicU8 {}
// SAFETY: an atomic integer has the layout of its integer.
unsafe impl ShmSafe for AtomicU32 {}
// SAFETY: an atomic integer has the layout of its integer.
unsafe impl ShmSafe for AtomicU64 {}
// SAFETY: an array of `ShmSafe` values is laid out without gaps and inherits their properties.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// Aligns a value to its own 128-byte block, so that two hot words written by different threads
/// never share a cache line (128 rather than 64 because x86 prefetches lines in pairs).
#[derive(Default)]
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

// SAFETY: `#[repr(C)]` wrapper around one `ShmSafe` value; the padding bytes are never read.
unsafe impl<T: ShmSafe> ShmSafe for CachePadded<T> {}

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A copy of bytes that live in shared memory, read one by one with atomic loads (a peer
/// writing them meanwhile gives a mix of old and new bytes, never undefined behaviour).
pub(crate) fn load_bytes(bytes: &[AtomicU8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|byte| byte.load(Ordering::Relaxed))
        .collect()
}

/// Copies `len` bytes at `src`, which lie in shared memory, into `dst` with atomic loads.
///
/// # Safety
///
/// `src..src + dst.len()` must lie inside a live mapping of this process.
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    for (i, byte) in dst.iter_mut().enumerate() {
        let at = src.wrapping_add(i).cast_mut();
        // SAFETY: `at` lies inside the mapping (the caller's promise); an `AtomicU8` has the
        // size and alignment of a `u8`, and every access to shared memory in this crate is
        // atomic.
        *byte = unsafe { AtomicU8::from_ptr(at) }.load(Ordering::Relaxed);
    }
}

/// A record of `ShmSafe` plain fields in shared memory (a buffer's [`FrameMeta`](crate::FrameMeta))
/// that is only ever copied in or out whole, one 8-byte word at a time with atomic accesses: a
/// peer writing it while this process reads gives a mix of old and new words, never undefined
/// behaviour, and no reference into it is ever handed out.
///
/// `T` must be a multiple of 8 bytes, 8-byte aligned and without padding (checked when the cell
/// is first used, except for padding, which the types it is used for have none of).
#[repr(transparent)]
pub(crate) struct ShmCell<T>(UnsafeCell<T>);

// SAFETY: `#[repr(transparent)]` over a `ShmSafe` value.
unsafe impl<T: ShmSafe> ShmSafe for ShmCell<T> {}

// SAFETY: the value is only accessed through atomic word loads and stores.
unsafe impl<T: ShmSafe + Send> Sync for ShmCell<T> {}

impl<T: ShmSafe + Copy> ShmCell<T> {
    const WORDS: usize = {
        assert!(size_of::<T>().is_multiple_of(8) && align_of::<T>() >= 8);
        size_of::<T>() / 8
    };

    /// The value's words, as atomics.
    #[inline(always)]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the value is `WORDS` 8-byte words, 8-byte aligned (checked in `WORDS`), inside
        // an `UnsafeCell`; `AtomicU64` has the layout of `u64`, and every access to it in this
        // crate goes through these atomics.
        unsafe { std::slice::from_raw_parts(self.0.get().cast::<AtomicU64>(), Self::WORDS) }
    }

    /// A copy of the value.
    #[inline]
    pub(crate) fn load(&self) -> T {
        let mut copy = MaybeUninit::<T>::uninit();
        let out = copy.as_mut_ptr().cast::<u64>();
        for (i, word) in self.words().iter().enumerate() {
            let at = out.wrapping_add(i);
            // SAFETY: `i < WORDS`, so `at` lies inside `copy`, which is 8-byte aligned.
            unsafe { at.write(word.load(Ordering::Relaxed)) };
        }
        // SAFETY: every word was written, and every bit pattern is a valid `T` (`ShmSafe`).
        unsafe { copy.assume_init() }
    }

    /// Replaces the value.
    #[inline]
    pub(crate) fn store(&self, value: T) {
        let words = (&raw const value).cast::<u64>();
        for (i, word) in self.words().iter().enumerate() {
            let at = words.wrapping_add(i);
            // SAFETY: `i < WORDS`, so `at` lies inside `value`, which has no padding (the
            // type's contract).
            word.store(unsafe { at.read() }, Ordering::Relaxed);
        }
    }

    /// Replaces the first `prefix.len()` words of the value (a cheaper partial store).
    #[inline(always)]
    pub(crate) fn store_prefix(&self, prefix: &[u64]) {
        for (word, &value) in self.words().iter().zip(prefix) {
            word.store(value, Ordering::Relaxed);
        }
    }
}

impl<T: Default> Default for ShmCell<T> {
    fn default() -> ShmCell<T> {
        ShmCell(UnsafeCell::new(T::default()))
    }
}
