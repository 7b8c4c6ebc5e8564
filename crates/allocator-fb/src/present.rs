//! Presenting filled buffers on a display, one at a time, keeping the shown one held.

use std::io;

use buffer_core::{AcquireError, Buffer, BufferId, BufferPool, ReadGuard, Wait};

/// A display path that can make one buffer the visible picture: a framebuffer panned to a page
/// ([`FbScanOut`](crate::FbScanOut)) or a DRM CRTC flipped to a dumb buffer
/// ([`DrmScanOut`](crate::DrmScanOut)).
pub trait ScanOut {
    /// Makes `buffer` the picture on screen; returns once the display shows it (the previous
    /// picture is no longer read).
    fn scan_out(&mut self, buffer: &Buffer) -> Result<(), PresentError>;
}

impl<S: ScanOut + ?Sized> ScanOut for Box<S> {
    fn scan_out(&mut self, buffer: &Buffer) -> Result<(), PresentError> {
        (**self).scan_out(buffer)
    }
}

/// A buffer could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PresentError {
    /// The buffer is not memory of this display.
    #[error(
        "the buffer at {addr:#x} is not memory of this display: present buffers of the pool made over the same device"
    )]
    NotFromDevice {
        /// The buffer's address.
        addr: usize,
    },
    /// The buffer is framebuffer memory, but not a whole page that panning can show.
    #[error(
        "the buffer at offset {offset} of the framebuffer is not a page start (pages are {page_len} bytes): only pools made with FbBackend::pages can be presented"
    )]
    NotAPage {
        /// Its offset in the framebuffer memory.
        offset: usize,
        /// The page length.
        page_len: usize,
    },
    /// The buffer is smaller than the display mode.
    #[error(
        "a {width}x{rows} buffer cannot be scanned out in a {mode_width}x{mode_height} mode: create the pool with buffers of at least the mode's size"
    )]
    TooSmall {
        /// The buffer's width in pixels.
        width: u32,
        /// The buffer's rows.
        rows: u32,
        /// The mode's width.
        mode_width: u32,
        /// The mode's height.
        mode_height: u32,
    },
    /// The framebuffer driver refused the pan.
    #[error(
        "the framebuffer driver refused to pan to line {yoffset} (virtual height {virtual_height}, pan step {ypanstep}): {source}; the driver offers fewer pages than the pool has, so make the pool with FbBackend::pages"
    )]
    PanRefused {
        /// The first line asked for.
        yoffset: u32,
        /// The virtual height the driver reports.
        virtual_height: u32,
        /// The driver's vertical pan step (0: it cannot pan).
        ypanstep: u16,
        /// What it answered (EINVAL).
        source: io::Error,
    },
    /// This process is not the DRM master, so it may not change what the display shows.
    #[error(
        "the display refused: this process is not the DRM master of the card ({source}); another process (a display server?) holds it: stop it, or run from a text console"
    )]
    NotMaster {
        /// What the kernel answered (EACCES or EPERM).
        source: io::Error,
    },
    /// The flip did not complete in time.
    #[error(
        "the display did not complete the page flip within {waited_ms} ms: the CRTC may be off (is a monitor connected?)"
    )]
    FlipTimeout {
        /// How long was waited.
        waited_ms: u64,
    },
    /// The driver refused otherwise.
    #[error("the display driver refused to {action}: {source}")]
    Device {
        /// What was being done.
        action: &'static str,
        /// What it answered.
        source: io::Error,
    },
}

/// No buffer could be taken to show, or it could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// No filled buffer came.
    #[error("no filled buffer to show: {0}")]
    Acquire(#[from] AcquireError),
    /// The buffer could not be shown (it went back to the free queue).
    #[error(transparent)]
    Present(#[from] PresentError),
}

/// The display side of the pool protocol: takes filled buffers, shows them, and releases the
/// one it stops showing (classic double or triple buffering: with N buffers, the producer draws
/// into the N − 1 not on screen).
///
/// # Examples
///
/// A scan-out that only records what it was asked to show, to illustrate the protocol:
///
/// ```
/// use allocator_fb::{PresentError, Presenter, ScanOut};
/// use buffer_core::{Buffer, BufferPool, PoolConfig, Wait};
///
/// #[derive(Default)]
/// struct Recorder(Vec<usize>);
/// impl ScanOut for Recorder {
///     fn scan_out(&mut self, buffer: &Buffer) -> Result<(), PresentError> {
///         self.0.push(buffer.virt_addr);
///         Ok(())
///     }
/// }
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("screen"), 2, 64)?;
/// let mut presenter = Presenter::new(Recorder::default());
/// for _ in 0..3 {
///     pool.acquire_free(Wait::NoWait)?.submit(); // the producer draws and submits
///     presenter.show_next(&pool, Wait::NoWait)?; // the display shows it
///     assert_eq!(pool.counts().free, 1, "the shown buffer stays held");
/// }
/// assert_eq!(presenter.scan_out().0.len(), 3);
/// presenter.stop();
/// assert_eq!(pool.counts().free, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Presenter<S: ScanOut> {
    scan_out: S,
    shown: Option<Shown>,
}

/// The buffer on screen, held (detached) until another replaces it.
struct Shown {
    pool: BufferPool,
    id: BufferId,
}

impl Shown {
    /// Releases the buffer to its pool's free queue.
    fn release(self) {
        // A stale id means the pool already took the buffer back (its process state was
        // reclaimed): nothing is left to release.
        if let Ok(guard) = self.pool.redeem_read(self.id) {
            drop(guard);
        }
    }
}

impl<S: ScanOut> Presenter<S> {
    /// A presenter over `scan_out`, showing nothing of ours yet.
    pub fn new(scan_out: S) -> Presenter<S> {
        Presenter {
            scan_out,
            shown: None,
        }
    }

    /// Shows `frame`, then releases the buffer shown before it. If the display refuses, the
    /// frame is released and the previous picture stays.
    pub fn present(&mut self, frame: ReadGuard<'_>) -> Result<(), PresentError> {
        self.scan_out.scan_out(&frame.buffer())?;
        let pool = frame.pool().clone();
        let id = frame.into_id();
        if let Some(previous) = self.shown.replace(Shown { pool, id }) {
            previous.release();
        }
        Ok(())
    }

    /// Takes the next filled buffer of `pool` (waiting as `wait` says) and shows it; returns
    /// its id.
    pub fn show_next(&mut self, pool: &BufferPool, wait: Wait) -> Result<BufferId, ShowError> {
        let frame = pool.acquire_filled(wait)?;
        let id = frame.id();
        self.present(frame)?;
        Ok(id)
    }

    /// The id of the buffer on screen, if one of ours is.
    pub fn shown(&self) -> Option<BufferId> {
        self.shown.as_ref().map(|shown| shown.id)
    }

    /// The scan-out path.
    pub fn scan_out(&self) -> &S {
        &self.scan_out
    }

    /// Releases the buffer on screen (the display keeps showing its last picture until
    /// something else is presented or the scan-out is dropped).
    pub fn stop(&mut self) {
        if let Some(shown) = self.shown.take() {
            shown.release();
        }
    }
}

impl<S: ScanOut> Drop for Presenter<S> {
    fn drop(&mut self) {
        self.stop();
    }
}
