//! The allocator layer: backends say how to create and release one buffer's memory; the pool
//! lifecycle and the registry are written once, here.
//!
//! ```text
//!   BackendPools<B: Backend> ── allocate_pool_with_buffers / inject / remove / destroy ──┐
//!        │ create(size), release(memory)                                                 ▼
//!   Backend (normal, avframe, fb, cuda)                          Registry (single owner of pools)
//!                                                                    ▲           │ get(pool_id)
//!   SharedMemoryPools ── allocate_pool_with_buffers / destroy ───────┘           ▼
//!        buffers: the segment's own memory                  BufferPool handle (buffer-core)
//! ```
//!
//! - [`Backend`]: an `unsafe trait` with `create` and `release` for one buffer, its memory kind
//!   and alignment.
//! - [`BackendPools`]: the pools of one backend: creates pools full of its buffers, grows them
//!   (backend buffers or external memory), shrinks them, destroys them; dropping it destroys its
//!   pools. Every buffer is released through its backend exactly once, whatever order things are
//!   dropped in.
//! - [`SharedMemoryPools`]: creates pools in named shared-memory segments that other processes
//!   attach to; their buffers are the segment's memory, fixed when the pool is created.
//! - [`PoolAllocator`]: what both do, object-safe, to choose one at run time.
//! - [`Registry`]: the process-wide owner of pools; users get temporary access by id, and only
//!   the allocator that created a pool may change or destroy it.
//! - Accounting: every allocator counts the buffer memory it created and released
//!   ([`PoolAllocator::memory`], [`process_memory`] for the whole process), and may have a
//!   [`MemoryLimit`] with a warning threshold logged through `tracing`.
//! - [`DebugBackend`]: wraps any backend to log every create and release, keep the live
//!   buffers, and inject failures in tests.
//! - `conformance` (feature `conformance`): the suite every backend crate runs.
//!
//! # Examples
//!
//! ```
//! use allocator_base::{Backend, BackendPools, Created, PoolAllocator, Registry};
//! use buffer_core::{MemoryKind, Wait};
//!
//! struct Boxes;
//! // SAFETY: each buffer is its own boxed slice of `size` bytes, freed only in `release`.
//! unsafe impl Backend for Boxes {
//!     type Memory = Box<[u8]>;
//!     type Error = std::convert::Infallible;
//!     fn name(&self) -> &'static str { "boxes" }
//!     fn memory_kind(&self) -> MemoryKind { MemoryKind::Host }
//!     fn create(&self, size: usize) -> Result<Created<Box<[u8]>>, Self::Error> {
//!         let mut memory = vec![0u8; size].into_boxed_slice();
//!         let addr = memory.as_mut_ptr();
//!         Ok(Created { memory, addr, phys: None })
//!     }
//!     fn release(&self, memory: Box<[u8]>) { drop(memory) }
//! }
//!
//! let allocator = BackendPools::new(Boxes);
//! let id = allocator.allocate_pool_with_buffers(3, 1024, "packets", "net")?;
//! let pool = Registry::global().get(id)?;
//! let mut buffer = pool.acquire_free(Wait::NoWait)?;
//! buffer.as_mut_slice()?[0] = 1;
//! buffer.submit();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod accounting;
mod backend;
mod backend_pools;
mod created_pools;
mod debug_backend;
mod error;
mod pool_allocator;
mod registry;
mod shared_memory_pools;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use accounting::{ByteCount, LimitExceeded, MemoryLimit, MemoryStats, process_memory};
pub use backend::{Backend, Created};
pub use backend_pools::BackendPools;
pub use debug_backend::{DebugBackend, DebugError, DebugMemory, DebugProbe, LiveBuffer};
pub use error::{
    AllocatePoolError, BackendError, InjectBufferError, LookupError, OwnershipError,
    RemoveBufferError,
};
pub use pool_allocator::PoolAllocator;
pub use registry::{AllocatorId, Registry};
pub use shared_memory_pools::SharedMemoryPools;
