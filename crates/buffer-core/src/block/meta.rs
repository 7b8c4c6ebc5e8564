//! The fixed-size record a producer writes beside each buffer and a consumer reads.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::sync::shm_safe::{ShmCell, ShmSafe};

/// Most planes a [`VideoFormat`] describes (FFmpeg's formats use at most 4).
pub const MAX_PLANES: usize = 4;

/// A pixel format as a FourCC code (the DRM convention, e.g. `AB24` for 8-bit RGBA in memory
/// order); `PixelFormat::NONE` when the buffer holds no video.
///
/// # Examples
///
/// ```
/// use buffer_core::PixelFormat;
///
/// assert_eq!(PixelFormat::RGBA.to_string(), "AB24");
/// assert_eq!(PixelFormat::from_fourcc(*b"NV12"), PixelFormat::NV12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct PixelFormat(pub u32);

impl PixelFormat {
    /// No video in this buffer.
    pub const NONE: PixelFormat = PixelFormat(0);
    /// 8-bit R, G, B, A bytes in memory order (DRM `ABGR8888`, FourCC `AB24`).
    pub const RGBA: PixelFormat = PixelFormat::from_fourcc(*b"AB24");
    /// 8-bit B, G, R, X bytes in memory order (DRM `XRGB8888`, FourCC `XR24`).
    pub const XRGB: PixelFormat = PixelFormat::from_fourcc(*b"XR24");
    /// Planar Y, then interleaved U/V at half resolution (FourCC `NV12`).
    pub const NV12: PixelFormat = PixelFormat::from_fourcc(*b"NV12");
    /// Planar Y, U, V, with U and V at half resolution (FourCC `YU12`, FFmpeg's `yuv420p`).
    pub const YUV420: PixelFormat = PixelFormat::from_fourcc(*b"YU12");

    /// The format with this FourCC code.
    pub const fn from_fourcc(code: [u8; 4]) -> PixelFormat {
        PixelFormat(u32::from_le_bytes(code))
    }

    /// The FourCC code's four bytes.
    pub const fn fourcc(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PixelFormat::NONE {
            return f.write_str("none");
        }
        for byte in self.fourcc() {
            let c = if byte.is_ascii_graphic() {
                byte as char
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Where one plane of a picture lies in its buffer.
///
/// # Examples
///
/// ```
/// use buffer_core::Plane;
///
/// let luma = Plane { offset: 0, stride: 1920, rows: 1080 };
/// assert_eq!(luma.end(), 1920 * 1080);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Plane {
    /// Byte offset of the plane's first row from the start of the buffer.
    pub offset: u64,
    /// Bytes from one row to the next (FFmpeg's `linesize`, DRM's `pitch`).
    pub stride: u32,
    /// Number of rows in this plane (half the picture height for 4:2:0 chroma).
    pub rows: u32,
}

impl Plane {
    /// One past the last byte of the plane (`u64::MAX` if that does not fit: a record read from
    /// shared memory can hold anything).
    pub const fn end(&self) -> u64 {
        self.offset
            .saturating_add(self.stride as u64 * self.rows as u64)
    }
}

/// What picture a buffer holds: pixel format, size, and the layout of each plane.
///
/// # Examples
///
/// ```
/// use buffer_core::{PixelFormat, VideoFormat};
///
/// let rgba = VideoFormat::packed(PixelFormat::RGBA, 1920, 1080, 4);
/// assert_eq!(rgba.planes().len(), 1);
/// assert_eq!(rgba.planes()[0].stride, 1920 * 4);
/// assert_eq!(rgba.byte_len(), 1920 * 1080 * 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct VideoFormat {
    /// Pixel format.
    pub pixel_format: PixelFormat,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// How many entries of `plane_slots` are used.
    pub plane_count: u32,
    /// Layout of each plane; only the first `plane_count` matter (the others are unspecified).
    pub plane_slots: [Plane; MAX_PLANES],
}

impl VideoFormat {
    /// A single-plane picture with `bytes_per_pixel` bytes per pixel and no row padding.
    pub const fn packed(
        pixel_format: PixelFormat,
        width: u32,
        height: u32,
        bytes_per_pixel: u32,
    ) -> VideoFormat {
        let mut plane_slots = [Plane {
            offset: 0,
            stride: 0,
            rows: 0,
        }; MAX_PLANES];
        plane_slots[0] = Plane {
            offset: 0,
            stride: width * bytes_per_pixel,
            rows: height,
        };
        VideoFormat {
            pixel_format,
            width,
            height,
            plane_count: 1,
            plane_slots,
        }
    }

    /// The planes in use (at most [`MAX_PLANES`], even if `plane_count` says more).
    pub fn planes(&self) -> &[Plane] {
        let count = (self.plane_count as usize).min(MAX_PLANES);
        &self.plane_slots[..count]
    }

    /// Bytes from the buffer's start to the end of the last plane: the least a buffer must hold.
    pub fn byte_len(&self) -> u64 {
        self.planes().iter().map(Plane::end).max().unwrap_or(0)
    }
}

/// The record stored beside each buffer in the pool block: timestamp, sequence number, bytes used
/// and the picture's layout. The producer writes it through its
/// [`WriteGuard`](crate::WriteGuard); the consumer reads it through its
/// [`ReadGuard`](crate::ReadGuard).
///
/// Acquiring a free buffer resets the record: zero timestamp and sequence, no video
/// (`plane_count` 0), and the whole buffer counted as used.
///
/// # Examples
///
/// ```
/// use buffer_core::{FrameMeta, PixelFormat, VideoFormat};
///
/// let mut meta = FrameMeta::default();
/// meta.sequence = 7;
/// meta.video = VideoFormat::packed(PixelFormat::RGBA, 64, 32, 4);
/// assert_eq!(meta.bytes_used(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FrameMeta {
    /// Presentation or capture time in nanoseconds, in whatever clock the pipeline agrees on.
    pub timestamp_ns: i64,
    /// The producer's frame number.
    pub sequence: u64,
    pub(crate) bytes_used: u64,
    /// The picture held, if any.
    pub video: VideoFormat,
}

impl FrameMeta {
    /// How many bytes from the buffer's start the producer filled; set it with
    /// [`WriteGuard::set_bytes_used`](crate::WriteGuard::set_bytes_used).
    pub fn bytes_used(&self) -> u64 {
        self.bytes_used
    }

