//! Linux framebuffer devices (`/dev/fbN`): their pages as pool buffers, shown by panning.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use allocator_base::{Backend, BackendPools, Created};
use buffer_core::{Buffer, MemoryKind, Ownership};
use rustix::mm::{MapFlags, ProtFlags};

use crate::device::{FRAMEBUFFER, OpenError};
use crate::external_memory::{ExternalMemoryBackend, ExternalRange, RangeLease, RangesExhausted};
use crate::fbdev_sys::{self, FbVarScreeninfo};
use crate::format::ScanOutFormat;
use crate::present::{PresentError, ScanOut};

/// The framebuffer allocator: [`BackendPools`] of framebuffer memory.
pub type FbAllocator = BackendPools<FbBackend>;

/// An open framebuffer device.
///
/// # Examples
///
/// ```
/// use allocator_fb::{FbDevice, OpenError};
///
/// // A regular file is not a framebuffer: the kernel answers ENOTTY.
/// let file = std::env::temp_dir().join("allocator-fb-doc-not-a-device");
/// std::fs::write(&file, b"")?;
/// assert!(matches!(FbDevice::open(&file), Err(OpenError::NotADevice { .. })));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FbDevice {
    file: File,
    path: PathBuf,
}

impl FbDevice {
    /// Opens `path` (such as `/dev/fb0`) and checks that it is a framebuffer.
    pub fn open(path: impl AsRef<Path>) -> Result<FbDevice, OpenError> {
        let path = path.as_ref();
        let file = FRAMEBUFFER.open(path)?;
        fbdev_sys::fix_screeninfo(&file).map_err(|e| FRAMEBUFFER.refused(path, e))?;
        Ok(FbDevice {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the driver reports now: resolution, memory, layout.
    pub fn info(&self) -> io::Result<FbInfo> {
        let fix = fbdev_sys::fix_screeninfo(&self.file)?;
        let var = fbdev_sys::var_screeninfo(&self.file)?;
        // `c_ulong` is 32 bits wide on 32-bit targets, where the conversion is not a no-op.
        #[allow(clippy::useless_conversion)]
        let phys_start = u64::from(fix.smem_start);
        let id_len = fix.id.iter().position(|&b| b == 0).unwrap_or(fix.id.len());
        Ok(FbInfo {
            id: String::from_utf8_lossy(&fix.id[..id_len]).into_owned(),
            width: var.xres,
            height: var.yres,
            virtual_height: var.yres_virtual,
            bits_per_pixel: var.bits_per_pixel,
            format: ScanOutFormat::from_fbdev(
                var.bits_per_pixel,
                var.red.pair(),
                var.green.pair(),
                var.blue.pair(),
                var.transp.pair(),
            ),
            stride: fix.line_length,
            phys_start,
            memory_len: fix.smem_len as usize,
            ypanstep: fix.ypanstep,
        })
    }
}

/// A framebuffer's geometry and memory, as its driver reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbInfo {
    /// The driver's name for it (such as `bochs-drmdrmfb`).
    pub id: String,
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in rows.
    pub height: u32,
    /// Rows of memory the driver offers (pages × height when it can pan between pages).
    pub virtual_height: u32,
    /// Bits per pixel.
    pub bits_per_pixel: u32,
    /// The pixel layout, if it is one of the [`ScanOutFormat`]s.
    pub format: Option<ScanOutFormat>,
    /// Bytes from one row to the next.
    pub stride: u32,
    /// Physical address of the memory (0 when the driver hides it).
    pub phys_start: u64,
    /// Bytes of memory the device offers for mapping.
    pub memory_len: usize,
    /// Vertical pan step in rows (0: the driver cannot pan).
    pub ypanstep: u16,
}

impl FbInfo {
    /// Bytes of one screen page: stride × height.
    pub fn page_len(&self) -> usize {
        self.stride as usize * self.height as usize
    }

    /// Whole pages the memory holds: `virtual_height / height`, limited by the memory length;
    /// 0 for a device without a usable page.
    pub fn pages(&self) -> u32 {
        let page_len = self.page_len();
        if page_len == 0 {
            return 0;
        }
        let by_rows = self.virtual_height / self.height;
        let by_memory = u32::try_from(self.memory_len / page_len).unwrap_or(u32::MAX);
        by_rows.min(by_memory)
    }
}

/// A framebuffer cannot back a pool.
#[derive(Debug, thiserror::Error)]
pub enum FbError {
    /// The driver did not answer the information requests.
    #[error("cannot read the screen information of {path}: {source}")]
    Info {
        /// The device.
        path: PathBuf,
        /// What it answered.
        source: io::Error,
    },
    /// The device offers no whole page of memory.
    #[error(
        "{path} offers no usable page ({width}x{height}, stride {stride}, {memory_len} bytes of memory): set a video mode first"
    )]
    NoPage {
        /// The device.
        path: PathBuf,
        /// Visible width.
        width: u32,
        /// Visible height.
        height: u32,
        /// Row stride.
        stride: u32,
        /// Memory length.
        memory_len: usize,
    },
    /// The buffer length asked for cannot be carved from the memory.
    #[error(
        "cannot carve {buffer_len}-byte buffers from {memory_len} bytes of framebuffer memory: ask for between 1 byte and the memory's length"
    )]
    BufferLen {
        /// The length asked for.
        buffer_len: usize,
        /// The memory length.
        memory_len: usize,
    },
    /// Mapping the memory failed.
    #[error("cannot map {len} bytes of {path}: {source}")]
    Map {
        /// The device.
        path: PathBuf,
        /// The length asked for.
        len: usize,
        /// What the system answered.
        source: io::Error,
    },
}

