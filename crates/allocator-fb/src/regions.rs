//! Pools over memory someone else mapped: a list of regions lent to pool buffers one at a time,
//! never freed or unmapped by us.

use allocator_base::{Backend, BackendPools, Created};
use buffer_core::{MemoryKind, Ownership};
use parking_lot::Mutex;

/// The external-region allocator: [`BackendPools`] of [`ExternalRegion`]s.
pub type RegionAllocator = BackendPools<RegionBackend>;

/// One span of memory mapped by someone else (a driver, a firmware table, another library).
///
/// # Examples
///
/// ```
/// use allocator_fb::ExternalRegion;
///
/// let region = ExternalRegion { addr: 0x1000 as *mut u8, phys: Some(0xfd00_0000), len: 4096 };
/// assert_eq!(region.end(), Some(0x2000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalRegion {
    /// Where the region starts in this process.
    pub addr: *mut u8,
    /// Its physical or bus address, where it has one (for DMA engines).
    pub phys: Option<u64>,
    /// Its length in bytes.
    pub len: usize,
}

// SAFETY: a region is a description (an address and a length); whoever turns it into a backend
// promised (`RegionBackend::new`) that the memory is usable from any thread.
unsafe impl Send for ExternalRegion {}
// SAFETY: as for `Send`.
unsafe impl Sync for ExternalRegion {}

impl ExternalRegion {
    /// The address one past the region's end, or `None` if it wraps around the address space.
    pub fn end(&self) -> Option<usize> {
        (self.addr as usize).checked_add(self.len)
    }
}

/// A region list cannot back a pool.
///
/// # Examples
///
/// ```
/// use allocator_fb::{ExternalRegion, RegionBackend, RegionError};
/// use buffer_core::MemoryKind;
///
/// let regions = vec![ExternalRegion { addr: std::ptr::null_mut(), phys: None, len: 64 }];
/// // SAFETY: refused before any region is used.
/// let err = unsafe { RegionBackend::new(regions, MemoryKind::Host, 1) }.unwrap_err();
/// assert_eq!(err, RegionError::Null { index: 0 });
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// The list is empty.
    #[error("no regions given: an external-region pool needs at least one region")]
    NoRegions,
    /// The alignment asked for is not a power of two.
    #[error("alignment {alignment} is unusable: give a power of two")]
    BadAlignment {
        /// The alignment asked for.
        alignment: usize,
    },
    /// A region starts at address 0.
    #[error("region {index} starts at a null address: give the address the memory is mapped at")]
    Null {
        /// Its place in the list.
        index: usize,
    },
    /// A region has no bytes.
    #[error("region {index} is empty: every region needs at least one byte")]
    Empty {
        /// Its place in the list.
        index: usize,
    },
    /// A region runs past the end of the address space.
    #[error("region {index} ({len} bytes at {addr:#x}) runs past the end of the address space")]
    Wraps {
        /// Its place in the list.
        index: usize,
        /// Its address.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// A region's virtual or physical address is not aligned as asked.
    #[error(
        "region {index} starts at {addr:#x}, which is not aligned to {alignment} bytes: align the regions or ask for a smaller alignment"
    )]
    Misaligned {
        /// Its place in the list.
        index: usize,
        /// The misaligned address (virtual, or physical if only that one is misaligned).
        addr: u64,
        /// The alignment asked for.
        alignment: usize,
    },
    /// Two regions share memory, so two buffers would too.
    #[error(
        "regions {first} and {second} overlap: every buffer needs memory of its own, so give disjoint regions"
    )]
    Overlap {
        /// The region starting lower.
        first: usize,
        /// The region overlapping it.
        second: usize,
    },
}