    /// Resets the record for a buffer of `size` bytes: zero timestamp and sequence, the whole
    /// buffer used, no video (pixel format none, 0×0, no planes). The plane entries past
    /// `plane_count` are left as they were: [`VideoFormat::planes`] never shows them, and leaving
    /// them saves stores on the acquire path.
    #[inline(always)]
    pub(crate) fn reset(&mut self, size: u64) {
        self.timestamp_ns = 0;
        self.sequence = 0;
        self.bytes_used = size;
        self.video.pixel_format = PixelFormat::NONE;
        self.video.width = 0;
        self.video.height = 0;
        self.video.plane_count = 0;
    }
}

/// A held buffer's metadata record, for its writer ([`WriteGuard::meta_mut`](crate::WriteGuard::meta_mut),
/// [`BufferHold::meta_mut`](crate::BufferHold::meta_mut)): a copy of the record, written back
/// to the pool when this is dropped. The record lives in memory other processes map; working on
/// a copy means no reference into that memory is ever handed out, so a process scribbling on it
/// cannot make this one's reads undefined behaviour.
///
/// # Examples
///
/// ```
/// use buffer_core::{BufferPool, PoolConfig, Wait};
///
/// let pool = BufferPool::with_heap_buffers(PoolConfig::new("m"), 1, 64)?;
/// let mut frame = pool.acquire_free(Wait::NoWait)?;
/// frame.meta_mut().sequence = 7; // written back at the end of the statement
/// {
///     let mut meta = frame.meta_mut();
///     meta.timestamp_ns = 1_000;
///     meta.sequence += 1;
/// } // written back here
/// assert_eq!((frame.meta().sequence, frame.meta().timestamp_ns), (8, 1_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MetaMut<'g> {
    record: &'g ShmCell<FrameMeta>,
    copy: FrameMeta,
}

impl<'g> MetaMut<'g> {
    /// A copy of `record` to edit; only for the holder of its buffer.
    pub(crate) fn new(record: &'g ShmCell<FrameMeta>) -> MetaMut<'g> {
        MetaMut {
            record,
            copy: record.load(),
        }
    }
}

impl Deref for MetaMut<'_> {
    type Target = FrameMeta;
    fn deref(&self) -> &FrameMeta {
        &self.copy
    }
}

impl DerefMut for MetaMut<'_> {
    fn deref_mut(&mut self) -> &mut FrameMeta {
        &mut self.copy
    }
}

impl Drop for MetaMut<'_> {
    fn drop(&mut self) {
        self.record.store(self.copy);
    }
}

impl fmt::Debug for MetaMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.copy.fmt(f)
    }
}

// SAFETY: `#[repr(transparent)]` over `u32`.
unsafe impl ShmSafe for PixelFormat {}
// SAFETY: `#[repr(C)]`, fields `u64`, `u32`, `u32`.
unsafe impl ShmSafe for Plane {}
// SAFETY: `#[repr(C)]`, fields `PixelFormat`, three `u32` and `[Plane; 4]`, all `ShmSafe`.
unsafe impl ShmSafe for VideoFormat {}
// SAFETY: `#[repr(C)]`, fields `i64`, `u64`, `u64` and `VideoFormat`, all `ShmSafe`.
unsafe impl ShmSafe for FrameMeta {}
