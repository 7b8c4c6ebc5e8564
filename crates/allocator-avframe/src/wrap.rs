//! Wrapping: a decoded `AVFrame` becomes a buffer on a pool's filled queue without a copy, for
//! pictures the pool did not allocate: those of decoders without direct rendering, or of
//! filters and scalers.

use buffer_core::{BufferMemory, FrameMeta, MemoryKind, PoolOwner};
use ffmpeg_sys_next as ff;

use crate::decoder::DecodedFrame;
use crate::layout::describe;

/// A frame could not be wrapped.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The frame is stored bottom-up (a negative line size) or has no planes.
    #[error("the frame's layout cannot be described (no planes, or a negative line size)")]
    Layout,
    /// The pool refused the buffer.
    #[error(transparent)]
    Pool(#[from] buffer_core::InjectError),
    /// The allocator did not create the pool, or no such pool exists.
    #[error(transparent)]
    Ownership(#[from] allocator_base::OwnershipError),
}

impl DecodedFrame {
    /// Puts this picture on `pool`'s filled queue as a buffer, without copying: the buffer is
    /// the allocation holding every plane (or, for planes in separate allocations, as FFmpeg's
    /// own decoder allocator makes them, each plane's allocation, read plane by plane with
    /// `ReadGuard::plane`); its metadata describes each plane (offset, line size, rows), the
    /// pixel format and size, with the timestamp as sequence number. The frame is
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
        // SAFETY: a live reference of this frame, if any.
        let single = holder.map(|buf| unsafe { ((*buf).data, (*buf).size) });
        // Planes in separate allocations (FFmpeg's own decoder allocator makes one per plane):
        // each is recorded, and readers reach them plane by plane.
        let planes: Vec<(*const u8, usize)> = (0..4)
            .filter_map(|plane| self.plane(plane))
            .map(|bytes| (bytes.as_ptr(), bytes.len()))
            .collect();
        let base = match single {
            Some((addr, _)) => addr as usize,
            None => planes
                .iter()
                .map(|&(start, _)| start as usize)
                .min()
                .ok_or(WrapError::Layout)?,
        };
        // SAFETY: valid owned frame; `base` is the start of the allocation holding its planes,
        // or of the lowest plane.
        let video = unsafe { describe(self.as_ptr(), base) }.ok_or(WrapError::Layout)?;
        if video.plane_count == 0 {
            return Err(WrapError::Layout);
        }
        let mut meta = FrameMeta::default();
        meta.video = video;
        meta.sequence = frame.pts.max(0) as u64;
        meta.timestamp_ns = frame.pts;
        match single {
            Some((addr, len)) => {
                // SAFETY: `len` bytes at `addr` are the frame's allocation, which stays valid
                // while the frame (moved into the pool as the buffer's owner) holds its
                // reference, that is until the pool drops the owner, which frees the frame;
                // nothing else writes a decoded frame's memory.
                let memory = unsafe {
                    BufferMemory::owned(addr, len, MemoryKind::Host, None, Box::new(self))
                };
                pool.inject_frame(memory, meta)?;
            }
            // SAFETY: each plane's bytes lie in the frame's allocations, valid and unwritten
            // while the frame (moved into the pool as the owner) holds its references.
            None => unsafe { pool.inject_scattered_frame(&planes, Box::new(self), meta)? },
        }
        Ok(())
    }
}

impl DecodedFrame {
    /// [`into_pool`](Self::into_pool) for a pool that `allocator` made: the frame is freed
    /// exactly once, when its reader releases it or
    /// when the pool is destroyed, by the allocator or with it.
    pub fn into_allocator_pool(
        self,
        allocator: &dyn allocator_base::PoolAllocator,
        pool: buffer_core::PoolId,
    ) -> Result<(), WrapError> {
        let mut frame = Some(self);
        let mut result = Ok(());
        allocator.with_owner(pool, &mut |owner| {
            if let Some(frame) = frame.take() {
                result = frame.into_pool(owner);
            }
        })?;
        result
    }
}
