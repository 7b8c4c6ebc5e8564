//! [`TieredPool`] against an exact model: which class serves each request (the smallest that
//! fits, or with [`WhenEmpty::TakeLarger`] the next larger one with a free buffer), which
//! slot of that class (each class's free queue is FIFO), which requests fail and how, what
//! all-or-nothing batches give back, and each class's counters and counts after every step.

use std::collections::VecDeque;

use buffer_core::{
    AcquireError, ClassStats, SizeClass, TieredAcquireError, TieredPool, Wait, WhenEmpty,
    WriteGuard,
};
use proptest::prelude::*;
use proptest::sample::Index;

use super::{pick, read_token, stamp};

/// One class as the model sees it.
#[derive(Debug, Clone)]
struct Class {
    size: usize,
    free: VecDeque<u32>,
    filled: VecDeque<(u32, u64)>,
    stats: ClassStats,
}

#[derive(Debug, Clone)]
struct Model {
    /// Smallest first.
    classes: Vec<Class>,
    policy: WhenEmpty,
}

/// What the model predicts for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Served by class `class`, slot `slot`.
    Served {
        class: usize,
        slot: u32,
    },
    TooLarge {
        largest: usize,
    },
    /// The fitting class (of this size) had none, nor (by policy) a larger one.
    Empty {
        class: usize,
    },
}

