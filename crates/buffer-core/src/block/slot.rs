//! One slot of the slot table: a buffer's state, generation, holder and description, plus the
//! metadata record its producer writes.
//!
//! # The state word
//!
//! `state` is one 64-bit word, so that every change of who holds a buffer is a single store or
//! compare-and-swap, which a process killed at any instruction either made or did not make:
//!
//! ```text
//! bits 63..32  generation  grows by one every time the buffer goes back to the free queue
//! bits 27..24  state       a SlotState
//! bits 23..16  actor       the process slot (1..=255) holding the buffer, or the one putting
//!                          it on a queue; 0 for none
//! bits 15..0   ports       the fan-out ports holding a reference (one bit per port)
//! ```
//!
//! The generation makes ids handed out before the buffer was last released stale.
//!
//! # Who may change a slot
//!
//! Whoever took the slot's index out of a queue (or out of the vacant state) owns the slot until
//! it puts the index into a queue again, or hands it to the ports; only the owner writes the
//! slot, with plain stores. The exceptions are compare-and-swaps: redeeming an id (several
//! threads may race for the same detached slot), clearing a port's bit when a subscriber is done
//! with a fanned-out buffer, and the reaper, which takes over what a dead process held.
//!
//! # Where a buffer is
//!
//! A buffer is at every moment either in a queue cell, or named by its state word: held by the
//! actor, or in the ports of its bits, or being queued by the actor (`Free`/`Filled` with an actor
//! whose push may not have landed yet). That is what the reaper relies on to reclaim exactly
//! what a killed process held.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::block::memory_kind::{MemoryKind, Ownership};
use crate::block::meta::FrameMeta;
use crate::sync::shm_safe::{ShmCell, ShmSafe};

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
    /// Being handed to fan-out ports by its producer (the actor).
    Publishing = 9,
    /// Held by the fan-out ports whose bits are set, and by their subscribers.
    Shared = 10,
}

impl SlotState {
    pub(crate) fn from_word(word: u32) -> Option<SlotState> {
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
            9 => SlotState::Publishing,
            10 => SlotState::Shared,
            _ => return None,
        })
    }
}

/// A slot's state word, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotWord {
    pub(crate) generation: u32,
    /// `None` for the state of a corrupt word.
    pub(crate) state: Option<SlotState>,
    pub(crate) actor: u8,
    pub(crate) ports: u16,
}

impl SlotWord {
    /// A word with no actor and no ports.
    #[inline(always)]
    pub(crate) const fn new(generation: u32, state: SlotState) -> SlotWord {
        SlotWord {
            generation,
            state: Some(state),
            actor: 0,
            ports: 0,
        }
    }

    /// The same word with `actor`.
    #[inline(always)]
    pub(crate) const fn by(self, actor: u8) -> SlotWord {
        SlotWord { actor, ..self }
    }

    #[inline(always)]
    pub(crate) const fn encode(self) -> u64 {
        let state = match self.state {
            Some(state) => state as u64,
            None => 0xf,
        };
        (self.generation as u64) << 32 | state << 24 | (self.actor as u64) << 16 | self.ports as u64
    }

    #[inline(always)]
    pub(crate) fn decode(word: u64) -> SlotWord {
        SlotWord {
            generation: (word >> 32) as u32,
            state: SlotState::from_word((word >> 24) as u32 & 0xff),
            actor: (word >> 16) as u8,
            ports: word as u16,
        }
    }

    /// Whether the actor holds the buffer (a guard, a detached id, or a publication in progress).
    pub(crate) fn is_held(self) -> bool {
        matches!(
            self.state,
            Some(
                SlotState::Writing
                    | SlotState::Reading
                    | SlotState::WritingDetached
                    | SlotState::ReadingDetached
                    | SlotState::Publishing
            )
        )
    }

    /// References to the buffer: 1 for its holder, plus one per port holding it.
    pub(crate) fn references(self) -> u32 {
        u32::from(self.is_held()) + self.ports.count_ones()
    }
}

/// Most compare-and-swaps [`Slot::update`] tries: each failure means another thread or process
/// changed the word in between, and this many in a row means a peer is scribbling on it.
pub(crate) const UPDATE_TRIES: u32 = 10_000;

/// Marks "no physical address" in [`Slot::phys_addr`].
const NO_PHYS: u64 = u64::MAX;
/// [`Slot::flags`] bit: the buffer leaves the pool when released.
pub(crate) const ONE_TIME: u32 = 1;
/// [`Slot::flags`] bit: each process maps the buffer's memory itself, opening it from the share
/// token stored at [`Slot::data_offset`] (`SHARE_TOKEN_LEN` bytes in the segment).
pub(crate) const FOREIGN: u32 = 2;

