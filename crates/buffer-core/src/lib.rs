//! Zero-copy buffer pools whose whole state is one position-independent block.
//!
//! # Layers
//!
//! Each folder of the source is a layer, and a module only ever uses the layers below its own
//! (`cargo xtask layers` checks it, in CI):
//!
//! ```text
//!  ext/       tiered pools, bytes interop, the counting allocator      built on pool/
//!  pool/      BufferPool, PoolOwner, open/attach, guards, holds,       the public API; every
//!             ports, futures, inspection, errors                        `impl BufferPool`
//!  block/     layout, slots, port entries, process table, view,        the #[repr(C)] pool block
//!             process-local buffer table, reaper
//!  shm/       regions, segments, liveness locks, fork, clock           the operating system
//!  lockfree/  queue, wait/wake protocol                                 model-checked with loom
//!  sync/      atomics and futex (std or loom), ShmSafe                  what blocks are made of
//! ```
//!
//! Under `--cfg loom` only `sync/` and `lockfree/` are compiled, and model-checked.
//!
//! # The data path
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
// Under loom only the two bottom layers are compiled, and most of what they hold is used by the
// layers above.
#![cfg_attr(loom, allow(dead_code))]

// The loom model check compiles the two bottom layers alone (loom's atomics cannot live in a
// mapped block): one `cfg` per layer above them, and one on their re-exports.
mod lockfree;
mod sync;

#[cfg(not(loom))]
mod block;
#[cfg(not(loom))]
mod ext;
#[cfg(not(loom))]
mod pool;
#[cfg(not(loom))]
mod shm;

/// Where a pool block's parts lie, for this workspace's tests of hostile peers.
#[cfg(not(loom))]
#[doc(hidden)]
pub use self::block::testing;
pub use self::sync::shm_safe::ShmSafe;
#[cfg(not(loom))]
pub use self::{
    block::{
        layout::{MAX_CAPACITY, MAX_CATEGORY_LEN, MAX_NAME_LEN, SHARE_TOKEN_LEN},
        memory_kind::{MemoryKind, Ownership},
        meta::{FrameMeta, MAX_PLANES, MetaMut, PixelFormat, Plane, VideoFormat},
        process::MAX_PROCESSES,
        slot::SlotState,
        view::Queue,
    },
    ext::{
        alloc_count,
        tiered::{
            ClassStats, CreateTieredError, SizeClass, TieredAcquireError, TieredPool, TieredStats,
            WhenEmpty,
        },
    },
    lockfree::wait::Wait,
    pool::{
        async_acquire::{AcquireFilled, AcquireFree},
        config::{DEFAULT_CAPACITY, PoolConfig},
        error::{
            AccessError, AcquireError, AttachError, BytesUsedError, CreatePoolError, Holder,
            Holders, HostAccessError, InjectError, PortError, ReceiveError, RedeemError,
            RemoveError, SlotStateName, SubscribeError,
        },
        foreign::{ForeignBuffer, ForeignToken, Opener},
        guard::{PortGuard, ReadGuard, WriteGuard},
        handle::BufferPool,
        hold::BufferHold,
        ids::{BufferId, PoolId},
        inspect::{Amount, BufferInfo, PortInfo, ProcessInfo, Usage},
        memory::{Buffer, BufferMemory, KeepAlive},
        owner::PoolOwner,
        port,
        port::{
            DEFAULT_PORT_DEPTH, MAX_PORT_DEPTH, MAX_PORT_NAME_LEN, MAX_PORTS, Port, Published,
            Receive, Subscription,
        },
        stats::{Counts, Stats},
    },
    shm::{
        liveness::CLEANUP_LOCK_BYTE,
        region::{REGION_ALIGN, Region, RegionError},
        segment::{
            DEFAULT_SEGMENT_MODE, MAX_SEGMENT_NAME_LEN, SegmentError, SegmentName, SegmentNameError,
        },
    },
};

/// This crate's README (the one it is published with), compiled and run as a doc test so that
/// it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
