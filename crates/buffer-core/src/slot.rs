//! One slot of the slot table: a buffer's state, generation, holder and description, plus the
//! metadata record its producer writes.
//!
//! # The state word
//!
//! `state` packs the slot's generation (upper 32 bits) and its [`SlotState`] (lower 32 bits), so
//! that redeeming an id checks both with a single compare-and-swap. The generation grows by one
//! every time the buffer goes back to the free queue and every time the slot is emptied, which
//! makes ids handed out before that point stale.
//!
//! # Who may change a slot
//!
//! Whoever took the slot's index out of a queue (or out of the vacant state) owns the slot until
//! it puts the index into a queue again; only the owner writes the slot, with plain stores. The
//! one exception is redeeming an id, where several threads may race for the same detached slot:
//! that transition is a compare-and-swap, so exactly one of them wins.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::memory::{MemoryKind, Ownership};
use crate::meta::FrameMeta;
use crate::shm_safe::ShmSafe;

/// What a slot is doing, as stored in the low half of its state word.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, SlotState, Wait};
///
/// // Slot states show up in error messages, for example when an id is redeemed twice.
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("s"), 1, 8).unwrap();
/// let id = pool.acquire_free(Wait::NoWait).unwrap().into_id();
/// let _guard = pool.redeem_write(id).unwrap();
/// let err = pool.redeem_write(id).unwrap_err();
/// assert!(err.to_string().contains(&format!("{:?}", SlotState::Writing)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    /// No buffer in this slot.
    Vacant = 0,
    /// A buffer is being put into this slot (injection in progress).
    Injecting = 1,
    /// On the free queue, or just taken from it.
    Free = 2,
    /// Held by a producer's write guard.
    Writing = 3,
    /// Written, held as a [`BufferId`](crate::BufferId) waiting to be redeemed as a write guard.
    WritingDetached = 4,
    /// On the filled queue, or just taken from it.
    Filled = 5,
    /// Held by a consumer's read guard.
    Reading = 6,
    /// Being read, held as a [`BufferId`](crate::BufferId) waiting to be redeemed as a read guard.
    ReadingDetached = 7,
    /// Being taken out of the pool (removal or destruction in progress).
    Removing = 8,
}

impl SlotState {
    fn from_word(word: u32) -> Option<SlotState> {
        Some(match word {
            0 => SlotState::Vacant,
            1 => SlotState::Injecting,
            2 => SlotState::Free,
            3 => SlotState::Writing,
            4 => SlotState::WritingDetached,
            5 => SlotState::Filled,
            6 => SlotState::Reading,
            7 => SlotState::ReadingDetached,
            8 => SlotState::Removing,
            _ => return None,
        })
    }
}

/// Packs a generation and a state into a state word.
#[inline]
pub(crate) const fn pack(generation: u32, state: SlotState) -> u64 {
    ((generation as u64) << 32) | state as u64
}

/// Splits a state word; `None` for the state of a corrupt word.
#[inline]
pub(crate) fn unpack(word: u64) -> (u32, Option<SlotState>) {
    ((word >> 32) as u32, SlotState::from_word(word as u32))
}

/// Marks "no physical address" in [`Slot::phys_addr`].
const NO_PHYS: u64 = u64::MAX;

/// One buffer's record in the slot table. 64-byte aligned: the control words fill the first cache
/// line, the metadata record the lines after it.
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// Generation and [`SlotState`], see the module docs.
    pub(crate) state: AtomicU64,
    /// Who holds the buffer: the holder's process id in the low 32 bits, the number of live
    /// references (1 while a guard or a detached id holds it) in the high 32 bits; 0 while
    /// queued. One word, so that taking and giving back a buffer is one store each.
    pub(crate) hold: AtomicU64,
    /// When the current holder took the buffer: `CLOCK_MONOTONIC_COARSE` seconds in the high
    /// 32 bits, nanoseconds in the low 32 bits.
    pub(crate) acquired_at: AtomicU64,
    /// How often this slot's buffer was acquired (free or filled); only its owner adds to it.
    pub(crate) acquisitions: AtomicU64,
    /// Size of the buffer in bytes.
    pub(crate) size: AtomicU64,
    /// Physical or bus address, or `NO_PHYS`.
    pub(crate) phys_addr: AtomicU64,
    /// [`MemoryKind`] as encoded by `MemoryKind::to_word`.
    pub(crate) memory_kind: AtomicU32,
    /// 1 if the pool owns the memory ([`Ownership::Owned`]), 0 if it is external.
    pub(crate) owned: AtomicU32,
    /// The producer's record; accessed only by the slot's owner (see the module docs).
    pub(crate) meta: UnsafeCell<FrameMeta>,
}

// SAFETY: `#[repr(C)]`; every field is an atomic integer or a `FrameMeta` (itself `ShmSafe`) in an
// `UnsafeCell`, which has the same layout as its content.
unsafe impl ShmSafe for Slot {}

