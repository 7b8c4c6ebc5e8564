//! Layer 6, the top: what is built on the pool layer. Size-classed pools behind one
//! `acquire(size)`, `bytes` interoperation, and the counting allocator that tests and the demo use
//! to show the fast path allocates nothing.

pub mod alloc_count;
#[cfg(feature = "bytes")]
pub(crate) mod bytes_interop;
pub(crate) mod tiered;
