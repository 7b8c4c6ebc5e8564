//! Where a decoder's picture goes in one pool buffer, by FFmpeg's rules, and how a decoded
//! picture is described to consumers: every plane's offset, line size and rows.

use std::ffi::c_int;

use buffer_core::{MAX_PLANES, PixelFormat, Plane, VideoFormat};
use ffmpeg_sys_next::{
    AV_INPUT_BUFFER_PADDING_SIZE, AVCodecContext, AVFrame, AVPixelFormat, av_image_fill_linesizes,
    av_image_fill_plane_sizes, av_pix_fmt_count_planes, av_pix_fmt_desc_get,
    avcodec_align_dimensions2,
};

use crate::error::{FfmpegError, check};

/// Alignment of every plane's start and of every line size: the most any CPU FFmpeg supports
/// asks for (AVX-512), as FFmpeg's own `STRIDE_ALIGN`.
pub const PLANE_ALIGN: usize = 64;
/// Bytes FFmpeg's own allocator adds after each plane, which some decoders' optimised code
/// reads or writes past the last line.
const PLANE_SLACK: usize = 16;

/// How one picture lies in a pool buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    /// Line size of each plane (0 for planes the format does not have).
    pub linesize: [c_int; MAX_PLANES],
    /// Offset of each plane from the buffer's start.
    pub offset: [usize; MAX_PLANES],
    /// Planes the format has.
    pub planes: usize,
    /// Bytes the buffer must hold: the planes, their slack, and FFmpeg's input padding.
    pub size: usize,
}

const fn align_up(value: usize, align: usize) -> usize {
    value.div_ceil(align) * align
}

/// The layout of a `width`×`height` picture of `format` for the decoder `ctx`, as FFmpeg's
/// default allocator computes it: dimensions aligned by `avcodec_align_dimensions2`, line sizes
/// widened until each is a multiple of both the codec's line alignment and [`PLANE_ALIGN`],
/// planes 64-byte aligned with slack after each, and `AV_INPUT_BUFFER_PADDING_SIZE` at the end.
///
/// # Safety
///
/// `ctx` must be an open decoder context with direct rendering (`AV_CODEC_CAP_DR1`), as
/// `avcodec_align_dimensions2` requires.
pub unsafe fn layout_for(
    ctx: *mut AVCodecContext,
    format: AVPixelFormat,
    width: c_int,
    height: c_int,
) -> Result<FrameLayout, FfmpegError> {
    let (mut w, mut h) = (width, height);
    let mut linesize_align = [0 as c_int; 8];
    // SAFETY: `ctx` is an open DR1 decoder (caller); the out-pointers are valid locals and the
    // alignment array has the 8 entries FFmpeg writes.
    unsafe { avcodec_align_dimensions2(ctx, &mut w, &mut h, linesize_align.as_mut_ptr()) };
    let mut linesize = [0 as c_int; MAX_PLANES];
    loop {
        // SAFETY: `linesize` has the 4 entries FFmpeg writes.
        check("av_image_fill_linesizes", unsafe {
            av_image_fill_linesizes(linesize.as_mut_ptr(), format, w)
        })?;
        let unaligned = linesize.iter().zip(linesize_align).any(|(&size, align)| {
            let align = (align.max(1) as usize).max(PLANE_ALIGN);
            !(size as usize).is_multiple_of(align)
        });
        if !unaligned {
            break;
        }
        // As FFmpeg's `video_get_buffer`: widen by the lowest set bit until aligned.
        w += w & !(w - 1);
    }
    let mut sizes = [0usize; MAX_PLANES];
    let lines = linesize.map(|size| size as isize);
    // SAFETY: `sizes` has the 4 entries FFmpeg writes; `lines` holds 4 line sizes.
    check("av_image_fill_plane_sizes", unsafe {
        av_image_fill_plane_sizes(sizes.as_mut_ptr(), format, h, lines.as_ptr())
    })?;
    // SAFETY: any format value is accepted (invalid ones give a negative count).
    let planes = check("av_pix_fmt_count_planes", unsafe {
        av_pix_fmt_count_planes(format)
    })? as usize;
    let mut offset = [0usize; MAX_PLANES];
    let mut end = 0;
    for plane in 0..planes.min(MAX_PLANES) {
        offset[plane] = align_up(end, PLANE_ALIGN);
        end = offset[plane] + sizes[plane] + PLANE_SLACK;
    }
    Ok(FrameLayout {
        linesize,
        offset,
        planes,
        size: end + AV_INPUT_BUFFER_PADDING_SIZE as usize,
    })
}

