//! The marker for types that may be placed in memory shared between processes.

use std::sync::atomic::{AtomicU32, AtomicU64};

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
