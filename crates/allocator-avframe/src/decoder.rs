//! Decoding a file into a pool: the decoder's frame allocator (`get_buffer2`) is the pool, so
//! every decoded picture is written straight into a pool buffer.
//!
//! # How buffers flow
//!
//! When the decoder asks for a picture buffer, the allocator takes a free buffer from the pool
//! (waiting up to the configured timeout), lays the planes out in it by FFmpeg's rules
//! ([`layout_for`](crate::layout_for)) and hands FFmpeg an `AVBufferRef` over it whose free
//! callback owns the pool buffer ([`BufferHold`]). FFmpeg counts the references: the decoder's
//! own (reference frames it keeps for prediction) and those of the frames it outputs
//! ([`DecodedFrame`]). The buffer goes back to the pool's free queue only when the last of them
//! is dropped, on whichever thread that happens.
//!
//! Decoders without direct rendering (`AV_CODEC_CAP_DR1`) may not be given foreign buffers; for
//! them the allocator calls FFmpeg's default one, and [`PoolDecoder::direct_rendering`] says so.

use std::ffi::{CString, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buffer_core::{BufferHold, BufferId, BufferPool, Port, Published, VideoFormat, Wait};
use ffmpeg_sys_next as ff;
use parking_lot::Mutex;

use crate::clip::libc_eagain;
use crate::error::{DecodeError, FfmpegError, check};
use crate::layout::{describe, layout_for, plane_rows};

/// How a [`PoolDecoder`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// How long the allocator waits for a free buffer before decoding fails with
    /// [`DecodeError::Exhausted`].
    pub timeout: Duration,
    /// Decoder threads (0: FFmpeg picks).
    pub threads: u32,
}

impl Default for DecoderOptions {
    fn default() -> DecoderOptions {
        DecoderOptions {
            timeout: Duration::from_secs(2),
            threads: 0,
        }
    }
}

/// Counts of what the allocator did, to check that every buffer it gave FFmpeg came back.
#[derive(Debug, Default)]
pub struct AllocatorCounts {
    allocations: AtomicU64,
    frees: AtomicU64,
    fallbacks: AtomicU64,
}

impl AllocatorCounts {
    /// Pool buffers handed to FFmpeg.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::SeqCst)
    }

    /// Pool buffers FFmpeg gave back (all references dropped).
    pub fn frees(&self) -> u64 {
        self.frees.load(Ordering::SeqCst)
    }

    /// Pictures allocated by FFmpeg's default allocator (decoders without direct rendering).
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::SeqCst)
    }
}

/// What the allocator callback reaches through the codec context's `opaque`.
struct AllocatorState {
    pool: BufferPool,
    timeout: Duration,
    counts: Arc<AllocatorCounts>,
    /// Why the last allocation failed, for the decode call that saw FFmpeg's error.
    failure: Mutex<Option<DecodeError>>,
}

/// What an `AVBufferRef` over a pool buffer owns: the buffer, and the counts to note its free.
struct BufferOwner {
    /// Locked only to publish the picture (rare); FFmpeg's references share the owner.
    hold: Mutex<BufferHold>,
    counts: Arc<AllocatorCounts>,
}

/// A video decoder reading a file and writing every picture into a pool.
pub struct PoolDecoder {
    input: *mut ff::AVFormatContext,
    codec: *mut ff::AVCodecContext,
    packet: *mut ff::AVPacket,
    frame: *mut ff::AVFrame,
    stream: c_int,
    /// Boxed so that its address, given to FFmpeg, stays put; freed after the codec context.
    /// `None` when FFmpeg's own allocator is used ([`PoolDecoder::with_ffmpeg_allocator`]).
    state: Option<Box<AllocatorState>>,
    /// What the allocator did (all zeros with FFmpeg's own allocator).
    counts: Arc<AllocatorCounts>,
    direct: bool,
    draining: bool,
    /// Pictures output so far.
    output: u64,
    path: PathBuf,
}

// SAFETY: the FFmpeg contexts are owned by the decoder and used only through `&mut self`; the
// allocator state is `Sync`. FFmpeg contexts may move between threads.
unsafe impl Send for PoolDecoder {}

