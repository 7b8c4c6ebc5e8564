//! DRM cards (`/dev/dri/cardN`) and their dumb buffers as pool buffers, exportable as dma-bufs.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use allocator_base::{Backend, BackendPools, Created};
use buffer_core::{Buffer, MemoryKind};
use drm::buffer::{DrmFourcc, Handle as BufferHandle};
use drm::control::{Device as _, framebuffer};
use drm::{Device as _, DriverCapability};
use parking_lot::Mutex;
use rustix::mm::{MapFlags, ProtFlags};

use crate::device::{DRM, OpenError};
use crate::format::{FrameGeometry, GeometryError, MAX_DIMENSION, ScanOutFormat};

/// The dumb-buffer allocator: [`BackendPools`] of DRM dumb buffers.
pub type DumbAllocator = BackendPools<DumbBackend>;

/// An open DRM card (a primary node, `/dev/dri/cardN`).
///
/// # Examples
///
/// ```
/// use allocator_fb::{DrmCard, OpenError};
///
/// assert!(matches!(DrmCard::open("/dev/dri/no-such-card"), Err(OpenError::NotFound { .. })));
/// ```
#[derive(Debug)]
pub struct DrmCard {
    file: File,
    path: PathBuf,
}

impl AsFd for DrmCard {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl drm::Device for DrmCard {}
impl drm::control::Device for DrmCard {}

impl DrmCard {
    /// Opens `path` (such as `/dev/dri/card0`) and checks that it is a DRM device.
    pub fn open(path: impl AsRef<Path>) -> Result<DrmCard, OpenError> {
        let path = path.as_ref();
        let file = DRM.open(path)?;
        let card = DrmCard {
            file,
            path: path.to_path_buf(),
        };
        card.get_driver().map_err(|e| DRM.refused(path, e))?;
        Ok(card)
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kernel driver's name (such as `bochs-drm`).
    pub fn driver_name(&self) -> io::Result<String> {
        Ok(self.get_driver()?.name().to_string_lossy().into_owned())
    }
}

/// Where one dumb buffer lies and how its rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumbLayout {
    /// The buffer's GEM handle on the card.
    pub handle: BufferHandle,
    /// Width in pixels.
    pub width: u32,
    /// Rows.
    pub rows: u32,
    /// Bytes from one row to the next, as the driver chose.
    pub pitch: u32,
    /// Bytes of the whole buffer.
    pub len: usize,
    /// Its pixel format.
    pub format: ScanOutFormat,
}

impl drm::buffer::Buffer for DumbLayout {
    fn size(&self) -> (u32, u32) {
        (self.width, self.rows)
    }
    fn format(&self) -> DrmFourcc {
        self.format.fourcc()
    }
    fn pitch(&self) -> u32 {
        self.pitch
    }
    fn handle(&self) -> BufferHandle {
        self.handle
    }
}

/// A dumb buffer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DumbError {
    /// The card cannot make dumb buffers.
    #[error(
        "{path} cannot create dumb buffers (a render-only or headless driver): use the card that drives the display"
    )]
    NoDumbBuffers {
        /// The card.
        path: PathBuf,
    },
    /// The geometry is impossible.
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    /// A buffer of the size asked would need more rows than a display scans out.
    #[error(
        "{size} bytes at {width} pixels per row need {rows} rows, more than {MAX_DIMENSION}: ask for less, or use a wider buffer"
    )]
    TooLarge {
        /// The size asked for.
        size: usize,
        /// The width of the backend's buffers.
        width: u32,
        /// Rows it would take.
        rows: u64,
    },
    /// The driver refused to create the buffer.
    #[error(
        "{path} refused to create a {width}x{rows} dumb buffer: {source} (ENOMEM: video memory is full)"
    )]
    Create {
        /// The card.
        path: PathBuf,
        /// Width asked for.
        width: u32,
        /// Rows asked for.
        rows: u32,
        /// What it answered.
        source: io::Error,
    },
    /// The buffer could not be mapped.
    #[error("cannot map a dumb buffer of {path}: {source}")]
    Map {
        /// The card.
        path: PathBuf,
        /// What the system answered.
        source: io::Error,
    },
}

