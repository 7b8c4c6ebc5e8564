//! Layer 2: the concurrency core, position-independent and model-checked with loom. A bounded
//! MPMC queue of slot indices whose cells a peer can stall without blocking the others, and the
//! wait/wake protocol on a futex word (spin briefly, then sleep). Built on [`sync`](crate::sync)
//! only; compiled whole under `--cfg loom`.

pub(crate) mod queue;
pub(crate) mod wait;