/// What a stream needs from a pool, found by [`PoolDecoder::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Bytes one picture needs in a pool buffer (planes, alignment, padding).
    pub buffer_size: usize,
    /// Whether the decoder writes into pool buffers (direct rendering).
    pub direct_rendering: bool,
}

impl PoolDecoder {
    /// Opens `path`, finds its best video stream, and opens a decoder for it whose pictures
    /// are written into `pool`.
    pub fn open(
        path: &Path,
        pool: &BufferPool,
        options: DecoderOptions,
    ) -> Result<PoolDecoder, DecodeError> {
        let state = Box::new(AllocatorState {
            pool: pool.clone(),
            timeout: options.timeout,
            counts: Arc::new(AllocatorCounts::default()),
            failure: Mutex::new(None),
        });
        PoolDecoder::open_with(path, Some(state), options.threads)
    }

    /// The picture size of `path`'s video and the pool buffer size it needs.
    pub fn probe(path: &Path) -> Result<StreamInfo, DecodeError> {
        let decoder = PoolDecoder::with_ffmpeg_allocator(path, 1)?;
        // SAFETY: the codec context is open.
        let ctx = unsafe { &*decoder.codec };
        let size = if decoder.direct {
            // SAFETY: open DR1 decoder.
            unsafe { layout_for(decoder.codec, ctx.pix_fmt, ctx.width, ctx.height) }?.size
        } else {
            0
        };
        Ok(StreamInfo {
            width: ctx.width.max(0) as u32,
            height: ctx.height.max(0) as u32,
            buffer_size: size,
            direct_rendering: decoder.direct,
        })
    }

    /// Opens `path` with FFmpeg's own frame allocator instead of a pool (pictures are then not
    /// in pool memory; wrap them with [`DecodedFrame::into_pool`]). For comparisons and for
    /// probing.
    pub fn with_ffmpeg_allocator(path: &Path, threads: u32) -> Result<PoolDecoder, DecodeError> {
        PoolDecoder::open_with(path, None, threads)
    }

