//! Tiered pools: a property test against a model of the class choice and the counts, and a
//! shared tiered pool used by a second process.

mod common;

use std::io::BufReader;
use std::time::Duration;

use buffer_core::{
    BufferPool, CreateTieredError, PoolConfig, SizeClass, TieredAcquireError, TieredPool, Wait,
    WhenEmpty, WriteGuard,
};
use common::{read_until, role, spawn, wait_exit};
use proptest::prelude::*;

const CLASSES: [SizeClass; 3] = [
    SizeClass::new(512, 3),
    SizeClass::new(2048, 2),
    SizeClass::new(16384, 1),
];

/// What the tiered pool should do, in plain terms.
#[derive(Debug, Default)]
struct Model {
    /// Free buffers per class.
    free: [u32; 3],
    /// Requests, hits, promotions and failures per class.
    requests: [u64; 3],
    hits: [u64; 3],
    promoted: [u64; 3],
    failures: [u64; 3],
}

impl Model {
    fn new() -> Model {
        Model {
            free: CLASSES.map(|class| class.count),
            ..Model::default()
        }
    }

    /// The class that serves `size` without waiting, or `Err(None)` for a size no class holds,
    /// `Err(Some(class))` for a failure of the fitting class.
    fn acquire(&mut self, size: usize, policy: WhenEmpty) -> Result<usize, Option<usize>> {
        let fitting = CLASSES
            .iter()
            .position(|class| class.size >= size)
            .ok_or(None)?;
        self.requests[fitting] += 1;
        if self.free[fitting] > 0 {
            self.free[fitting] -= 1;
            self.hits[fitting] += 1;
            return Ok(fitting);
        }
        if policy == WhenEmpty::TakeLarger
            && let Some(larger) = (fitting + 1..CLASSES.len()).find(|&class| self.free[class] > 0)
        {
            self.free[larger] -= 1;
            self.promoted[fitting] += 1;
            return Ok(larger);
        }
        self.failures[fitting] += 1;
        Err(Some(fitting))
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire(usize),
    Release(usize),
    Batch(Vec<usize>),
    ReleaseAll,
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        1usize..=512,
        513usize..=2048,
        2049usize..=16384,
        16385usize..=20000
    ];
    prop_oneof![
        4 => size.clone().prop_map(Op::Acquire),
        3 => any::<usize>().prop_map(Op::Release),
        1 => proptest::collection::vec(size, 1..4).prop_map(Op::Batch),
        1 => Just(Op::ReleaseAll),
    ]
}

fn class_of(guard: &WriteGuard<'_>) -> usize {
    CLASSES
        .iter()
        .position(|class| class.size == guard.len())
        .unwrap()
}