/// Marks process-local memory in [`Slot::data_offset`].
pub(crate) const NO_OFFSET: u64 = u64::MAX;

/// One buffer's record in the slot table. 64-byte aligned: the control words fill the first cache
/// line, the metadata record the lines after it.
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// Generation and [`SlotState`], see the module docs.
    pub(crate) state: AtomicU64,
    /// When the current holder took the buffer: `CLOCK_MONOTONIC_COARSE` seconds in the high
    /// 32 bits, nanoseconds in the low 32 bits.
    pub(crate) acquired_at: AtomicU64,
    /// How often this slot's buffer was acquired (free or filled); only its owner adds to it.
    pub(crate) acquisitions: AtomicU64,
    /// Size of the buffer in bytes.
    pub(crate) size: AtomicU64,
    /// Physical or bus address, or `NO_PHYS`.
    pub(crate) phys_addr: AtomicU64,
    /// Where the buffer's memory lies in a shared segment, from the segment's start; `NO_OFFSET`
    /// for memory that is local to the process that added it.
    pub(crate) data_offset: AtomicU64,
    /// [`MemoryKind`] as encoded by `MemoryKind::to_word`.
    pub(crate) memory_kind: AtomicU32,
    /// 1 if the pool owns the memory ([`Ownership::Owned`]), 0 if it is external.
    pub(crate) owned: AtomicU32,
    /// [`ONE_TIME`] for a buffer that leaves the pool when released instead of going to the free
    /// queue (a wrapped decoder frame). On the slot's first cache line, which releasing writes
    /// anyway, so that checking it costs releases nothing.
    pub(crate) flags: AtomicU32,
    /// When the buffer was added to the pool: `CLOCK_MONOTONIC_COARSE` whole seconds (its age in
    /// diagnostics). Fills the first cache line's last four bytes.
    pub(crate) added_at: AtomicU32,
    /// The producer's record: written by the slot's owner (see the module docs), read by its
    /// readers, always as whole copies (a peer scribbling on it cannot cause undefined
    /// behaviour).
    pub(crate) meta: ShmCell<FrameMeta>,
}

// SAFETY: `#[repr(C)]`; every field is an atomic integer or a `ShmCell<FrameMeta>` (`ShmSafe`).
unsafe impl ShmSafe for Slot {}

impl Slot {
    /// The state word, read with `Acquire` so that the slot's description written before it was
    /// published is visible.
    #[inline(always)]
    pub(crate) fn word(&self) -> SlotWord {
        SlotWord::decode(self.state.load(Ordering::Acquire))
    }

    /// Sets the state word (by the slot's owner).
    #[inline(always)]
    pub(crate) fn set(&self, word: SlotWord) {
        self.state.store(word.encode(), Ordering::Release);
    }

