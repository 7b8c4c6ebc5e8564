//! What memory backs a buffer, who owns it, and how a pool is handed new memory.

use std::fmt;

/// Which kind of memory a buffer lives in.
///
/// # Examples
///
/// ```
/// use buffer_core::MemoryKind;
///
/// assert!(MemoryKind::Host.is_host_accessible());
/// assert!(!MemoryKind::Device { ordinal: 0 }.is_host_accessible());
/// assert_eq!(MemoryKind::Device { ordinal: 1 }.to_string(), "device memory (device 1)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemoryKind {
    /// Ordinary memory of this process.
    Host,
    /// Host memory in a shared-memory segment that other processes map too.
    SharedHost,
    /// Memory of an accelerator that the CPU cannot read or write.
    Device {
        /// Which device (its ordinal in the driver's numbering).
        ordinal: u32,
    },
    /// Display scan-out memory (framebuffer pages, DRM dumb buffers), mapped for the CPU.
    ScanOut,
    /// The data planes of an FFmpeg `AVFrame`.
    AvFrame,
    /// Page-locked host memory that a device reaches by DMA (CUDA pinned memory); the CPU reads
    /// and writes it like any host memory.
    PinnedHost {
        /// The device whose driver pinned it.
        ordinal: u32,
    },
}

impl MemoryKind {
    /// Whether the CPU may read and write this memory through a slice.
    #[inline]
    pub const fn is_host_accessible(self) -> bool {
        !matches!(self, MemoryKind::Device { .. })
    }

    /// Encodes the kind as the one word stored in a slot (low byte: kind, upper bits: ordinal).
    pub(crate) const fn to_word(self) -> u32 {
        match self {
            MemoryKind::Host => 0,
            MemoryKind::SharedHost => 1,
            MemoryKind::Device { ordinal } => 2 | (ordinal << 8),
            MemoryKind::ScanOut => 3,
            MemoryKind::AvFrame => 4,
            MemoryKind::PinnedHost { ordinal } => 5 | (ordinal << 8),
        }
    }

    /// Decodes a slot word. Unknown codes (only a corrupt block has them) read as device memory,
    /// the kind that grants no host access.
    #[inline]
    pub(crate) const fn from_word(word: u32) -> MemoryKind {
        match word & 0xff {
            0 => MemoryKind::Host,
            1 => MemoryKind::SharedHost,
            3 => MemoryKind::ScanOut,
            4 => MemoryKind::AvFrame,
            5 => MemoryKind::PinnedHost { ordinal: word >> 8 },
            _ => MemoryKind::Device { ordinal: word >> 8 },
        }
    }
}

impl fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryKind::Host => f.write_str("host memory"),
            MemoryKind::SharedHost => f.write_str("shared host memory"),
            MemoryKind::Device { ordinal } => write!(f, "device memory (device {ordinal})"),
            MemoryKind::ScanOut => f.write_str("scan-out memory"),
            MemoryKind::AvFrame => f.write_str("AVFrame memory"),
            MemoryKind::PinnedHost { ordinal } => {
                write!(f, "pinned host memory (device {ordinal})")
            }
        }
    }
}

/// Who frees a buffer's memory.
///
/// # Examples
///
/// ```
/// use buffer_core::Ownership;
///
/// assert_ne!(Ownership::Owned, Ownership::External);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// The pool's allocator created the memory and releases it when the buffer leaves the pool.
    Owned,
    /// Someone else owns the memory; the pool never frees it.
    External,
}

/// Keeps one buffer's memory alive; dropping it releases the memory (for example through an
/// allocator backend).
pub type MemoryOwner = Box<dyn Send + Sync>;

/// New memory handed to a pool: where it is, how large, what kind, and who releases it.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferMemory, MemoryKind, Ownership};
///
/// let mut storage = vec![0u8; 4096].into_boxed_slice();
/// let ptr = storage.as_mut_ptr();
/// // SAFETY: `storage` is moved into the owner, so the 4096 bytes at `ptr` stay valid until
/// // the pool drops the owner; nothing else touches them.
/// let memory = unsafe { BufferMemory::owned(ptr, 4096, MemoryKind::Host, None, Box::new(storage)) };
/// assert_eq!(memory.len(), 4096);
/// assert_eq!(memory.ownership(), Ownership::Owned);
/// ```
pub struct BufferMemory {
    pub(crate) addr: *mut u8,
    pub(crate) len: usize,
    pub(crate) kind: MemoryKind,
    pub(crate) phys: Option<u64>,
    pub(crate) owner: Option<MemoryOwner>,
    pub(crate) ownership: Ownership,
}

// SAFETY: `BufferMemory` only describes memory; the constructors' contracts make the memory usable
// from any thread, and the owner is `Send + Sync` itself.
unsafe impl Send for BufferMemory {}

impl BufferMemory {
    /// Memory that the pool owns through `owner`: the pool drops `owner` (releasing the memory)
    /// exactly once, when the buffer is removed or the pool is gone.
    ///
    /// # Safety
    ///
    /// `addr` must point to `len` bytes that stay valid until `owner` is dropped and that nothing
    /// but the pool accesses meanwhile. If `kind` is host-accessible they must be readable and
    /// writable by this process.
    pub unsafe fn owned(
        addr: *mut u8,
        len: usize,
        kind: MemoryKind,
        phys: Option<u64>,
        owner: MemoryOwner,
    ) -> BufferMemory {
        BufferMemory {
            owner: Some(owner),
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
        lender: MemoryOwner,
    ) -> BufferMemory {
        BufferMemory {
            owner: Some(lender),
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
            owner: None,
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
    pub(crate) fn local(&self) -> crate::local::LocalBuffer {
        crate::local::LocalBuffer {
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
    pub id: crate::BufferId,
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