/// The device and its mapping, shared by the backend, every buffer (through the backend) and
/// the scan-out; unmapped when the last of them goes.
#[derive(Debug)]
struct FbScreen {
    device: FbDevice,
    info: FbInfo,
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is shared device memory, usable from any thread; the pool protocol decides
// who writes which part of it.
unsafe impl Send for FbScreen {}
// SAFETY: as for `Send`; `&FbScreen` only exposes the address.
unsafe impl Sync for FbScreen {}

impl Drop for FbScreen {
    fn drop(&mut self) {
        // SAFETY: `base` is the mapping of `len` bytes made in `FbScreen::map`, unmapped only
        // here, once; every buffer inside it keeps this screen alive through its backend.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl FbScreen {
    /// Maps the whole memory of `device`.
    fn map(device: FbDevice) -> Result<FbScreen, FbError> {
        let info = device.info().map_err(|source| FbError::Info {
            path: device.path.clone(),
            source,
        })?;
        if info.pages() == 0 {
            return Err(FbError::NoPage {
                path: device.path.clone(),
                width: info.width,
                height: info.height,
                stride: info.stride,
                memory_len: info.memory_len,
            });
        }
        let len = info.memory_len;
        // SAFETY: a fresh shared mapping chosen by the kernel; it aliases nothing of ours.
        let mapped = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &device.file,
                0,
            )
        };
        let base = mapped
            .map_err(|e| FbError::Map {
                path: device.path.clone(),
                len,
                source: e.into(),
            })
            .map(|p| NonNull::new(p.cast()).expect("mmap never returns null on success"))?;
        Ok(FbScreen {
            device,
            info,
            base,
            len,
        })
    }

    /// Ranges of `range_len` bytes, one after another from the start of the memory.
    fn ranges(&self, range_len: usize, count: usize) -> Vec<ExternalRange> {
        (0..count)
            .map(|i| ExternalRange {
                addr: self.base.as_ptr().wrapping_add(i * range_len),
                phys: (self.info.phys_start != 0)
                    .then(|| self.info.phys_start + (i * range_len) as u64),
                len: range_len,
            })
            .collect()
    }
}

/// The framebuffer backend: lends the framebuffer's memory to pool buffers, either one whole
/// screen page per buffer ([`FbBackend::pages`], for presenting by panning) or equal pieces
/// ([`FbBackend::carved`], for off-screen drawing). The memory kind is
/// [`MemoryKind::ScanOut`], ownership [`Ownership::External`] (the driver's memory is never
/// freed); the mapping lives as long as any buffer of it.
#[derive(Debug)]
pub struct FbBackend {
    screen: Arc<FbScreen>,
    /// Lends the pieces of the mapping.
    lender: ExternalMemoryBackend,
}

impl FbBackend {
    /// A backend lending the screen pages of `device`: as many as `virtual_height / height`
    /// (one when the driver offers no more), each `stride × height` bytes.
    pub fn pages(device: FbDevice) -> Result<FbBackend, FbError> {
        let screen = FbScreen::map(device)?;
        let (len, count) = (screen.info.page_len(), screen.info.pages() as usize);
        Ok(FbBackend::over(screen, len, count))
    }

    /// A backend lending the framebuffer memory as buffers of `buffer_len` bytes each (rounded
    /// up to a multiple of 4096 so every buffer is page-aligned), as many as fit.
    pub fn carved(device: FbDevice, buffer_len: usize) -> Result<FbBackend, FbError> {
        let screen = FbScreen::map(device)?;
        let range_len = buffer_len.checked_next_multiple_of(4096).unwrap_or(0);
        if buffer_len == 0 || range_len == 0 || range_len > screen.len {
            return Err(FbError::BufferLen {
                buffer_len,
                memory_len: screen.len,
            });
        }
        let count = screen.len / range_len;
        Ok(FbBackend::over(screen, range_len, count))
    }