    /// Replaces the state word if it still reads `seen`; the word found otherwise.
    #[inline]
    pub(crate) fn replace(&self, seen: SlotWord, next: SlotWord) -> Result<(), SlotWord> {
        self.state
            .compare_exchange(
                seen.encode(),
                next.encode(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(SlotWord::decode)
    }

    /// Changes the state word to what `next` makes of it (`None`: leave it), by compare-and-swap
    /// from the word as read, again while other threads or processes change it meanwhile.
    /// Returns the word before and after; `None` if `next` left it, if its state is not a
    /// [`SlotState`] (only a corrupt block has one), or after [`UPDATE_TRIES`] tries (a peer
    /// changing it for ever): no loop on a slot is endless, whatever is written into it.
    #[inline]
    pub(crate) fn update(
        &self,
        mut next: impl FnMut(SlotWord) -> Option<SlotWord>,
    ) -> Option<(SlotWord, SlotWord)> {
        let mut raw = self.state.load(Ordering::Acquire);
        for _ in 0..UPDATE_TRIES {
            let word = SlotWord::decode(raw);
            word.state?;
            let changed = next(word)?;
            match self.state.compare_exchange(
                raw,
                changed.encode(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((word, changed)),
                Err(now) => raw = now,
            }
        }
        None
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
        self.added_at.store(
            (crate::shm::clock::coarse_now() >> 32) as u32,
            Ordering::Relaxed,
        );
    }

    /// Whether the buffer leaves the pool when released ([`ONE_TIME`]).
    #[inline(always)]
    pub(crate) fn is_one_time(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & ONE_TIME != 0
    }

    /// Records an acquisition at `now` (by the new owner, right after taking the buffer from
    /// the free or filled queue).
    #[inline(always)]
    pub(crate) fn note_acquired(&self, now: u64) {
        self.acquired_at.store(now, Ordering::Relaxed);
        // Only the owner writes this counter, so a load and a store suffice (no locked add).
        let count = self.acquisitions.load(Ordering::Relaxed);
        self.acquisitions
            .store(count.wrapping_add(1), Ordering::Relaxed);
    }

    /// Records a port subscriber's receipt at `now`. Subscribers of several ports receive the
    /// same buffer at once, so the count is a locked add.
    #[inline]
    pub(crate) fn note_received(&self, now: u64) {
        self.acquired_at.store(now, Ordering::Relaxed);
        self.acquisitions.fetch_add(1, Ordering::Relaxed);
    }

    /// Resets the metadata record for a buffer of `size` bytes (see [`FrameMeta::reset`]):
    /// only its first five words change (timestamp, sequence, bytes used, then pixel format,
    /// width, height and plane count), which is all a reset touches.
    #[inline(always)]
    pub(crate) fn reset_meta(&self, size: u64) {
        const {
            assert!(
                std::mem::offset_of!(FrameMeta, video)
                    + std::mem::offset_of!(crate::block::meta::VideoFormat, plane_count)
                    + 4
                    == 5 * 8
            )
        };
        self.meta.store_prefix(&[0, 0, size, 0, 0]);
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
            SlotState::Publishing,
            SlotState::Shared,
        ] {
            for generation in [0, 1, u32::MAX] {
                let word = SlotWord {
                    generation,
                    state: Some(state),
                    actor: 200,
                    ports: 0x8001,
                };
                assert_eq!(SlotWord::decode(word.encode()), word);
            }
        }
        assert_eq!(SlotWord::decode(0xdead_0e00_0000).state, None);
    }

    #[test]
    fn references_count_the_holder_and_the_ports() {
        let shared = SlotWord {
            ports: 0b101,
            ..SlotWord::new(1, SlotState::Shared)
        };
        assert_eq!(shared.references(), 2);
        let publishing = SlotWord {
            state: Some(SlotState::Publishing),
            ..shared
        };
        assert_eq!(publishing.references(), 3);
        assert_eq!(SlotWord::new(0, SlotState::Free).references(), 0);
    }

    #[test]
    fn slot_is_cache_line_aligned() {
        assert_eq!(std::mem::align_of::<Slot>(), 64);
        assert_eq!(std::mem::size_of::<Slot>() % 64, 0);
        // The control words fill exactly the first cache line.
        assert_eq!(std::mem::offset_of!(Slot, meta), 64);
    }

    #[test]
    fn updates_stop_at_a_corrupt_state_instead_of_spinning() {
        // SAFETY: `Slot` is `ShmSafe`, so all-zero bytes are a valid value.
        let slot: Slot = unsafe { std::mem::zeroed() };
        slot.set(SlotWord::new(3, SlotState::Shared));
        let (before, after) = slot
            .update(|word| Some(SlotWord { ports: 1, ..word }))
            .unwrap();
        assert_eq!((before.ports, after.ports), (0, 1));
        assert!(slot.update(|_| None).is_none());
        // A state byte that is no state: `decode` cannot give it back for the CAS.
        slot.state.store(3 << 32 | 0xffff_ffff, Ordering::Relaxed);
        assert!(slot.update(Some).is_none());
    }

    #[test]
    fn a_reset_record_reads_as_reset() {
        // SAFETY: `Slot` is `ShmSafe`, so all-zero bytes are a valid value.
        let slot: Slot = unsafe { std::mem::zeroed() };
        let mut written = FrameMeta {
            timestamp_ns: -5,
            sequence: 9,
            video: crate::block::meta::VideoFormat::packed(
                crate::block::meta::PixelFormat::RGBA,
                3,
                2,
                4,
            ),
            ..FrameMeta::default()
        };
        written.bytes_used = 17;
        slot.meta.store(written);
        assert_eq!(slot.meta.load(), written);
        slot.reset_meta(64);
        let mut reset = written;
        reset.reset(64);
        assert_eq!(slot.meta.load(), reset);
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
        for kind in [
            MemoryKind::Host,
            MemoryKind::SharedHost,
            MemoryKind::AvFrame,
            MemoryKind::PinnedHost { ordinal: 7 },
            MemoryKind::Device { ordinal: 0 },
        ] {
            slot.set_description(1, kind, Ownership::Owned, None);
            assert_eq!(slot.describe().1, kind);
        }
    }
}