/// A buffer could not be exported as a dma-buf.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The buffer is not a dumb buffer of this backend.
    #[error(
        "the buffer at {addr:#x} is not a dumb buffer of this card: export buffers of pools this backend made"
    )]
    NotFromDevice {
        /// The buffer's address.
        addr: usize,
    },
    /// The driver cannot export buffers at all.
    #[error(
        "the {driver} driver of {path} cannot export buffers as dma-bufs (PRIME): allocate on a driver that can, such as the GPU's own or vgem"
    )]
    Unsupported {
        /// The card.
        path: PathBuf,
        /// Its driver's name.
        driver: String,
    },
    /// The driver refused.
    #[error("{path} refused to export the buffer as a dma-buf: {source}")]
    Driver {
        /// The card.
        path: PathBuf,
        /// What it answered.
        source: io::Error,
    },
}

/// One dumb buffer the backend made.
#[derive(Debug)]
struct DumbRecord {
    layout: DumbLayout,
    /// The framebuffer object made the first time it was scanned out.
    framebuffer: Option<framebuffer::Handle>,
}

/// The card and the dumb buffers made on it, shared by the backend and its scan-outs.
#[derive(Debug)]
pub(crate) struct DumbCard {
    pub(crate) card: DrmCard,
    width: u32,
    format: ScanOutFormat,
    /// Live buffers by mapped address.
    buffers: Mutex<HashMap<usize, DumbRecord>>,
}

impl DumbCard {
    /// The layout of the buffer mapped at `addr`.
    pub(crate) fn layout(&self, addr: usize) -> Option<DumbLayout> {
        self.buffers.lock().get(&addr).map(|record| record.layout)
    }

    /// The framebuffer object of the buffer mapped at `addr`, made on first use (with `depth`
    /// and bits per pixel of the format); `None` if no buffer of ours is mapped there.
    pub(crate) fn framebuffer(
        &self,
        addr: usize,
    ) -> Option<io::Result<(DumbLayout, framebuffer::Handle)>> {
        let mut buffers = self.buffers.lock();
        let record = buffers.get_mut(&addr)?;
        let layout = record.layout;
        if let Some(fb) = record.framebuffer {
            return Some(Ok((layout, fb)));
        }
        let format = layout.format;
        let made = self
            .card
            .add_framebuffer(&layout, format.depth(), format.bytes_per_pixel() * 8);
        Some(made.map(|fb| {
            record.framebuffer = Some(fb);
            (layout, fb)
        }))
    }
}

/// The DRM dumb-buffer backend: each buffer is one dumb buffer of the backend's width and
/// format, as many rows as its size needs (pitch chosen by the driver), mapped for the CPU.
/// Memory kind [`MemoryKind::ScanOut`]. Buffers can be shown with a
/// [`DrmScanOut`](crate::DrmScanOut) and exported as dma-bufs with [`DumbBackend::export`].
#[derive(Debug)]
pub struct DumbBackend {
    shared: Arc<DumbCard>,
}

/// One dumb buffer, by its mapped address (its handle and length are in the backend's record of
/// it), released through the backend.
#[derive(Debug)]
pub struct DumbMemory {
    addr: usize,
}

