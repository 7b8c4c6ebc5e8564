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

mod block;
mod error;
mod guard;
mod ids;
mod memory;
mod meta;
mod pool;
mod queue;
mod region;
mod shm_safe;
mod slot;
mod wait;

pub use block::{MAX_CAPACITY, MAX_CATEGORY_LEN, MAX_NAME_LEN};
pub use error::{
    AcquireError, BytesUsedError, Counts, CreatePoolError, Holder, Holders, HostAccessError,
    InjectError, Queue, RedeemError, RemoveError, SlotStateName,
};
pub use guard::{ReadGuard, WriteGuard};
pub use ids::{BufferId, PoolId};
pub use memory::{Buffer, BufferMemory, MemoryKind, MemoryOwner, Ownership};
pub use meta::{FrameMeta, MAX_PLANES, PixelFormat, Plane, VideoFormat};
pub use pool::{BufferPool, DEFAULT_CAPACITY, PoolConfig, PoolOwner, Stats};
pub use region::{REGION_ALIGN, Region, RegionError};
pub use shm_safe::ShmSafe;
pub use slot::SlotState;
pub use wait::Wait;
