//! Wrapping: a decoded `AVFrame` becomes a buffer on a pool's filled queue without a copy
//! (the seed's `injectAVFrameToPool`), for pictures the pool did not allocate: those of decoders
//! without direct rendering, or of filters and scalers.

use buffer_core::{BufferMemory, FrameMeta, MemoryKind, PoolOwner};
use ffmpeg_sys_next as ff;

use crate::decoder::DecodedFrame;
use crate::layout::describe;

/// A frame could not be wrapped.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The picture's planes lie in separate allocations, so no single buffer holds them all.
    #[error(
        "the frame's planes lie in {buffers} separate allocations, so no single pool buffer can hold them; decode with a PoolDecoder (direct rendering) or allocate frames with av_frame_get_buffer"
    )]
    Scattered {
        /// The frame's buffer references.
        buffers: usize,
    },
    /// The frame is stored bottom-up (a negative line size) or has no planes.
    #[error("the frame's layout cannot be described (no planes, or a negative line size)")]
    Layout,
    /// The pool refused the buffer.
    #[error(transparent)]
    Pool(#[from] buffer_core::InjectError),
}

impl DecodedFrame {
    /// Puts this picture on `pool`'s filled queue as a buffer, without copying: the buffer is
    /// the allocation holding every plane, its metadata describes each plane (offset, line size,
    /// rows), the pixel format and size, with the timestamp as sequence number. The frame is
    /// unreferenced exactly once: when its reader releases the buffer, or when the pool is
    /// destroyed, whichever comes first.
    pub fn into_pool(self, pool: &PoolOwner) -> Result<(), WrapError> {
        let frame = self.raw();
        let refs: Vec<*mut ff::AVBufferRef> =
            frame.buf.iter().copied().filter(|b| !b.is_null()).collect();
        // The allocation holding every plane, if one does.
        let holder = refs.iter().copied().find(|&buf| {
            // SAFETY: `buf` is a live reference of this frame.
            let (start, size) = unsafe { ((*buf).data as usize, (*buf).size) };
            (0..4).filter_map(|plane| self.plane(plane)).all(|bytes| {
                let begin = bytes.as_ptr() as usize;
                begin >= start && begin + bytes.len() <= start + size
            })
        });
        let Some(holder) = holder else {
            return Err(WrapError::Scattered {
                buffers: refs.len(),
            });
        };
        // SAFETY: `holder` is a live reference of this frame.
        let (addr, len) = unsafe { ((*holder).data, (*holder).size) };
        // SAFETY: valid owned frame; `addr` is the start of the allocation holding its planes.
        let video = unsafe { describe(self.as_ptr(), addr as usize) }.ok_or(WrapError::Layout)?;
        if video.plane_count == 0 {
            return Err(WrapError::Layout);
        }
        let mut meta = FrameMeta::default();
        meta.video = video;
        meta.sequence = frame.pts.max(0) as u64;
        meta.timestamp_ns = frame.pts;
        // SAFETY: `len` bytes at `addr` are the frame's allocation, which stays valid while the
        // frame (moved into the pool as the buffer's owner) holds its reference, that is until
        // the pool drops the owner, which frees the frame; nothing else writes a decoded frame's
        // memory.
        let memory =
            unsafe { BufferMemory::owned(addr, len, MemoryKind::Host, None, Box::new(self)) };
        pool.inject_frame(memory, meta)?;
        Ok(())
    }
}
