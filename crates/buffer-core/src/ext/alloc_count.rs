//! A global allocator that counts the allocations made by threads that asked to be measured:
//! how a program (the `bufpool demo`) or a test shows that a loop over the pool allocates
//! nothing once warmed up. Other threads' allocations, and the harness's, are not counted.
//!
//! # Examples
//!
//! ```
//! use buffer_core::alloc_count::{self, CountingAllocator};
//!
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator;
//!
//! alloc_count::measure_this_thread();
//! let before = alloc_count::measured_allocations();
//! let boxed = std::hint::black_box(Box::new(7u64));
//! let after = alloc_count::measured_allocations();
//! alloc_count::stop_measuring_this_thread();
//! assert_eq!(after - before, 1);
//! drop(boxed);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Allocations made by measured threads.
static MEASURED_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread's allocations are counted (a `const` initialiser: reading it never
    /// allocates, which matters inside the allocator).
    static MEASURED: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting allocations of measured threads.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// the counting touches only an atomic and a `const` thread-local, neither of which allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees about `ptr`, `layout` and `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees about `ptr` and `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note_allocation() {
    // `try_with`: during thread teardown the thread-local may be gone; such allocations are not
    // part of any measured loop.
    if MEASURED.try_with(Cell::get).unwrap_or(false) {
        MEASURED_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts counting the calling thread's allocations.
pub fn measure_this_thread() {
    MEASURED.with(|measured| measured.set(true));
}

/// Stops counting the calling thread's allocations.
pub fn stop_measuring_this_thread() {
    MEASURED.with(|measured| measured.set(false));
}

/// Allocations made by measured threads so far.
pub fn measured_allocations() -> u64 {
    MEASURED_ALLOCATIONS.load(Ordering::Relaxed)
}
