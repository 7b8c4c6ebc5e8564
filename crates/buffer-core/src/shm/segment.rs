//! Named POSIX shared-memory segments (`/dev/shm/bufpool.NAME`) that hold a shared pool: its
//! block followed by its buffers.
//!
//! A segment is created without a name (`O_TMPFILE`), filled, and only then linked under its
//! name, so no process ever attaches to a pool that is still being built, and a creator that
//! dies half-way leaves nothing behind.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use crate::shm::region::Region;

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

    /// The segment's file name in `/dev/shm`.
    fn file_name(&self) -> String {
        format!("{PREFIX}{}", self.0)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Operations on segments.
///
/// Every name is looked up in `/dev/shm` through a descriptor of that directory and opened with
/// `O_NOFOLLOW`: a symbolic link planted under a pool's name (by another user, into another pool
/// or a file outside `/dev/shm`) is refused, never followed. What was opened is checked, not
/// what the name pointed to: a regular file with one link, owned by this user, that no other
/// user may write.
pub(crate) struct Segment;

/// A segment mapped by this process: its memory, and the open file that holds this
/// attachment's liveness lock (see the `liveness` module).
pub(crate) struct Mapped {
    pub(crate) region: Region,
    pub(crate) file: OwnedFd,
}

/// A new segment that has no name yet: nobody can attach to it until
/// [`Unnamed::link`] gives it its name, after the pool in it is complete.
pub(crate) struct Unnamed {
    dir: OwnedFd,
    name: SegmentName,
}

impl Segment {
    /// Creates an unnamed segment of `len` zeroed bytes with `mode` for `name` (failing if the
    /// name exists) and maps it. The creator fills the pool, then links the name.
    pub(crate) fn create(
        name: &SegmentName,
        len: usize,
        mode: u32,
    ) -> Result<(Mapped, Unnamed), SegmentError> {
        let fail = |action: &'static str| system(name, action);
        let dir = shm_dir().map_err(fail("find the directory of"))?;
        if rustix::fs::statat(&dir, name.file_name(), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(SegmentError::Exists { name: name.clone() });
        }
        // An unnamed file: if this process dies before the pool is complete, it goes with it.
        let file = rustix::fs::openat(
            &dir,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(fail("create (O_TMPFILE in /dev/shm)"))?;
        // The umask may have cleared bits of the mode: set it exactly.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(fail("set the mode of"))?;
        rustix::fs::ftruncate(&file, len as u64).map_err(fail("size"))?;
        let region = map(&file, len).map_err(fail("map"))?;
        let unnamed = Unnamed {
            dir,
            name: name.clone(),
        };
        Ok((Mapped { region, file }, unnamed))
    }

    /// Opens and maps segment `name`, after checking what it is (see [`Segment`]).
    pub(crate) fn open(name: &SegmentName) -> Result<Mapped, OpenError> {
        let fail = |action: &'static str| {
            let fail = system(name, action);
            move |errno| OpenError::System(fail(errno))
        };
        let permission = OpenError::Refused;
        let dir = shm_dir().map_err(fail("find the directory of"))?;
        // Non-blocking: a FIFO planted under the name must not hang the open.
        let file = rustix::fs::openat(
            &dir,
            name.file_name(),
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::NOENT => OpenError::NotFound,
            Errno::ACCESS => permission("this user may not open it".into()),
            Errno::LOOP => {
                permission("it is a symbolic link, which a pool segment never is; remove it".into())
            }
            errno => fail("open")(errno),
        })?;
        let stat = rustix::fs::fstat(&file).map_err(fail("inspect"))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(permission(
                "it is not a regular file, which a pool segment always is; remove it".into(),
            ));
        }
        if stat.st_nlink != 1 {
            return Err(permission(format!(
                "it has {} names (hard links), a pool segment has one; remove them",
                stat.st_nlink
            )));
        }
        check_ownership(
            stat.st_uid,
            stat.st_mode,
            rustix::process::geteuid().as_raw(),
        )
        .map_err(permission)?;
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        if len == 0 {
            return Err(OpenError::Empty);
        }
        let region = map(&file, len).map_err(fail("map"))?;
        Ok(Mapped { region, file })
    }

    /// Removes segment `name` from the namespace if it is still `file` (mappings stay valid).
    /// A name that is gone, or names another file now, is left alone.
    pub(crate) fn unlink(name: &SegmentName, file: BorrowedFd<'_>) {
        let Ok(dir) = shm_dir() else { return };
        let (Ok(named), Ok(ours)) = (
            rustix::fs::statat(&dir, name.file_name(), AtFlags::SYMLINK_NOFOLLOW),
            rustix::fs::fstat(file),
        ) else {
            return;
        };
        if (named.st_dev, named.st_ino) == (ours.st_dev, ours.st_ino) {
            let _ = rustix::fs::unlinkat(&dir, name.file_name(), AtFlags::empty());
        }
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

impl Unnamed {
    /// Gives the segment behind `file` its name, making the pool in it visible to other
    /// processes; `Exists` if another segment took the name meanwhile.
    pub(crate) fn link(&self, file: BorrowedFd<'_>) -> Result<(), SegmentError> {
        let exists = || SegmentError::Exists {
            name: self.name.clone(),
        };
        let target = self.name.file_name();
        // `AT_EMPTY_PATH` needs CAP_DAC_READ_SEARCH on older kernels; the descriptor's entry in
        // /proc links the same file without it.
        match rustix::fs::linkat(file, "", &self.dir, &target, AtFlags::EMPTY_PATH) {
            Ok(()) => return Ok(()),
            Err(Errno::EXIST) => return Err(exists()),
            Err(_) => {}
        }
        let by_proc = format!("/proc/self/fd/{}", file.as_raw_fd());
        match rustix::fs::linkat(
            rustix::fs::CWD,
            by_proc.as_str(),
            &self.dir,
            &target,
            AtFlags::SYMLINK_FOLLOW,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(exists()),
            Err(errno) => Err(system(&self.name, "name (link into /dev/shm)")(errno)),
        }
    }
}

/// `/dev/shm`, opened as a directory to look names up in.
fn shm_dir() -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        SHM_DIR,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The error of a failed system call doing `action` on segment `name`.
fn system(name: &SegmentName, action: &'static str) -> impl Fn(Errno) -> SegmentError {
    let name = name.clone();
    move |errno: Errno| SegmentError::System {
        name: name.clone(),
        action,
        code: errno.raw_os_error(),
    }
}

/// Whether `mode` is one a pool segment may have: its owner reads and writes it, nobody else may
/// write it (others could corrupt it at will), and it has no bits beyond the permissions.
pub(crate) fn mode_is_safe(mode: u32) -> bool {
    mode & !0o777 == 0 && mode & 0o600 == 0o600 && mode & 0o022 == 0
}

/// Refuses, saying why, a segment that another user owns, or that users other than its owner may
/// write (they could corrupt it at will), or that its owner cannot read and write.
pub(crate) fn check_ownership(owner: u32, mode: u32, me: u32) -> Result<(), String> {
    if owner != me {
        return Err(format!(
            "it belongs to uid {owner}, not to this user (uid {me}); attach as its owner"
        ));
    }
    let mode = mode & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "its mode {mode:03o} lets other users write it; it must be 0600"
        ));
    }
    if mode & 0o600 != 0o600 {
        return Err(format!(
            "its mode {mode:03o} does not let its owner read and write it; it must be 0600"
        ));
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

/// A shared-memory segment name is not usable.
///
/// # Examples
///
/// ```
/// use buffer_core::SegmentName;
///
/// let err = SegmentName::new("a/b").unwrap_err();
/// assert!(err.to_string().contains("no '/'"));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("segment name {name:?} is not usable: {reason}")]
pub struct SegmentNameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The system refused an operation on a shared-memory segment.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SegmentError {
    /// A segment of that name exists already.
    #[error(
        "shared-memory segment '{name}' exists already (/dev/shm/bufpool.{name}); pick another name, or remove it if its pool is gone"
    )]
    Exists {
        /// The segment's name.
        name: SegmentName,
    },
    /// A system call failed.
    #[error("could not {action} shared-memory segment '{name}': {}", std::io::Error::from_raw_os_error(*.code))]
    System {
        /// The segment's name.
        name: SegmentName,
        /// What was being done.
        action: &'static str,
        /// The system's error number.
        code: i32,
    },
}

/// Why an existing segment could not be opened ([`Segment::open`]); the pool layer says it to
/// the user as an `AttachError` naming the segment.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// No segment has the name.
    NotFound,
    /// What the name leads to is not safe to use as a pool segment; why.
    Refused(String),
    /// A system call failed.
    System(SegmentError),
    /// The segment is empty.
    Empty,
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
        assert!(check_ownership(1000, 0o100600, 1000).is_ok());
        assert!(check_ownership(1000, 0o100640, 1000).is_ok());
        let other = check_ownership(0, 0o600, 1000).unwrap_err();
        assert!(other.to_string().contains("belongs to uid 0"), "{other}");
        let writable = check_ownership(1000, 0o666, 1000).unwrap_err();
        assert!(writable.to_string().contains("mode 666"), "{writable}");
        let unreadable = check_ownership(1000, 0o200, 1000).unwrap_err();
        assert!(unreadable.to_string().contains("mode 200"), "{unreadable}");
    }
}