    fn open_with(
        path: &Path,
        state: Option<Box<AllocatorState>>,
        threads: u32,
    ) -> Result<PoolDecoder, DecodeError> {
        let bad = |reason: &str| DecodeError::Input {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let c_path = CString::new(path.to_str().ok_or_else(|| bad("the path is not UTF-8"))?)
            .map_err(|_| bad("the path contains a NUL byte"))?;
        let mut decoder = PoolDecoder {
            input: ptr::null_mut(),
            codec: ptr::null_mut(),
            packet: ptr::null_mut(),
            frame: ptr::null_mut(),
            stream: -1,
            counts: state
                .as_ref()
                .map_or_else(Default::default, |state| Arc::clone(&state.counts)),
            state,
            direct: false,
            draining: false,
            output: 0,
            path: path.to_owned(),
        };
        // SAFETY: each call gets valid arguments (owned pointers that `Drop` frees, a
        // NUL-terminated path, FFmpeg's own structures); results are checked before use.
        unsafe {
            check(
                "avformat_open_input",
                ff::avformat_open_input(
                    &mut decoder.input,
                    c_path.as_ptr(),
                    ptr::null(),
                    ptr::null_mut(),
                ),
            )?;
            check(
                "avformat_find_stream_info",
                ff::avformat_find_stream_info(decoder.input, ptr::null_mut()),
            )?;
            let mut codec: *const ff::AVCodec = ptr::null();
            let stream = ff::av_find_best_stream(
                decoder.input,
                ff::AVMediaType::AVMEDIA_TYPE_VIDEO,
                -1,
                -1,
                &mut codec,
                0,
            );
            if stream < 0 || codec.is_null() {
                return Err(bad("it has no video stream this FFmpeg can decode"));
            }
            decoder.stream = stream;
            decoder.codec = ff::avcodec_alloc_context3(codec);
            decoder.packet = ff::av_packet_alloc();
            decoder.frame = ff::av_frame_alloc();
            if decoder.codec.is_null() || decoder.packet.is_null() || decoder.frame.is_null() {
                return Err(FfmpegError::new("allocating the decoder", ff::AVERROR(12)).into());
            }
            let params = (**(*decoder.input).streams.add(stream as usize)).codecpar;
            check(
                "avcodec_parameters_to_context",
                ff::avcodec_parameters_to_context(decoder.codec, params),
            )?;
            decoder.direct = (*codec).capabilities & ff::AV_CODEC_CAP_DR1 as c_int != 0;
            let ctx = &mut *decoder.codec;
            ctx.thread_count = threads as c_int;
            if let Some(state) = &decoder.state {
                ctx.opaque = (&**state as *const AllocatorState).cast_mut().cast();
                ctx.get_buffer2 = Some(get_buffer2);
                // FFmpeg 5 calls a custom allocator from its frame threads only when told it
                // is thread-safe (it is: the pool is); FFmpeg 6 dropped the field and always does.
                #[cfg(not(ffmpeg_6_0))]
                {
                    #[allow(deprecated)]
                    {
                        ctx.thread_safe_callbacks = 1;
                    }
                }
            }
            check(
                "avcodec_open2",
                ff::avcodec_open2(decoder.codec, codec, ptr::null_mut()),
            )?;
        }
        Ok(decoder)
    }

    /// Whether this decoder writes into pool buffers. Decoders without direct rendering get
    /// their pictures from FFmpeg's own allocator; wrap those instead.
    pub fn direct_rendering(&self) -> bool {
        self.direct
    }

    /// What the allocator did so far (shared: it keeps counting frees after the decoder is
    /// dropped, as frames still alive are dropped).
    pub fn counts(&self) -> Arc<AllocatorCounts> {
        Arc::clone(&self.counts)
    }

    /// The next decoded picture, `None` at the end of the stream.
    ///
    /// On [`DecodeError::Exhausted`] the picture being decoded is lost; release a buffer and
    /// call again to go on with the next.
    pub fn next_frame(&mut self) -> Result<Option<DecodedFrame>, DecodeError> {
        loop {
            // SAFETY: open decoder and allocated frame.
            let received = unsafe { ff::avcodec_receive_frame(self.codec, self.frame) };
            if received == 0 {
                // SAFETY: `self.frame` holds a decoded frame; its references move to a new frame
                // the caller owns.
                let frame = unsafe {
                    let out = ff::av_frame_alloc();
                    if out.is_null() {
                        ff::av_frame_unref(self.frame);
                        return Err(FfmpegError::new("av_frame_alloc", ff::AVERROR(12)).into());
                    }
                    ff::av_frame_move_ref(out, self.frame);
                    out
                };
                let number = self.output;
                self.output += 1;
                return Ok(Some(DecodedFrame { frame, number }));
            }
            if received == ff::AVERROR_EOF {
                return Ok(None);
            }
            if received != ff::AVERROR(libc_eagain()) {
                return Err(self.failure_or(FfmpegError::new("avcodec_receive_frame", received)));
            }
            if self.draining {
                return Ok(None);
            }
            self.send_next_packet()?;
        }
    }

    /// Reads the next packet of the video stream and sends it to the decoder (a flush at the
    /// end of the input).
    fn send_next_packet(&mut self) -> Result<(), DecodeError> {
        loop {
            // SAFETY: open input and allocated packet.
            let read = unsafe { ff::av_read_frame(self.input, self.packet) };
            if read < 0 {
                self.draining = true;
                // SAFETY: open decoder; a null packet starts draining.
                let sent = unsafe { ff::avcodec_send_packet(self.codec, ptr::null()) };
                return match sent {
                    0 => Ok(()),
                    code if code == ff::AVERROR_EOF => Ok(()),
                    code => Err(self.failure_or(FfmpegError::new("avcodec_send_packet", code))),
                };
            }
            // SAFETY: a packet was read into `self.packet`.
            if unsafe { (*self.packet).stream_index } != self.stream {
                // SAFETY: as above.
                unsafe { ff::av_packet_unref(self.packet) };
                continue;
            }
            // SAFETY: open decoder, packet of its stream; the packet is unreferenced after.
            let sent = unsafe {
                let sent = ff::avcodec_send_packet(self.codec, self.packet);
                ff::av_packet_unref(self.packet);
                sent
            };
            return match sent {
                0 => Ok(()),
                code => Err(self.failure_or(FfmpegError::new("avcodec_send_packet", code))),
            };
        }
    }

    /// The allocator's failure behind an FFmpeg error, if there is one; the FFmpeg error
    /// otherwise.
    fn failure_or(&self, error: FfmpegError) -> DecodeError {
        self.state
            .as_ref()
            .and_then(|state| state.failure.lock().take())
            .unwrap_or(DecodeError::Ffmpeg(error))
    }

    /// The file being decoded.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PoolDecoder {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or owned by this decoder; the free functions accept the
        // pointer-to-pointer forms and null them. The codec context goes before the allocator
        // state it points to (a field, dropped after this).
        unsafe {
            ff::av_frame_free(&mut self.frame);
            ff::av_packet_free(&mut self.packet);
            ff::avcodec_free_context(&mut self.codec);
            ff::avformat_close_input(&mut self.input);
        }
    }
}