// SAFETY: the atomics are `Sync`; the `UnsafeCell<FrameMeta>` is only accessed by the slot's owner
// (module docs), and ownership passes between threads through the queues' release/acquire pairs.
unsafe impl Sync for Slot {}

impl Slot {
    /// The state word's current value, read with `Acquire` so that the slot's description written
    /// before it was published is visible.
    #[inline(always)]
    pub(crate) fn state_word(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// Sets the state (by the slot's owner).
    #[inline(always)]
    pub(crate) fn set_state(&self, generation: u32, state: SlotState) {
        self.state.store(pack(generation, state), Ordering::Release);
    }

    /// The slot's described memory: size, kind, ownership and physical address.
    #[inline]
    pub(crate) fn describe(&self) -> (usize, MemoryKind, Ownership, Option<u64>) {
        let size = self.size.load(Ordering::Relaxed) as usize;
        let kind = MemoryKind::from_word(self.memory_kind.load(Ordering::Relaxed));
        let ownership = if self.owned.load(Ordering::Relaxed) == 1 {
            Ownership::Owned
        } else {
            Ownership::External
        };
        let phys = match self.phys_addr.load(Ordering::Relaxed) {
            NO_PHYS => None,
            phys => Some(phys),
        };
        (size, kind, ownership, phys)
    }

    /// Records a new buffer's description (by the owner, before the slot is published).
    pub(crate) fn set_description(
        &self,
        size: usize,
        kind: MemoryKind,
        ownership: Ownership,
        phys: Option<u64>,
    ) {
        self.size.store(size as u64, Ordering::Relaxed);
        self.memory_kind.store(kind.to_word(), Ordering::Relaxed);
        self.owned
            .store(u32::from(ownership == Ownership::Owned), Ordering::Relaxed);
        self.phys_addr
            .store(phys.unwrap_or(NO_PHYS), Ordering::Relaxed);
    }

    /// Records that `holder` now holds the buffer (by the owner, right after taking it).
    #[inline(always)]
    pub(crate) fn mark_held(&self, holder: u32, now: u64) {
        self.hold
            .store(u64::from(holder) | 1 << 32, Ordering::Relaxed);
        self.acquired_at.store(now, Ordering::Relaxed);
        // Only the owner writes this counter, so a load and a store suffice (no locked add).
        let count = self.acquisitions.load(Ordering::Relaxed);
        self.acquisitions.store(count + 1, Ordering::Relaxed);
    }

    /// Records that nobody holds the buffer (by the owner, before queueing it).
    #[inline(always)]
    pub(crate) fn mark_unheld(&self) {
        self.hold.store(0, Ordering::Relaxed);
    }

    /// The holder's process id, if someone holds the buffer.
    pub(crate) fn holder(&self) -> Option<u32> {
        let hold = self.hold.load(Ordering::Relaxed);
        (hold >> 32 != 0).then_some(hold as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_word_round_trips() {
        for state in [
            SlotState::Vacant,
            SlotState::Injecting,
            SlotState::Free,
            SlotState::Writing,
            SlotState::WritingDetached,
            SlotState::Filled,
            SlotState::Reading,
            SlotState::ReadingDetached,
            SlotState::Removing,
        ] {
            for generation in [0, 1, u32::MAX] {
                assert_eq!(unpack(pack(generation, state)), (generation, Some(state)));
            }
        }
        assert_eq!(unpack(0xdead_0000_0099).1, None);
    }

    #[test]
    fn slot_is_cache_line_aligned() {
        assert_eq!(std::mem::align_of::<Slot>(), 64);
        assert_eq!(std::mem::size_of::<Slot>() % 64, 0);
    }

    #[test]
    fn hold_word_names_the_holder() {
        // SAFETY: `Slot` is `ShmSafe`, so all-zero bytes are a valid value.
        let slot: Slot = unsafe { std::mem::zeroed() };
        assert_eq!(slot.holder(), None);
        slot.mark_held(4711, 5);
        assert_eq!(slot.holder(), Some(4711));
        assert_eq!(slot.acquisitions.load(Ordering::Relaxed), 1);
        slot.mark_unheld();
        assert_eq!(slot.holder(), None);
    }

    #[test]
    fn description_round_trips() {
        // SAFETY: `Slot` is `ShmSafe`, so all-zero bytes are a valid value.
        let slot: Slot = unsafe { std::mem::zeroed() };
        slot.set_description(
            4096,
            MemoryKind::Device { ordinal: 3 },
            Ownership::External,
            None,
        );
        assert_eq!(
            slot.describe(),
            (
                4096,
                MemoryKind::Device { ordinal: 3 },
                Ownership::External,
                None
            )
        );
        slot.set_description(8, MemoryKind::ScanOut, Ownership::Owned, Some(0xfd00_0000));
        assert_eq!(
            slot.describe(),
            (8, MemoryKind::ScanOut, Ownership::Owned, Some(0xfd00_0000))
        );
    }
}
