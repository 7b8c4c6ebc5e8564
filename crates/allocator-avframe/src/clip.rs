//! A synthetic test clip, encoded in-process with libavcodec: for tests, benchmarks and the demo,
//! so that none of them needs a media file or the `ffmpeg` command.

use std::ffi::{CString, c_int};
use std::path::Path;
use std::ptr;

use ffmpeg_sys_next as ff;

use crate::error::{ClipError, FfmpegError, check};

/// The codecs a clip can be encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipCodec {
    /// FFV1: lossless, so decoded pixels equal the source exactly.
    Ffv1,
    /// MPEG-4 part 2: lossy, with predicted frames (the decoder keeps reference frames).
    Mpeg4,
    /// Raw pictures, whose decoder has no direct rendering (its pictures point into the packets).
    Raw,
}

impl ClipCodec {
    fn id(self) -> ff::AVCodecID {
        match self {
            ClipCodec::Ffv1 => ff::AVCodecID::AV_CODEC_ID_FFV1,
            ClipCodec::Mpeg4 => ff::AVCodecID::AV_CODEC_ID_MPEG4,
            ClipCodec::Raw => ff::AVCodecID::AV_CODEC_ID_RAWVIDEO,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ClipCodec::Ffv1 => "ffv1",
            ClipCodec::Mpeg4 => "mpeg4",
            ClipCodec::Raw => "rawvideo",
        }
    }
}

/// The value of sample (`x`, `y`) of plane `plane` of frame `frame` of a synthetic clip (YUV
/// 4:2:0): moving gradients, different in every plane and frame.
pub fn pattern(plane: usize, x: usize, y: usize, frame: u64) -> u8 {
    let f = frame as usize;
    match plane {
        0 => (x + 2 * y + 3 * f) as u8,
        1 => (128 + x / 2 + 5 * f) as u8,
        _ => (64 + y + 7 * f) as u8,
    }
}

/// Owns the FFmpeg objects of an encode and frees them whatever happens.
struct Encoder {
    output: *mut ff::AVFormatContext,
    codec: *mut ff::AVCodecContext,
    frame: *mut ff::AVFrame,
    packet: *mut ff::AVPacket,
    stream: *mut ff::AVStream,
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or owned by this encoder; the free functions accept null
        // (through the pointer-to-pointer forms) and null the pointers out.
        unsafe {
            ff::av_frame_free(&mut self.frame);
            ff::av_packet_free(&mut self.packet);
            ff::avcodec_free_context(&mut self.codec);
        }
        if !self.output.is_null() {
            // SAFETY: the output context is owned here; its I/O context (if opened) is closed
            // before the context is freed.
            unsafe {
                ff::avio_closep(&mut (*self.output).pb);
                ff::avformat_free_context(self.output);
            }
        }
    }
}

