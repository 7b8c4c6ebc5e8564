//! Reclaiming what dead processes held.
//!
//! Every change of who holds a buffer is one store or compare-and-swap on the buffer's state
//! word or on a queue cell, and at every moment a buffer is either in a queue cell or named by
//! its state word (`block/slot.rs`, `lockfree/queue.rs`). So when a process dies, between any
//! two instructions, what it held can be read off the block exactly:
//!
//! - cells of the free and filled queues that it TAKEN but had not released: if the buffer's
//!   state word does not name it as holder yet and the buffer is in no other cell, it goes back
//!   on that queue;
//! - port cells it reserved (a publication in progress): published if the buffer already counts
//!   the port's reference, released otherwise; port cells it took (a subscriber's read): released;
//! - buffers whose state word names it as holder (guards, detached ids): back to the free queue;
//!   a publication it had not finished is finished;
//! - buffers it was putting on a queue (state `Free`/`Filled` naming it) that are in no cell of
//!   that queue: queued;
//! - a port it subscribed: unsubscribed, and the buffers waiting in it dropped;
//! - port references whose cell is gone (a read that ended between releasing its cell and
//!   dropping the reference): dropped.
//!
//! - its bit among the sleepers of every wait word: cleared.
//!
//! Each step re-reads the state word and changes it only by compare-and-swap from what it read,
//! so it cannot undo a live process's move; state words are read before the cells are scanned,
//! so that a buffer which left a cell meanwhile has a changed state word and is left alone. The
//! steps run under the block's cleanup lock, so two reapers never race.
//!
//! # Who is dead
//!
//! The kernel says (see the `liveness` module): a process is dead once nobody holds its
//! entry's lock. A reaper reads the entry, then finds its lock free, then marks the entry
//! REAPING by a compare-and-swap from what it read; the entry's generation makes sure no detach
//! and new claim came in between, and a live claimer holds the lock from before its claim until
//! after its detach, so the process it reaps was dead all along. An entry stays REAPING until
//! the reaper frees it; a reaper that dies half-way leaves it REAPING, and the next one (who
//! can only take the cleanup lock once the dead one's is gone) finishes the job: every step is
//! safe to repeat.

use std::sync::atomic::Ordering;

use crate::block::slot::{SlotState, SlotWord};
use crate::block::view::{BlockView, Queue};
use crate::lockfree::queue::{CellChange, CellState, QueueRef, Stalled};
use crate::lockfree::wait::wake_one;
use crate::shm::liveness::Liveness;

/// What `BufferPool::reclaim_dead` does, for the process whose actor number is `me` (0 if it has
/// none yet), asking the kernel through `liveness`.
pub(crate) fn reclaim_dead_with(block: BlockView<'_>, liveness: &Liveness, me: u8) -> usize {
    let dead = |actor: u8| {
        let record = block.process(actor)?.read()?;
        (record.is_reaping() || liveness.is_dead(actor)).then_some(record)
    };
    if !block
        .processes()
        .any(|(actor, _)| actor != me && dead(actor).is_some())
    {
        return 0;
    }
    let Some(_lock) = liveness.cleanup() else {
        // Another process (or thread) is reclaiming right now.
        return 0;
    };
    let mut back = 0;
    for (actor, entry) in block.processes().filter(|&(actor, _)| actor != me) {
        // Read again under the lock: another reaper may have finished this one meanwhile (and
        // the entry been claimed again by a live process).
        let Some(record) = dead(actor) else { continue };
        let reaping = if record.is_reaping() {
            record // a reaper died half-way: finish its job
        } else {
            let Some(reaping) = entry.begin_reaping(record) else {
                continue;
            };
            reaping
        };
        back += reap(block, actor, me);
        entry.free(reaping);
    }
    block
        .header()
        .reclaimed
        .fetch_add(back as u64, Ordering::Relaxed);
    back
}

/// Reclaims what `dead` held, acting as `me` (`dead` itself when a process gives back what it
/// still holds as it detaches); returns the buffers put back on the free queue. The caller
/// holds the cleanup lock.
pub(crate) fn reap(block: BlockView<'_>, dead: u8, me: u8) -> usize {
    let header = block.header();
    header.free_wait.forget(dead);
    header.filled_wait.forget(dead);
    for port in 0..block.shape().ports as usize {
        block.port(port).wait.forget(dead);
    }
    let mut back = 0;
    for queue in [Queue::Free, Queue::Filled] {
        back += finish_takes(block, queue, dead, me);
    }
    for port in 0..block.shape().ports as usize {
        finish_port_cells(block, port, dead, me);
    }
    back += finish_slots(block, dead, me);
    block.free_queue().settle();
    block.filled_queue().settle();
    for port in 0..block.shape().ports as usize {
        block.port_queue(port).settle();
    }
    back
}

/// The queued state of the buffers in `queue`.
fn queued_state(queue: Queue) -> SlotState {
    match queue {
        Queue::Free => SlotState::Free,
        Queue::Filled => SlotState::Filled,
    }
}

/// Cells of `queue` that `dead` took and did not release.
fn finish_takes(block: BlockView<'_>, queue: Queue, dead: u8, me: u8) -> usize {
    let (ring, _) = block.queue(queue);
    let mut back = 0;
    for (index, cell) in ring.cells() {
        if cell.state != CellState::Taken || cell.actor != dead {
            continue;
        }
        if let Some(slot) = block.slot_checked(cell.value) {
            let word = slot.word();
            // Read the state word first, then look for the buffer in the other cells.
            let elsewhere = ring.cells().any(|(other, c)| {
                other != index
                    && c.value == cell.value
                    && matches!(c.state, CellState::Full | CellState::Taken)
            });
            if word.state == Some(queued_state(queue))
                && !elsewhere
                && slot.replace(word, word.by(me)).is_ok()
            {
                // Taken, but not yet recorded as held: it goes back where it was.
                requeue(block, queue, cell.value);
                back += usize::from(queue == Queue::Free);
            }
        }
        ring.replace_cell(index, cell, CellChange::Release);
    }
    back
}

