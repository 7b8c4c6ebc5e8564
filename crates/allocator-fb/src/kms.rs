//! Showing dumb buffers on a DRM display: set the CRTC once, then page flips with their events.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffer_core::Buffer;
use drm::Device as _;
use drm::control::{Device as _, Event, Mode, ModeTypeFlags, PageFlipFlags, connector, crtc};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;

use crate::dumb::{DrmCard, DumbBackend, DumbCard};
use crate::present::{PresentError, ScanOut};

/// How long a page flip may take before it counts as lost (a 1 Hz display would still make it).
const FLIP_TIMEOUT: Duration = Duration::from_secs(2);

/// A display could not be taken over.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// Another process is the DRM master.
    #[error(
        "{path} is busy: another process (a display server?) is its DRM master ({source}); stop it, or run from a text console"
    )]
    Busy {
        /// The card.
        path: std::path::PathBuf,
        /// What the kernel answered (EBUSY).
        source: io::Error,
    },
    /// No connector has a display attached.
    #[error("no display is connected to {path}: connect a monitor, or use another card")]
    NoDisplay {
        /// The card.
        path: std::path::PathBuf,
    },
    /// No CRTC can drive the connected display.
    #[error("no CRTC of {path} can drive its connected display")]
    NoCrtc {
        /// The card.
        path: std::path::PathBuf,
    },
    /// The card did not answer a mode-setting query.
    #[error("cannot read the display configuration of {path}: {source}")]
    Query {
        /// The card.
        path: std::path::PathBuf,
        /// What it answered.
        source: io::Error,
    },
}

/// Shows dumb buffers of a [`DumbBackend`] on the first connected display of its card, in that
/// display's preferred mode: the first buffer by setting the CRTC, every later one by a page
/// flip, waiting for its completion event (or by setting the CRTC again where the driver cannot
/// flip). Dropping it puts back what the CRTC showed before (the console, usually).
pub struct DrmScanOut {
    card: Arc<DumbCard>,
    crtc: crtc::Handle,
    connector: connector::Handle,
    mode: Mode,
    saved: crtc::Info,
    mode_set: bool,
}

impl std::fmt::Debug for DrmScanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrmScanOut")
            .field("crtc", &self.crtc)
            .field("connector", &self.connector)
            .field("mode", &self.mode_size())
            .finish()
    }
}

/// The display a scan-out drives: a connected connector, a CRTC for it, and its mode.
struct Output {
    connector: connector::Handle,
    crtc: crtc::Handle,
    mode: Mode,
}

impl Output {
    /// The first connected display of `card`, a CRTC that can drive it, and its preferred mode
    /// (its first mode when none is preferred).
    fn pick(card: &DrmCard) -> Result<Output, DisplayError> {
        let path = || card.path().to_path_buf();
        let resources = card
            .resource_handles()
            .map_err(|source| DisplayError::Query {
                path: path(),
                source,
            })?;
        let connected = resources
            .connectors()
            .iter()
            .filter_map(|&handle| card.get_connector(handle, false).ok())
            .find(|info| info.state() == connector::State::Connected && !info.modes().is_empty())
            .ok_or_else(|| DisplayError::NoDisplay { path: path() })?;
        let mode = connected
            .modes()
            .iter()
            .find(|mode| mode.mode_type().contains(ModeTypeFlags::PREFERRED))
            .unwrap_or(&connected.modes()[0]);
        let crtc = connected
            .current_encoder()
            .into_iter()
            .chain(connected.encoders().iter().copied())
            .filter_map(|encoder| card.get_encoder(encoder).ok())
            .find_map(|encoder| {
                encoder.crtc().or_else(|| {
                    resources
                        .filter_crtcs(encoder.possible_crtcs())
                        .first()
                        .copied()
                })
            })
            .ok_or_else(|| DisplayError::NoCrtc { path: path() })?;
        Ok(Output {
            connector: connected.handle(),
            crtc,
            mode: *mode,
        })
    }
}

/// A mode's width and height in pixels.
fn mode_size(mode: &Mode) -> (u32, u32) {
    let (width, height) = mode.size();
    (u32::from(width), u32::from(height))
}