/// No free region is large enough for a buffer.
///
/// # Examples
///
/// ```
/// use allocator_base::Backend;
/// use allocator_fb::{ExternalRegion, RegionBackend, RegionsExhausted};
/// use buffer_core::MemoryKind;
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
/// let region = ExternalRegion { addr: memory.as_mut_ptr(), phys: None, len: 64 };
/// // SAFETY: the leaked memory lives forever and only the pool uses it.
/// let backend = unsafe { RegionBackend::new(vec![region], MemoryKind::Host, 1) }.unwrap();
/// let err = backend.create(65).unwrap_err();
/// assert_eq!(err, RegionsExhausted { size: 65, free: 1, largest_free: 64, total: 1 });
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error(
    "no free region holds {size} bytes ({free} of {total} regions free, the largest {largest_free} bytes): release buffers, ask for less, or give more regions"
)]
pub struct RegionsExhausted {
    /// The size asked for.
    pub size: usize,
    /// Regions free at the time.
    pub free: usize,
    /// The largest free region's length (0 when none is free).
    pub largest_free: usize,
    /// Regions in the list.
    pub total: usize,
}

/// The backend that lends [`ExternalRegion`]s to pool buffers: each buffer gets a whole free
/// region (the smallest that fits, the first of equals), and gets it back into the free list when the pool lets the
/// buffer go. The memory is never freed or unmapped: buffers' ownership is
/// [`Ownership::External`].
///
/// # Examples
///
/// ```
/// use allocator_base::PoolAllocator;
/// use allocator_fb::{ExternalRegion, RegionAllocator, RegionBackend};
/// use buffer_core::{MemoryKind, Ownership, Wait};
///
/// // Memory mapped by "someone else": here, a leaked heap block split in two.
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 8192].into_boxed_slice());
/// let base = memory.as_mut_ptr();
/// let regions = vec![
///     ExternalRegion { addr: base, phys: Some(0xfd00_0000), len: 4096 },
///     ExternalRegion { addr: base.wrapping_add(4096), phys: Some(0xfd00_1000), len: 4096 },
/// ];
/// // SAFETY: the leaked memory lives forever, is host memory, and only the pool uses it.
/// let backend = unsafe { RegionBackend::new(regions, MemoryKind::Host, 1) }?;
/// let allocator = RegionAllocator::new(backend);
/// let id = allocator.allocate_pool_with_buffers(2, 4096, "mapped", "display")?;
/// let pool = allocator.pool(id)?;
/// let frame = pool.acquire_free(Wait::NoWait)?;
/// assert_eq!(frame.buffer().ownership, Ownership::External);
/// assert_eq!(frame.buffer().phys_addr, Some(0xfd00_0000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RegionBackend {
    regions: Vec<ExternalRegion>,
    /// Indices of the regions not lent to a buffer.
    free: Mutex<Vec<usize>>,
    kind: MemoryKind,
    alignment: usize,
}

/// The region one buffer borrowed, by its place in the list.
#[derive(Debug)]
pub struct RegionLease {
    index: usize,
}

impl RegionLease {
    /// The region's place in the list given to [`RegionBackend::new`].
    pub fn index(&self) -> usize {
        self.index
    }
}

impl RegionBackend {
    /// A backend lending `regions`, memory of `kind`, each starting at a multiple of `alignment`
    /// (its physical address too, where given). The list is checked: not empty, no null, empty,
    /// wrapping, misaligned or overlapping region.
    ///
    /// # Safety
    ///
    /// Every region must stay valid (mapped) for as long as the backend and any pool buffer made
    /// from it live, and nothing else may access it meanwhile except through those buffers. If
    /// `kind` is host-accessible, every region must be readable and writable by this process.
    pub unsafe fn new(
        regions: Vec<ExternalRegion>,
        kind: MemoryKind,
        alignment: usize,
    ) -> Result<RegionBackend, RegionError> {
        check_regions(&regions, alignment)?;
        let free = Mutex::new((0..regions.len()).collect());
        Ok(RegionBackend {
            regions,
            free,
            kind,
            alignment,
        })
    }

    /// The regions, in the order given.
    pub fn regions(&self) -> &[ExternalRegion] {
        &self.regions
    }

    /// How many regions are not lent to a buffer.
    pub fn free_regions(&self) -> usize {
        self.free.lock().len()
    }
}

