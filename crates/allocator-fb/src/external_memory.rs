//! Pools over memory someone else mapped: a list of address ranges lent to pool buffers one at a
//! time, never freed or unmapped by us.

use allocator_base::{Backend, BackendPools, Created};
use buffer_core::{MemoryKind, Ownership};
use parking_lot::Mutex;

/// The external-memory allocator: [`BackendPools`] of [`ExternalRange`]s.
pub type ExternalMemoryAllocator = BackendPools<ExternalMemoryBackend>;

/// One span of memory mapped by someone else (a driver, a firmware table, another library).
///
/// # Examples
///
/// ```
/// use allocator_fb::ExternalRange;
///
/// let range = ExternalRange { addr: 0x1000 as *mut u8, phys: Some(0xfd00_0000), len: 4096 };
/// assert_eq!(range.end(), Some(0x2000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalRange {
    /// Where the range starts in this process.
    pub addr: *mut u8,
    /// Its physical or bus address, where it has one (for DMA engines).
    pub phys: Option<u64>,
    /// Its length in bytes.
    pub len: usize,
}

// SAFETY: a range is a description (an address and a length); whoever turns it into a backend
// promised (`ExternalMemoryBackend::new`) that the memory is usable from any thread.
unsafe impl Send for ExternalRange {}
// SAFETY: as for `Send`.
unsafe impl Sync for ExternalRange {}

impl ExternalRange {
    /// The address one past the range's end, or `None` if it wraps around the address space.
    pub fn end(&self) -> Option<usize> {
        (self.addr as usize).checked_add(self.len)
    }
}

/// A range list cannot back a pool.
///
/// # Examples
///
/// ```
/// use allocator_fb::{ExternalMemoryBackend, ExternalRange, ExternalRangeError};
/// use buffer_core::MemoryKind;
///
/// let ranges = vec![ExternalRange { addr: std::ptr::null_mut(), phys: None, len: 64 }];
/// // SAFETY: refused before any range is used.
/// let err = unsafe { ExternalMemoryBackend::new(ranges, MemoryKind::Host, 1) }.unwrap_err();
/// assert_eq!(err, ExternalRangeError::Null { index: 0 });
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ExternalRangeError {
    /// The list is empty.
    #[error("no ranges given: an external-memory pool needs at least one range")]
    NoRanges,
    /// The alignment asked for is not a power of two.
    #[error("alignment {alignment} is unusable: give a power of two")]
    BadAlignment {
        /// The alignment asked for.
        alignment: usize,
    },
    /// A range starts at address 0.
    #[error("range {index} starts at a null address: give the address the memory is mapped at")]
    Null {
        /// Its place in the list.
        index: usize,
    },
    /// A range has no bytes.
    #[error("range {index} is empty: every range needs at least one byte")]
    Empty {
        /// Its place in the list.
        index: usize,
    },
    /// A range runs past the end of the address space.
    #[error("range {index} ({len} bytes at {addr:#x}) runs past the end of the address space")]
    Wraps {
        /// Its place in the list.
        index: usize,
        /// Its address.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// A range's virtual or physical address is not aligned as asked.
    #[error(
        "range {index} starts at {addr:#x}, which is not aligned to {alignment} bytes: align the ranges or ask for a smaller alignment"
    )]
    Misaligned {
        /// Its place in the list.
        index: usize,
        /// The misaligned address (virtual, or physical if only that one is misaligned).
        addr: u64,
        /// The alignment asked for.
        alignment: usize,
    },
    /// Two ranges share memory, so two buffers would too.
    #[error(
        "ranges {first} and {second} overlap: every buffer needs memory of its own, so give disjoint ranges"
    )]
    Overlap {
        /// The range starting lower.
        first: usize,
        /// The range overlapping it.
        second: usize,
    },
}

