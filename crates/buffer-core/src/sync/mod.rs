//! Layer 1, the bottom: what every structure in a pool block is made of. The atomics, the
//! mutex and the futex (std's, or loom's under `--cfg loom`), and the [`ShmSafe`] marker with
//! the wrappers for values that live in memory another process maps. Compiled under loom.
//!
//! [`ShmSafe`]: shm_safe::ShmSafe

pub(crate) mod primitives;
pub(crate) mod shm_safe;
