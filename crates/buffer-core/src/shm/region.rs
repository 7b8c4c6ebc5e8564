//! The memory a pool block is placed in.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;

/// Alignment of every region: one page, which is also what `mmap` gives.
pub const REGION_ALIGN: usize = 4096;

/// A zeroed, page-aligned span of memory that holds one pool block and is released when dropped.
///
/// A pool lives in private memory ([`Region::private`]) or in a shared-memory mapping (made by
/// [`BufferPool::create_shared`](crate::BufferPool::create_shared) and
/// [`BufferPool::attach`](crate::BufferPool::attach)).
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
    backing: Backing,
}

/// Where a region's memory comes from, and so how it is given back.
enum Backing {
    /// The heap, allocated with this layout.
    Heap(Layout),
    /// A shared mapping (`mmap`), unmapped when dropped.
    Mapping,
}

// SAFETY: a `Region` is a uniquely owned allocation or mapping; everything placed in it is accessed
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
        Ok(Region {
            base,
            len,
            backing: Backing::Heap(layout),
        })
    }

    /// Takes over a shared mapping of `len` bytes at `base`, unmapped when the region drops.
    ///
    /// # Safety
    ///
    /// `base` must be a live, page-aligned, readable and writable mapping of exactly `len` bytes
    /// made by `mmap`, that nothing else unmaps.
    pub(crate) unsafe fn from_mapping(base: NonNull<u8>, len: usize) -> Region {
        Region {
            base,
            len,
            backing: Backing::Mapping,
        }
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
        match self.backing {
            // SAFETY: `base` was allocated in `Region::private` with exactly this layout and is
            // freed only here, once.
            Backing::Heap(layout) => unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) },
            Backing::Mapping => {
                // SAFETY: `base` is a mapping of `len` bytes (`from_mapping`'s contract), unmapped
                // only here, once. Failure (impossible for a valid mapping) leaves it mapped.
                let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
            }
        }
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