impl DrmScanOut {
    /// The width and height of the mode a scan-out of `card` would use: make the pool's buffers
    /// at least this large.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use allocator_fb::{DrmCard, DrmScanOut};
    ///
    /// let (width, height) = DrmScanOut::preferred_mode(&DrmCard::open("/dev/dri/card0")?)?;
    /// println!("{width}x{height}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn preferred_mode(card: &DrmCard) -> Result<(u32, u32), DisplayError> {
        Output::pick(card).map(|output| mode_size(&output.mode))
    }

    /// Becomes DRM master of the backend's card and picks its first connected display, a CRTC
    /// for it and its preferred mode.
    pub fn new(backend: &DumbBackend) -> Result<DrmScanOut, DisplayError> {
        let shared = Arc::clone(backend.shared());
        let card = &shared.card;
        let path = || card.path().to_path_buf();
        card.acquire_master_lock()
            .map_err(|source| DisplayError::Busy {
                path: path(),
                source,
            })?;
        let Output {
            connector,
            crtc,
            mode,
        } = Output::pick(card)?;
        let saved = card.get_crtc(crtc).map_err(|source| DisplayError::Query {
            path: path(),
            source,
        })?;
        Ok(DrmScanOut {
            crtc,
            connector,
            mode,
            saved,
            mode_set: false,
            card: shared,
        })
    }

    /// The mode's width and height in pixels.
    pub fn mode_size(&self) -> (u32, u32) {
        mode_size(&self.mode)
    }

    /// The mode's refresh rate in Hz.
    pub fn refresh_hz(&self) -> u32 {
        self.mode.vrefresh()
    }

    fn set_crtc(&self, fb: drm::control::framebuffer::Handle) -> Result<(), PresentError> {
        self.card
            .card
            .set_crtc(
                self.crtc,
                Some(fb),
                (0, 0),
                &[self.connector],
                Some(self.mode),
            )
            .map_err(|source| refusal("set the CRTC", source))
    }

    /// Queues a flip to `fb` and waits for its completion event. `Ok(false)`: the driver cannot
    /// flip, set the CRTC instead.
    fn flip(&self, fb: drm::control::framebuffer::Handle) -> Result<bool, PresentError> {
        let card = &self.card.card;
        match card.page_flip(self.crtc, fb, PageFlipFlags::EVENT, None) {
            Ok(()) => {}
            Err(e)
                if [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP]
                    .iter()
                    .any(|errno| e.raw_os_error() == Some(errno.raw_os_error())) =>
            {
                return Ok(false);
            }
            Err(source) => return Err(refusal("page flip", source)),
        }
        let deadline = Instant::now() + FLIP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = rustix::event::Timespec::try_from(left).expect("two seconds fit");
            let mut fds = [PollFd::new(card, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => {
                    return Err(PresentError::FlipTimeout {
                        waited_ms: FLIP_TIMEOUT.as_millis() as u64,
                    });
                }
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(refusal("report the flip", e.into())),
            }
            let events = card
                .receive_events()
                .map_err(|source| refusal("report the flip", source))?;
            let flipped = events
                .into_iter()
                .any(|event| matches!(event, Event::PageFlip(flip) if flip.crtc == self.crtc));
            if flipped {
                return Ok(true);
            }
        }
    }
}

/// The error for a refused mode-setting request.
fn refusal(action: &'static str, source: io::Error) -> PresentError {
    let not_master = [Errno::ACCESS, Errno::PERM].map(Errno::raw_os_error);
    if source
        .raw_os_error()
        .is_some_and(|code| not_master.contains(&code))
    {
        PresentError::NotMaster { source }
    } else {
        PresentError::Device { action, source }
    }
}

impl ScanOut for DrmScanOut {
    fn scan_out(&mut self, buffer: &Buffer) -> Result<(), PresentError> {
        let addr = buffer.virt_addr;
        let (layout, fb) = self
            .card
            .framebuffer(addr)
            .ok_or(PresentError::NotFromDevice { addr })?
            .map_err(|source| refusal("add a framebuffer", source))?;
        let (mode_width, mode_height) = self.mode_size();
        if layout.width < mode_width || layout.rows < mode_height {
            return Err(PresentError::TooSmall {
                width: layout.width,
                rows: layout.rows,
                mode_width,
                mode_height,
            });
        }
        if self.mode_set && self.flip(fb)? {
            return Ok(());
        }
        self.set_crtc(fb)?;
        self.mode_set = true;
        Ok(())
    }
}

impl Drop for DrmScanOut {
    fn drop(&mut self) {
        if self.mode_set {
            let card = &self.card.card;
            // Put back what was shown before; failing that (nothing was), switch the CRTC off so
            // it stops reading our buffers.
            let restored = self.saved.framebuffer().is_some_and(|fb| {
                card.set_crtc(
                    self.crtc,
                    Some(fb),
                    self.saved.position(),
                    &[self.connector],
                    self.saved.mode(),
                )
                .is_ok()
            });
            if !restored {
                let _ = card.set_crtc(self.crtc, None, (0, 0), &[], None);
            }
        }
        let _ = self.card.card.release_master_lock();
    }
}
