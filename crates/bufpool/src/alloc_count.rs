//! A global allocator that counts the allocations made by threads that asked to be measured, so
//! the demo can show that its pipeline allocates nothing once warmed up.

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
