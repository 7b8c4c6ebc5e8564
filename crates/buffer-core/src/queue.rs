//! A bounded lock-free multi-producer multi-consumer queue of slot indices that lives inside the
//! pool block.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue, as in crossbeam's `ArrayQueue`: every cell
//! carries a *stamp* that says whose turn it is. `head` and `tail` are ever-increasing positions
//! (64 bits never wrap in practice); position `p` uses cell `p & mask`.
//!
//! - A cell at position `p` is ready for a push when its stamp equals `p`, and ready for a pop
//!   when its stamp equals `p + 1`.
//! - A push claims position `tail` with a CAS, stores the value, then publishes stamp `tail + 1`.
//! - A pop claims position `head` with a CAS, reads the value, then stamps the cell `head + cells`,
//!   which is the position at which it is next ready for a push (one lap later).
//!
//! Pools never hold more buffers than cells, so a push into a queue of a pool never finds it full;
//! [`QueueRef::push`] still reports fullness instead of overwriting, which a corrupt block could
//! otherwise cause.

use std::sync::atomic::Ordering;

use crate::shm_safe::CachePadded;
#[cfg(not(loom))]
use crate::shm_safe::ShmSafe;
use crate::sync::{AtomicU64, spin_loop};

/// The queue's two positions, each on its own cache line.
#[repr(C)]
#[derive(Default)]
pub(crate) struct QueueCtrl {
    /// Next position to pop.
    head: CachePadded<AtomicU64>,
    /// Next position to push.
    tail: CachePadded<AtomicU64>,
}

/// One cell: a stamp (see the module docs) and a slot index.
#[repr(C)]
#[derive(Default)]
pub(crate) struct QueueCell {
    stamp: AtomicU64,
    value: AtomicU64,
}

// SAFETY: `#[repr(C)]`, two `CachePadded<AtomicU64>`: integers only, any bit pattern valid.
// (Not under loom, whose atomics are model objects, not plain integers.)
#[cfg(not(loom))]
unsafe impl ShmSafe for QueueCtrl {}
// SAFETY: `#[repr(C)]`, two `AtomicU64`.
#[cfg(not(loom))]
unsafe impl ShmSafe for QueueCell {}

/// A view of one queue in a block. `cells.len()` is a power of two.
#[derive(Clone, Copy)]
pub(crate) struct QueueRef<'a> {
    ctrl: &'a QueueCtrl,
    cells: &'a [QueueCell],
}

/// How many cells a queue for `capacity` indices has: the next power of two, so that a position
/// maps to its cell with a mask instead of a division, and at least 2, because with a single cell
/// the stamp "pushed at `p`" would equal "ready for a push at `p + 1`".
pub(crate) fn cells_for(capacity: u32) -> usize {
    (capacity.max(2) as usize).next_power_of_two()
}

