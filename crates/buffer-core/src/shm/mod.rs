//! Layer 3: the operating system under a pool. Memory regions (private or mapped), named
//! shared-memory segments opened without trusting what they name, liveness from locks the
//! kernel drops when a process dies, what a forked child inherits, and the coarse clock that
//! stamps acquisitions.

pub(crate) mod clock;
pub(crate) mod fork;
pub(crate) mod liveness;
pub(crate) mod region;
pub(crate) mod segment;