/// Writes a `width`×`height` YUV 4:2:0 clip of `frames` frames of [`pattern`] at 25 frames/s
/// to `path`, with `codec`, in the container its extension names (`.mkv`, `.nut`, `.avi`).
pub fn write_clip(
    path: &Path,
    codec: ClipCodec,
    width: u32,
    height: u32,
    frames: u64,
) -> Result<(), ClipError> {
    let bad_path = |reason: &str| ClipError::Path {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let c_path = CString::new(path.to_str().ok_or_else(|| bad_path("not UTF-8"))?)
        .map_err(|_| bad_path("contains a NUL byte"))?;
    let (width, height) = (
        c_int::try_from(width).map_err(|_| bad_path("width too large"))?,
        c_int::try_from(height).map_err(|_| bad_path("height too large"))?,
    );
    let mut enc = Encoder {
        output: ptr::null_mut(),
        codec: ptr::null_mut(),
        frame: ptr::null_mut(),
        packet: ptr::null_mut(),
        stream: ptr::null_mut(),
    };
    // SAFETY: each call gets valid arguments: owned pointers that the `Encoder` frees, a
    // NUL-terminated path, and structures FFmpeg allocated; results are checked before use.
    unsafe {
        check(
            "avformat_alloc_output_context2",
            ff::avformat_alloc_output_context2(
                &mut enc.output,
                ptr::null(),
                ptr::null(),
                c_path.as_ptr(),
            ),
        )?;
        let encoder = ff::avcodec_find_encoder(codec.id());
        if encoder.is_null() {
            return Err(ClipError::NoEncoder {
                codec: codec.name(),
            });
        }
        enc.stream = ff::avformat_new_stream(enc.output, ptr::null());
        enc.codec = ff::avcodec_alloc_context3(encoder);
        enc.frame = ff::av_frame_alloc();
        enc.packet = ff::av_packet_alloc();
        if enc.stream.is_null()
            || enc.codec.is_null()
            || enc.frame.is_null()
            || enc.packet.is_null()
        {
            return Err(FfmpegError::new("allocating the encoder", ff::AVERROR(12)).into());
        }
        let ctx = &mut *enc.codec;
        ctx.width = width;
        ctx.height = height;
        ctx.pix_fmt = ff::AVPixelFormat::AV_PIX_FMT_YUV420P;
        ctx.time_base = ff::AVRational { num: 1, den: 25 };
        ctx.framerate = ff::AVRational { num: 25, den: 1 };
        ctx.gop_size = 12;
        ctx.bit_rate = 2_000_000;
        if (*(*enc.output).oformat).flags & ff::AVFMT_GLOBALHEADER != 0 {
            ctx.flags |= ff::AV_CODEC_FLAG_GLOBAL_HEADER as c_int;
        }
        check(
            "avcodec_open2",
            ff::avcodec_open2(enc.codec, encoder, ptr::null_mut()),
        )?;
        check(
            "avcodec_parameters_from_context",
            ff::avcodec_parameters_from_context((*enc.stream).codecpar, enc.codec),
        )?;
        (*enc.stream).time_base = ctx.time_base;
        check(
            "avio_open",
            ff::avio_open(&mut (*enc.output).pb, c_path.as_ptr(), ff::AVIO_FLAG_WRITE),
        )?;
        check(
            "avformat_write_header",
            ff::avformat_write_header(enc.output, ptr::null_mut()),
        )?;
        let frame = &mut *enc.frame;
        frame.format = ff::AVPixelFormat::AV_PIX_FMT_YUV420P as c_int;
        frame.width = width;
        frame.height = height;
        check("av_frame_get_buffer", ff::av_frame_get_buffer(enc.frame, 0))?;
        for index in 0..frames {
            check(
                "av_frame_make_writable",
                ff::av_frame_make_writable(enc.frame),
            )?;
            for plane in 0..3 {
                let (w, h) = if plane == 0 {
                    (width as usize, height as usize)
                } else {
                    ((width as usize).div_ceil(2), (height as usize).div_ceil(2))
                };
                for y in 0..h {
                    let row = frame.data[plane].add(y * frame.linesize[plane] as usize);
                    for x in 0..w {
                        *row.add(x) = pattern(plane, x, y, index);
                    }
                }
            }
            frame.pts = index as i64;
            check(
                "avcodec_send_frame",
                ff::avcodec_send_frame(enc.codec, enc.frame),
            )?;
            write_packets(&enc)?;
        }
        check(
            "avcodec_send_frame",
            ff::avcodec_send_frame(enc.codec, ptr::null()),
        )?;
        write_packets(&enc)?;
        check("av_write_trailer", ff::av_write_trailer(enc.output))?;
    }
    Ok(())
}

/// Moves every packet the encoder has ready into the file.
///
/// # Safety
///
/// `enc` must hold an open encoder and an output whose header was written.
unsafe fn write_packets(enc: &Encoder) -> Result<(), FfmpegError> {
    loop {
        // SAFETY: open encoder and allocated packet (caller).
        let received = unsafe { ff::avcodec_receive_packet(enc.codec, enc.packet) };
        if received == ff::AVERROR(libc_eagain()) || received == ff::AVERROR_EOF {
            return Ok(());
        }
        check("avcodec_receive_packet", received)?;
        // SAFETY: the packet holds a packet of this encoder; the stream belongs to the output.
        unsafe {
            ff::av_packet_rescale_ts(enc.packet, (*enc.codec).time_base, (*enc.stream).time_base);
            (*enc.packet).stream_index = (*enc.stream).index;
        }
        // SAFETY: as above; the muxer takes the packet's reference (and unreferences it).
        check("av_interleaved_write_frame", unsafe {
            ff::av_interleaved_write_frame(enc.output, enc.packet)
        })?;
    }
}

/// `EAGAIN` on Linux.
pub(crate) const fn libc_eagain() -> c_int {
    11
}
