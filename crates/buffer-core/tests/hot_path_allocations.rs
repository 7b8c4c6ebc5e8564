//! The fast path (acquire, submit, release, id round trips) allocates nothing: counted with a
//! global allocator that records every allocation the test's thread makes while its flag is set.
//! The flag is per thread: the test harness's main thread allocates when it first blocks waiting
//! for the test, which under load can happen after the test started counting.

use buffer_core::alloc_count::{self, CountingAllocator};
use buffer_core::{BufferPool, PoolConfig, Wait};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn acquire_submit_release_and_ids_do_not_allocate() {
    const CYCLES: u64 = if cfg!(miri) { 10 } else { 100_000 };
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("hot"), 4, 4096).unwrap();
    alloc_count::measure_this_thread();
    let before = alloc_count::measured_allocations();
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
    let allocated = alloc_count::measured_allocations() - before;
    alloc_count::stop_measuring_this_thread();
    assert_eq!(allocated, 0, "the fast path allocated");
    assert_eq!(stats.acquisitions, 3 * CYCLES);
    assert_eq!(counts.free, 4);
}
