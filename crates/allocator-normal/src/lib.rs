//! Aligned host memory for bufpool pools: each buffer is one zeroed heap allocation with a
//! configurable power-of-two alignment (64 bytes by default: a cache line, and what SIMD loads
//! want).
//!
//! # Examples
//!
//! ```
//! use allocator_base::PoolAllocator;
//! use allocator_normal::{NormalAllocator, NormalBackend};
//! use buffer_core::Wait;
//!
//! let allocator = NormalAllocator::new(NormalBackend::with_alignment(4096)?);
//! let id = allocator.allocate_pool_with_buffers(2, 1920 * 1080 * 4, "frames", "video")?;
//! let pool = allocator.pool(id)?;
//! let frame = pool.acquire_free(Wait::NoWait)?;
//! assert_eq!(frame.buffer().virt_addr % 4096, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_base::{Backend, BackendPools, Created};
use buffer_core::MemoryKind;

/// Default alignment of every buffer: one cache line.
pub const DEFAULT_ALIGNMENT: usize = 64;

/// The normal allocator: [`BackendPools`] of aligned heap memory.
pub type NormalAllocator = BackendPools<NormalBackend>;

/// The aligned-heap backend.
///
/// # Examples
///
/// ```
/// use allocator_normal::{NormalBackend, DEFAULT_ALIGNMENT};
///
/// assert_eq!(NormalBackend::default().alignment(), DEFAULT_ALIGNMENT);
/// assert!(NormalBackend::with_alignment(3).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalBackend {
    alignment: usize,
}

/// The alignment asked for is unusable.
///
/// # Examples
///
/// ```
/// use allocator_normal::{AlignmentError, NormalBackend};
///
/// assert_eq!(NormalBackend::with_alignment(48).unwrap_err(), AlignmentError { alignment: 48 });
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("alignment {alignment} is unusable: give a power of two between 1 and 2^30 bytes")]
pub struct AlignmentError {
    /// The alignment asked for.
    pub alignment: usize,
}

/// A buffer could not be created.
///
/// # Examples
///
/// ```
/// use allocator_base::Backend;
/// use allocator_normal::{NormalBackend, NormalError};
///
/// assert_eq!(NormalBackend::default().create(0).unwrap_err(), NormalError::ZeroSize);
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum NormalError {
    /// Size 0 was asked for.
    #[error("buffers must hold at least 1 byte")]
    ZeroSize,
    /// The size, rounded up to the alignment, does not fit in `isize`.
    #[error("{size} bytes aligned to {alignment} exceeds the largest possible allocation")]
    TooLarge {
        /// The size asked for.
        size: usize,
        /// The alignment.
        alignment: usize,
    },
    /// The system has no memory for it.
    #[error("out of memory allocating {size} bytes")]
    OutOfMemory {
        /// The size asked for.
        size: usize,
    },
}

/// One buffer of the normal backend: a heap allocation freed in [`Backend::release`].
///
/// # Examples
///
/// ```
/// use allocator_base::Backend;
/// use allocator_normal::NormalBackend;
///
/// let backend = NormalBackend::default();
/// let created = backend.create(100).unwrap();
/// assert_eq!(created.addr as usize % 64, 0);
/// backend.release(created.memory); // frees it
/// ```
#[derive(Debug)]
pub struct NormalMemory {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `NormalMemory` uniquely owns its allocation; it is only a handle, never dereferenced by
// itself, so moving or sharing it between threads is sound.
unsafe impl Send for NormalMemory {}
// SAFETY: see `Send`; `&NormalMemory` exposes nothing.
unsafe impl Sync for NormalMemory {}

const MAX_ALIGNMENT: usize = 1 << 30;

impl NormalBackend {
    /// A backend whose buffers are aligned to `alignment` bytes (a power of two, at most 2^30).
    pub fn with_alignment(alignment: usize) -> Result<NormalBackend, AlignmentError> {
        if alignment.is_power_of_two() && alignment <= MAX_ALIGNMENT {
            Ok(NormalBackend { alignment })
        } else {
            Err(AlignmentError { alignment })
        }
    }

    /// The alignment of every buffer.
    pub fn alignment(&self) -> usize {
        self.alignment
    }
}

impl Default for NormalBackend {
    fn default() -> NormalBackend {
        NormalBackend {
            alignment: DEFAULT_ALIGNMENT,
        }
    }
}

// SAFETY: `create` returns the start of a fresh allocation of `size` bytes with `self.alignment`
// (the layout), zeroed, owned by the returned `NormalMemory` and freed only in `release`.
unsafe impl Backend for NormalBackend {
    type Memory = NormalMemory;
    type Error = NormalError;

    fn name(&self) -> &'static str {
        "normal"
    }

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::Host
    }

    fn alignment(&self) -> usize {
        self.alignment
    }

    fn create(&self, size: usize) -> Result<Created<NormalMemory>, NormalError> {
        if size == 0 {
            return Err(NormalError::ZeroSize);
        }
        let layout =
            Layout::from_size_align(size, self.alignment).map_err(|_| NormalError::TooLarge {
                size,
                alignment: self.alignment,
            })?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(NormalError::OutOfMemory { size })?;
        Ok(Created {
            memory: NormalMemory { ptr, layout },
            addr: ptr.as_ptr(),
            phys: None,
        })
    }

    fn release(&self, memory: NormalMemory) {
        // SAFETY: `memory` came from `create`, which allocated `ptr` with exactly `layout`; the
        // `Backend` contract calls `release` once per buffer, so this is the only free.
        unsafe { std::alloc::dealloc(memory.ptr.as_ptr(), memory.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignments_are_validated() {
        for ok in [1, 2, 64, 4096, MAX_ALIGNMENT] {
            assert_eq!(NormalBackend::with_alignment(ok).unwrap().alignment(), ok);
        }
        for bad in [0, 3, 48, MAX_ALIGNMENT * 2, usize::MAX] {
            let err = NormalBackend::with_alignment(bad).unwrap_err();
            assert!(err.to_string().contains("power of two"), "{err}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let backend = NormalBackend::default();
        assert_eq!(backend.create(0).unwrap_err(), NormalError::ZeroSize);
        assert!(matches!(
            backend.create(usize::MAX - 8),
            Err(NormalError::TooLarge { .. })
        ));
        let huge = isize::MAX as usize / 2;
        assert!(matches!(
            backend.create(huge),
            Err(NormalError::OutOfMemory { .. } | NormalError::TooLarge { .. })
        ));
    }

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for alignment in [1, 64, 4096, 1 << 21] {
            let backend = NormalBackend::with_alignment(alignment).unwrap();
            let created = backend.create(10_000).unwrap();
            assert_eq!(created.addr as usize % alignment, 0);
            // SAFETY: the backend contract: `addr` points to 10 000 bytes we own until release.
            let bytes = unsafe { std::slice::from_raw_parts(created.addr, 10_000) };
            assert!(bytes.iter().all(|&b| b == 0));
            backend.release(created.memory);
        }
    }
}