/// Checks a region list as [`RegionBackend::new`] documents.
fn check_regions(regions: &[ExternalRegion], alignment: usize) -> Result<(), RegionError> {
    if !alignment.is_power_of_two() {
        return Err(RegionError::BadAlignment { alignment });
    }
    if regions.is_empty() {
        return Err(RegionError::NoRegions);
    }
    for (index, region) in regions.iter().enumerate() {
        let addr = region.addr as usize;
        if region.addr.is_null() {
            return Err(RegionError::Null { index });
        }
        if region.len == 0 {
            return Err(RegionError::Empty { index });
        }
        if region.end().is_none() {
            let len = region.len;
            return Err(RegionError::Wraps { index, addr, len });
        }
        let misaligned = [Some(addr as u64), region.phys]
            .into_iter()
            .flatten()
            .find(|a| a % alignment as u64 != 0);
        if let Some(addr) = misaligned {
            return Err(RegionError::Misaligned {
                index,
                addr,
                alignment,
            });
        }
    }
    let mut order: Vec<usize> = (0..regions.len()).collect();
    order.sort_by_key(|&i| regions[i].addr as usize);
    for pair in order.windows(2) {
        let (first, second) = (pair[0], pair[1]);
        if regions[first].end() > Some(regions[second].addr as usize) {
            return Err(RegionError::Overlap { first, second });
        }
    }
    Ok(())
}

// SAFETY: `create` lends a whole region not lent to any other buffer (it leaves the free list
// until `release`), at least `size` bytes long, aligned as `alignment` says (checked in `new`);
// `new`'s contract keeps it valid and host-accessible when the kind says so.
unsafe impl Backend for RegionBackend {
    type Memory = RegionLease;
    type Error = RegionsExhausted;

    fn name(&self) -> &'static str {
        "external-regions"
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

    fn create(&self, size: usize) -> Result<Created<RegionLease>, RegionsExhausted> {
        let mut free = self.free.lock();
        let best = free
            .iter()
            .enumerate()
            .filter(|&(_, &index)| self.regions[index].len >= size)
            .min_by_key(|&(_, &index)| (self.regions[index].len, index))
            .map(|(at, _)| at);
        let Some(at) = best else {
            return Err(RegionsExhausted {
                size,
                free: free.len(),
                largest_free: free.iter().map(|&i| self.regions[i].len).max().unwrap_or(0),
                total: self.regions.len(),
            });
        };
        let index = free.swap_remove(at);
        let region = self.regions[index];
        Ok(Created {
            memory: RegionLease { index },
            addr: region.addr,
            phys: region.phys,
        })
    }

    fn release(&self, memory: RegionLease) {
        self.free.lock().push(memory.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(addr: usize, len: usize) -> ExternalRegion {
        ExternalRegion {
            addr: addr as *mut u8,
            phys: None,
            len,
        }
    }

    fn check(regions: &[ExternalRegion], alignment: usize) -> Result<(), RegionError> {
        check_regions(regions, alignment)
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(check(&[], 1), Err(RegionError::NoRegions));
        assert_eq!(
            check(&[region(0x1000, 1)], 3),
            Err(RegionError::BadAlignment { alignment: 3 })
        );
        assert_eq!(
            check(&[region(0x1000, 0)], 1),
            Err(RegionError::Empty { index: 0 })
        );
        assert!(matches!(
            check(&[region(usize::MAX - 10, 100)], 1),
            Err(RegionError::Wraps { index: 0, .. })
        ));
        assert_eq!(
            check(&[region(0x1000, 64), region(0x2010, 64)], 4096),
            Err(RegionError::Misaligned {
                index: 1,
                addr: 0x2010,
                alignment: 4096
            })
        );
        let mut phys = region(0x1000, 64);
        phys.phys = Some(0x10);
        assert!(matches!(
            check(&[phys], 4096),
            Err(RegionError::Misaligned { addr: 0x10, .. })
        ));
        assert_eq!(
            check(&[region(0x3000, 0x1000), region(0x1000, 0x2001)], 1),
            Err(RegionError::Overlap {
                first: 1,
                second: 0
            })
        );
    }

    #[test]
    fn touching_regions_are_fine() {
        assert_eq!(
            check(&[region(0x2000, 0x1000), region(0x1000, 0x1000)], 4096),
            Ok(())
        );
    }
}
