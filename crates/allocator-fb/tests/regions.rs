//! External-region pools: the conformance suite over regions of memory we "did not map", a
//! model check of lending, and bad region lists refused.

use allocator_base::Backend;
use allocator_fb::{ExternalRegion, RegionBackend, RegionError};
use buffer_core::MemoryKind;
use proptest::prelude::*;

const REGION_LEN: usize = 16384;

/// `count` page-aligned regions of `len` bytes, in memory that lives for the rest of the process.
fn leaked_regions(count: usize, len: usize) -> Vec<ExternalRegion> {
    let memory: &'static mut [u8] = Box::leak(vec![0u8; count * len + 4096].into_boxed_slice());
    let start = memory.as_ptr().align_offset(4096);
    (0..count)
        .map(|i| ExternalRegion {
            addr: memory[start + i * len..].as_mut_ptr(),
            phys: Some(0xe000_0000 + (i * len) as u64),
            len,
        })
        .collect()
}

fn backend(count: usize) -> RegionBackend {
    // SAFETY: the regions lie in leaked (immortal) host memory that only the pool touches.
    unsafe { RegionBackend::new(leaked_regions(count, REGION_LEN), MemoryKind::Host, 4096) }
        .unwrap()
}

allocator_base::conformance_tests!(backend(8));

#[test]
fn buffers_get_the_smallest_region_that_fits() {
    let mut regions = leaked_regions(3, 8192);
    regions[1].len = 4096;
    // SAFETY: as in `backend`.
    let backend =
        unsafe { RegionBackend::new(regions.clone(), MemoryKind::ScanOut, 4096) }.unwrap();
    let small = backend.create(100).unwrap();
    assert_eq!(small.addr, regions[1].addr, "best fit");
    assert_eq!(small.phys, regions[1].phys);
    let large = backend.create(5000).unwrap();
    assert_ne!(large.addr, regions[1].addr);
    assert_eq!(backend.free_regions(), 1);
    let err = backend.create(8193).unwrap_err();
    assert_eq!((err.free, err.largest_free, err.total), (1, 8192, 3));
    assert!(err.to_string().contains("release buffers"), "{err}");
    backend.release(small.memory);
    backend.release(large.memory);
    assert_eq!(backend.free_regions(), 3);
}

#[test]
fn bad_region_lists_are_errors_that_name_the_region() {
    let mut regions = leaked_regions(2, 8192);
    regions[1].addr = regions[0].addr.wrapping_add(4096);
    // SAFETY: refused before any region is used.
    let err = unsafe { RegionBackend::new(regions, MemoryKind::Host, 1) }.unwrap_err();
    assert_eq!(
        err,
        RegionError::Overlap {
            first: 0,
            second: 1
        }
    );
    assert!(err.to_string().contains("disjoint"), "{err}");
    let mut skewed = leaked_regions(1, 8192);
    skewed[0].addr = skewed[0].addr.wrapping_add(8);
    // SAFETY: refused before any region is used.
    let err = unsafe { RegionBackend::new(skewed, MemoryKind::Host, 64) }.unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::Misaligned {
                index: 0,
                alignment: 64,
                ..
            }
        ),
        "{err}"
    );
}

#[derive(Debug, Clone)]
enum Step {
    Create(usize),
    Release(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            (1usize..3 * 4096).prop_map(Step::Create),
            (0usize..8).prop_map(Step::Release),
        ],
        1..60,
    )
}

proptest! {
    /// Against a model (a set of free region indices): a creation succeeds exactly when some
    /// free region is large enough, gets the smallest such one, and no region is ever lent twice.
    #[test]
    fn lending_matches_a_model(lens in prop::collection::vec(1usize..4, 1..6), steps in steps()) {
        let mut regions = leaked_regions(lens.len(), 3 * 4096);
        for (region, pages) in regions.iter_mut().zip(&lens) {
            region.len = pages * 4096;
        }
        // SAFETY: as in `backend`.
        let backend = unsafe { RegionBackend::new(regions.clone(), MemoryKind::Host, 4096) }.unwrap();
        let mut free: Vec<usize> = (0..regions.len()).collect();
        let mut lent = Vec::new();
        for step in steps {
            match step {
                Step::Create(size) => {
                    let fit = free.iter().copied().filter(|&i| regions[i].len >= size)
                        .min_by_key(|&i| (regions[i].len, i));
                    match (backend.create(size), fit) {
                        (Ok(created), Some(_)) => {
                            let index = created.memory.index();
                            prop_assert!(free.contains(&index), "lent twice");
                            prop_assert_eq!(Some(index), fit, "not the best fit");
                            prop_assert_eq!(created.addr, regions[index].addr);
                            free.retain(|&i| i != index);
                            lent.push(created.memory);
                        }
                        (Err(_), None) => {}
                        (got, want) => prop_assert!(false, "got {:?}, model says {:?}", got.map(|c| c.memory), want),
                    }
                }
                Step::Release(at) if !lent.is_empty() => {
                    let lease = lent.swap_remove(at % lent.len());
                    free.push(lease.index());
                    backend.release(lease);
                }
                Step::Release(_) => {}
            }
            prop_assert_eq!(backend.free_regions(), free.len());
        }
    }
}