/// The allocator FFmpeg calls for every picture (possibly from its frame threads).
unsafe extern "C" fn get_buffer2(
    ctx: *mut ff::AVCodecContext,
    frame: *mut ff::AVFrame,
    flags: c_int,
) -> c_int {
    // SAFETY: FFmpeg passes the context it was installed on, whose `opaque` is the decoder's
    // boxed state, alive until the context is freed; and a frame with format and size set.
    let (state, codec) = unsafe { (&*((*ctx).opaque as *const AllocatorState), (*ctx).codec) };
    // SAFETY: the context's codec is the open decoder's.
    if unsafe { (*codec).capabilities } & ff::AV_CODEC_CAP_DR1 as c_int == 0 {
        state.counts.fallbacks.fetch_add(1, Ordering::SeqCst);
        // SAFETY: FFmpeg's rule for decoders without DR1: use its default allocator.
        return unsafe { ff::avcodec_default_get_buffer2(ctx, frame, flags) };
    }
    // SAFETY: a video frame's `format` holds an `AVPixelFormat` value.
    let (format, width, height) = unsafe {
        (
            std::mem::transmute::<c_int, ff::AVPixelFormat>((*frame).format),
            (*frame).width,
            (*frame).height,
        )
    };
    // SAFETY: open DR1 decoder.
    let layout = match unsafe { layout_for(ctx, format, width, height) } {
        Ok(layout) => layout,
        Err(error) => return fail(state, DecodeError::Ffmpeg(error)),
    };
    let guard = match state.pool.acquire_free(Wait::Timeout(state.timeout)) {
        Ok(guard) => guard,
        Err(error) => return fail(state, DecodeError::Exhausted(error)),
    };
    if guard.len() < layout.size {
        let size = guard.len();
        return fail(
            state,
            DecodeError::BufferTooSmall {
                size,
                needed: layout.size,
                width,
                height,
            },
        );
    }
    let mut hold = guard.into_hold();
    let base = match hold.as_mut_ptr() {
        Ok(base) => base,
        Err(error) => {
            return fail(
                state,
                DecodeError::Input {
                    path: PathBuf::new(),
                    reason: error.to_string(),
                },
            );
        }
    };
    let len = hold.len();
    let owner = Box::into_raw(Box::new(BufferOwner {
        hold: Mutex::new(hold),
        counts: Arc::clone(&state.counts),
    }));
    // SAFETY: `base` is valid for `len` bytes while the hold lives, which is until FFmpeg calls
    // `free_buffer` with `owner`; `owner` is a leaked box that `free_buffer` takes back.
    let buf = unsafe { ff::av_buffer_create(base, len, Some(free_buffer), owner.cast(), 0) };
    if buf.is_null() {
        // SAFETY: `owner` was just leaked above and FFmpeg did not take it.
        drop(unsafe { Box::from_raw(owner) });
        return fail(
            state,
            DecodeError::Ffmpeg(FfmpegError::new("av_buffer_create", ff::AVERROR(12))),
        );
    }
    state.counts.allocations.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `frame` is FFmpeg's frame being allocated; the planes lie inside the buffer
    // (`layout.size <= len`), and `buf` is the reference FFmpeg frees with the frame.
    unsafe {
        let frame = &mut *frame;
        for plane in 0..layout.planes.min(4) {
            frame.data[plane] = base.add(layout.offset[plane]);
            frame.linesize[plane] = layout.linesize[plane];
        }
        frame.buf[0] = buf;
        frame.extended_data = frame.data.as_mut_ptr();
    }
    0
}

