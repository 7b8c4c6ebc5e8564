//! What a slot records of the memory behind its buffer: which kind of memory it is
//! ([`MemoryKind`]) and whether the pool owns it ([`Ownership`]).

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