/// No free range is large enough for a buffer.
///
/// # Examples
///
/// ```
/// use allocator_base::Backend;
/// use allocator_fb::{ExternalMemoryBackend, ExternalRange, RangesExhausted};
/// use buffer_core::MemoryKind;
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
/// let range = ExternalRange { addr: memory.as_mut_ptr(), phys: None, len: 64 };
/// // SAFETY: the leaked memory lives forever and only the pool uses it.
/// let backend = unsafe { ExternalMemoryBackend::new(vec![range], MemoryKind::Host, 1) }.unwrap();
/// let err = backend.create(65).unwrap_err();
/// assert_eq!(err, RangesExhausted { size: 65, free: 1, largest_free: 64, total: 1 });
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error(
    "no free range holds {size} bytes ({free} of {total} ranges free, the largest {largest_free} bytes): release buffers, ask for less, or give more ranges"
)]
pub struct RangesExhausted {
    /// The size asked for.
    pub size: usize,
    /// Ranges free at the time.
    pub free: usize,
    /// The largest free range's length (0 when none is free).
    pub largest_free: usize,
    /// Ranges in the list.
    pub total: usize,
}

/// The backend that lends [`ExternalRange`]s, memory someone else mapped, to pool buffers: each
/// buffer gets a whole free range (the smallest that fits, the first of equals), which goes back
/// into the free list when the pool lets the buffer go. The memory is never freed or unmapped:
/// buffers' ownership is [`Ownership::External`].
///
/// # Examples
///
/// ```
/// use allocator_base::PoolAllocator;
/// use allocator_fb::{ExternalMemoryAllocator, ExternalMemoryBackend, ExternalRange};
/// use buffer_core::{MemoryKind, Ownership, Wait};
///
/// // Memory mapped by "someone else": here, a leaked heap block split in two.
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 8192].into_boxed_slice());
/// let base = memory.as_mut_ptr();
/// let ranges = vec![
///     ExternalRange { addr: base, phys: Some(0xfd00_0000), len: 4096 },
///     ExternalRange { addr: base.wrapping_add(4096), phys: Some(0xfd00_1000), len: 4096 },
/// ];
/// // SAFETY: the leaked memory lives forever, is host memory, and only the pool uses it.
/// let backend = unsafe { ExternalMemoryBackend::new(ranges, MemoryKind::Host, 1) }?;
/// let allocator = ExternalMemoryAllocator::new(backend);
/// let id = allocator.allocate_pool_with_buffers(2, 4096, "mapped", "display")?;
/// let pool = allocator.pool(id)?;
/// let frame = pool.acquire_free(Wait::NoWait)?;
/// assert_eq!(frame.buffer().ownership, Ownership::External);
/// assert_eq!(frame.buffer().phys_addr, Some(0xfd00_0000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ExternalMemoryBackend {
    ranges: Vec<ExternalRange>,
    /// Indices of the ranges not lent to a buffer.
    free: Mutex<Vec<usize>>,
    kind: MemoryKind,
    alignment: usize,
}

/// The range one buffer borrowed, by its place in the list.
#[derive(Debug)]
pub struct RangeLease {
    index: usize,
}

impl RangeLease {
    /// The range's place in the list given to [`ExternalMemoryBackend::new`].
    pub fn index(&self) -> usize {
        self.index
    }
}

impl ExternalMemoryBackend {
    /// A backend lending `ranges`, memory of `kind`, each starting at a multiple of `alignment`
    /// (its physical address too, where given). The list is checked: not empty, no null, empty,
    /// wrapping, misaligned or overlapping range.
    ///
    /// # Safety
    ///
    /// Every range must stay valid (mapped) for as long as the backend and any pool buffer made
    /// from it live, and nothing else may access it meanwhile except through those buffers. If
    /// `kind` is host-accessible, every range must be readable and writable by this process.
    pub unsafe fn new(
        ranges: Vec<ExternalRange>,
        kind: MemoryKind,
        alignment: usize,
    ) -> Result<ExternalMemoryBackend, ExternalRangeError> {
        check_ranges(&ranges, alignment)?;
        let free = Mutex::new((0..ranges.len()).collect());
        Ok(ExternalMemoryBackend {
            ranges,
            free,
            kind,
            alignment,
        })
    }

    /// The ranges, in the order given.
    pub fn ranges(&self) -> &[ExternalRange] {
        &self.ranges
    }

    /// How many ranges are not lent to a buffer.
    pub fn free_ranges(&self) -> usize {
        self.free.lock().len()
    }
}

