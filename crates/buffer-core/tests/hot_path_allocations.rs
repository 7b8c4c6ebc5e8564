//! The fast path (acquire, submit, release, id round trips) allocates nothing: counted with a
//! global allocator that records every allocation the test's thread makes while its flag is set.
//! The flag is per thread: the test harness's main thread allocates when it first blocks waiting
//! for the test, which under load can happen after the test started counting.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use buffer_core::{BufferPool, PoolConfig, Wait};

struct Counting;

thread_local! {
    /// Set while the test thread counts (const-initialised without destructor: reading it
    /// allocates nothing).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; counting touches only an atomic and a
// const-initialised thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.get() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.get() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn acquire_submit_release_and_ids_do_not_allocate() {
    const CYCLES: u64 = if cfg!(miri) { 10 } else { 100_000 };
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("hot"), 4, 4096).unwrap();
    COUNTING.set(true);
    for sequence in 0..CYCLES {
        let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
        frame.as_mut_slice().unwrap()[0] = sequence as u8;
        frame.meta_mut().sequence = sequence;
        let id = frame.into_id();
        pool.redeem_write(id).unwrap().submit();
        let frame = pool.acquire_filled(Wait::Forever).unwrap();
        assert_eq!(frame.meta().sequence, sequence);
        drop(frame);
        let unused = pool
            .acquire_free(Wait::Timeout(std::time::Duration::from_secs(1)))
            .unwrap();
        drop(unused);
    }
    let stats = pool.stats();
    let counts = pool.counts();
    COUNTING.set(false);
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "the fast path allocated"
    );
    assert_eq!(stats.acquisitions, 3 * CYCLES);
    assert_eq!(counts.free, 4);
}