/// Records why an allocation failed and returns FFmpeg's out-of-memory error.
fn fail(state: &AllocatorState, error: DecodeError) -> c_int {
    *state.failure.lock() = Some(error);
    ff::AVERROR(12)
}

/// FFmpeg's free callback of a pool buffer: the last reference is gone.
unsafe extern "C" fn free_buffer(opaque: *mut c_void, _data: *mut u8) {
    // SAFETY: `opaque` is the `BufferOwner` leaked in `get_buffer2`, given back exactly once.
    let owner = unsafe { Box::from_raw(opaque.cast::<BufferOwner>()) };
    owner.counts.frees.fetch_add(1, Ordering::SeqCst);
    drop(owner); // the hold puts the buffer back on the free queue
}

/// A decoded picture: FFmpeg's `AVFrame`, whose planes are in a pool buffer when the decoder
/// renders directly. Dropping it drops its reference; the pool buffer goes back to the free
/// queue once the decoder holds none either.
pub struct DecodedFrame {
    frame: *mut ff::AVFrame,
    /// Its place in the decoder's output (0 for the first picture).
    number: u64,
}

// SAFETY: an `AVFrame` holding reference-counted buffers may be used and freed on any thread;
// the frame is owned and only read through `&self`.
unsafe impl Send for DecodedFrame {}
// SAFETY: `&DecodedFrame` only reads the frame.
unsafe impl Sync for DecodedFrame {}

impl DecodedFrame {
    /// Takes ownership of `frame`, a decoded video frame.
    ///
    /// # Safety
    ///
    /// `frame` must come from `av_frame_alloc`, hold a video picture with reference-counted
    /// buffers, and not be used or freed by anyone else afterwards: the `DecodedFrame` frees it.
    pub unsafe fn from_raw(frame: *mut ff::AVFrame) -> DecodedFrame {
        DecodedFrame { frame, number: 0 }
    }

    /// The picture's place in its decoder's output: 0 for the first.
    pub fn number(&self) -> u64 {
        self.number
    }

    pub(crate) fn raw(&self) -> &ff::AVFrame {
        // SAFETY: the frame is owned and valid until drop.
        unsafe { &*self.frame }
    }

    pub(crate) fn as_ptr(&self) -> *const ff::AVFrame {
        self.frame
    }

    /// Picture width and height.
    pub fn size(&self) -> (u32, u32) {
        let frame = self.raw();
        (frame.width.max(0) as u32, frame.height.max(0) as u32)
    }

    /// The presentation timestamp, in stream time base units.
    pub fn pts(&self) -> i64 {
        self.raw().pts
    }

    /// Plane `plane`'s bytes: its line size times its rows (chroma planes of subsampled formats
    /// have fewer rows). `None` for a plane the format does not have, or one stored bottom-up.
    pub fn plane(&self, plane: usize) -> Option<&[u8]> {
        let frame = self.raw();
        if plane >= 4 || frame.data[plane].is_null() {
            return None;
        }
        let stride = usize::try_from(frame.linesize[plane]).ok()?;
        // SAFETY: a decoded frame's `format` holds an `AVPixelFormat` value.
        let format = unsafe { std::mem::transmute::<c_int, ff::AVPixelFormat>(frame.format) };
        let rows = plane_rows(format, plane, frame.height) as usize;
        // SAFETY: FFmpeg guarantees `linesize * rows` readable bytes at each plane of a decoded
        // frame, alive while the frame holds its buffer references.
        Some(unsafe { std::slice::from_raw_parts(frame.data[plane], stride * rows) })
    }

