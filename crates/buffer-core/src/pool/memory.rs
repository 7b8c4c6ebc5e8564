//! How a pool is handed new memory ([`BufferMemory`], kept alive by its [`KeepAlive`]), and
//! how a buffer is described to users ([`Buffer`]).

use crate::block::memory_kind::{MemoryKind, Ownership};
use std::fmt;

/// Keeps one buffer's memory alive; dropping it releases the memory (for example through an
/// allocator backend).
pub type KeepAlive = Box<dyn Send + Sync>;

/// New memory handed to a pool: where it is, how large, what kind, and who releases it.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferMemory, MemoryKind, Ownership};
///
/// let mut storage = vec![0u8; 4096].into_boxed_slice();
/// let ptr = storage.as_mut_ptr();
/// // SAFETY: `storage` is moved into the keep-alive, so the 4096 bytes at `ptr` stay valid
/// // until the pool drops it; nothing else touches them.
/// let memory = unsafe { BufferMemory::owned(ptr, 4096, MemoryKind::Host, None, Box::new(storage)) };
/// assert_eq!(memory.len(), 4096);
/// assert_eq!(memory.ownership(), Ownership::Owned);
/// ```
pub struct BufferMemory {
    pub(crate) addr: *mut u8,
    pub(crate) len: usize,
    pub(crate) kind: MemoryKind,
    pub(crate) phys: Option<u64>,
    pub(crate) keep_alive: Option<KeepAlive>,
    pub(crate) ownership: Ownership,
}

// SAFETY: `BufferMemory` only describes memory; the constructors' contracts make the memory usable
// from any thread, and the keep-alive is `Send + Sync` itself.
unsafe impl Send for BufferMemory {}

impl BufferMemory {
    /// Memory that the pool owns through `keep_alive`: the pool drops `keep_alive` (releasing the
    /// memory) exactly once, when the buffer is removed or the pool is gone.
    ///
    /// # Safety
    ///
    /// `addr` must point to `len` bytes that stay valid until `keep_alive` is dropped and that
    /// nothing but the pool accesses meanwhile. If `kind` is host-accessible they must be readable
    /// and writable by this process.
    pub unsafe fn owned(
        addr: *mut u8,
        len: usize,
        kind: MemoryKind,
        phys: Option<u64>,
        keep_alive: KeepAlive,
    ) -> BufferMemory {
        BufferMemory {
            keep_alive: Some(keep_alive),
            ownership: Ownership::Owned,
            // SAFETY: the caller upholds `external`'s contract, which `owned`'s implies.
            ..unsafe { BufferMemory::external(addr, len, kind, phys) }
        }
    }

    /// Memory that someone else owns and lends to the pool: the pool never frees it, and drops
    /// `lender` (handing the memory back, for example to a list of free regions) exactly once,
    /// when the buffer is removed or the pool is gone. The buffer's ownership is
    /// [`Ownership::External`].
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferMemory, MemoryKind, Ownership};
    ///
    /// let storage: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    /// // SAFETY: the leaked storage lives forever and only the pool touches it.
    /// let memory = unsafe {
    ///     BufferMemory::lent(storage.as_mut_ptr(), 64, MemoryKind::ScanOut, None, Box::new(()))
    /// };
    /// assert_eq!(memory.ownership(), Ownership::External);
    /// ```
    ///
    /// # Safety
    ///
    /// As for [`BufferMemory::owned`]: `addr` must point to `len` bytes that stay valid until
    /// `lender` is dropped and that nothing but the pool accesses meanwhile; if `kind` is
    /// host-accessible they must be readable and writable by this process.
    pub unsafe fn lent(
        addr: *mut u8,
        len: usize,
        kind: MemoryKind,
        phys: Option<u64>,
        lender: KeepAlive,
    ) -> BufferMemory {
        BufferMemory {
            keep_alive: Some(lender),
            // SAFETY: the caller upholds `external`'s contract, which `lent`'s implies.
            ..unsafe { BufferMemory::external(addr, len, kind, phys) }
        }
    }

    /// Memory that someone else owns; the pool never frees it.
    ///
    /// # Safety
    ///
    /// `addr` must point to `len` bytes that stay valid until the pool and every guard of it are
    /// dropped, and that nothing accesses while a guard of this buffer is alive except through the
    /// guard. If `kind` is host-accessible they must be readable and writable by this process.
    pub unsafe fn external(
        addr: *mut u8,
        len: usize,
        kind: MemoryKind,
        phys: Option<u64>,
    ) -> BufferMemory {
        BufferMemory {
            addr,
            len,
            kind,
            phys,
            keep_alive: None,
            ownership: Ownership::External,
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory is empty (pools refuse empty memory).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Who frees the memory.
    pub fn ownership(&self) -> Ownership {
        self.ownership
    }

    /// The memory as this process's slot table records it.
    pub(crate) fn local(&self) -> crate::block::local::LocalBuffer {
        crate::block::local::LocalBuffer {
            addr: self.addr,
            len: self.len,
            kind: self.kind,
        }
    }
}

impl fmt::Debug for BufferMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferMemory")
            .field("addr", &self.addr)
            .field("len", &self.len)
            .field("kind", &self.kind)
            .field("phys", &self.phys)
            .field("ownership", &self.ownership())
            .finish()
    }
}

/// A description of one buffer as this process sees it: its id, where its memory lies (virtual
/// and, where it has one, physical address), its size, who frees it and what kind it is.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, MemoryKind, Ownership, PoolConfig, Wait};
///
/// let pool = BufferPool::create(PoolConfig::new("cam0")).unwrap();
/// let storage: &'static mut [u8] = Box::leak(vec![0u8; 256].into_boxed_slice());
/// // SAFETY: the leaked storage lives forever and only the pool touches it.
/// let memory = unsafe {
///     buffer_core::BufferMemory::external(storage.as_mut_ptr(), 256, MemoryKind::Host, Some(0x1000))
/// };
/// pool.inject(memory, buffer_core::Queue::Free).unwrap();
/// let guard = pool.acquire_free(Wait::NoWait).unwrap();
/// let buffer = guard.buffer();
/// assert_eq!(buffer.size, 256);
/// assert_eq!(buffer.phys_addr, Some(0x1000));
/// assert_eq!(buffer.ownership, Ownership::External);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// The buffer's id (its slot and the slot's current generation).
    pub id: crate::pool::ids::BufferId,
    /// Virtual address in this process.
    pub virt_addr: usize,
    /// Physical or bus address, where the memory has one.
    pub phys_addr: Option<u64>,
    /// Size in bytes.
    pub size: usize,
    /// Who frees the memory.
    pub ownership: Ownership,
    /// Which kind of memory it is.
    pub kind: MemoryKind,
}
