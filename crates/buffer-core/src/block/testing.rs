//! For this workspace's own tests of hostile peers and lost wake-ups: where the parts of a pool
//! block lie in a segment, and how its words are encoded, so that a test can write into a
//! segment exactly as a scribbling peer process would. Not a stable API; not for pipelines.

use std::mem::{offset_of, size_of};

use crate::block::layout::{BlockLayout, PoolHeader, Shape};
use crate::block::slot::{Slot, SlotState, SlotWord};
use crate::lockfree::queue::QueueCtrl;
use crate::lockfree::wait::WaitWord;

pub use crate::lockfree::wait::disable_idle_polling;

/// Every state a slot's state word can name, in the order of their numbers.
pub fn slot_states() -> impl Iterator<Item = SlotState> {
    (0..=u32::from(u8::MAX)).filter_map(SlotState::from_word)
}

/// Byte offsets, from the segment's start, of the words a test writes as a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The block's length; the buffers of a shared pool follow.
    pub block_len: usize,
    /// The slot table.
    pub slots: usize,
    /// Bytes from one slot to the next.
    pub slot_len: usize,
    /// Cells of the free queue (and of the filled queue).
    pub queue_cells: usize,
    /// The free queue's tail position (a `u64`).
    pub free_tail: usize,
    /// The free queue's first cell (cells are `u64`s).
    pub free_cells: usize,
    /// The free queue's waiters' word (a `u64` bitmask, one bit per process).
    pub free_sleepers: usize,
}

/// Offsets of a slot's fields from the slot's start.
pub mod slot {
    use super::*;

    /// The state word (`u64`: generation, state, actor, port bits).
    pub const STATE: usize = offset_of!(Slot, state);
    /// The buffer's size (`u64`).
    pub const SIZE: usize = offset_of!(Slot, size);
    /// The buffer's offset in the segment (`u64`).
    pub const DATA_OFFSET: usize = offset_of!(Slot, data_offset);
    /// The memory kind (`u32`).
    pub const MEMORY_KIND: usize = offset_of!(Slot, memory_kind);
    /// The flag bits (`u32`; 2 is "foreign": memory opened from a share token).
    pub const FLAGS: usize = offset_of!(Slot, flags);
}

/// The layout of a pool of `capacity` buffers with `ports` ports of `port_depth` cells.
pub fn layout(capacity: u32, ports: u32, port_depth: u32) -> Layout {
    let layout = BlockLayout::new(Shape {
        capacity,
        ports,
        port_depth,
    });
    // The control block is two cache-padded positions: head, then tail.
    let tail = size_of::<QueueCtrl>() / 2;
    Layout {
        block_len: layout.len,
        slots: layout.slots,
        slot_len: size_of::<Slot>(),
        queue_cells: layout.cells,
        free_tail: layout.free_queue + tail,
        free_cells: layout.free_queue + size_of::<QueueCtrl>(),
        free_sleepers: offset_of!(PoolHeader, free_wait) + offset_of!(WaitWord, sleepers),
    }
}

/// A slot state word: `generation`, `state`, held or queued by `actor`, with port bits `ports`.
pub fn slot_word(generation: u32, state: SlotState, actor: u8, ports: u16) -> u64 {
    SlotWord {
        ports,
        ..SlotWord::new(generation, state).by(actor)
    }
    .encode()
}

/// A queue cell holding `value` ready to be taken at `position`.
pub fn full_cell(position: u64, value: u32) -> u64 {
    crate::lockfree::queue::full_cell_word(position, value)
}