    /// The buffer of `pool` holding the picture, and where its first plane starts in it; `None`
    /// if the picture is not in `pool` (a decoder without direct rendering).
    pub fn pool_buffer(&self, pool: &BufferPool) -> Option<(BufferId, usize)> {
        pool.locate(self.raw().data[0])
    }

    /// Whether every plane of the picture lies inside the buffer of `pool` that holds it: the
    /// check that the decoder wrote into pool memory and nothing was copied.
    pub fn planes_within(&self, pool: &BufferPool) -> bool {
        let Some((id, offset)) = self.pool_buffer(pool) else {
            return false;
        };
        let base = self.raw().data[0] as usize - offset;
        (0..4).filter_map(|plane| self.plane(plane)).all(|bytes| {
            let start = bytes.as_ptr() as usize;
            pool.locate(bytes.as_ptr())
                .is_some_and(|(other, _)| other == id)
                && pool
                    .locate((start + bytes.len() - 1) as *const u8)
                    .is_some_and(|(other, _)| other == id)
                && start >= base
        })
    }

    /// Hands the pool buffer holding this picture to fan-out `ports` of `pool` (see
    /// `buffer_core::port`), so that consumers, in this process or others attached to a shared
    /// pool, read the picture in place: the buffer's metadata gets the picture's layout
    /// ([`format_in`](Self::format_in)), its [`number`](Self::number) as sequence number, its
    /// timestamp, and the whole buffer as bytes used. The decoder keeps its own reference (it may predict from this picture);
    /// the buffer goes back to the free queue when FFmpeg and every subscriber let go.
    ///
    /// `None` if the picture is not in `pool` (a decoder without direct rendering), or was
    /// published already.
    pub fn publish(&self, pool: &BufferPool, ports: &[Port]) -> Option<Published> {
        let (_, offset) = self.pool_buffer(pool)?;
        let frame = self.raw();
        let base = frame.data[0] as usize - offset;
        let buf = frame.buf[0];
        // Only references made by `get_buffer2` start at a pool buffer's first byte: check it
        // before taking the reference's opaque for a `BufferOwner`.
        // SAFETY: `buf` is null or a live reference of this frame.
        if buf.is_null() || unsafe { (*buf).data } as usize != base {
            return None;
        }
        let video = self.format_in(pool)?;
        // SAFETY: a reference over a pool buffer is one `get_buffer2` made, whose opaque is its
        // `BufferOwner`, alive while the reference is.
        let owner = unsafe { &*ff::av_buffer_get_opaque(buf).cast::<BufferOwner>() };
        let mut hold = owner.hold.lock();
        if hold.is_published() {
            return None;
        }
        // Acquiring counted the whole buffer as used, which covers every plane. Not published
        // yet (checked above), so the record is the hold's to write.
        {
            let mut meta = hold.meta_mut().ok()?;
            meta.video = video;
            meta.sequence = self.number;
            meta.timestamp_ns = frame.pts;
        }
        Some(hold.publish(ports))
    }

    /// The picture's layout relative to the start of the buffer of `pool` holding it: pixel
    /// format, size and every plane's offset, line size and rows. `None` if the picture is not
    /// in `pool`.
    pub fn format_in(&self, pool: &BufferPool) -> Option<VideoFormat> {
        let (_, offset) = self.pool_buffer(pool)?;
        let base = self.raw().data[0] as usize - offset;
        // SAFETY: valid owned frame.
        unsafe { describe(self.frame, base) }
    }
}

impl Drop for DecodedFrame {
    fn drop(&mut self) {
        // SAFETY: the frame is owned; freeing drops its references (maybe the last of a pool
        // buffer, which then goes back to the pool).
        unsafe { ff::av_frame_free(&mut self.frame) };
    }
}

impl std::fmt::Debug for DecodedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedFrame")
            .field("size", &self.size())
            .field("pts", &self.pts())
            .finish()
    }
}
