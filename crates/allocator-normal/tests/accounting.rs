//! Memory accounting and limits on the normal backend: the warning fires once per crossing,
//! shared pools count until destroyed, the process total adds every allocator up, and a model of
//! the counters agrees with the allocator over random operation sequences.

use allocator_base::{
    AllocatePoolError, InjectBufferError, MemoryLimit, PoolAllocator, SharedMemoryPools,
    process_memory,
};
use allocator_normal::{NormalAllocator, NormalBackend};
use buffer_core::{BufferHold, BufferPool, Queue, Wait};
use proptest::prelude::*;

mod common;

use common::logged;

const KIB: usize = 1024;

#[test]
fn the_warning_fires_once_per_crossing() {
    // Limit 100 KiB, warning at 80 KiB; pools of 10 KiB buffers.
    let allocator = NormalAllocator::new(NormalBackend::default())
        .with_limit(MemoryLimit::new(100 * KIB as u64));
    let log = logged(|| {
        let first = allocator
            .allocate_pool_with_buffers(7, 10 * KIB, "warn-a", "test")
            .unwrap();
        // 70 -> 80 KiB: crosses.
        allocator
            .inject_buffer(first, 10 * KIB, Queue::Free)
            .unwrap();
        // 80 -> 90 KiB: still above, no second warning.
        allocator
            .inject_buffer(first, 10 * KIB, Queue::Free)
            .unwrap();
        // 90 -> 60 KiB: back below.
        for _ in 0..3 {
            allocator.remove_buffer(first, Wait::NoWait).unwrap();
        }
        // 60 -> 90 KiB in one pool: crosses again.
        allocator
            .allocate_pool_with_buffers(3, 10 * KIB, "warn-b", "test")
            .unwrap();
    });
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "one warning per crossing:\n{log}");
    assert!(
        warnings[0].contains("80.0 KiB of its 100.0 KiB limit"),
        "{}",
        warnings[0]
    );
    // The new pool's second buffer is the one that crosses.
    assert!(warnings[1].contains("80.0 KiB"), "{}", warnings[1]);
    let recoveries = log
        .lines()
        .filter(|line| line.contains("back below"))
        .count();
    assert_eq!(recoveries, 1, "{log}");
}