impl<'a> QueueRef<'a> {
    /// A view over `ctrl` and `cells`; `cells.len()` must be a power of two.
    #[inline]
    pub(crate) fn new(ctrl: &'a QueueCtrl, cells: &'a [QueueCell]) -> QueueRef<'a> {
        debug_assert!(cells.len().is_power_of_two());
        QueueRef { ctrl, cells }
    }

    /// Makes the queue empty: positions 0, every cell ready for its first push.
    /// Only for a queue no other thread or process uses yet.
    pub(crate) fn init(&self) {
        self.ctrl.head.store(0, Ordering::Relaxed);
        self.ctrl.tail.store(0, Ordering::Relaxed);
        for (position, cell) in self.cells.iter().enumerate() {
            cell.stamp.store(position as u64, Ordering::Relaxed);
            cell.value.store(0, Ordering::Relaxed);
        }
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.cells.len() as u64 - 1
    }

    #[inline]
    fn cell(&self, position: u64) -> &QueueCell {
        &self.cells[(position & self.mask()) as usize]
    }

    /// Appends `value`; `Err(value)` if every cell is taken.
    ///
    /// The tail CAS is `SeqCst`: a waiter that registers itself and then sees `tail == head` can
    /// rely on any push it missed to see its registration (see `wait.rs`). Positions are read
    /// with `Acquire` (free on x86): a thread that sees another's position also sees the stamps
    /// and positions that thread wrote before it, without which stale reads could make a queue
    /// with room look full (found by the loom model below).
    #[inline(always)]
    pub(crate) fn push(&self, value: u32) -> Result<(), u32> {
        let mut tail = self.ctrl.tail.load(Ordering::Acquire);
        loop {
            let cell = self.cell(tail);
            let stamp = cell.stamp.load(Ordering::Acquire);
            if stamp == tail {
                match self.ctrl.tail.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        cell.value.store(u64::from(value), Ordering::Relaxed);
                        cell.stamp.store(tail.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => tail = current,
                }
            } else if stamp.wrapping_add(self.cells.len() as u64) == tail.wrapping_add(1) {
                // The cell still holds the value pushed one lap ago: full, unless a pop moved on.
                let head = self.ctrl.head.load(Ordering::Acquire);
                if head.wrapping_add(self.cells.len() as u64) == tail {
                    return Err(value);
                }
                spin_loop();
                tail = self.ctrl.tail.load(Ordering::Acquire);
            } else {
                // Another push claimed this position; try the current tail.
                spin_loop();
                tail = self.ctrl.tail.load(Ordering::Acquire);
            }
        }
    }

    /// Removes the oldest value, or `None` if no value is ready. A push that has claimed its
    /// position but not yet published it is not waited for (see [`QueueRef::has_claimed`]).
    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<u32> {
        let mut head = self.ctrl.head.load(Ordering::Acquire);
        loop {
            let cell = self.cell(head);
            let stamp = cell.stamp.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                match self.ctrl.head.compare_exchange_weak(
                    head,
                    head.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let value = cell.value.load(Ordering::Relaxed);
                        cell.stamp.store(
                            head.wrapping_add(self.cells.len() as u64),
                            Ordering::Release,
                        );
                        // Values come from `push`, which takes a `u32`; a corrupt block is caught
                        // by the caller's bounds check on the slot index.
                        return Some(value as u32);
                    }
                    Err(current) => head = current,
                }
            } else if stamp == head {
                // Not yet pushed at this position: empty (or a push is still publishing).
                return None;
            } else {
                // Another pop took this position; try the current head.
                spin_loop();
                head = self.ctrl.head.load(Ordering::Acquire);
            }
        }
    }

    /// Number of values in the queue, including pushes still publishing. A snapshot: it may be
    /// out of date as soon as it is returned. Two loads: `head` first, then `tail`, so that
    /// `tail >= head` (both only grow, and `head <= tail` at every moment); more than a lap of
    /// operations between the loads is clamped to the queue's size.
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))] // used by the pool, which loom builds leave out
    pub(crate) fn len(&self) -> u32 {
        let head = self.ctrl.head.load(Ordering::Acquire);
        let tail = self.ctrl.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.cells.len() as u64) as u32
    }

    /// Whether a push has claimed a position that no pop has taken yet: a value is in the queue
    /// or about to be. Waiters check this after registering, before they sleep.
    #[cfg_attr(loom, allow(dead_code))] // used by the pool, which loom builds leave out
    pub(crate) fn has_claimed(&self) -> bool {
        let head = self.ctrl.head.load(Ordering::SeqCst);
        let tail = self.ctrl.tail.load(Ordering::SeqCst);
        tail != head
    }
}

/// A queue with its own storage, for the unit tests and the loom models of this crate.
#[cfg(test)]
pub(crate) struct TestQueue {
    ctrl: QueueCtrl,
    cells: Vec<QueueCell>,
}

#[cfg(test)]
impl TestQueue {
    /// An initialised queue for `capacity` values holding `values`.
    pub(crate) fn new(capacity: u32, values: &[u32]) -> TestQueue {
        let test_queue = TestQueue {
            ctrl: QueueCtrl::default(),
            cells: (0..cells_for(capacity))
                .map(|_| QueueCell::default())
                .collect(),
        };
        test_queue.queue().init();
        for &value in values {
            test_queue.queue().push(value).unwrap();
        }
        test_queue
    }

    /// The queue.
    pub(crate) fn queue(&self) -> QueueRef<'_> {
        QueueRef::new(&self.ctrl, &self.cells)
    }

    /// Pops every value, oldest first.
    pub(crate) fn drain(&self) -> Vec<u32> {
        std::iter::from_fn(|| self.queue().pop()).collect()
    }
}

