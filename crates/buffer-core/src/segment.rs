//! Named POSIX shared-memory segments (`/dev/shm/bufpool.NAME`) that hold a shared pool: its
//! block followed by its buffers.

use std::fmt;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use rustix::fs::Mode;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

use crate::error::{AttachError, SegmentError, SegmentNameError};
use crate::region::Region;

/// Longest segment name in bytes (the system allows 255 for the whole file name).
pub const MAX_SEGMENT_NAME_LEN: usize = 200;
/// Prefix of every pool segment's file name in `/dev/shm`.
pub(crate) const PREFIX: &str = "bufpool.";
/// Where the system keeps shared-memory segments.
const SHM_DIR: &str = "/dev/shm";
/// Permissions of a new segment unless the pool's configuration says otherwise: read and write
/// for its owner only.
pub const DEFAULT_SEGMENT_MODE: u32 = 0o600;

/// A checked segment name: 1 to [`MAX_SEGMENT_NAME_LEN`] bytes of letters, digits, `.`, `_` and
/// `-`, not starting with `.`.
///
/// # Examples
///
/// ```
/// use buffer_core::SegmentName;
///
/// assert_eq!(SegmentName::new("camera-0").unwrap().as_str(), "camera-0");
/// assert!(SegmentName::new("a/b").is_err());
/// assert!(SegmentName::new("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName(String);

