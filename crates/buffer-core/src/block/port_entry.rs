//! A fan-out port's record in the pool block: its name, its subscription word (who subscribes,
//! and the epoch that tags what is published to them) and its counters. The port's queue lies
//! beside it in the block; the public face of ports is the pool layer's `port` module.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::lockfree::wait::WaitWord;
use crate::sync::shm_safe::{CachePadded, ShmSafe, load_bytes};

/// Most ports one pool can have.
pub const MAX_PORTS: usize = 16;
/// Largest port depth.
pub const MAX_PORT_DEPTH: u32 = 1024;
/// Port depth when none is given.
pub const DEFAULT_PORT_DEPTH: u32 = 4;
/// Longest port name in bytes.
pub const MAX_PORT_NAME_LEN: usize = 31;

/// A subscription word's subscriber (0 for none) and tag.
pub(crate) fn split_subscription(word: u32) -> (u8, u8) {
    (word as u8, (word >> 8) as u8)
}

/// A port's record in the block.
#[repr(C)]
pub(crate) struct PortEntry {
    name_len: AtomicU32,
    /// The subscription: bits 7..0 the subscribed process's actor number (0 for none), bits
    /// 31..8 its epoch, which grows by one whenever a subscription ends. Each buffer published
    /// to the port is tagged (in its cell) with the low byte of the epoch it was published in.
    subscriber: AtomicU32,
    name: [AtomicU8; MAX_PORT_NAME_LEN + 1],
    /// Buffers published to the port.
    pub(crate) delivered: AtomicU64,
    /// Buffers refused because the port was full or had no subscriber.
    pub(crate) refused: AtomicU64,
    /// The subscriber waiting for a buffer.
    pub(crate) wait: CachePadded<WaitWord>,
}

// SAFETY: `#[repr(C)]`, atomics, an array of atomics and a `CachePadded<WaitWord>`.
unsafe impl ShmSafe for PortEntry {}

impl PortEntry {
    /// Names the port at `entry` in a new block.
    ///
    /// # Safety
    ///
    /// `entry` must point to a port entry of a block being initialised, which nobody else can
    /// see yet; `name` must be at most [`MAX_PORT_NAME_LEN`] bytes (the config checks it).
    pub(crate) unsafe fn init(entry: std::ptr::NonNull<PortEntry>, name: &str) {
        let entry = entry.as_ptr();
        // SAFETY: the caller guarantees exclusive access to a valid entry.
        let entry = unsafe { &mut *entry };
        *entry.name_len.get_mut() = name.len() as u32;
        for (byte, &value) in entry.name.iter_mut().zip(name.as_bytes()) {
            *byte.get_mut() = value;
        }
    }

    /// A copy of the name, if the stored one is valid (read once, when attaching).
    pub(crate) fn name(&self) -> Option<String> {
        let bytes = self
            .name
            .get(..self.name_len.load(Ordering::Relaxed) as usize)?;
        String::from_utf8(load_bytes(bytes))
            .ok()
            .filter(|name| !name.is_empty())
    }

    /// The subscriber's actor number (0 for none) and the tag of buffers published to it.
    pub(crate) fn subscription(&self) -> (u8, u8) {
        split_subscription(self.subscription_word())
    }

    /// The subscription word itself: equal twice only if no subscription began or ended in
    /// between (its epoch only grows).
    pub(crate) fn subscription_word(&self) -> u32 {
        self.subscriber.load(Ordering::Acquire)
    }

    /// The subscriber's actor number, 0 for none.
    pub(crate) fn subscriber(&self) -> u8 {
        self.subscription().0
    }

    /// Subscribes `actor` if nobody is; the tag of the buffers that will be published to it,
    /// or the word found.
    pub(crate) fn try_subscribe(&self, actor: u8) -> Result<u8, u32> {
        let word = self.subscriber.load(Ordering::Acquire);
        if word & 0xff != 0 {
            return Err(word);
        }
        self.subscriber
            .compare_exchange(
                word,
                word | u32::from(actor),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| (word >> 8) as u8)
    }

    /// Ends `actor`'s subscription, if it still holds it: a new epoch begins, so whatever was
    /// published to it is now stale, never another subscriber's.
    pub(crate) fn unsubscribe(&self, actor: u8) {
        let word = self.subscriber.load(Ordering::Acquire);
        if word as u8 != actor {
            return;
        }
        let ended = (word & !0xff).wrapping_add(1 << 8);
        let _ = self
            .subscriber
            .compare_exchange(word, ended, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Buffers published to the port and refused by it.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}
