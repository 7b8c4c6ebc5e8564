//! A bounded lock-free multi-producer multi-consumer queue of slot indices that lives inside the
//! pool block, and that stays consistent whichever process is killed, between any two
//! instructions, while using it.
//!
//! # Cells
//!
//! Every cell is one 64-bit word, changed only by compare-and-swap or by its current owner:
//!
//! ```text
//! bits 63..32  seq     the position the cell is at (low 32 bits of it)
//! bits 31..30  state   EMPTY, FULL, TAKEN or RESERVED
//! bits 29..22  actor   who took or reserved the cell (a process slot, 1..=255)
//! bits 21..0   value   a slot index
//! ```
//!
//! `head` and `tail` are ever-increasing positions; position `p` uses cell `p & mask`. A cell
//! ready for a push at position `p` reads `(p, EMPTY)`.
//!
//! - **push**: CAS the cell at `tail` from `(t, EMPTY)` to `(t, FULL, value)`, then move `tail`
//!   on (a CAS that anyone who finds the cell claimed also tries, so a pusher killed after its
//!   cell CAS never stalls the queue).
//! - **take**: CAS the cell at `head` from `(h, FULL, value)` to `(h, TAKEN, actor, value)`, then
//!   move `head` on (helped in the same way). The cell keeps naming its taker and the value until
//!   the taker **releases** it (a CAS to `(s + cells, EMPTY)`, ready for the next lap, where `s`
//!   is the position the cell is at) after it has recorded the value somewhere else: a buffer is
//!   at every moment either in a cell or recorded by its holder, which is what lets a survivor
//!   reclaim exactly what a killed process held.
//! - **reserve / fill** (ports): a push in two steps, `(t, EMPTY)` → `(t, RESERVED, actor,
//!   value)` → `(t, FULL, tag, value)`, so that the pusher can record the reference between
//!   them. A full cell's actor field (unused once it is full) holds a *tag* the publisher gives
//!   (ports tag each buffer with the subscription it was published for).
//!
//! # A stalled taker delays nobody
//!
//! A taker can be stopped between its CAS and its release (SIGSTOP, a debugger, a cgroup
//! freezer, or just a long preemption). A lap later a push finds its cell still TAKEN. On the
//! pool's free and filled queues ([`Stalled::Pass`]) the push *relaps* the cell: a CAS from
//! `(s, TAKEN, actor, value)` to `(t, TAKEN, actor, value)` marks position `t` as consumed
//! without a value (takers pass a TAKEN cell of their lap), keeps naming the taker and its value
//! for the reaper, and the push goes on at `t + 1`. When the taker resumes, its release is a CAS
//! from whatever position the cell has reached, so it never reopens a position the tail has
//! passed (a blind store would: a push that read the tail before the relap could then fill a
//! position the takers have left behind, and the value would be lost). Pool queues have twice as
//! many cells as buffers, so relapped cells never leave a push without a cell.
//!
//! On a port's queue ([`Stalled::Refuse`]) a TAKEN cell is a subscriber reading a buffer, and a
//! port holds at most its depth of buffers: a push that finds one a lap later reports the queue
//! full, as it does for a RESERVED one. A private pool's queues refuse too: only its own
//! process uses them, so a stalled taker is one of its threads that was preempted, and the
//! push waits for it to go on (a process stopped as a whole stops the push as well). Queues
//! whose pushes never pass a taken cell release it with a plain store.
//!
//! Every loop is bounded: a corrupt block makes an operation report "empty" or "full", never spin
//! for ever.

use std::sync::atomic::Ordering;

use crate::sync::primitives::AtomicU64;
use crate::sync::shm_safe::CachePadded;
#[cfg(not(loom))]
use crate::sync::shm_safe::ShmSafe;

/// The queue's two positions, each on its own cache line.
#[repr(C)]
#[derive(Default)]
pub(crate) struct QueueCtrl {
    /// Next position to take.
    head: CachePadded<AtomicU64>,
    /// Next position to push.
    tail: CachePadded<AtomicU64>,
}

/// One cell: a single word, see the module docs.
#[repr(C)]
#[derive(Default)]
pub(crate) struct QueueCell {
    word: AtomicU64,
}