impl SegmentName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<SegmentName, SegmentNameError> {
        let bad = |reason| SegmentNameError {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() || name.len() > MAX_SEGMENT_NAME_LEN {
            return Err(bad("it must be 1 to 200 bytes long"));
        }
        if name.starts_with('.') {
            return Err(bad("it must not start with '.'"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("use only letters, digits, '.', '_' and '-' (no '/')"));
        }
        Ok(SegmentName(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name passed to `shm_open`.
    fn shm_path(&self) -> String {
        format!("/{PREFIX}{}", self.0)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Operations on segments.
pub(crate) struct Segment;

impl Segment {
    /// Creates segment `name` of `len` zeroed bytes with `mode` (failing if it exists) and maps
    /// it.
    pub(crate) fn create(
        name: &SegmentName,
        len: usize,
        mode: u32,
    ) -> Result<Region, SegmentError> {
        let fail = |action: &'static str| {
            let name = name.clone();
            move |source: rustix::io::Errno| SegmentError::System {
                name,
                action,
                code: source.raw_os_error(),
            }
        };
        let fd = shm::open(
            name.shm_path(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::from_raw_mode(mode),
        )
        .map_err(|errno| match errno {
            rustix::io::Errno::EXIST => SegmentError::Exists { name: name.clone() },
            errno => fail("create")(errno),
        })?;
        let made = (|| {
            // The umask may have cleared bits of the mode: set it exactly.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(fail("set the mode of"))?;
            rustix::fs::ftruncate(&fd, len as u64).map_err(fail("size"))?;
            map(&fd, len).map_err(fail("map"))
        })();
        if made.is_err() {
            Segment::unlink(name);
        }
        made
    }

    /// Opens and maps segment `name`, after checking that it belongs to this user and that no
    /// other user can write it.
    pub(crate) fn open(name: &SegmentName) -> Result<Region, AttachError> {
        let fail = |action: &'static str| {
            let name = name.clone();
            move |source: rustix::io::Errno| {
                AttachError::Segment(SegmentError::System {
                    name,
                    action,
                    code: source.raw_os_error(),
                })
            }
        };
        let fd = shm::open(name.shm_path(), shm::OFlags::RDWR, Mode::empty()).map_err(|errno| {
            match errno {
                rustix::io::Errno::NOENT => AttachError::NotFound { name: name.clone() },
                rustix::io::Errno::ACCESS => AttachError::Permission {
                    name: name.clone(),
                    reason: "this user may not open it".into(),
                },
                errno => fail("open")(errno),
            }
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(fail("inspect"))?;
        check_ownership(
            name,
            stat.st_uid,
            stat.st_mode,
            rustix::process::geteuid().as_raw(),
        )?;
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        if len == 0 {
            return Err(AttachError::Truncated { len, needed: 1 });
        }
        map(&fd, len).map_err(fail("map"))
    }

    /// Removes segment `name` from the namespace (mappings stay valid). A name that is already
    /// gone is fine.
    pub(crate) fn unlink(name: &SegmentName) {
        let _ = shm::unlink(name.shm_path());
    }

    /// The names of every pool segment on this machine.
    pub(crate) fn list() -> Vec<SegmentName> {
        let Ok(entries) = std::fs::read_dir(SHM_DIR) else {
            return Vec::new();
        };
        let mut names: Vec<SegmentName> = entries
            .filter_map(|entry| {
                let file = entry.ok()?.file_name().into_string().ok()?;
                SegmentName::new(file.strip_prefix(PREFIX)?).ok()
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names
    }
}

/// Whether `mode` is one a pool segment may have: its owner reads and writes it, nobody else may
/// write it (others could corrupt it at will), and it has no bits beyond the permissions.
pub(crate) fn mode_is_safe(mode: u32) -> bool {
    mode & !0o777 == 0 && mode & 0o600 == 0o600 && mode & 0o022 == 0
}

/// Refuses a segment that another user owns, or that users other than its owner may write (they
/// could corrupt it at will), or that its owner cannot read and write.
pub(crate) fn check_ownership(
    name: &SegmentName,
    owner: u32,
    mode: u32,
    me: u32,
) -> Result<(), AttachError> {
    let permission = |reason: String| AttachError::Permission {
        name: name.clone(),
        reason,
    };
    if owner != me {
        return Err(permission(format!(
            "it belongs to uid {owner}, not to this user (uid {me}); attach as its owner"
        )));
    }
    let mode = mode & 0o777;
    if mode & 0o022 != 0 {
        return Err(permission(format!(
            "its mode {mode:03o} lets other users write it; it must be 0600"
        )));
    }
    if mode & 0o600 != 0o600 {
        return Err(permission(format!(
            "its mode {mode:03o} does not let its owner read and write it; it must be 0600"
        )));
    }
    Ok(())
}

fn map(fd: &OwnedFd, len: usize) -> rustix::io::Result<Region> {
    // SAFETY: a fresh shared mapping of `len` bytes of `fd` at an address the kernel chooses; it
    // aliases no Rust object. It is unmapped only by the `Region` made here.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    let base = NonNull::new(ptr.cast::<u8>()).ok_or(rustix::io::Errno::NOMEM)?;
    // SAFETY: `base` is a live mapping of exactly `len` bytes, owned by nothing else.
    Ok(unsafe { Region::from_mapping(base, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "camera-0", "x.y_z", &"n".repeat(MAX_SEGMENT_NAME_LEN)] {
            assert!(SegmentName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "/a",
            ".hidden",
            "sp ace",
            "nul\0",
            "é",
            &"n".repeat(MAX_SEGMENT_NAME_LEN + 1),
        ] {
            let err = SegmentName::new(bad).unwrap_err();
            assert!(err.to_string().contains("segment name"), "{err}");
        }
    }

    #[test]
    fn ownership_and_mode_are_checked() {
        let name = SegmentName::new("x").unwrap();
        assert!(check_ownership(&name, 1000, 0o100600, 1000).is_ok());
        assert!(check_ownership(&name, 1000, 0o100640, 1000).is_ok());
        let other = check_ownership(&name, 0, 0o600, 1000).unwrap_err();
        assert!(other.to_string().contains("belongs to uid 0"), "{other}");
        let writable = check_ownership(&name, 1000, 0o666, 1000).unwrap_err();
        assert!(writable.to_string().contains("mode 666"), "{writable}");
        let unreadable = check_ownership(&name, 1000, 0o200, 1000).unwrap_err();
        assert!(unreadable.to_string().contains("mode 200"), "{unreadable}");
    }
}
