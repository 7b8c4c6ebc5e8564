//! The FFmpeg backend of bufpool: decoders that write every picture straight into pool memory,
//! in private memory or in a shared-memory pool another process reads.
//!
//! - [`PoolDecoder`] opens a file with libavformat and decodes its video with libavcodec, with
//!   the pool as the decoder's frame allocator (`get_buffer2`): no picture is copied, and a
//!   buffer the decoder still references (a reference frame) is not handed back before FFmpeg
//!   lets go.
//! - [`layout_for`] lays a picture out in a buffer by FFmpeg's rules (aligned dimensions, line
//!   sizes, plane alignment, padding); [`describe`] describes every plane of a decoded picture.
//! - [`DecodedFrame::into_pool`] wraps a picture the pool did not allocate (a decoder without
//!   direct rendering, a filter) as a buffer on the filled queue, without a copy.
//! - [`write_clip`] encodes a synthetic clip in-process, so tests, benchmarks and the demo need
//!   no media file.
//!
//! Built against the system FFmpeg through `ffmpeg-sys-next`; what changed between FFmpeg
//! releases is gated on the version it detected (`cfg(ffmpeg_6_0)` and so on).

// FFmpeg is driven through sequences of C calls on the same objects (allocate, configure, open;
// read, send, receive). Their safety argument is one per sequence, written on each block, so the
// workspace's one-operation-per-block rule is relaxed here and only here.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod clip;
mod decoder;
mod error;
mod layout;
mod wrap;

pub use clip::{ClipCodec, pattern, write_clip};
pub use decoder::{AllocatorCounts, DecodedFrame, DecoderOptions, PoolDecoder, StreamInfo};
pub use error::{ClipError, DecodeError, FfmpegError};
/// The FFmpeg bindings this crate is built on, for callers that make their own frames.
pub use ffmpeg_sys_next as ffi;
pub use layout::{FrameLayout, PLANE_ALIGN, describe, fourcc, layout_for, plane_rows};
pub use wrap::WrapError;
