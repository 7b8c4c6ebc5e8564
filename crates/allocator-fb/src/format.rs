//! The pixel formats a display scans out ([`ScanOutFormat`]) and frame sizes that scan-out memory
//! is laid out in.

use drm::buffer::DrmFourcc;

/// The largest width or height accepted: what current display engines scan out at most.
pub const MAX_DIMENSION: u32 = 16384;

/// A packed RGB pixel format a display can scan out from a CPU-drawn buffer: how the display
/// engine reads the memory (its DRM fourcc, bytes per pixel, colour depth). Not to be confused
/// with [`buffer_core::PixelFormat`], the FourCC that a frame's metadata carries, which names any
/// format a producer may write.
///
/// # Examples
///
/// ```
/// use allocator_fb::ScanOutFormat;
///
/// let format = ScanOutFormat::from_fourcc(*b"XR24").unwrap();
/// assert_eq!(format, ScanOutFormat::Xrgb8888);
/// assert_eq!(format.bytes_per_pixel(), 4);
/// assert!(ScanOutFormat::from_fourcc(*b"NV12").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanOutFormat {
    /// 32 bits per pixel: blue, green, red bytes in memory, then one unused byte.
    Xrgb8888,
    /// 32 bits per pixel: blue, green, red, alpha bytes in memory.
    Argb8888,
    /// 16 bits per pixel: 5 bits red, 6 green, 5 blue (little-endian).
    Rgb565,
}

/// A pixel format that no scan-out path here supports.
///
/// # Examples
///
/// ```
/// use allocator_fb::ScanOutFormat;
///
/// let err = ScanOutFormat::from_fourcc(*b"YUYV").unwrap_err();
/// assert!(err.to_string().contains("YUYV"));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "pixel format {fourcc} is not supported for scan-out buffers: use XR24 (XRGB8888), AR24 (ARGB8888) or RG16 (RGB565)"
)]
pub struct FormatError {
    /// The format asked for, as printable text.
    pub fourcc: String,
}

impl ScanOutFormat {
    /// The format with DRM fourcc `code` (four ASCII bytes, as in `*b"XR24"`).
    pub fn from_fourcc(code: [u8; 4]) -> Result<ScanOutFormat, FormatError> {
        match &code {
            b"XR24" => Ok(ScanOutFormat::Xrgb8888),
            b"AR24" => Ok(ScanOutFormat::Argb8888),
            b"RG16" => Ok(ScanOutFormat::Rgb565),
            _ => Err(FormatError {
                fourcc: code.escape_ascii().to_string(),
            }),
        }
    }

    /// The DRM fourcc of the format.
    pub fn fourcc(self) -> DrmFourcc {
        match self {
            ScanOutFormat::Xrgb8888 => DrmFourcc::Xrgb8888,
            ScanOutFormat::Argb8888 => DrmFourcc::Argb8888,
            ScanOutFormat::Rgb565 => DrmFourcc::Rgb565,
        }
    }

    /// Bytes one pixel takes.
    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            ScanOutFormat::Xrgb8888 | ScanOutFormat::Argb8888 => 4,
            ScanOutFormat::Rgb565 => 2,
        }
    }

    /// Colour depth in bits, as the legacy add-framebuffer call wants it.
    pub fn depth(self) -> u32 {
        match self {
            ScanOutFormat::Xrgb8888 => 24,
            ScanOutFormat::Argb8888 => 32,
            ScanOutFormat::Rgb565 => 16,
        }
    }

    /// The format of a framebuffer with `bits_per_pixel` and these (offset, length) colour
    /// fields, as fbdev describes its layout; `None` for any other layout.
    pub(crate) fn from_fbdev(
        bits_per_pixel: u32,
        red: (u32, u32),
        green: (u32, u32),
        blue: (u32, u32),
        alpha: (u32, u32),
    ) -> Option<ScanOutFormat> {
        match (bits_per_pixel, red, green, blue, alpha) {
            (32, (16, 8), (8, 8), (0, 8), (_, 0)) => Some(ScanOutFormat::Xrgb8888),
            (32, (16, 8), (8, 8), (0, 8), (24, 8)) => Some(ScanOutFormat::Argb8888),
            (16, (11, 5), (5, 6), (0, 5), (_, 0)) => Some(ScanOutFormat::Rgb565),
            _ => None,
        }
    }
}