#[test]
fn a_refused_pool_leaves_earlier_pools_and_their_data_intact() {
    let allocator = NormalAllocator::new(NormalBackend::default())
        .with_limit(MemoryLimit::new(64 * KIB as u64));
    let first = allocator
        .allocate_pool_with_buffers(4, 8 * KIB, "intact-a", "test")
        .unwrap();
    let pool = allocator.pool(first).unwrap();
    let mut written = pool.acquire_free(Wait::NoWait).unwrap();
    written.as_mut_slice().unwrap().fill(0x5a);
    written.submit();
    let before = allocator.memory();

    let err = allocator
        .allocate_pool_with_buffers(5, 8 * KIB, "intact-b", "test")
        .unwrap_err();
    assert!(matches!(err, AllocatePoolError::Limit(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("may hold at most 65536 bytes; it holds 32768 and 40960 more"),
        "{message}"
    );
    assert!(matches!(
        allocator.inject_buffer(first, 40 * KIB, Queue::Free),
        Err(InjectBufferError::Limit(_))
    ));

    assert_eq!(allocator.memory(), before, "a refusal changes no counter");
    assert_eq!(allocator.pool_ids(), vec![first]);
    let counts = pool.counts();
    assert_eq!((counts.total, counts.free, counts.filled), (4, 3, 1));
    let read = pool.acquire_filled(Wait::NoWait).unwrap();
    assert!(read.as_slice().unwrap().iter().all(|&byte| byte == 0x5a));

    // Raising the limit lets the same request through.
    allocator.set_limit(Some(MemoryLimit::new(128 * KIB as u64)));
    allocator
        .allocate_pool_with_buffers(5, 8 * KIB, "intact-b", "test")
        .unwrap();
    assert_eq!(allocator.memory().bytes_current, 72 * KIB as u64);
}

#[test]
fn shared_pools_count_until_destroyed_and_respect_the_limit() {
    let allocator = SharedMemoryPools::new(NormalBackend::default().alignment())
        .with_limit(MemoryLimit::new(32 * KIB as u64));
    let name = format!("accounting-{}", std::process::id());
    let id = allocator
        .allocate_pool_with_buffers(3, 8 * KIB, &name, "test")
        .unwrap();
    assert_eq!(allocator.memory().bytes_current, 24 * KIB as u64);
    assert_eq!(allocator.memory().buffers_current, 3);
    let over = format!("accounting-over-{}", std::process::id());
    assert!(matches!(
        allocator.allocate_pool_with_buffers(2, 8 * KIB, &over, "test"),
        Err(AllocatePoolError::Limit(_))
    ));
    assert!(
        BufferPool::attach(&over).is_err(),
        "no segment was created for the refused pool"
    );
    allocator.destroy_pool(id).unwrap();
    let memory = allocator.memory();
    assert_eq!((memory.bytes_current, memory.releases), (0, 3));
}

#[test]
fn the_process_total_adds_up_every_allocator() {
    let before = process_memory();
    let a = NormalAllocator::new(NormalBackend::default());
    let b = NormalAllocator::new(NormalBackend::default());
    a.allocate_pool_with_buffers(2, 4 * KIB, "process-a", "test")
        .unwrap();
    b.allocate_pool_with_buffers(3, 4 * KIB, "process-b", "test")
        .unwrap();
    let after = process_memory();
    // Other tests run beside this one, so the totals only grow by at least these.
    assert!(after.allocations >= before.allocations + 5);
    assert!(after.bytes_allocated >= before.bytes_allocated + 20 * KIB as u64);
    assert!(after.bytes_peak >= a.memory().bytes_current + b.memory().bytes_current);
    drop((a, b));
    assert!(process_memory().releases >= before.releases + 5);
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    CreatePool { count: u32, kib: usize },
    Inject { pool: usize, kib: usize },
    Remove { pool: usize },
    Hold { pool: usize },
    DropHeld { which: usize },
    Destroy { pool: usize },
    SetLimit { kib: Option<u64> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u32..4, 1usize..5).prop_map(|(count, kib)| Step::CreatePool { count, kib }),
        (0usize..4, 1usize..5).prop_map(|(pool, kib)| Step::Inject { pool, kib }),
        (0usize..4).prop_map(|pool| Step::Remove { pool }),
        (0usize..4).prop_map(|pool| Step::Hold { pool }),
        (0usize..4).prop_map(|which| Step::DropHeld { which }),
        (0usize..4).prop_map(|pool| Step::Destroy { pool }),
        proptest::option::of(4u64..40).prop_map(|kib| Step::SetLimit { kib }),
    ]
}

/// What the counters should say.
#[derive(Debug, Default)]
struct Model {
    allocations: u64,
    releases: u64,
    bytes_allocated: u64,
    bytes: u64,
    buffers: u64,
    bytes_peak: u64,
    buffers_peak: u64,
    limit: Option<u64>,
}

impl Model {
    fn fits(&self, bytes: u64) -> bool {
        self.limit.is_none_or(|limit| self.bytes + bytes <= limit)
    }

    fn create(&mut self, buffers: u64, bytes: u64) {
        self.allocations += buffers;
        self.bytes_allocated += bytes;
        self.bytes += bytes;
        self.buffers += buffers;
        self.bytes_peak = self.bytes_peak.max(self.bytes);
        self.buffers_peak = self.buffers_peak.max(self.buffers);
    }

    fn release(&mut self, bytes: u64) {
        self.releases += 1;
        self.bytes -= bytes;
        self.buffers -= 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn accounting_matches_a_model(steps in proptest::collection::vec(step(), 1..40)) {
        let allocator = NormalAllocator::new(NormalBackend::default());
        let mut model = Model::default();
        // Live pools: id, handle, and each free buffer's size in KiB (a removal takes the
        // oldest free buffer, as the free queue is FIFO).
        let mut pools: Vec<(buffer_core::PoolId, BufferPool, std::collections::VecDeque<usize>)> =
            Vec::new();
        let mut held: Vec<(BufferHold, usize, usize)> = Vec::new();
        for step in steps {
            match step {
                Step::CreatePool { count, kib } => {
                    let bytes = u64::from(count) * (kib * KIB) as u64;
                    let result = allocator.allocate_pool_with_buffers(count, kib * KIB, "model", "test");
                    if model.fits(bytes) {
                        let id = result.unwrap();
                        model.create(u64::from(count), bytes);
                        let pool = allocator.pool(id).unwrap();
                        pools.push((id, pool, (0..count).map(|_| kib).collect()));
                    } else {
                        prop_assert!(matches!(result, Err(AllocatePoolError::Limit(_))));
                    }
                }
                Step::Inject { pool, kib } => {
                    let Some((id, _, free)) = pools.get_mut(pool) else { continue };
                    let bytes = (kib * KIB) as u64;
                    let result = allocator.inject_buffer(*id, kib * KIB, Queue::Free);
                    if model.fits(bytes) {
                        result.unwrap();
                        model.create(1, bytes);
                        free.push_back(kib);
                    } else {
                        prop_assert!(matches!(result, Err(InjectBufferError::Limit(_))));
                    }
                }
                Step::Remove { pool } => {
                    let Some((id, _, free)) = pools.get_mut(pool) else { continue };
                    let result = allocator.remove_buffer(*id, Wait::NoWait);
                    match free.pop_front() {
                        Some(kib) => {
                            result.unwrap();
                            model.release((kib * KIB) as u64);
                        }
                        None => prop_assert!(result.is_err()),
                    }
                }
                Step::Hold { pool } => {
                    let Some((_, handle, free)) = pools.get_mut(pool) else { continue };
                    let Some(kib) = free.pop_front() else { continue };
                    let guard = handle.acquire_free(Wait::NoWait).unwrap();
                    prop_assert_eq!(guard.buffer().size, kib * KIB);
                    held.push((guard.into_hold(), pool, kib));
                }
                Step::DropHeld { which } => {
                    if held.is_empty() { continue }
                    let (guard, pool, kib) = held.remove(which % held.len());
                    drop(guard);
                    match pools.get_mut(pool) {
                        Some((_, _, free)) => free.push_back(kib),
                        // Its pool is destroyed: the buffer leaves with the guard.
                        None => model.release((kib * KIB) as u64),
                    }
                }
                Step::Destroy { pool } => {
                    if pool >= pools.len() { continue }
                    let (id, _, free) = pools.remove(pool);
                    allocator.destroy_pool(id).unwrap();
                    for kib in free {
                        model.release((kib * KIB) as u64);
                    }
                    // Held buffers of later pools keep their place in `pools` shifted down.
                    for entry in &mut held {
                        if entry.1 == pool {
                            entry.1 = usize::MAX;
                        } else if entry.1 > pool && entry.1 != usize::MAX {
                            entry.1 -= 1;
                        }
                    }
                }
                Step::SetLimit { kib } => {
                    let limit = kib.map(|kib| kib * KIB as u64);
                    allocator.set_limit(limit.map(MemoryLimit::new));
                    model.limit = limit;
                }
            }
            let memory = allocator.memory();
            prop_assert_eq!(memory.allocations, model.allocations);
            prop_assert_eq!(memory.releases, model.releases);
            prop_assert_eq!(memory.bytes_allocated, model.bytes_allocated);
            prop_assert_eq!(memory.bytes_current, model.bytes);
            prop_assert_eq!(memory.buffers_current, model.buffers);
            prop_assert_eq!(memory.bytes_peak, model.bytes_peak);
            prop_assert_eq!(memory.buffers_peak, model.buffers_peak);
        }
        drop(held);
        drop(pools);
        drop(allocator);
    }
}