impl DumbBackend {
    /// A backend making dumb buffers `width` pixels wide in `format` on `card`. A display
    /// driver that says it cannot make dumb buffers is refused here; a driver without display
    /// support does not answer the question (vgem makes dumb buffers all the same) and is
    /// taken at its word when the first buffer is made.
    pub fn new(card: DrmCard, width: u32, format: ScanOutFormat) -> Result<DumbBackend, DumbError> {
        FrameGeometry::new(width, 1, format)?;
        if card
            .get_driver_capability(DriverCapability::DumbBuffer)
            .ok()
            == Some(0)
        {
            return Err(DumbError::NoDumbBuffers {
                path: card.path.clone(),
            });
        }
        Ok(DumbBackend {
            shared: Arc::new(DumbCard {
                card,
                width,
                format,
                buffers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A backend for frames of `frame`'s width and format; create pools with buffers of
    /// [`DumbBackend::frame_size`] bytes to get exactly `frame.height()` rows each.
    pub fn for_frames(card: DrmCard, frame: FrameGeometry) -> Result<DumbBackend, DumbError> {
        DumbBackend::new(card, frame.width(), frame.format())
    }

    /// The buffer size that gives `rows` rows (at the minimum stride).
    pub fn frame_size(&self, rows: u32) -> usize {
        self.row_len() * rows as usize
    }

    fn row_len(&self) -> usize {
        self.shared.width as usize * self.shared.format.bytes_per_pixel() as usize
    }

    /// The card.
    pub fn card(&self) -> &DrmCard {
        &self.shared.card
    }

    /// The layout of a buffer of a pool this backend made (`None` for any other buffer).
    pub fn layout(&self, buffer: &Buffer) -> Option<DumbLayout> {
        self.shared.layout(buffer.virt_addr)
    }

    /// Exports a buffer as a dma-buf file descriptor (PRIME, read-write, close-on-exec) that
    /// another process or device can import or map.
    pub fn export(&self, buffer: &Buffer) -> Result<OwnedFd, ExportError> {
        let layout = self.layout(buffer).ok_or(ExportError::NotFromDevice {
            addr: buffer.virt_addr,
        })?;
        let card = &self.shared.card;
        card.buffer_to_prime_fd(layout.handle, drm::CLOEXEC | drm::RDWR)
            .map_err(|source| {
                let path = card.path.clone();
                if source.raw_os_error() == Some(rustix::io::Errno::NOSYS.raw_os_error()) {
                    let driver = card.driver_name().unwrap_or_else(|_| "unknown".into());
                    ExportError::Unsupported { path, driver }
                } else {
                    ExportError::Driver { path, source }
                }
            })
    }

    pub(crate) fn shared(&self) -> &Arc<DumbCard> {
        &self.shared
    }

    /// Makes and maps one dumb buffer of `rows` rows.
    fn make(&self, rows: u32) -> Result<(DumbLayout, *mut u8), DumbError> {
        let card = &self.shared.card;
        let (width, format) = (self.shared.width, self.shared.format);
        let fd = card.as_fd();
        let created =
            drm_ffi::mode::dumbbuffer::create(fd, width, rows, format.bytes_per_pixel() * 8, 0)
                .map_err(|source| DumbError::Create {
                    path: card.path.clone(),
                    width,
                    rows,
                    source,
                })?;
        let handle = NonZeroU32::new(created.handle)
            .map(BufferHandle::from)
            .expect("the kernel never hands out GEM handle 0");
        let layout = DumbLayout {
            handle,
            width,
            rows,
            pitch: created.pitch,
            len: created.size as usize,
            format,
        };
        let mapped = drm_ffi::mode::dumbbuffer::map(fd, created.handle, 0, 0).and_then(|map| {
            // SAFETY: a fresh shared mapping of the dumb buffer at the offset the kernel gave;
            // it aliases nothing of ours.
            let ptr = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    layout.len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED,
                    fd,
                    map.offset,
                )
            }?;
            Ok(ptr.cast::<u8>())
        });
        match mapped {
            Ok(addr) => Ok((layout, addr)),
            Err(source) => {
                let _ = drm_ffi::mode::dumbbuffer::destroy(fd, created.handle);
                Err(DumbError::Map {
                    path: card.path.clone(),
                    source,
                })
            }
        }
    }
}

// SAFETY: `create` returns the start of a fresh shared mapping of a dumb buffer at least `size`
// bytes long (rows × pitch ≥ rows × width × bpp ≥ size), readable and writable, page-aligned,
// owned by the returned `DumbMemory`; `release` unmaps and destroys it, once.
unsafe impl Backend for DumbBackend {
    type Memory = DumbMemory;
    type Error = DumbError;

    fn name(&self) -> &'static str {
        "drm-dumb"
    }

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::ScanOut
    }

    fn alignment(&self) -> usize {
        4096
    }

    fn create(&self, size: usize) -> Result<Created<DumbMemory>, DumbError> {
        let rows = (size as u64).div_ceil(self.row_len() as u64).max(1);
        if rows > u64::from(MAX_DIMENSION) {
            let width = self.shared.width;
            return Err(DumbError::TooLarge { size, width, rows });
        }
        let (layout, addr) = self.make(rows as u32)?;
        let record = DumbRecord {
            layout,
            framebuffer: None,
        };
        self.shared.buffers.lock().insert(addr as usize, record);
        Ok(Created {
            memory: DumbMemory {
                addr: addr as usize,
            },
            addr,
            phys: None,
        })
    }

    fn release(&self, memory: DumbMemory) {
        let card = &self.shared.card;
        let record = self.shared.buffers.lock().remove(&memory.addr);
        let Some(DumbRecord {
            layout,
            framebuffer,
        }) = record
        else {
            return; // `create` records every buffer it returns; nothing else was made
        };
        if let Some(fb) = framebuffer {
            let _ = card.destroy_framebuffer(fb);
        }
        // SAFETY: `addr` is the mapping of `layout.len` bytes made in `make` for this buffer,
        // unmapped only here (the `Backend` contract calls `release` once per buffer).
        let _ = unsafe { rustix::mm::munmap(memory.addr as *mut _, layout.len) };
        let _ = drm_ffi::mode::dumbbuffer::destroy(card.as_fd(), layout.handle.into());
    }
}
