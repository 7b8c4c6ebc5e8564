//! Layer 4: the pool block, one `#[repr(C)]` image of a pool's whole state made of atomics,
//! integers and offsets, placed in a [`Region`](crate::shm::region::Region). Its layout (header,
//! process table, port entries, queues, slots), what each record means and how it changes, the
//! view through which a process reaches it (checked once when attaching), the process-local
//! table of its buffers, and the reaper that takes back what a dead process held.

pub(crate) mod layout;
pub(crate) mod local;
pub(crate) mod memory_kind;
pub(crate) mod meta;
pub(crate) mod port_entry;
pub(crate) mod process;
pub(crate) mod reclaim;
pub(crate) mod slot;
pub mod testing;
pub(crate) mod view;