// SAFETY: `#[repr(C)]`, two `CachePadded<AtomicU64>`: integers only, any bit pattern valid.
// (Not under loom, whose atomics are model objects, not plain integers.)
#[cfg(not(loom))]
unsafe impl ShmSafe for QueueCtrl {}
// SAFETY: `#[repr(C)]`, one `AtomicU64`.
#[cfg(not(loom))]
unsafe impl ShmSafe for QueueCell {}

/// What a cell holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellState {
    /// Ready for a push at its position.
    Empty,
    /// Holds a value waiting to be taken.
    Full,
    /// Taken by `actor`, who has not released it yet.
    Taken,
    /// Reserved by `actor` for a push it has not filled yet.
    Reserved,
}

/// A cell's word, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) seq: u32,
    pub(crate) state: CellState,
    pub(crate) actor: u8,
    pub(crate) value: u32,
}

/// Largest value a cell can hold (22 bits; pools have at most `MAX_CAPACITY` = 2^20 slots).
pub(crate) const MAX_VALUE: u32 = (1 << 22) - 1;

impl Cell {
    const fn encode(self) -> u64 {
        let state = match self.state {
            CellState::Empty => 0,
            CellState::Full => 1,
            CellState::Taken => 2,
            CellState::Reserved => 3,
        };
        (self.seq as u64) << 32
            | state << 30
            | (self.actor as u64) << 22
            | (self.value & MAX_VALUE) as u64
    }

    const fn decode(word: u64) -> Cell {
        Cell {
            seq: (word >> 32) as u32,
            state: match (word >> 30) & 3 {
                0 => CellState::Empty,
                1 => CellState::Full,
                2 => CellState::Taken,
                _ => CellState::Reserved,
            },
            actor: (word >> 22) as u8,
            value: word as u32 & MAX_VALUE,
        }
    }

    const fn empty(position: u64) -> Cell {
        Cell {
            seq: position as u32,
            state: CellState::Empty,
            actor: 0,
            value: 0,
        }
    }
}

/// What a push does with a cell still TAKEN one lap earlier (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stalled {
    /// Relap it and go on at the next position (the pool's free and filled queues).
    Pass,
    /// Report the queue full (ports, whose taken cells are their subscribers' reads).
    Refuse,
}

/// The word of a cell holding `value`, ready to be taken at `position` (for tests that write
/// into a block as a peer would).
#[cfg(not(loom))]
pub(crate) fn full_cell_word(position: u64, value: u32) -> u64 {
    Cell {
        seq: position as u32,
        state: CellState::Full,
        actor: 0,
        value,
    }
    .encode()
}

/// A push found no cell ready: the cell at the tail is still used one lap earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    /// The cell in the way, as read.
    pub(crate) blocker: Cell,
}

/// A view of one queue in a block. `cells.len()` is a power of two.
#[derive(Clone, Copy)]
pub(crate) struct QueueRef<'a> {
    ctrl: &'a QueueCtrl,
    cells: &'a [QueueCell],
}