/// Checks a range list as [`ExternalMemoryBackend::new`] documents.
fn check_ranges(ranges: &[ExternalRange], alignment: usize) -> Result<(), ExternalRangeError> {
    if !alignment.is_power_of_two() {
        return Err(ExternalRangeError::BadAlignment { alignment });
    }
    if ranges.is_empty() {
        return Err(ExternalRangeError::NoRanges);
    }
    for (index, range) in ranges.iter().enumerate() {
        let addr = range.addr as usize;
        if range.addr.is_null() {
            return Err(ExternalRangeError::Null { index });
        }
        if range.len == 0 {
            return Err(ExternalRangeError::Empty { index });
        }
        if range.end().is_none() {
            let len = range.len;
            return Err(ExternalRangeError::Wraps { index, addr, len });
        }
        let misaligned = [Some(addr as u64), range.phys]
            .into_iter()
            .flatten()
            .find(|a| a % alignment as u64 != 0);
        if let Some(addr) = misaligned {
            return Err(ExternalRangeError::Misaligned {
                index,
                addr,
                alignment,
            });
        }
    }
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].addr as usize);
    for pair in order.windows(2) {
        let (first, second) = (pair[0], pair[1]);
        if ranges[first].end() > Some(ranges[second].addr as usize) {
            return Err(ExternalRangeError::Overlap { first, second });
        }
    }
    Ok(())
}

// SAFETY: `create` lends a whole range not lent to any other buffer (it leaves the free list
// until `release`), at least `size` bytes long, aligned as `alignment` says (checked in `new`);
// `new`'s contract keeps it valid and host-accessible when the kind says so.
unsafe impl Backend for ExternalMemoryBackend {
    type Memory = RangeLease;
    type Error = RangesExhausted;

    fn name(&self) -> &'static str {
        "external-memory"
    }

    fn memory_kind(&self) -> MemoryKind {
        self.kind
    }

    fn alignment(&self) -> usize {
        self.alignment
    }

    fn ownership(&self) -> Ownership {
        Ownership::External
    }

    fn create(&self, size: usize) -> Result<Created<RangeLease>, RangesExhausted> {
        let mut free = self.free.lock();
        let best = free
            .iter()
            .enumerate()
            .filter(|&(_, &index)| self.ranges[index].len >= size)
            .min_by_key(|&(_, &index)| (self.ranges[index].len, index))
            .map(|(at, _)| at);
        let Some(at) = best else {
            return Err(RangesExhausted {
                size,
                free: free.len(),
                largest_free: free.iter().map(|&i| self.ranges[i].len).max().unwrap_or(0),
                total: self.ranges.len(),
            });
        };
        let index = free.swap_remove(at);
        let range = self.ranges[index];
        Ok(Created {
            memory: RangeLease { index },
            addr: range.addr,
            phys: range.phys,
        })
    }

    fn release(&self, memory: RangeLease) {
        self.free.lock().push(memory.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(addr: usize, len: usize) -> ExternalRange {
        ExternalRange {
            addr: addr as *mut u8,
            phys: None,
            len,
        }
    }

    fn check(ranges: &[ExternalRange], alignment: usize) -> Result<(), ExternalRangeError> {
        check_ranges(ranges, alignment)
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(check(&[], 1), Err(ExternalRangeError::NoRanges));
        assert_eq!(
            check(&[range(0x1000, 1)], 3),
            Err(ExternalRangeError::BadAlignment { alignment: 3 })
        );
        assert_eq!(
            check(&[range(0x1000, 0)], 1),
            Err(ExternalRangeError::Empty { index: 0 })
        );
        assert!(matches!(
            check(&[range(usize::MAX - 10, 100)], 1),
            Err(ExternalRangeError::Wraps { index: 0, .. })
        ));
        assert_eq!(
            check(&[range(0x1000, 64), range(0x2010, 64)], 4096),
            Err(ExternalRangeError::Misaligned {
                index: 1,
                addr: 0x2010,
                alignment: 4096
            })
        );
        let mut phys = range(0x1000, 64);
        phys.phys = Some(0x10);
        assert!(matches!(
            check(&[phys], 4096),
            Err(ExternalRangeError::Misaligned { addr: 0x10, .. })
        ));
        assert_eq!(
            check(&[range(0x3000, 0x1000), range(0x1000, 0x2001)], 1),
            Err(ExternalRangeError::Overlap {
                first: 1,
                second: 0
            })
        );
    }

    #[test]
    fn touching_ranges_are_fine() {
        assert_eq!(
            check(&[range(0x2000, 0x1000), range(0x1000, 0x1000)], 4096),
            Ok(())
        );
    }
}