impl Model {
    fn acquire(&mut self, size: usize) -> Outcome {
        let Some(fit) = self.classes.iter().position(|class| class.size >= size) else {
            return Outcome::TooLarge {
                largest: self.classes.last().unwrap().size,
            };
        };
        if let Some(slot) = self.classes[fit].free.pop_front() {
            self.classes[fit].stats.hits += 1;
            self.classes[fit].stats.requests += 1;
            return Outcome::Served { class: fit, slot };
        }
        self.classes[fit].stats.requests += 1;
        if self.policy == WhenEmpty::TakeLarger {
            for larger in fit + 1..self.classes.len() {
                if let Some(slot) = self.classes[larger].free.pop_front() {
                    self.classes[fit].stats.promoted += 1;
                    return Outcome::Served {
                        class: larger,
                        slot,
                    };
                }
            }
        }
        self.classes[fit].stats.failures += 1;
        Outcome::Empty {
            class: self.classes[fit].size,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire(Index),
    /// All or nothing.
    Batch(Vec<Index>),
    Drop(usize),
    Submit(usize),
    /// Take the next filled buffer of a class and read it.
    Consume(Index),
    /// Give back this many held buffers (the most recent ones) with `release_batch`.
    ReleaseBatch(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<Index>().prop_map(Op::Acquire),
        2 => prop::collection::vec(any::<Index>(), 1..4).prop_map(Op::Batch),
        3 => any::<usize>().prop_map(Op::Drop),
        2 => any::<usize>().prop_map(Op::Submit),
        2 => any::<Index>().prop_map(Op::Consume),
        1 => (1..4usize).prop_map(Op::ReleaseBatch),
    ]
}

/// 1 to 4 classes of distinct sizes, 1 to 3 buffers each, in any order.
fn classes() -> impl Strategy<Value = Vec<SizeClass>> {
    (
        prop::collection::btree_map(
            prop::sample::select(vec![16usize, 64, 100, 256, 1000]),
            1u32..=3,
            1..=4,
        ),
        any::<bool>(),
    )
        .prop_map(|(classes, reversed)| {
            let mut classes: Vec<SizeClass> = classes
                .into_iter()
                .map(|(size, count)| SizeClass::new(size, count))
                .collect();
            if reversed {
                classes.reverse();
            }
            classes
        })
}

/// Checks one request's result against the model's prediction; returns the guard with its
/// class and slot.
fn check_outcome<'p>(
    pool: &'p TieredPool,
    size: usize,
    want: Outcome,
    got: Result<WriteGuard<'p>, TieredAcquireError>,
) -> Result<Option<(usize, u32, WriteGuard<'p>)>, TestCaseError> {
    match (want, got) {
        (Outcome::Served { class, slot }, Ok(guard)) => {
            let class_size = pool.class_sizes()[class];
            prop_assert_eq!(guard.len(), class_size, "request of {} bytes", size);
            prop_assert_eq!(guard.id().pool, pool.class(class_size).unwrap().id());
            prop_assert_eq!(guard.id().slot, slot, "class of {} bytes", class_size);
            Ok(Some((class, slot, guard)))
        }
        (Outcome::TooLarge { largest }, Err(err)) => {
            prop_assert_eq!(err, TieredAcquireError::TooLarge { size, largest });
            Ok(None)
        }
        (Outcome::Empty { class }, Err(err)) => {
            let empty = matches!(
                &err,
                TieredAcquireError::Class { class: c, source: AcquireError::Empty { .. } } if *c == class
            );
            prop_assert!(empty, "want the class of {} empty, got {:?}", class, err);
            Ok(None)
        }
        (want, got) => Err(TestCaseError::fail(format!(
            "request of {size} bytes: want {want:?}, got {got:?}"
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn tiered_pools_match_the_model_step_by_step(
        classes in classes(),
        take_larger in any::<bool>(),
        ops in prop::collection::vec(op(), 1..100),
    ) {
        let policy = if take_larger { WhenEmpty::TakeLarger } else { WhenEmpty::Wait };
        let pool = TieredPool::with_heap_buffers("tiers", &classes, policy).unwrap();
        let mut sorted = classes.clone();
        sorted.sort_by_key(|class| class.size);
        let sizes: Vec<usize> = sorted.iter().map(|class| class.size).collect();
        prop_assert_eq!(pool.class_sizes(), &sizes[..]);
        prop_assert_eq!(pool.policy(), policy);
        let mut model = Model {
            classes: sorted
                .iter()
                .map(|class| Class {
                    size: class.size,
                    free: (0..class.count).collect(),
                    filled: VecDeque::new(),
                    stats: ClassStats { size: class.size, ..ClassStats::default() },
                })
                .collect(),
            policy,
        };
        // Requests around every boundary: 1, each size and its neighbours, past the largest.
        let mut requests: Vec<usize> = vec![1];
        for &size in &sizes {
            requests.extend([size - 1, size, size + 1]);
        }
        requests.retain(|&size| size > 0);
        let mut held: Vec<(usize, u32, WriteGuard<'_>)> = Vec::new();
        let mut token = 0u64;

        for op in ops {
            match op {
                Op::Acquire(index) => {
                    let size = requests[index.index(requests.len())];
                    let want = model.acquire(size);
                    let got = pool.acquire(size, Wait::NoWait);
                    if let Some((class, slot, mut guard)) = check_outcome(&pool, size, want, got)? {
                        token += 1;
                        stamp(&mut guard, token);
                        held.push((class, slot, guard));
                    }
                }
                Op::Batch(indices) => {
                    let wanted: Vec<usize> =
                        indices.iter().map(|i| requests[i.index(requests.len())]).collect();
                    // One request after the other, stopping at the first that fails; then the
                    // buffers taken go back to their classes, in the order taken.
                    let mut predicted = Vec::new();
                    let mut failed = None;
                    for &size in &wanted {
                        match model.acquire(size) {
                            Outcome::Served { class, slot } => predicted.push((class, slot)),
                            outcome => {
                                failed = Some((size, outcome));
                                break;
                            }
                        }
                    }
                    let got = pool.acquire_batch(&wanted, Wait::NoWait);
                    match failed {
                        None => {
                            let guards = got.unwrap();
                            prop_assert_eq!(guards.len(), predicted.len());
                            for ((&size, (class, slot)), guard) in wanted.iter().zip(predicted).zip(guards) {
                                let want = Outcome::Served { class, slot };
                                let served = check_outcome(&pool, size, want, Ok(guard))?;
                                let (class, slot, mut guard) = served.unwrap();
                                token += 1;
                                stamp(&mut guard, token);
                                held.push((class, slot, guard));
                            }
                        }
                        Some((size, outcome)) => {
                            let Err(err) = got else {
                                return Err(TestCaseError::fail(format!(
                                    "batch {wanted:?} served; want {outcome:?} for {size} bytes"
                                )));
                            };
                            check_outcome(&pool, size, outcome, Err(err))?;
                            for (class, slot) in predicted {
                                model.classes[class].free.push_back(slot);
                            }
                        }
                    }
                }
                Op::Drop(i) => if let Some((class, slot, guard)) = pick(&mut held, i) {
                    drop(guard);
                    model.classes[class].free.push_back(slot);
                },
                Op::Submit(i) => if let Some((class, slot, guard)) = pick(&mut held, i) {
                    let sequence = guard.meta().sequence;
                    guard.submit();
                    model.classes[class].filled.push_back((slot, sequence));
                },
                Op::Consume(index) => {
                    let class = index.index(sizes.len());
                    let class_pool = pool.class(sizes[class]).unwrap();
                    match model.classes[class].filled.pop_front() {
                        Some((slot, sequence)) => {
                            let read = class_pool.acquire_filled(Wait::NoWait).unwrap();
                            prop_assert_eq!(read.id().slot, slot);
                            prop_assert_eq!(read_token(&read), sequence);
                            drop(read);
                            model.classes[class].free.push_back(slot);
                        }
                        None => prop_assert!(class_pool.acquire_filled(Wait::NoWait).is_err()),
                    }
                }
                Op::ReleaseBatch(n) => {
                    let batch: Vec<_> = held.drain(held.len().saturating_sub(n)..).collect();
                    let mut guards = Vec::new();
                    for (class, slot, guard) in batch {
                        model.classes[class].free.push_back(slot);
                        guards.push(guard);
                    }
                    let want = guards.len();
                    prop_assert_eq!(pool.release_batch(guards), want);
                }
            }
            let stats = pool.stats();
            let want: Vec<ClassStats> = model.classes.iter().map(|class| class.stats).collect();
            prop_assert_eq!(&stats.classes, &want);
            for (class, &size) in model.classes.iter().zip(&sizes) {
                let counts = pool.class(size).unwrap().counts();
                let in_use = held.iter().filter(|(c, _, _)| sizes[*c] == size).count();
                prop_assert_eq!(counts.free as usize, class.free.len(), "free in class {}", size);
                prop_assert_eq!(counts.filled as usize, class.filled.len(), "filled in class {}", size);
                prop_assert_eq!(counts.in_use as usize, in_use, "in use in class {}", size);
            }
        }
    }
}
