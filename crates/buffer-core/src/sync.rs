//! The atomics of the concurrency core (the queue): std's, or loom's when the crate is built
//! with `--cfg loom` for model checking (`cargo xtask ci` runs `RUSTFLAGS="--cfg loom" cargo
//! test -p buffer-core --release --lib loom`).

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU64;

#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU64;