    /// A backend lending `count` ranges of `range_len` bytes from the start of `screen`.
    fn over(screen: FbScreen, range_len: usize, count: usize) -> FbBackend {
        let ranges = screen.ranges(range_len, count);
        // SAFETY: the ranges are disjoint pieces of the mapping in `screen`, which the backend
        // keeps (and every buffer keeps through the backend) until the last buffer is gone; the
        // mapping is readable and writable shared memory.
        let lender = unsafe { ExternalMemoryBackend::new(ranges, MemoryKind::ScanOut, 1) }
            .expect("pieces of one mapping are valid, disjoint ranges");
        FbBackend {
            screen: Arc::new(screen),
            lender,
        }
    }

    /// The framebuffer's geometry and memory.
    pub fn info(&self) -> &FbInfo {
        &self.screen.info
    }

    /// How many buffers the backend can lend at most.
    pub fn buffer_count(&self) -> usize {
        self.lender.ranges().len()
    }

    /// Bytes of each buffer it lends.
    pub fn buffer_len(&self) -> usize {
        self.lender.ranges()[0].len
    }

    /// The scan-out path that shows this backend's pages by panning, for a
    /// [`Presenter`](crate::Presenter).
    pub fn scan_out(&self) -> FbScanOut {
        FbScanOut {
            screen: Arc::clone(&self.screen),
        }
    }
}

// SAFETY: delegates to `ExternalMemoryBackend`, whose ranges lie in the mapping that `self.screen`
// keeps alive for as long as the backend (which every buffer keeps) lives.
unsafe impl Backend for FbBackend {
    type Memory = RangeLease;
    type Error = RangesExhausted;

    fn name(&self) -> &'static str {
        "fbdev"
    }

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::ScanOut
    }

    fn alignment(&self) -> usize {
        self.lender.alignment()
    }

    fn ownership(&self) -> Ownership {
        Ownership::External
    }

    fn create(&self, size: usize) -> Result<Created<RangeLease>, RangesExhausted> {
        self.lender.create(size)
    }

    fn release(&self, memory: RangeLease) {
        self.lender.release(memory)
    }
}

/// Shows framebuffer pages by panning the display to them (`FBIOPAN_DISPLAY`).
#[derive(Debug)]
pub struct FbScanOut {
    screen: Arc<FbScreen>,
}

impl FbScanOut {
    /// The page `buffer` starts, or why it is not one.
    pub fn page_of(&self, buffer: &Buffer) -> Result<u32, PresentError> {
        let base = self.screen.base.as_ptr() as usize;
        let offset = buffer
            .virt_addr
            .checked_sub(base)
            .filter(|&offset| offset < self.screen.len)
            .ok_or(PresentError::NotFromDevice {
                addr: buffer.virt_addr,
            })?;
        let page_len = self.screen.info.page_len();
        let page = offset / page_len;
        if offset % page_len != 0 || page >= self.screen.info.pages() as usize {
            return Err(PresentError::NotAPage { offset, page_len });
        }
        Ok(page as u32)
    }
}

impl ScanOut for FbScanOut {
    fn scan_out(&mut self, buffer: &Buffer) -> Result<(), PresentError> {
        let page = self.page_of(buffer)?;
        let device = &self.screen.device;
        let var =
            fbdev_sys::var_screeninfo(&device.file).map_err(|source| PresentError::Device {
                action: "report its screen information",
                source,
            })?;
        let yoffset = page * self.screen.info.height;
        let pan = FbVarScreeninfo {
            xoffset: 0,
            yoffset,
            ..var
        };
        fbdev_sys::pan_display(&device.file, pan).map_err(|source| {
            pan_error(yoffset, var.yres_virtual, self.screen.info.ypanstep, source)
        })
    }
}

/// The error for a pan to line `yoffset` that the driver refused with `source`: EINVAL means
/// the line is beyond what it offers.
fn pan_error(yoffset: u32, virtual_height: u32, ypanstep: u16, source: io::Error) -> PresentError {
    if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
        PresentError::PanRefused {
            yoffset,
            virtual_height,
            ypanstep,
            source,
        }
    } else {
        PresentError::Device {
            action: "pan the display",
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_pan_says_what_to_do() {
        let einval = io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error());
        let err = pan_error(1600, 1600, 1, einval);
        assert!(
            matches!(err, PresentError::PanRefused { yoffset: 1600, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("FbBackend::pages"), "{err}");
        let eio = io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error());
        assert!(matches!(
            pan_error(0, 800, 1, eio),
            PresentError::Device { .. }
        ));
    }

    #[test]
    fn pages_follow_the_virtual_height_and_the_memory() {
        let info = |virtual_height, memory_len| FbInfo {
            id: "test".into(),
            width: 640,
            height: 480,
            virtual_height,
            bits_per_pixel: 32,
            format: Some(ScanOutFormat::Xrgb8888),
            stride: 2560,
            phys_start: 0,
            memory_len,
            ypanstep: 1,
        };
        assert_eq!(info(960, 2560 * 960).pages(), 2);
        assert_eq!(info(1440, 2560 * 960).pages(), 2, "limited by memory");
        assert_eq!(info(480, 2560 * 480).pages(), 1);
        assert_eq!(info(480, 100).pages(), 0, "not even one page of memory");
    }
}
