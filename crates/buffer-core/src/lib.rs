//! Zero-copy buffer pools whose whole state is one position-independent block.
//!
//! ```text
//!  producer                        pool block (private or shared memory)              consumer
//!  acquire_free ──► WriteGuard ──► submit ─► [filled queue] ─► acquire_filled ──► ReadGuard
//!       ▲                                                                            │ drop
//!       └──────────────────────────── [free queue] ◄─────────────────────────────────┘
//! ```
//!
//! A [`BufferPool`] keeps a slot table (one 64-byte-aligned slot per buffer: generation, state,
//! holder, refcount, acquire time, size, memory kind, metadata record), a free queue and a filled
//! queue (bounded lock-free MPMC queues of slot indices) and its counters in a single
//! `#[repr(C)]` block of atomics and integers, with no pointers. The block is placed in a
//! [`Region`]; here private memory, and the very same block in a shared-memory segment when
//! several processes use one pool. Each process keeps, beside the block, only what is
//! process-local: the address of each buffer in its address space and the owners of the memory.
//!
//! Acquiring returns a guard ([`WriteGuard`], [`ReadGuard`]) that can only be submitted or
//! dropped, so a buffer is never released twice nor leaked. A guard can become a plain
//! [`BufferId`] (pool, slot, generation) and the id a guard again, exactly once; a stale or
//! garbage id is an error. Waiting for a buffer spins briefly, then sleeps on a futex in the block.
//!
//! The fast path (acquire, submit, release) is a few atomic operations: no lock, no system call,
//! no allocation.
//!
//! Beyond the basic pool: fan-out [`port`]s; futures for every wait
//! ([`BufferPool::acquire_free_async`], [`BufferPool::acquire_filled_async`],
//! [`Subscription::receive_async`]) under any executor; size classes behind one
//! `acquire(size)` ([`TieredPool`]); diagnostics ([`BufferPool::buffers`],
//! [`BufferPool::holders`], [`BufferPool::audit`], [`Stats::hit_rate`]).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use buffer_core::{BufferPool, PoolConfig, Wait};
//!
//! let pool = BufferPool::with_heap_buffers(PoolConfig::new("frames").with_capacity(8), 4, 4096)?;
//! let consumer_pool = pool.pool().clone();
//! let consumer = std::thread::spawn(move || {
//!     let mut sum = 0u64;
//!     while let Ok(frame) = consumer_pool.acquire_filled(Wait::Forever) {
//!         sum += frame.meta().sequence;
//!     }
//!     sum // the loop ends when the pool is closed and drained
//! });
//! for sequence in 1..=10 {
//!     let mut frame = pool.acquire_free(Wait::Timeout(Duration::from_secs(1)))?;
//!     frame.as_mut_slice()?.fill(sequence as u8);
//!     frame.meta_mut().sequence = sequence;
//!     frame.submit();
//! }
//! pool.close();
//! assert_eq!(consumer.join().unwrap(), 55);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// Under `--cfg loom` only the concurrency core (queue and waiting) is compiled, for model checking:
// loom's atomics cannot live in a mapped block.
#[cfg(not(loom))]
pub mod alloc_count;
#[cfg(not(loom))]
mod async_acquire;
#[cfg(not(loom))]
mod block;
#[cfg(all(feature = "bytes", not(loom)))]
mod bytes_interop;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod foreign;
#[cfg(not(loom))]
mod fork;
#[cfg(not(loom))]
mod guard;
#[cfg(not(loom))]
mod hold;
#[cfg(not(loom))]
mod ids;
#[cfg(not(loom))]
mod inspect;
#[cfg(not(loom))]
mod liveness;
#[cfg(not(loom))]
mod local;
#[cfg(not(loom))]
mod memory;
#[cfg(not(loom))]
mod meta;
#[cfg(not(loom))]
mod pool;
#[cfg(not(loom))]
pub mod port;
#[cfg(not(loom))]
mod process;
mod queue;
#[cfg(not(loom))]
mod reclaim;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
mod segment;
mod shm_safe;
#[cfg(not(loom))]
mod slot;
mod sync;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod testing;
#[cfg(not(loom))]
mod tiered;
mod wait;

#[cfg(not(loom))]
pub use self::{
    async_acquire::{AcquireFilled, AcquireFree},
    block::{MAX_CAPACITY, MAX_CATEGORY_LEN, MAX_NAME_LEN},
    error::{
        AccessError, AcquireError, AttachError, BytesUsedError, Counts, CreatePoolError, Holder,
        Holders, HostAccessError, InjectError, PortError, Queue, ReceiveError, RedeemError,
        RemoveError, SegmentError, SegmentNameError, SlotStateName, SubscribeError,
    },
    foreign::{ForeignBuffer, ForeignToken, Opener, SHARE_TOKEN_LEN},
    guard::{PortGuard, ReadGuard, WriteGuard},
    hold::BufferHold,
    ids::{BufferId, PoolId},
    inspect::{Amount, BufferInfo, PortInfo, ProcessInfo, Usage},
    liveness::CLEANUP_LOCK_BYTE,
    memory::{Buffer, BufferMemory, MemoryKind, MemoryOwner, Ownership},
    meta::{FrameMeta, MAX_PLANES, MetaMut, PixelFormat, Plane, VideoFormat},
    pool::{BufferPool, DEFAULT_CAPACITY, PoolConfig, PoolOwner, Stats},
    port::{
        DEFAULT_PORT_DEPTH, MAX_PORT_DEPTH, MAX_PORT_NAME_LEN, MAX_PORTS, Port, Published, Receive,
        Subscription,
    },
    process::MAX_PROCESSES,
    region::{REGION_ALIGN, Region, RegionError},
    segment::{DEFAULT_SEGMENT_MODE, MAX_SEGMENT_NAME_LEN, SegmentName},
    slot::SlotState,
    tiered::{
        ClassStats, CreateTieredError, SizeClass, TieredAcquireError, TieredPool, TieredStats,
        WhenEmpty,
    },
    wait::Wait,
};
pub use shm_safe::ShmSafe;

/// This crate's README (the one it is published with), compiled and run as a doc test so that
/// it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
