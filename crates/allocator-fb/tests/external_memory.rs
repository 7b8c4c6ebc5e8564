//! External-memory pools: the conformance suite over ranges of memory we "did not map", a
//! model check of lending, and bad range lists refused.

use allocator_base::Backend;
use allocator_fb::{ExternalMemoryBackend, ExternalRange, ExternalRangeError};
use buffer_core::MemoryKind;
use proptest::prelude::*;

const RANGE_LEN: usize = 16384;

/// `count` page-aligned ranges of `len` bytes, in memory that lives for the rest of the process.
fn leaked_ranges(count: usize, len: usize) -> Vec<ExternalRange> {
    let memory: &'static mut [u8] = Box::leak(vec![0u8; count * len + 4096].into_boxed_slice());
    let start = memory.as_ptr().align_offset(4096);
    (0..count)
        .map(|i| ExternalRange {
            addr: memory[start + i * len..].as_mut_ptr(),
            phys: Some(0xe000_0000 + (i * len) as u64),
            len,
        })
        .collect()
}

fn backend(count: usize) -> ExternalMemoryBackend {
    // SAFETY: the ranges lie in leaked (immortal) host memory that only the pool touches.
    unsafe { ExternalMemoryBackend::new(leaked_ranges(count, RANGE_LEN), MemoryKind::Host, 4096) }
        .unwrap()
}

allocator_base::conformance_tests!(backend(8));

#[test]
fn buffers_get_the_smallest_range_that_fits() {
    let mut ranges = leaked_ranges(3, 8192);
    ranges[1].len = 4096;
    // SAFETY: as in `backend`.
    let backend =
        unsafe { ExternalMemoryBackend::new(ranges.clone(), MemoryKind::ScanOut, 4096) }.unwrap();
    let small = backend.create(100).unwrap();
    assert_eq!(small.addr, ranges[1].addr, "best fit");
    assert_eq!(small.phys, ranges[1].phys);
    let large = backend.create(5000).unwrap();
    assert_ne!(large.addr, ranges[1].addr);
    assert_eq!(backend.free_ranges(), 1);
    let err = backend.create(8193).unwrap_err();
    assert_eq!((err.free, err.largest_free, err.total), (1, 8192, 3));
    assert!(err.to_string().contains("release buffers"), "{err}");
    backend.release(small.memory);
    backend.release(large.memory);
    assert_eq!(backend.free_ranges(), 3);
}

#[test]
fn bad_range_lists_are_errors_that_name_the_range() {
    let mut ranges = leaked_ranges(2, 8192);
    ranges[1].addr = ranges[0].addr.wrapping_add(4096);
    // SAFETY: refused before any range is used.
    let err = unsafe { ExternalMemoryBackend::new(ranges, MemoryKind::Host, 1) }.unwrap_err();
    assert_eq!(
        err,
        ExternalRangeError::Overlap {
            first: 0,
            second: 1
        }
    );
    assert!(err.to_string().contains("disjoint"), "{err}");
    let mut skewed = leaked_ranges(1, 8192);
    skewed[0].addr = skewed[0].addr.wrapping_add(8);
    // SAFETY: refused before any range is used.
    let err = unsafe { ExternalMemoryBackend::new(skewed, MemoryKind::Host, 64) }.unwrap_err();
    assert!(
        matches!(
            err,
            ExternalRangeError::Misaligned {
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
    /// Against a model (a set of free range indices): a creation succeeds exactly when some
    /// free range is large enough, gets the smallest such one, and no range is ever lent twice.
    #[test]
    fn lending_matches_a_model(lens in prop::collection::vec(1usize..4, 1..6), steps in steps()) {
        let mut ranges = leaked_ranges(lens.len(), 3 * 4096);
        for (range, pages) in ranges.iter_mut().zip(&lens) {
            range.len = pages * 4096;
        }
        // SAFETY: as in `backend`.
        let backend =
            unsafe { ExternalMemoryBackend::new(ranges.clone(), MemoryKind::Host, 4096) }.unwrap();
        let mut free: Vec<usize> = (0..ranges.len()).collect();
        let mut lent = Vec::new();
        for step in steps {
            match step {
                Step::Create(size) => {
                    let fit = free.iter().copied().filter(|&i| ranges[i].len >= size)
                        .min_by_key(|&i| (ranges[i].len, i));
                    match (backend.create(size), fit) {
                        (Ok(created), Some(_)) => {
                            let index = created.memory.index();
                            prop_assert!(free.contains(&index), "lent twice");
                            prop_assert_eq!(Some(index), fit, "not the best fit");
                            prop_assert_eq!(created.addr, ranges[index].addr);
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
            prop_assert_eq!(backend.free_ranges(), free.len());
        }
    }
}
