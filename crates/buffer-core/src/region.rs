//! The memory a pool block is placed in.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;

/// Alignment of every region: one page, which is also what `mmap` gives.
pub const REGION_ALIGN: usize = 4096;

/// A zeroed, page-aligned span of memory that holds one pool block and is released when dropped.
///
/// This issue's pools live in private memory ([`Region::private`]); the same block can be placed
/// in any other memory that meets the alignment, such as a shared-memory mapping.
///
/// # Examples
///
/// ```
/// use buffer_core::Region;
///
/// let region = Region::private(8192).unwrap();
/// assert_eq!(region.len(), 8192);
/// ```
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: a `Region` is a uniquely owned heap allocation; everything placed in it is accessed
// through atomics or under the pool's ownership protocol, so it may move between threads.
unsafe impl Send for Region {}
// SAFETY: `&Region` only exposes the base address and length; see `Send`.
unsafe impl Sync for Region {}

/// A region could not be allocated.
///
/// # Examples
///
/// ```
/// use buffer_core::{Region, RegionError};
///
/// assert_eq!(Region::private(0).unwrap_err(), RegionError::BadSize { len: 0 });
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegionError {
    /// The size was zero or too large to describe.
    #[error(
        "cannot allocate a pool region of {len} bytes: the size must be between 1 and isize::MAX rounded to a page"
    )]
    BadSize {
        /// The size asked for.
        len: usize,
    },
    /// The system had no memory for it.
    #[error("out of memory allocating a pool region of {len} bytes")]
    OutOfMemory {
        /// The size asked for.
        len: usize,
    },
}

impl Region {
    /// Allocates `len` zeroed bytes of private memory, page-aligned.
    pub fn private(len: usize) -> Result<Region, RegionError> {
        let layout = Layout::from_size_align(len, REGION_ALIGN)
            .ok()
            .filter(|_| len > 0)
            .ok_or(RegionError::BadSize { len })?;
        // SAFETY: `layout` has a non-zero size (checked just above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(raw).ok_or(RegionError::OutOfMemory { len })?;
        Ok(Region { base, len, layout })
    }

    /// Start of the region.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never true for a region that was created successfully).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base` was allocated in `Region::private` with exactly `self.layout` and is
        // freed only here, once.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}