fn check(policy: WhenEmpty, ops: Vec<Op>) {
    let pool = TieredPool::with_heap_buffers("model", &CLASSES, policy).unwrap();
    let mut model = Model::new();
    let mut held: Vec<WriteGuard<'_>> = Vec::new();
    for op in ops {
        match op {
            Op::Acquire(size) => match (
                pool.acquire(size, Wait::NoWait),
                model.acquire(size, policy),
            ) {
                (Ok(guard), Ok(class)) => {
                    assert_eq!(class_of(&guard), class, "size {size}");
                    assert!(guard.len() >= size);
                    held.push(guard);
                }
                (Err(TieredAcquireError::TooLarge { size: s, largest }), Err(None)) => {
                    assert_eq!((s, largest), (size, 16384));
                }
                (Err(TieredAcquireError::Class { class, .. }), Err(Some(fitting))) => {
                    assert_eq!(class, CLASSES[fitting].size);
                }
                (got, want) => panic!("size {size}: pool gave {got:?}, model {want:?}"),
            },
            Op::Release(pick) => {
                if !held.is_empty() {
                    let guard = held.swap_remove(pick % held.len());
                    model.free[class_of(&guard)] += 1;
                }
            }
            Op::Batch(sizes) => {
                // All or nothing: the model takes them one by one and undoes them on failure.
                let before = model.free;
                let mut taken = Vec::new();
                let mut failed = false;
                for &size in &sizes {
                    match model.acquire(size, policy) {
                        Ok(class) => taken.push(class),
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                match pool.acquire_batch(&sizes, Wait::NoWait) {
                    Ok(guards) => {
                        assert!(!failed, "batch {sizes:?} should have failed");
                        let classes: Vec<usize> = guards.iter().map(class_of).collect();
                        assert_eq!(classes, taken);
                        held.extend(guards);
                    }
                    Err(_) => {
                        assert!(failed, "batch {sizes:?} should have succeeded");
                        model.free = before;
                    }
                }
            }
            Op::ReleaseAll => {
                for guard in &held {
                    model.free[class_of(guard)] += 1;
                }
                let count = held.len();
                assert_eq!(pool.release_batch(held.drain(..)), count);
            }
        }
        for (class, size) in CLASSES.iter().map(|class| class.size).enumerate() {
            assert_eq!(pool.class(size).unwrap().counts().free, model.free[class]);
        }
    }
    let stats = pool.stats();
    for (class, counted) in stats.classes.iter().enumerate() {
        assert_eq!(
            (
                counted.requests,
                counted.hits,
                counted.promoted,
                counted.failures
            ),
            (
                model.requests[class],
                model.hits[class],
                model.promoted[class],
                model.failures[class]
            ),
            "class {}",
            counted.size
        );
        assert_eq!(
            counted.requests,
            counted.hits + counted.promoted + counted.failures
        );
    }
    drop(held);
    for class in CLASSES {
        let pool = pool.class(class.size).unwrap();
        assert_eq!(pool.counts().free, class.count);
        assert_eq!(pool.audit(), Vec::<String>::new());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tiered_pool_matches_the_model_when_waiting(ops in proptest::collection::vec(op(), 1..60)) {
        check(WhenEmpty::Wait, ops);
    }

    #[test]
    fn tiered_pool_matches_the_model_when_taking_larger(ops in proptest::collection::vec(op(), 1..60)) {
        check(WhenEmpty::TakeLarger, ops);
    }
}

/// The child's entry point; does nothing when run as a test.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "writer");
    let pool = TieredPool::attach(&std::env::var("TIERED").unwrap(), WhenEmpty::Wait).unwrap();
    assert_eq!(pool.class_sizes(), &[512, 2048, 16384]);
    for size in [100, 1000, 10000] {
        let mut guard = pool.acquire(size, Wait::NoWait).unwrap();
        guard.as_mut_slice().unwrap()[..size].fill(size as u8);
        guard.set_bytes_used(size as u64).unwrap();
        guard.submit();
    }
    println!("written");
}

#[test]
fn a_shared_tiered_pool_serves_another_process() {
    let name = format!("tiered-test-{}", std::process::id());
    let pool = TieredPool::create_shared(&name, &CLASSES, WhenEmpty::Wait).unwrap();
    let mut child = spawn("child_entry", "writer", &[("TIERED", name.clone())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "written");
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    for (size, class) in [(100, 512), (1000, 2048), (10000, 16384)] {
        let frame = pool
            .class(class)
            .unwrap()
            .acquire_filled(Wait::NoWait)
            .unwrap();
        let bytes = frame.as_slice().unwrap();
        assert_eq!(frame.meta().bytes_used(), size as u64);
        assert!(bytes[..size].iter().all(|&byte| byte == size as u8));
    }
    assert!(matches!(
        TieredPool::attach("tiered-test-none", WhenEmpty::Wait),
        Err(buffer_core::CreateTieredError::NotFound { .. })
    ));
}

#[test]
fn a_class_whose_buffers_are_not_the_size_its_name_says_is_refused() {
    if role().is_some() {
        return;
    }
    // A segment whose name says 4096-byte buffers, holding 64-byte ones.
    let name = format!("tiered-lying-{}", std::process::id());
    let _liar = BufferPool::create_shared(
        &format!("{name}.class-4096"),
        PoolConfig::new("liar").with_capacity(2),
        2,
        64,
    )
    .unwrap();
    let err = TieredPool::attach(&name, WhenEmpty::Wait).unwrap_err();
    assert!(
        matches!(&err, CreateTieredError::ClassSize { found, .. } if found == "buffers of 64 bytes"),
        "{err}"
    );
}

#[test]
fn pools_whose_names_extend_the_class_prefix_are_not_classes() {
    if role().is_some() {
        return;
    }
    let name = format!("tiered-prefix-{}", std::process::id());
    let _ours =
        TieredPool::create_shared(&name, &[SizeClass::new(64, 2)], WhenEmpty::Wait).unwrap();
    // Another application's pools, whose names begin like our classes' names.
    let _theirs = TieredPool::create_shared(
        &format!("{name}.class-x"),
        &[SizeClass::new(4096, 2)],
        WhenEmpty::Wait,
    )
    .unwrap();
    let _plain = BufferPool::create_shared(
        &format!("{name}.class-0128"),
        PoolConfig::new("plain").with_capacity(1),
        1,
        128,
    )
    .unwrap();
    let pool = TieredPool::attach(&name, WhenEmpty::Wait).unwrap();
    assert_eq!(pool.class_sizes(), [64]);
    let err = pool.acquire(4000, Wait::NoWait).unwrap_err();
    assert!(
        matches!(
            err,
            TieredAcquireError::TooLarge {
                size: 4000,
                largest: 64
            }
        ),
        "{err}"
    );
}
