//! Display scan-out memory as bufpool buffers: memory someone else mapped, Linux framebuffer
//! pages shown by panning, and DRM dumb buffers shown by page flips and shared as dma-bufs.
//!
//! ```text
//!   ExternalMemoryBackend ── ExternalRange list (checked: aligned, disjoint) ─── lent, never freed
//!   FbBackend ────────────── /dev/fbN pages (yres_virtual / yres) ──────────── FbScanOut: FBIOPAN_DISPLAY
//!   DumbBackend ──────────── /dev/dri/cardN dumb buffers (pitch from driver) ── DrmScanOut: set CRTC, flips
//!                                                                          └─ export(): PRIME dma-buf fd
//!   Presenter<S: ScanOut>: acquire filled → show → release the buffer it stops showing
//! ```
//!
//! Every backend plugs into [`allocator_base::BackendPools`], so pools of scan-out memory are made,
//! grown, shrunk and destroyed like any other, and follow the same pool protocol: a producer
//! acquires a free buffer, draws, submits; the display side ([`Presenter`]) takes filled buffers,
//! shows them, and releases the one it stops showing.
//!
//! # Examples
//!
//! Showing frames on the first DRM display, when there is one:
//!
//! ```no_run
//! use allocator_base::PoolAllocator;
//! use allocator_fb::{DrmCard, DrmScanOut, DumbAllocator, DumbBackend, FrameGeometry, Presenter, ScanOutFormat};
//! use buffer_core::Wait;
//!
//! let card = DrmCard::open("/dev/dri/card0")?;
//! let frame = FrameGeometry::new(1024, 768, ScanOutFormat::Xrgb8888)?;
//! let allocator = DumbAllocator::new(DumbBackend::for_frames(card, frame)?);
//! let id = allocator.allocate_pool_with_buffers(3, allocator.backend().frame_size(768), "screen", "display")?;
//! let pool = allocator.pool(id)?;
//! let mut presenter = Presenter::new(DrmScanOut::new(allocator.backend())?);
//! for shade in 0..60u8 {
//!     let mut buffer = pool.acquire_free(Wait::Forever)?;
//!     buffer.as_mut_slice()?.fill(shade);
//!     buffer.submit();
//!     presenter.show_next(&pool, Wait::Forever)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod device;
mod dumb;
mod external_memory;
mod fbdev;
mod fbdev_sys;
mod format;
mod kms;
mod present;

pub use device::OpenError;
pub use dumb::{
    DrmCard, DumbAllocator, DumbBackend, DumbError, DumbLayout, DumbMemory, ExportError,
};
pub use external_memory::{
    ExternalMemoryAllocator, ExternalMemoryBackend, ExternalRange, ExternalRangeError, RangeLease,
    RangesExhausted,
};
pub use fbdev::{FbAllocator, FbBackend, FbDevice, FbError, FbInfo, FbScanOut};
pub use format::{FormatError, FrameGeometry, GeometryError, MAX_DIMENSION, ScanOutFormat};
pub use kms::{DisplayError, DrmScanOut};
pub use present::{PresentError, Presenter, ScanOut, ShowError};
