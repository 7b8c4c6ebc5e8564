//! Errors of the FFmpeg backend.

use std::ffi::c_int;
use std::path::PathBuf;

use buffer_core::AcquireError;

/// An FFmpeg call failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{call} failed: {message} (FFmpeg error {code})")]
pub struct FfmpegError {
    /// The FFmpeg function called.
    pub call: &'static str,
    /// Its negative `AVERROR` code.
    pub code: c_int,
    /// FFmpeg's description of the code.
    pub message: String,
}

impl FfmpegError {
    /// The error of `call` returning `code`.
    pub fn new(call: &'static str, code: c_int) -> FfmpegError {
        let mut text = [0u8; 128];
        // SAFETY: `text` is writable for its length, which is passed; FFmpeg writes a
        // NUL-terminated string into it.
        let found =
            unsafe { ffmpeg_sys_next::av_strerror(code, text.as_mut_ptr().cast(), text.len()) };
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let message = if found == 0 {
            String::from_utf8_lossy(&text[..end]).into_owned()
        } else {
            "unknown error".to_owned()
        };
        FfmpegError {
            call,
            code,
            message,
        }
    }
}

/// Turns an FFmpeg return value into a result: negative values are errors.
pub(crate) fn check(call: &'static str, code: c_int) -> Result<c_int, FfmpegError> {
    if code < 0 {
        Err(FfmpegError::new(call, code))
    } else {
        Ok(code)
    }
}

/// Decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input could not be opened or holds no video.
    #[error("cannot decode {path}: {reason}")]
    Input {
        /// The input.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An FFmpeg call failed.
    #[error(transparent)]
    Ffmpeg(#[from] FfmpegError),
    /// The decoder needed a buffer and the pool had none free within the timeout. The message
    /// names who holds the buffers; release one and call again to continue.
    #[error("the decoder is out of buffers: {0}")]
    Exhausted(#[source] AcquireError),
    /// The pool's buffers are too small for the frames of this stream.
    #[error(
        "pool buffers of {size} bytes are too small for {width}x{height} frames, which need {needed} bytes with FFmpeg's alignment and padding; create the pool with buffers of at least {needed} bytes (`frame_buffer_size`)"
    )]
    BufferTooSmall {
        /// The pool's buffer size.
        size: usize,
        /// Bytes one frame needs.
        needed: usize,
        /// The frame width.
        width: i32,
        /// The frame height.
        height: i32,
    },
}

/// Writing the synthetic test clip failed.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// An FFmpeg call failed.
    #[error(transparent)]
    Ffmpeg(#[from] FfmpegError),
    /// FFmpeg has no encoder for the codec asked for.
    #[error("this FFmpeg has no {codec} encoder")]
    NoEncoder {
        /// The codec.
        codec: &'static str,
    },
    /// The path is not usable.
    #[error("cannot write a clip to {path}: {reason}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
