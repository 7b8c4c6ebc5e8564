//! Layer 5: the public pool API. [`BufferPool`](handle::BufferPool) (the fast path),
//! [`PoolOwner`](owner::PoolOwner) (adding and removing memory), creating, attaching and
//! opening pools, guards and holds, fan-out ports, futures, diagnostics, and one error type per
//! operation. Every `impl BufferPool` is here.

pub(crate) mod async_acquire;
pub(crate) mod attachment;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod foreign;
pub(crate) mod guard;
pub(crate) mod handle;
pub(crate) mod hold;
pub(crate) mod ids;
pub(crate) mod inspect;
pub(crate) mod memory;
pub(crate) mod open;
pub(crate) mod owner;
pub mod port;
pub(crate) mod reclaim;
pub(crate) mod stats;