/// Model checks: every interleaving of a few threads (loom), for the properties the pool relies
/// on: no value lost, none duplicated, FIFO per producer.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn loom_concurrent_pushes_both_land() {
        loom::model(|| {
            let q = Arc::new(TestQueue::new(2, &[]));
            let handles: Vec<_> = [1, 2]
                .into_iter()
                .map(|v| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || q.queue().push(v).unwrap())
                })
                .collect();
            handles.into_iter().for_each(|h| h.join().unwrap());
            let mut got = q.drain();
            got.sort_unstable();
            assert_eq!(got, vec![1, 2]);
        });
    }

    #[test]
    fn loom_concurrent_pops_take_each_value_once() {
        loom::model(|| {
            let q = Arc::new(TestQueue::new(2, &[7, 8]));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || q.queue().pop())
                })
                .collect();
            let mut got: Vec<u32> = handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect();
            got.extend(q.drain());
            got.sort_unstable();
            assert_eq!(got, vec![7, 8]);
        });
    }

    #[test]
    fn loom_pop_racing_a_push_loses_nothing() {
        loom::model(|| {
            let q = Arc::new(TestQueue::new(2, &[]));
            let pusher = {
                let q = Arc::clone(&q);
                thread::spawn(move || q.queue().push(5).unwrap())
            };
            let popped = q.queue().pop();
            pusher.join().unwrap();
            let rest = q.drain();
            match popped {
                Some(v) => assert_eq!((v, rest.len()), (5, 0)),
                None => assert_eq!(rest, vec![5]),
            }
        });
    }

    #[test]
    fn loom_tokens_circulating_stay_unique() {
        loom::model(|| {
            // Two threads each move one token from the front to the back, as acquire/release do.
            let q = Arc::new(TestQueue::new(2, &[1, 2]));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || {
                        let queue = q.queue();
                        if let Some(token) = queue.pop() {
                            queue.push(token).unwrap();
                        }
                    })
                })
                .collect();
            handles.into_iter().for_each(|h| h.join().unwrap());
            let mut got = q.drain();
            got.sort_unstable();
            assert_eq!(got, vec![1, 2]);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn single_slot_queue_alternates() {
        let q = TestQueue::new(1, &[]);
        let q = q.queue();
        for v in 0..10 {
            q.push(v).unwrap();
            assert_eq!(q.pop(), Some(v));
            assert_eq!(q.pop(), None);
        }
    }

    #[test]
    fn fifo_order_and_bounds() {
        let q = TestQueue::new(4, &[]);
        let q = q.queue();
        assert_eq!(q.pop(), None);
        for v in 10..14 {
            q.push(v).unwrap();
        }
        assert_eq!(q.push(99), Err(99));
        assert_eq!(q.len(), 4);
        for v in 10..14 {
            assert_eq!(q.pop(), Some(v));
        }
        assert_eq!(q.pop(), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn wraps_around_many_laps() {
        let q = TestQueue::new(3, &[]);
        let q = q.queue();
        for lap in 0..1000u32 {
            q.push(lap).unwrap();
            q.push(lap + 1).unwrap();
            assert_eq!(q.pop(), Some(lap));
            assert_eq!(q.pop(), Some(lap + 1));
        }
        assert!(!q.has_claimed());
    }

    #[test]
    fn capacity_rounds_up_to_power_of_two() {
        assert_eq!(cells_for(0), 2);
        assert_eq!(cells_for(1), 2);
        assert_eq!(cells_for(5), 8);
        assert_eq!(cells_for(64), 64);
    }

    #[test]
    fn concurrent_tokens_are_neither_lost_nor_duplicated() {
        const TOKENS: u32 = 64;
        const ROUNDS: usize = if cfg!(miri) { 20 } else { 20_000 };
        let tokens: Vec<u32> = (0..TOKENS).collect();
        let q = Arc::new(TestQueue::new(TOKENS, &tokens));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        if let Some(t) = q.queue().pop() {
                            q.queue().push(t).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen = HashSet::new();
        for t in q.drain() {
            assert!(seen.insert(t), "token {t} popped twice");
        }
        assert_eq!(seen.len(), TOKENS as usize);
    }
}