/// Rows of plane `plane` of a picture `height` rows high: chroma planes (1 and 2) of subsampled
/// formats have fewer (half, rounded up, for 4:2:0), as `av_image_fill_pointers` counts them.
pub fn plane_rows(format: AVPixelFormat, plane: usize, height: c_int) -> u32 {
    // SAFETY: returns null for an unknown format, a static descriptor otherwise.
    let desc = unsafe { av_pix_fmt_desc_get(format) };
    let log2_chroma_h = if desc.is_null() {
        0
    } else {
        // SAFETY: a non-null descriptor is a static FFmpeg table entry.
        unsafe { (*desc).log2_chroma_h }
    };
    let height = height.max(0) as u32;
    if plane == 1 || plane == 2 {
        // AV_CEIL_RSHIFT
        height.div_ceil(1 << log2_chroma_h)
    } else {
        height
    }
}

/// The FourCC of an FFmpeg pixel format, where one matches ([`PixelFormat::NONE`] otherwise;
/// the planes are described either way).
pub fn fourcc(format: AVPixelFormat) -> PixelFormat {
    use AVPixelFormat::*;
    match format {
        AV_PIX_FMT_YUV420P | AV_PIX_FMT_YUVJ420P => PixelFormat::YUV420,
        AV_PIX_FMT_NV12 => PixelFormat::NV12,
        AV_PIX_FMT_RGBA => PixelFormat::RGBA,
        AV_PIX_FMT_BGR0 => PixelFormat::XRGB,
        AV_PIX_FMT_YUV422P | AV_PIX_FMT_YUVJ422P => PixelFormat::from_fourcc(*b"YU16"),
        AV_PIX_FMT_YUV444P | AV_PIX_FMT_YUVJ444P => PixelFormat::from_fourcc(*b"YU24"),
        AV_PIX_FMT_GRAY8 => PixelFormat::from_fourcc(*b"R8  "),
        _ => PixelFormat::NONE,
    }
}

/// Describes the picture in `frame` relative to `base`, the address of the buffer holding it:
/// pixel format, size, and each plane's offset, line size and rows. `None` if a plane lies
/// before `base` or has a negative line size (a bottom-up picture).
///
/// # Safety
///
/// `frame` must point to a valid video `AVFrame`.
pub unsafe fn describe(frame: *const AVFrame, base: usize) -> Option<VideoFormat> {
    // SAFETY: valid frame (caller).
    let frame = unsafe { &*frame };
    // SAFETY: a decoded video frame's `format` holds an `AVPixelFormat` value.
    let format: AVPixelFormat =
        unsafe { std::mem::transmute::<c_int, AVPixelFormat>(frame.format) };
    // SAFETY: any format value is accepted.
    let planes = unsafe { av_pix_fmt_count_planes(format) }.max(0) as usize;
    let mut video = VideoFormat {
        pixel_format: fourcc(format),
        width: frame.width.max(0) as u32,
        height: frame.height.max(0) as u32,
        plane_count: planes.min(MAX_PLANES) as u32,
        plane_slots: [Plane::default(); MAX_PLANES],
    };
    for plane in 0..planes.min(MAX_PLANES) {
        let offset = (frame.data[plane] as usize).checked_sub(base)?;
        let stride = u32::try_from(frame.linesize[plane]).ok()?;
        video.plane_slots[plane] = Plane {
            offset: offset as u64,
            stride,
            rows: plane_rows(format, plane, frame.height),
        };
    }
    Some(video)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroma_planes_of_4_2_0_have_half_the_rows_rounded_up() {
        let yuv420 = AVPixelFormat::AV_PIX_FMT_YUV420P;
        assert_eq!(plane_rows(yuv420, 0, 1081), 1081);
        assert_eq!(plane_rows(yuv420, 1, 1081), 541);
        assert_eq!(plane_rows(yuv420, 2, 1080), 540);
        assert_eq!(plane_rows(AVPixelFormat::AV_PIX_FMT_YUV444P, 1, 1080), 1080);
        assert_eq!(plane_rows(AVPixelFormat::AV_PIX_FMT_NV12, 1, 1080), 540);
    }

    #[test]
    fn known_formats_have_their_fourcc() {
        assert_eq!(
            fourcc(AVPixelFormat::AV_PIX_FMT_YUV420P),
            PixelFormat::YUV420
        );
        assert_eq!(fourcc(AVPixelFormat::AV_PIX_FMT_NV12), PixelFormat::NV12);
        assert_eq!(fourcc(AVPixelFormat::AV_PIX_FMT_P010LE), PixelFormat::NONE);
    }
}
