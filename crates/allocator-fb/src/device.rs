//! Opening a display device node, with errors that say what to do.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

/// A display device could not be opened.
///
/// # Examples
///
/// ```
/// use allocator_fb::{FbDevice, OpenError};
///
/// let err = FbDevice::open("/dev/no-such-fb").unwrap_err();
/// assert!(matches!(err, OpenError::NotFound { .. }));
/// assert!(err.to_string().contains("/dev/no-such-fb"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing exists at the path.
    #[error(
        "no {kind} device at {path}: load its driver (for example `modprobe bochs` or `modprobe simpledrm`), or name another device"
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
        /// "framebuffer" or "DRM".
        kind: &'static str,
    },
    /// This user may not open the device.
    #[error(
        "permission denied opening {kind} device {path}: add the user to the `video` group, or run as root"
    )]
    PermissionDenied {
        /// The path given.
        path: PathBuf,
        /// "framebuffer" or "DRM".
        kind: &'static str,
    },
    /// The path is something else (a regular file, another device): it refused the device's
    /// identifying request.
    #[error(
        "{path} is not a {kind} device (it answered the {kind} identify request with: {source}); name a {example} node"
    )]
    NotADevice {
        /// The path given.
        path: PathBuf,
        /// "framebuffer" or "DRM".
        kind: &'static str,
        /// An example node of the right kind.
        example: &'static str,
        /// What the kernel answered (ENOTTY for a regular file).
        source: io::Error,
    },
    /// Any other failure.
    #[error("cannot open {kind} device {path}: {source}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// "framebuffer" or "DRM".
        kind: &'static str,
        /// What the system answered.
        source: io::Error,
    },
}

/// Which kind of device node is being opened, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceKind {
    pub(crate) name: &'static str,
    pub(crate) example: &'static str,
}

pub(crate) const FRAMEBUFFER: DeviceKind = DeviceKind {
    name: "framebuffer",
    example: "/dev/fbN",
};

pub(crate) const DRM: DeviceKind = DeviceKind {
    name: "DRM",
    example: "/dev/dri/cardN",
};

impl DeviceKind {
    /// Opens `path` for reading and writing (close-on-exec, as std always does).
    pub(crate) fn open(self, path: &Path) -> Result<File, OpenError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| {
                let path = path.to_path_buf();
                let kind = self.name;
                match source.kind() {
                    io::ErrorKind::NotFound => OpenError::NotFound { path, kind },
                    io::ErrorKind::PermissionDenied => OpenError::PermissionDenied { path, kind },
                    _ => OpenError::Io { path, kind, source },
                }
            })
    }

    /// The error for a node that refused this kind's identify request with `source`: ENOTTY
    /// (a regular file, a pipe) or EINVAL (another kind of device) mean "not this kind".
    pub(crate) fn refused(self, path: &Path, source: io::Error) -> OpenError {
        let path = path.to_path_buf();
        let not_this_kind = [Errno::NOTTY, Errno::INVAL].map(Errno::raw_os_error);
        if source
            .raw_os_error()
            .is_some_and(|code| not_this_kind.contains(&code))
        {
            OpenError::NotADevice {
                path,
                kind: self.name,
                example: self.example,
                source,
            }
        } else {
            OpenError::Io {
                path,
                kind: self.name,
                source,
            }
        }
    }
}