/// How many cells a pool's queue for `capacity` buffers has: twice the next power of two (at
/// least 2), so that buffers in transit between a TAKEN cell and its release never fill it.
pub(crate) fn cells_for(capacity: u32) -> usize {
    (capacity.max(1) as usize).next_power_of_two() * 2
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
            cell.word
                .store(Cell::empty(position as u64).encode(), Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn cell(&self, position: u64) -> &QueueCell {
        &self.cells[position as usize & (self.cells.len() - 1)]
    }

    /// Most retries one operation makes. Each retry means that another thread moved a position
    /// or changed the cell in between; this many in a row only happens in a corrupt block.
    #[inline(always)]
    fn retry_limit(&self) -> usize {
        self.cells.len() * 4 + 64
    }

    /// Moves `position` on from `from`, unless someone already did.
    #[inline(always)]
    fn advance(position: &AtomicU64, from: u64) {
        let _ = position.compare_exchange(
            from,
            from.wrapping_add(1),
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    }

    /// Appends `value` (at most [`MAX_VALUE`]) ready to be taken; returns its position.
    ///
    /// The cell CAS is `SeqCst`: a waiter that registers itself and then finds the cell empty can
    /// rely on any push it missed to see its registration (see `lockfree/wait.rs`).
    /// `stalled` says what to do with a cell a stalled taker still holds a lap later.
    #[inline(always)]
    pub(crate) fn push(&self, value: u32, stalled: Stalled) -> Result<u64, Full> {
        self.claim_tail(CellState::Full, 0, value, stalled)
    }

    /// Appends `value` as reserved by `actor`: not yet visible to takers, which wait at it.
    /// [`QueueRef::fill`] makes it takeable. (Ports only: a cell still taken a lap later
    /// makes the port full.)
    pub(crate) fn reserve(&self, value: u32, actor: u8) -> Result<u64, Full> {
        self.claim_tail(CellState::Reserved, actor, value, Stalled::Refuse)
    }

    #[inline(always)]
    fn claim_tail(
        &self,
        state: CellState,
        actor: u8,
        value: u32,
        stalled: Stalled,
    ) -> Result<u64, Full> {
        let mut tail = self.ctrl.tail.load(Ordering::Acquire);
        for _ in 0..self.retry_limit() {
            let cell = self.cell(tail);
            let word = cell.word.load(Ordering::SeqCst);
            let found = Cell::decode(word);
            let lap = found.seq.wrapping_sub(tail as u32) as i32;
            if lap == 0 && found.state == CellState::Empty {
                let claimed = Cell {
                    seq: tail as u32,
                    state,
                    actor,
                    value,
                };
                if cell
                    .word
                    .compare_exchange(word, claimed.encode(), Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    Self::advance(&self.ctrl.tail, tail);
                    return Ok(tail);
                }
            } else if lap >= 0 {
                // Position `tail` was claimed already (and maybe taken and released since).
                Self::advance(&self.ctrl.tail, tail);
            } else if found.state == CellState::Taken && stalled == Stalled::Pass {
                // Its taker has not released it a lap on: consume position `tail` without a
                // value, the cell still naming the taker (module docs).
                let relapped = Cell {
                    seq: tail as u32,
                    ..found
                };
                if cell
                    .word
                    .compare_exchange(word, relapped.encode(), Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    Self::advance(&self.ctrl.tail, tail);
                }
            } else {
                // The cell is still in use one lap earlier.
                return Err(Full { blocker: found });
            }
            tail = self.ctrl.tail.load(Ordering::Acquire);
        }
        Err(Full {
            blocker: Cell::decode(self.cell(tail).word.load(Ordering::Acquire)),
        })
    }

    /// The tail, once moved past every position already claimed: each position before it was
    /// claimed (pushed or reserved) before this call began, and each claim after this call
    /// returns gets a position at or after it (a port subscription's first position).
    pub(crate) fn settled_tail(&self) -> u64 {
        let mut tail = self.ctrl.tail.load(Ordering::Acquire);
        for _ in 0..self.retry_limit() {
            let found = Cell::decode(self.cell(tail).word.load(Ordering::SeqCst));
            let lap = found.seq.wrapping_sub(tail as u32) as i32;
            if lap < 0 || (lap == 0 && found.state == CellState::Empty) {
                return tail;
            }
            Self::advance(&self.ctrl.tail, tail);
            tail = self.ctrl.tail.load(Ordering::Acquire);
        }
        tail
    }

    /// Makes the value reserved at `position` takeable (by the reserver), with `tag`.
    pub(crate) fn fill(&self, position: u64, value: u32, tag: u8) {
        let full = Cell {
            seq: position as u32,
            state: CellState::Full,
            actor: tag,
            value,
        };
        self.cell(position)
            .word
            .store(full.encode(), Ordering::SeqCst);
    }

    /// Takes the oldest value for `actor`: returns its position (to [`release`](QueueRef::release)
    /// once the value is recorded elsewhere) and the value; `None` if no value is ready, including
    /// when the oldest is still reserved.
    #[inline(always)]
    pub(crate) fn take(&self, actor: u8) -> Option<(u64, u32)> {
        let (position, value, _) = self.take_tagged(actor, None)?;
        Some((position, value))
    }

    /// [`QueueRef::take`], returning the value's tag too (see [`QueueRef::fill`]); with
    /// `stop_at`, takes nothing if the oldest value has that tag.
    #[inline(always)]
    pub(crate) fn take_tagged(&self, actor: u8, stop_at: Option<u8>) -> Option<(u64, u32, u8)> {
        let mut head = self.ctrl.head.load(Ordering::Acquire);
        for _ in 0..self.retry_limit() {
            let cell = self.cell(head);
            let word = cell.word.load(Ordering::SeqCst);
            let found = Cell::decode(word);
            let lap = found.seq.wrapping_sub(head as u32) as i32;
            if lap == 0 {
                match found.state {
                    CellState::Full if stop_at == Some(found.actor) => return None,
                    CellState::Full => {
                        let taken = Cell {
                            state: CellState::Taken,
                            actor,
                            ..found
                        };
                        if cell
                            .word
                            .compare_exchange(
                                word,
                                taken.encode(),
                                Ordering::SeqCst,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                        {
                            Self::advance(&self.ctrl.head, head);
                            return Some((head, found.value, found.actor));
                        }
                    }
                    CellState::Empty | CellState::Reserved => return None,
                    CellState::Taken => Self::advance(&self.ctrl.head, head),
                }
            } else if lap > 0 {
                // Taken and released already: the head lags behind.
                Self::advance(&self.ctrl.head, head);
            } else {
                // Still used one lap earlier, so nothing was pushed here yet.
                return None;
            }
            head = self.ctrl.head.load(Ordering::Acquire);
        }
        None
    }

    /// Gives the cell taken at `position` back for its next lap (by its taker), in a queue whose
    /// pushes never pass a taken cell ([`Stalled::Refuse`]): a store, since nobody else writes
    /// a taken cell there (but a reaper of a dead taker).
    #[inline(always)]
    pub(crate) fn release_unpassed(&self, position: u64) {
        let next_lap = position.wrapping_add(self.cells.len() as u64);
        self.cell(position)
            .word
            .store(Cell::empty(next_lap).encode(), Ordering::Release);
    }

    /// Gives the cell that `actor` took at `position`, holding `value`, back for its next lap
    /// (by its taker), in a queue whose pushes pass a stalled taker's cell ([`Stalled::Pass`]).
    /// A CAS, not a store: a push may have relapped the cell meanwhile (module docs), and the
    /// release must free it for the lap after the one it is at now.
    #[inline(always)]
    pub(crate) fn release(&self, position: u64, actor: u8, value: u32) {
        let cell = self.cell(position);
        let lap = self.cells.len() as u64;
        let mut seen = Cell {
            seq: position as u32,
            state: CellState::Taken,
            actor,
            value,
        };
        for _ in 0..self.retry_limit() {
            let free = Cell::empty(u64::from(seen.seq) + lap);
            match cell.word.compare_exchange(
                seen.encode(),
                free.encode(),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => {
                    let now = Cell::decode(now);
                    // Still this take's cell, relapped by pushes a lap or more on: try again
                    // from where it is. Anything else (a reaper released it, or a corrupt block)
                    // leaves nothing of this take to give back.
                    let relapped = now.state == CellState::Taken
                        && now.actor == actor
                        && now.value == value
                        && u64::from(now.seq.wrapping_sub(seen.seq)).is_multiple_of(lap);
                    if !relapped {
                        return;
                    }
                    seen = now;
                }
            }
        }
    }

    /// Moves `head` and `tail` past cells whose push or take is done but whose mover stopped
    /// before moving the position on (a process killed in between). Any operation would do it on
    /// its way; the reaper calls this so that lengths are exact at once.
    pub(crate) fn settle(&self) {
        for _ in 0..self.retry_limit() {
            let tail = self.ctrl.tail.load(Ordering::Acquire);
            let cell = Cell::decode(self.cell(tail).word.load(Ordering::SeqCst));
            let lap = cell.seq.wrapping_sub(tail as u32) as i32;
            if lap > 0 || (lap == 0 && cell.state != CellState::Empty) {
                Self::advance(&self.ctrl.tail, tail);
            } else {
                break;
            }
        }
        for _ in 0..self.retry_limit() {
            let head = self.ctrl.head.load(Ordering::Acquire);
            let cell = Cell::decode(self.cell(head).word.load(Ordering::SeqCst));
            let lap = cell.seq.wrapping_sub(head as u32) as i32;
            if lap > 0 || (lap == 0 && cell.state == CellState::Taken) {
                Self::advance(&self.ctrl.head, head);
            } else {
                break;
            }
        }
    }

    /// Number of positions between the head and the tail: the values in the queue, counting
    /// pushes still in progress (and, while a stalled taker's cell is being passed, positions
    /// consumed without a value). One load of each position, for the fast path's water marks;
    /// [`QueueRef::waiting`] counts the values exactly. A snapshot: it may be out of date as
    /// soon as it is returned. `head` is read first, so `tail >= head`; more than a lap of
    /// operations between the loads is clamped to the queue's size.
    #[inline(always)]
    pub(crate) fn len(&self) -> u32 {
        let head = self.ctrl.head.load(Ordering::Acquire);
        let tail = self.ctrl.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.cells.len() as u64) as u32
    }

    /// Number of values waiting in the queue, counted cell by cell (a scan of the queue, for
    /// diagnostics). Unlike [`QueueRef::len`] it never counts positions that a push consumed
    /// without a value (passing a stalled taker's cell), nor takes in progress.
    pub(crate) fn waiting(&self) -> u32 {
        self.count(CellState::Full)
    }

    /// Number of cells in `state` (a scan of the queue, for diagnostics).
    pub(crate) fn count(&self, state: CellState) -> u32 {
        self.cells().filter(|(_, cell)| cell.state == state).count() as u32
    }

    /// Whether a take would find a value now (looking past cells taken already, as a take
    /// does, but taking nothing): not while the oldest value is still reserved.
    pub(crate) fn has_ready(&self) -> bool {
        let mut position = self.ctrl.head.load(Ordering::Acquire);
        for _ in 0..self.cells.len() {
            let cell = Cell::decode(self.cell(position).word.load(Ordering::SeqCst));
            let lap = cell.seq.wrapping_sub(position as u32) as i32;
            match (lap, cell.state) {
                (0, CellState::Full) => return true,
                (0, CellState::Taken) => {}
                (lap, _) if lap > 0 => {}
                _ => return false,
            }
            position = position.wrapping_add(1);
        }
        false
    }

    /// Whether a push has claimed a position that no take has claimed yet: a value is in the
    /// queue or about to be (maybe one reserved by a publisher that has not finished).
    pub(crate) fn has_claimed(&self) -> bool {
        let head = self.ctrl.head.load(Ordering::SeqCst);
        let tail = self.ctrl.tail.load(Ordering::SeqCst);
        tail != head
    }

    /// Every cell as read now, with its index (for the reaper and for inspection).
    pub(crate) fn cells(&self) -> impl Iterator<Item = (usize, Cell)> + '_ {
        self.cells
            .iter()
            .enumerate()
            .map(|(index, cell)| (index, Cell::decode(cell.word.load(Ordering::SeqCst))))
    }

    /// Replaces the cell at `index`, if it still reads `seen`, by `next` (for the reaper, which
    /// finishes or undoes what a dead actor left in a cell). Returns whether it did.
    pub(crate) fn replace_cell(&self, index: usize, seen: Cell, next: CellChange) -> bool {
        let next = match next {
            CellChange::Release => Cell::empty(u64::from(seen.seq) + self.cells.len() as u64),
            CellChange::Fill(tag) => Cell {
                state: CellState::Full,
                actor: tag,
                ..seen
            },
        };
        self.cells[index]
            .word
            .compare_exchange(
                seen.encode(),
                next.encode(),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The head and tail positions (for validation and inspection).
    pub(crate) fn positions(&self) -> (u64, u64) {
        (
            self.ctrl.head.load(Ordering::Acquire),
            self.ctrl.tail.load(Ordering::Acquire),
        )
    }

    /// Number of cells.
    pub(crate) fn cell_count(&self) -> usize {
        self.cells.len()
    }
}

/// What [`QueueRef::replace_cell`] makes of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellChange {
    /// Give it back for its next lap (undo a reservation, or end a take).
    Release,
    /// Make a reservation takeable, with this tag.
    Fill(u8),
}

/// A queue with its own storage, for the unit tests and the loom models of this crate.
#[cfg(test)]
pub(crate) struct TestQueue {
    ctrl: QueueCtrl,
    cells: Vec<QueueCell>,
}

#[cfg(test)]
impl TestQueue {
    /// An initialised queue of `cells` cells (a power of two) holding `values`.
    pub(crate) fn new(cells: usize, values: &[u32]) -> TestQueue {
        let test_queue = TestQueue {
            ctrl: QueueCtrl::default(),
            cells: (0..cells).map(|_| QueueCell::default()).collect(),
        };
        test_queue.queue().init();
        for &value in values {
            test_queue.push(value).unwrap();
        }
        test_queue
    }

    /// The queue.
    pub(crate) fn queue(&self) -> QueueRef<'_> {
        QueueRef::new(&self.ctrl, &self.cells)
    }

    /// Takes and at once releases the oldest value.
    pub(crate) fn pop(&self) -> Option<u32> {
        let (position, value) = self.queue().take(1)?;
        self.queue().release(position, 1, value);
        Some(value)
    }

    /// Appends `value` as a pool queue does (passing stalled takers' cells).
    pub(crate) fn push(&self, value: u32) -> Result<u64, Full> {
        self.queue().push(value, Stalled::Pass)
    }

    /// Pops every value, oldest first.
    pub(crate) fn drain(&self) -> Vec<u32> {
        std::iter::from_fn(|| self.pop()).collect()
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
                    thread::spawn(move || q.push(v).unwrap())
                })
                .collect();
            handles.into_iter().for_each(|h| {
                h.join().unwrap();
            });
            let mut got = q.drain();
            got.sort_unstable();
            assert_eq!(got, vec![1, 2]);
        });
    }

    #[test]
    fn loom_concurrent_takes_take_each_value_once() {
        loom::model(|| {
            let q = Arc::new(TestQueue::new(2, &[7, 8]));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || q.pop())
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
    fn loom_take_racing_a_push_loses_nothing() {
        loom::model(|| {
            let q = Arc::new(TestQueue::new(2, &[]));
            let pusher = {
                let q = Arc::clone(&q);
                thread::spawn(move || q.push(5).unwrap())
            };
            let popped = q.pop();
            pusher.join().unwrap();
            let rest = q.drain();
            match popped {
                Some(v) => assert_eq!((v, rest.len()), (5, 0)),
                None => assert_eq!(rest, vec![5]),
            }
        });
    }

    #[test]
    fn loom_a_reservation_is_taken_only_once_filled() {
        loom::model(|| {
            let q = Arc::new(TestQueue::new(2, &[]));
            let filler = {
                let q = Arc::clone(&q);
                thread::spawn(move || {
                    let position = q.queue().reserve(4, 2).unwrap();
                    q.queue().fill(position, 4, 0);
                })
            };
            let early = q.pop();
            filler.join().unwrap();
            let rest = q.drain();
            match early {
                Some(v) => assert_eq!((v, rest.len()), (4, 0)),
                None => assert_eq!(rest, vec![4]),
            }
        });
    }

    #[test]
    fn loom_a_taker_that_stops_after_its_take_leaves_its_value_named() {
        loom::model(|| {
            // Thread 7 takes and never releases (killed right after its CAS); the others carry on.
            let q = Arc::new(TestQueue::new(4, &[1, 2]));
            let stopped = {
                let q = Arc::clone(&q);
                thread::spawn(move || q.queue().take(7).map(|(_, value)| value))
            };
            let other = q.pop();
            q.push(3).unwrap();
            let taken = stopped.join().unwrap().unwrap();
            let named: Vec<(u8, u32)> = q
                .queue()
                .cells()
                .filter(|(_, cell)| cell.state == CellState::Taken)
                .map(|(_, cell)| (cell.actor, cell.value))
                .collect();
            assert_eq!(
                named,
                vec![(7, taken)],
                "the stopped taker's cell names it and its value"
            );
            let mut all = q.drain();
            all.extend(other);
            all.push(taken);
            all.sort_unstable();
            assert_eq!(all, vec![1, 2, 3]);
        });
    }

    #[test]
    fn loom_a_late_release_racing_relapping_pushes_loses_nothing() {
        // Three threads and a dozen operations: bound the preemptions to keep the exploration
        // finite (every interleaving with at most three forced switches).
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            // Actor 7 took value 1 and releases it late, while pushes go a lap past its cell;
            // a second pusher may read the tail before a relap and push after it. Four cells, as
            // a pool of two buffers has: the stalled take and two values at most at once.
            let q = Arc::new(TestQueue::new(4, &[1]));
            let (position, value) = q.queue().take(7).unwrap();
            let releaser = {
                let q = Arc::clone(&q);
                thread::spawn(move || q.queue().release(position, 7, value))
            };
            let pusher = {
                let q = Arc::clone(&q);
                thread::spawn(move || q.push(5).unwrap())
            };
            let mut got = Vec::new();
            for v in [2, 3, 4] {
                q.push(v).unwrap();
                got.extend(q.pop());
            }
            releaser.join().unwrap();
            pusher.join().unwrap();
            got.extend(q.drain());
            got.sort_unstable();
            assert_eq!(got, vec![2, 3, 4, 5], "every pushed value comes out once");
            assert!(
                q.queue()
                    .cells()
                    .all(|(_, cell)| cell.state == CellState::Empty),
                "the late release freed its cell"
            );
        });
    }

    #[test]
    fn loom_tokens_circulating_stay_unique() {
        loom::model(|| {
            // Two threads each move one token from the front to the back, as acquire/release do.
            let q = Arc::new(TestQueue::new(4, &[1, 2]));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || {
                        if let Some(token) = q.pop() {
                            q.push(token).unwrap();
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
    fn cell_words_round_trip() {
        for state in [
            CellState::Empty,
            CellState::Full,
            CellState::Taken,
            CellState::Reserved,
        ] {
            let cell = Cell {
                seq: u32::MAX - 3,
                state,
                actor: 255,
                value: MAX_VALUE,
            };
            assert_eq!(Cell::decode(cell.encode()), cell);
        }
    }

    #[test]
    fn fifo_order_and_bounds() {
        let q = TestQueue::new(4, &[]);
        assert_eq!(q.pop(), None);
        for v in 10..14 {
            q.push(v).unwrap();
        }
        assert_eq!(q.push(99).unwrap_err().blocker.value, 10);
        assert_eq!(q.queue().len(), 4);
        for v in 10..14 {
            assert_eq!(q.pop(), Some(v));
        }
        assert_eq!(q.pop(), None);
        assert_eq!(q.queue().len(), 0);
    }

    #[test]
    fn wraps_around_many_laps() {
        let q = TestQueue::new(2, &[]);
        for lap in 0..1000u32 {
            q.push(lap).unwrap();
            q.push(lap + 1).unwrap();
            assert_eq!(q.pop(), Some(lap));
            assert_eq!(q.pop(), Some(lap + 1));
        }
        assert!(!q.queue().has_claimed());
    }

    #[test]
    fn a_taken_cell_names_its_taker_until_released() {
        let q = TestQueue::new(4, &[5, 6]);
        let (position, value) = q.queue().take(9).unwrap();
        assert_eq!(value, 5);
        let taken: Vec<Cell> = q
            .queue()
            .cells()
            .map(|(_, cell)| cell)
            .filter(|cell| cell.state == CellState::Taken)
            .collect();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].actor, taken[0].value), (9, 5));
        // The queue goes on past a taken cell.
        assert_eq!(q.pop(), Some(6));
        q.queue().release(position, 9, value);
        assert!(q.queue().cells().all(|(_, c)| c.state == CellState::Empty));
    }

    #[test]
    fn a_stalled_taker_is_passed_and_its_late_release_reopens_no_passed_position() {
        // Four cells, as a pool of two buffers has: the stalled take and two values at most.
        let q = TestQueue::new(4, &[1]);
        let (position, value) = q.queue().take(3).unwrap(); // the taker stops here
        // Many laps go by: every push finds a cell, order is kept, nothing is lost.
        for round in 0..10 {
            q.push(10 + round).unwrap();
            q.push(20 + round).unwrap();
            assert_eq!(q.pop(), Some(10 + round));
            assert_eq!(q.pop(), Some(20 + round));
        }
        let stalled: Vec<Cell> = q
            .queue()
            .cells()
            .map(|(_, cell)| cell)
            .filter(|cell| cell.state == CellState::Taken)
            .collect();
        assert_eq!(stalled.len(), 1, "the cell still names its taker");
        assert_eq!((stalled[0].actor, stalled[0].value), (3, 1));
        // The taker resumes: its cell is freed for a lap the tail has not reached yet.
        q.queue().release(position, 3, value);
        let (_, tail) = q.queue().positions();
        for (_, cell) in q.queue().cells() {
            assert_eq!(cell.state, CellState::Empty);
            assert!(
                u64::from(cell.seq) >= tail,
                "{cell:?} reopens a position before {tail}"
            );
        }
        q.push(7).unwrap();
        q.push(8).unwrap();
        assert_eq!(q.drain(), vec![7, 8]);
    }

    #[test]
    fn a_taken_cell_a_lap_later_makes_a_port_full_until_released() {
        let q = TestQueue::new(2, &[]);
        q.queue().reserve(1, 4).unwrap();
        q.queue().fill(0, 1, 0);
        let (position, value) = q.queue().take(3).unwrap(); // a subscriber reading it
        q.queue().reserve(2, 4).unwrap();
        q.queue().fill(1, 2, 0);
        assert_eq!(q.pop(), Some(2));
        let full = q.queue().reserve(3, 4).unwrap_err();
        assert_eq!(
            (full.blocker.state, full.blocker.actor),
            (CellState::Taken, 3)
        );
        q.queue().release(position, 3, value);
        q.queue().reserve(3, 4).unwrap();
    }

    #[test]
    fn a_dead_takers_cell_released_by_a_reaper_is_reused() {
        let q = TestQueue::new(2, &[1]);
        let (_, _) = q.queue().take(3).unwrap(); // the taker dies holding cell 0
        q.push(2).unwrap();
        assert_eq!(q.pop(), Some(2));
        q.push(3).unwrap(); // relaps the dead taker's cell and lands in the other one
        let (index, cell) = q
            .queue()
            .cells()
            .find(|(_, c)| c.state == CellState::Taken)
            .unwrap();
        assert!(q.queue().replace_cell(index, cell, CellChange::Release));
        q.push(4).unwrap();
        assert_eq!(q.drain(), vec![3, 4]);
    }

    #[test]
    fn a_reservation_holds_takers_until_filled_or_released() {
        let q = TestQueue::new(4, &[]);
        let position = q.queue().reserve(7, 4).unwrap();
        q.push(8).unwrap();
        assert_eq!(q.pop(), None, "takers wait at a reservation");
        assert!(q.queue().has_claimed());
        q.queue().fill(position, 7, 0);
        assert_eq!(q.drain(), vec![7, 8]);

        // A reservation undone (its pusher died before recording it) is skipped.
        q.queue().reserve(1, 4).unwrap();
        q.push(2).unwrap();
        let (index, cell) = q
            .queue()
            .cells()
            .find(|(_, c)| c.state == CellState::Reserved)
            .unwrap();
        assert!(q.queue().replace_cell(index, cell, CellChange::Release));
        assert!(!q.queue().replace_cell(index, cell, CellChange::Release));
        assert_eq!(q.drain(), vec![2]);
    }

    #[test]
    fn corrupt_positions_end_in_empty_or_full_not_a_hang() {
        let q = TestQueue::new(4, &[1, 2]);
        q.ctrl.tail.store(u64::MAX / 3, Ordering::Relaxed);
        q.ctrl.head.store(12345, Ordering::Relaxed);
        let _ = q.push(3);
        let _ = q.pop();
        for cell in &q.cells {
            cell.word.store(0x5555_5555_5555_5555, Ordering::Relaxed);
        }
        let _ = q.push(3);
        let _ = q.pop();
    }

    #[test]
    fn pool_queues_have_room_for_transit() {
        assert_eq!(cells_for(0), 2);
        assert_eq!(cells_for(1), 2);
        assert_eq!(cells_for(5), 16);
        assert_eq!(cells_for(64), 128);
    }

    #[test]
    fn concurrent_tokens_are_neither_lost_nor_duplicated() {
        const TOKENS: u32 = 64;
        const ROUNDS: usize = if cfg!(miri) { 20 } else { 20_000 };
        let tokens: Vec<u32> = (0..TOKENS).collect();
        let q = Arc::new(TestQueue::new(cells_for(TOKENS), &tokens));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        if let Some(t) = q.pop() {
                            // A cell taken by a preempted thread is passed a lap later.
                            q.push(t).unwrap();
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
