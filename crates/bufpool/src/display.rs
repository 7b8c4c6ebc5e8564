//! `bufpool demo --display`: the demo's frames on screen. A display thread reads every frame
//! from a port of its own, converts it into a free buffer of a scan-out pool (DRM dumb buffers on
//! the first card with a connected display, else the pages of `/dev/fb0`), and presents it; the
//! buffer it stops showing goes back to the scan-out pool.
//!
//! The demo's frames live in shared host memory in RGBA (or YUV, decoded), which no display
//! scans out, so this is the one copy of the demo: a pipeline that draws straight into a
//! scan-out pool needs none.

use std::error::Error;
use std::path::PathBuf;
use std::thread::JoinHandle;

use allocator_facade::PoolAllocator;
use allocator_facade::fb::{
    DrmCard, DrmScanOut, DumbAllocator, DumbBackend, FbAllocator, FbBackend, FbDevice, Presenter,
    ScanOut, ScanOutFormat,
};
use buffer_core::{BufferPool, PortGuard, ReceiveError, Wait};

/// Scan-out buffers in the pool: one on screen, one being drawn, one spare.
const SCREEN_BUFFERS: u32 = 3;

/// A display with a pool of scan-out buffers and a presenter.
pub struct Screen {
    // Dropped first: restores the display and releases the buffer on screen.
    presenter: Presenter<Box<dyn ScanOut + Send>>,
    pool: BufferPool,
    // Dropped last: destroys the scan-out pool.
    _allocator: Box<dyn PoolAllocator>,
    width: u32,
    height: u32,
    stride: usize,
    device: String,
}

impl Screen {
    /// The first usable display: a DRM card with a connected display, else `/dev/fb0`.
    pub fn open() -> Result<Screen, Box<dyn Error>> {
        let mut tried = Vec::new();
        for n in 0..8 {
            let path = PathBuf::from(format!("/dev/dri/card{n}"));
            if !path.exists() {
                continue;
            }
            match Screen::open_drm(&path) {
                Ok(screen) => return Ok(screen),
                Err(err) => tried.push(format!("{}: {err}", path.display())),
            }
        }
        match Screen::open_fbdev() {
            Ok(screen) => Ok(screen),
            Err(err) => {
                tried.push(format!("/dev/fb0: {err}"));
                Err(format!(
                    "--display found no usable display device ({})",
                    tried.join("; ")
                )
                .into())
            }
        }
    }

    fn open_drm(path: &std::path::Path) -> Result<Screen, Box<dyn Error>> {
        let card = DrmCard::open(path)?;
        let (width, height) = DrmScanOut::preferred_mode(&card)?;
        let device = format!("{} ({})", path.display(), card.driver_name()?);
        let allocator = DumbAllocator::new(DumbBackend::new(card, width, ScanOutFormat::Xrgb8888)?);
        let size = allocator.backend().frame_size(height);
        let pool_id =
            allocator.allocate_pool_with_buffers(SCREEN_BUFFERS, size, "demo-screen", "display")?;
        let pool = allocator.pool(pool_id)?;
        let stride = {
            let probe = pool.acquire_free(Wait::NoWait)?;
            let layout = allocator.backend().layout(&probe.buffer());
            layout.ok_or("a dumb buffer without a layout")?.pitch as usize
        };
        let scan_out: Box<dyn ScanOut + Send> = Box::new(DrmScanOut::new(allocator.backend())?);
        Ok(Screen {
            presenter: Presenter::new(scan_out),
            pool,
            _allocator: Box::new(allocator),
            width,
            height,
            stride,
            device,
        })
    }

    fn open_fbdev() -> Result<Screen, Box<dyn Error>> {
        let backend = FbBackend::pages(FbDevice::open("/dev/fb0")?)?;
        let info = backend.info().clone();
        if info.format != Some(ScanOutFormat::Xrgb8888) {
            return Err(format!(
                "the framebuffer is {} bits per pixel in a layout the demo does not draw; set a 32-bit mode (fbset -depth 32)",
                info.bits_per_pixel
            )
            .into());
        }
        let scan_out: Box<dyn ScanOut + Send> = Box::new(backend.scan_out());
        let allocator = FbAllocator::new(backend);
        let pool_id = allocator.allocate_pool_with_buffers(
            info.pages(),
            info.page_len(),
            "demo-screen",
            "display",
        )?;
        Ok(Screen {
            presenter: Presenter::new(scan_out),
            pool: allocator.pool(pool_id)?,
            _allocator: Box::new(allocator),
            width: info.width,
            height: info.height,
            stride: info.stride as usize,
            device: format!("/dev/fb0 ({}, {} pages)", info.id, info.pages()),
        })
    }

    /// What is shown where, for the demo's first lines.
    pub fn describe(&self) -> String {
        format!(
            "{} in {}x{} with {} scan-out buffers",
            self.device,
            self.width,
            self.height,
            self.pool.counts().total
        )
    }

    /// Draws `frame` into a free scan-out buffer (cropped or padded to the screen) and shows it.
    fn show(&mut self, frame: &PortGuard<'_>) -> Result<(), Box<dyn Error>> {
        let meta = frame.meta();
        let video = meta.video;
        let rgba = video.pixel_format == buffer_core::PixelFormat::RGBA;
        let plane = video
            .planes()
            .first()
            .copied()
            .ok_or("a frame without planes")?;
        let source = frame.plane(0)?;
        let mut target = self.pool.acquire_free(Wait::Forever)?;
        let screen = target.as_mut_slice()?;
        let (width, rows) = (
            video.width.min(self.width) as usize,
            video.height.min(self.height) as usize,
        );
        for (y, out) in screen
            .chunks_mut(self.stride)
            .take(self.height as usize)
            .enumerate()
        {
            let out = &mut out[..self.width as usize * 4];
            out.fill(0);
            if y >= rows {
                continue;
            }
            let row = &source[y * plane.stride as usize..];
            for (x, pixel) in out.chunks_exact_mut(4).take(width).enumerate() {
                pixel.copy_from_slice(&if rgba {
                    [row[x * 4 + 2], row[x * 4 + 1], row[x * 4], 0]
                } else {
                    [row[x], row[x], row[x], 0] // luma as grey
                });
            }
        }
        target.submit();
        self.presenter.show_next(&self.pool, Wait::NoWait)?;
        Ok(())
    }
}

/// Shows every frame arriving on `port` of `pool` until the pool closes; returns how many.
pub fn spawn(
    mut screen: Screen,
    pool: BufferPool,
    port: String,
) -> JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let port = pool.port(&port).map_err(|e| e.to_string())?;
        let subscription = pool.subscribe(port).map_err(|e| e.to_string())?;
        let mut shown = 0;
        loop {
            match subscription.receive(Wait::Forever) {
                Ok(frame) => {
                    screen.show(&frame).map_err(|e| e.to_string())?;
                    shown += 1;
                }
                Err(ReceiveError::Closed { .. }) => return Ok(shown),
                Err(other) => return Err(other.to_string()),
            }
        }
    })
}
