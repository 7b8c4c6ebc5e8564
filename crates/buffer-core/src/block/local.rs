//! What one process knows of each buffer of a pool: where its memory lies in this address
//! space, how long it is, and what kind of memory it is.
//!
//! Recorded when a buffer is added in this process (injected, or created with a shared pool) or
//! found when attaching (read once from the block and checked against the segment), and never
//! read from the shared block again: whatever a peer later writes into a slot, a guard of this
//! process only ever covers memory this table describes. A slot this process knows no buffer
//! of (length 0: vacant when it attached, or emptied since) is never handed out here, even if a
//! peer makes the block say it is free.
//!
//! # Who holds a buffer in this process
//!
//! Each entry also says whether this process holds the buffer exclusively (a write or read
//! guard, a hold) or how many of its port guards read it. A shared pool's guards are handed out
//! only after claiming that here: whatever a peer writes into the block (a held buffer's state
//! made "free" and its index queued again, a detached state forged), this process never has two
//! guards of one buffer of which one may write, which would be undefined behaviour. Private
//! pools have no peers and skip it.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::block::memory_kind::MemoryKind;

/// One slot's buffer in this process.
#[derive(Default)]
struct LocalSlot {
    addr: AtomicPtr<u8>,
    /// 0 while this process knows no buffer in the slot.
    len: AtomicUsize,
    /// The [`MemoryKind`], as `MemoryKind::to_word` encodes it.
    kind: AtomicU32,
    /// [`EXCLUSIVE`], or the number of port guards of this process reading the buffer.
    held: AtomicU32,
}

/// [`LocalSlot::held`]: a guard or hold of this process has the buffer to itself.
const EXCLUSIVE: u32 = 1 << 31;

/// A slot's buffer as this process knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalBuffer {
    /// Start in this address space; null for memory this process has not mapped (a foreign
    /// pool's device buffer opened by nobody here), which is never host-accessible.
    pub(crate) addr: *mut u8,
    pub(crate) len: usize,
    pub(crate) kind: MemoryKind,
}

impl LocalBuffer {
    /// The memory as a host slice's start and length, if the CPU may access it here.
    #[inline]
    pub(crate) fn host(self) -> Option<(*mut u8, usize)> {
        (self.kind.is_host_accessible() && !self.addr.is_null()).then_some((self.addr, self.len))
    }
}

/// The table: one entry per slot of the pool.
pub(crate) struct LocalSlots(Box<[LocalSlot]>);

impl LocalSlots {
    /// A table of `capacity` empty entries.
    pub(crate) fn new(capacity: u32) -> LocalSlots {
        LocalSlots((0..capacity).map(|_| LocalSlot::default()).collect())
    }

    /// The buffer's length in this process; 0 if this process knows no buffer in slot `index`.
    #[inline(always)]
    pub(crate) fn len(&self, index: u32) -> usize {
        self.0[index as usize].len.load(Ordering::Acquire)
    }

    /// The buffer in slot `index`.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> LocalBuffer {
        let slot = &self.0[index as usize];
        let len = slot.len.load(Ordering::Acquire);
        LocalBuffer {
            addr: slot.addr.load(Ordering::Relaxed),
            len,
            kind: MemoryKind::from_word(slot.kind.load(Ordering::Relaxed)),
        }
    }

    /// Records the buffer of slot `index` (before its index reaches a queue, or before the pool
    /// handle is returned, which publishes it to other threads). Host-accessible memory must
    /// have an address.
    pub(crate) fn set(&self, index: u32, buffer: LocalBuffer) {
        debug_assert!(buffer.len > 0);
        debug_assert!(!buffer.kind.is_host_accessible() || !buffer.addr.is_null());
        let slot = &self.0[index as usize];
        slot.addr.store(buffer.addr, Ordering::Relaxed);
        slot.kind.store(buffer.kind.to_word(), Ordering::Relaxed);
        slot.len.store(buffer.len, Ordering::Release);
    }

    /// Forgets the buffer of slot `index` (it left the pool).
    pub(crate) fn clear(&self, index: u32) {
        let slot = &self.0[index as usize];
        slot.len.store(0, Ordering::Release);
        slot.addr.store(std::ptr::null_mut(), Ordering::Relaxed);
        slot.held.store(0, Ordering::Relaxed);
    }

    /// Claims slot `index`'s buffer for one guard of this process alone; `false` if a guard of
    /// this process holds or reads it already.
    #[inline(always)]
    pub(crate) fn claim_exclusive(&self, index: u32) -> bool {
        self.0[index as usize]
            .held
            .compare_exchange(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Ends an exclusive claim (by its guard, which alone may end it).
    #[inline(always)]
    pub(crate) fn end_exclusive(&self, index: u32) {
        self.0[index as usize].held.store(0, Ordering::Release);
    }

    /// Turns an exclusive claim into one reader's (a hold that published its buffer).
    pub(crate) fn downgrade(&self, index: u32) {
        self.0[index as usize].held.store(1, Ordering::Release);
    }

    /// Claims slot `index`'s buffer for one more reader of this process; `false` if a guard
    /// of this process holds it exclusively.
    pub(crate) fn claim_shared(&self, index: u32) -> bool {
        let held = &self.0[index as usize].held;
        let mut now = held.load(Ordering::Relaxed);
        loop {
            if now & EXCLUSIVE != 0 || now == EXCLUSIVE - 1 {
                return false;
            }
            match held.compare_exchange(now, now + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }

    /// Ends one reader's claim.
    pub(crate) fn end_shared(&self, index: u32) {
        self.0[index as usize].held.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unknown_until_set_and_after_cleared() {
        let table = LocalSlots::new(2);
        assert_eq!(table.len(1), 0);
        let mut byte = 0u8;
        let buffer = LocalBuffer {
            addr: &mut byte,
            len: 1,
            kind: MemoryKind::SharedHost,
        };
        table.set(1, buffer);
        assert_eq!(table.get(1), buffer);
        assert_eq!(buffer.host(), Some((buffer.addr, 1)));
        table.clear(1);
        assert_eq!(table.len(1), 0);
    }

    #[test]
    fn a_buffer_is_held_by_one_writer_or_by_readers_never_both() {
        let table = LocalSlots::new(1);
        assert!(table.claim_exclusive(0));
        assert!(
            !table.claim_exclusive(0),
            "a second guard of the same buffer"
        );
        assert!(!table.claim_shared(0), "a reader beside a writer");
        table.downgrade(0);
        assert!(
            table.claim_shared(0),
            "readers beside a hold that published it"
        );
        assert!(!table.claim_exclusive(0));
        table.end_shared(0);
        table.end_shared(0);
        assert!(table.claim_exclusive(0));
        table.end_exclusive(0);
        assert!(table.claim_shared(0));
        table.clear(0);
        assert!(
            table.claim_exclusive(0),
            "a buffer that left the pool is held by nobody"
        );
    }

    #[test]
    fn unmapped_and_device_memory_is_never_host_memory() {
        let device = LocalBuffer {
            addr: std::ptr::null_mut(),
            len: 64,
            kind: MemoryKind::Device { ordinal: 0 },
        };
        assert_eq!(device.host(), None);
        let mut byte = 0u8;
        let mapped_device = LocalBuffer {
            addr: &mut byte,
            ..device
        };
        assert_eq!(mapped_device.host(), None);
    }
}