/// Cells of port `port` that `dead` reserved or took; its subscription.
fn finish_port_cells(block: BlockView<'_>, port: usize, dead: u8, me: u8) {
    let ring = block.port_queue(port);
    let entry = block.port(port);
    let bit = 1u16 << port;
    for (index, cell) in ring.cells() {
        if cell.actor != dead {
            continue;
        }
        match cell.state {
            CellState::Reserved => {
                let counted = block
                    .slot_checked(cell.value)
                    .is_some_and(|slot| slot.word().ports & bit != 0);
                let (subscriber, tag) = entry.subscription();
                // Finished for the port's current subscriber (whichever subscription the dead
                // publisher saw); with no subscriber, dropped (`finish_slots` drops the
                // reference whose cell is gone).
                let counted = counted && subscriber != 0;
                let change = if counted {
                    CellChange::Fill(tag)
                } else {
                    CellChange::Release
                };
                // Published or released, what waits behind the cell is takeable now.
                if ring.replace_cell(index, cell, change) {
                    wake_one(&entry.wait);
                }
            }
            // The reference it was reading is dropped by `finish_slots` (its cell is gone).
            CellState::Taken => {
                ring.replace_cell(index, cell, CellChange::Release);
            }
            CellState::Empty | CellState::Full => {}
        }
    }
    if entry.subscriber() == dead {
        // Nobody will read what was published to a dead subscriber: its subscription ends, and
        // the buffers of ended subscriptions leave the port (their references are dropped by
        // `finish_slots`, their cells being gone).
        entry.unsubscribe(dead);
        for _ in 0..ring.cell_count() {
            let Some((position, _, _)) = ring.take_tagged(me, Some(entry.subscription().1)) else {
                break;
            };
            ring.release_unpassed(position);
        }
    }
}

/// Buffers whose state word names `dead`, and port references left without a cell.
fn finish_slots(block: BlockView<'_>, dead: u8, me: u8) -> usize {
    let capacity = block.capacity();
    // State words first, cells second (see the module docs).
    let words: Vec<SlotWord> = (0..capacity).map(|i| block.slot(i).word()).collect();
    let in_free = presence(block.free_queue(), capacity);
    let in_filled = presence(block.filled_queue(), capacity);
    let in_ports: Vec<Vec<bool>> = (0..block.shape().ports as usize)
        .map(|port| presence(block.port_queue(port), capacity))
        .collect();
    // Bits of ports the pool does not have can only come from a corrupt block.
    let stray = u16::MAX.checked_shl(block.shape().ports).unwrap_or(0);
    let mut back = 0;
    for (index, &word) in words.iter().enumerate() {
        let slot = block.slot(index as u32);
        let mut word = word;
        // Port references without a cell.
        let orphans = in_ports
            .iter()
            .enumerate()
            .filter(|(port, present)| word.ports & (1 << port) != 0 && !present[index])
            .fold(word.ports & stray, |bits, (port, _)| bits | 1 << port);
        if orphans != 0 {
            let next = SlotWord {
                ports: word.ports & !orphans,
                ..word
            };
            let next = if next.state == Some(SlotState::Shared) && next.ports == 0 {
                SlotWord::new(word.generation.wrapping_add(1), SlotState::Free).by(me)
            } else {
                next
            };
            if slot.replace(word, next).is_err() {
                continue;
            }
            if next.state == Some(SlotState::Free) {
                requeue(block, Queue::Free, index as u32);
                back += 1;
                continue;
            }
            word = next;
        }
        if word.actor != dead {
            continue;
        }
        let next = match word.state {
            Some(SlotState::Publishing) if word.ports != 0 => SlotWord {
                state: Some(SlotState::Shared),
                actor: 0,
                ..word
            },
            Some(_) if word.is_held() => {
                SlotWord::new(word.generation.wrapping_add(1), SlotState::Free).by(me)
            }
            Some(SlotState::Free) if !in_free[index] => word.by(me),
            Some(SlotState::Filled) if !in_filled[index] => word.by(me),
            _ => continue,
        };
        if slot.replace(word, next).is_err() {
            continue;
        }
        match next.state {
            Some(SlotState::Free) => {
                requeue(block, Queue::Free, index as u32);
                back += 1;
            }
            Some(SlotState::Filled) => requeue(block, Queue::Filled, index as u32),
            _ => {}
        }
    }
    back
}

/// Which slot indices `ring` holds in a FULL, TAKEN or RESERVED cell.
fn presence(ring: QueueRef<'_>, capacity: u32) -> Vec<bool> {
    let mut present = vec![false; capacity as usize];
    for (_, cell) in ring.cells() {
        if cell.state != CellState::Empty && cell.value < capacity {
            present[cell.value as usize] = true;
        }
    }
    present
}

/// Puts slot `index`, whose state word now names the reaper, on `queue` (which a stalled
/// taker cannot block: see the queue module).
fn requeue(block: BlockView<'_>, queue: Queue, index: u32) {
    let (ring, word) = block.queue(queue);
    if ring.push(index, Stalled::Pass).is_ok() {
        wake_one(word);
        return;
    }
    eprintln!(
        "bufpool: the {queue} queue had no free cell while reclaiming buffer {index}, which only a corrupt pool block explains; it is left out"
    );
}