/// The size of one frame: width and height in pixels of a format.
///
/// # Examples
///
/// ```
/// use allocator_fb::{FrameGeometry, ScanOutFormat};
///
/// let frame = FrameGeometry::new(1280, 720, ScanOutFormat::Xrgb8888).unwrap();
/// assert_eq!(frame.min_stride(), 5120);
/// assert_eq!(frame.min_size(), 5120 * 720);
/// assert!(FrameGeometry::new(0, 720, ScanOutFormat::Xrgb8888).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameGeometry {
    width: u32,
    height: u32,
    format: ScanOutFormat,
}

/// A frame size that no display can scan out.
///
/// # Examples
///
/// ```
/// use allocator_fb::{FrameGeometry, GeometryError, ScanOutFormat};
///
/// let err = FrameGeometry::new(100_000, 10, ScanOutFormat::Rgb565).unwrap_err();
/// assert_eq!(err, GeometryError { width: 100_000, height: 10 });
/// ```
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error(
    "a {width}x{height} frame cannot be scanned out: width and height must be between 1 and {MAX_DIMENSION}"
)]
pub struct GeometryError {
    /// The width asked for.
    pub width: u32,
    /// The height asked for.
    pub height: u32,
}

impl FrameGeometry {
    /// A `width` × `height` frame of `format`; both between 1 and [`MAX_DIMENSION`].
    pub fn new(
        width: u32,
        height: u32,
        format: ScanOutFormat,
    ) -> Result<FrameGeometry, GeometryError> {
        let valid = 1..=MAX_DIMENSION;
        if valid.contains(&width) && valid.contains(&height) {
            Ok(FrameGeometry {
                width,
                height,
                format,
            })
        } else {
            Err(GeometryError { width, height })
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels (rows).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixel format.
    pub fn format(&self) -> ScanOutFormat {
        self.format
    }

    /// Bytes of one row without padding (drivers may pad rows to a larger stride).
    pub fn min_stride(&self) -> usize {
        self.width as usize * self.format.bytes_per_pixel() as usize
    }

    /// Bytes of one frame without row padding.
    pub fn min_size(&self) -> usize {
        self.min_stride() * self.height as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourccs_round_trip() {
        for format in [
            ScanOutFormat::Xrgb8888,
            ScanOutFormat::Argb8888,
            ScanOutFormat::Rgb565,
        ] {
            let code = (format.fourcc() as u32).to_le_bytes();
            assert_eq!(ScanOutFormat::from_fourcc(code).unwrap(), format);
        }
    }

    #[test]
    fn fbdev_layouts_are_recognised() {
        let xrgb = ScanOutFormat::from_fbdev(32, (16, 8), (8, 8), (0, 8), (0, 0));
        assert_eq!(xrgb, Some(ScanOutFormat::Xrgb8888));
        let argb = ScanOutFormat::from_fbdev(32, (16, 8), (8, 8), (0, 8), (24, 8));
        assert_eq!(argb, Some(ScanOutFormat::Argb8888));
        let rgb565 = ScanOutFormat::from_fbdev(16, (11, 5), (5, 6), (0, 5), (0, 0));
        assert_eq!(rgb565, Some(ScanOutFormat::Rgb565));
        assert_eq!(
            ScanOutFormat::from_fbdev(24, (16, 8), (8, 8), (0, 8), (0, 0)),
            None
        );
    }

    #[test]
    fn impossible_geometries_are_rejected() {
        for (w, h) in [(0, 1), (1, 0), (MAX_DIMENSION + 1, 1), (1, u32::MAX)] {
            assert!(FrameGeometry::new(w, h, ScanOutFormat::Xrgb8888).is_err());
        }
        let edge = FrameGeometry::new(MAX_DIMENSION, MAX_DIMENSION, ScanOutFormat::Argb8888);
        assert_eq!(edge.unwrap().min_size(), 16384 * 16384 * 4);
    }
}
