//! A filled buffer as a [`bytes::Bytes`] (feature `bytes`), without a copy: hand pool buffers
//! to any crate that takes `Bytes` (hyper bodies, tokio codecs). The buffer goes back to its
//! pool's free queue when the last clone of the `Bytes` (or of a slice of it) is dropped.

use bytes::Bytes;

use crate::pool::error::AccessError;
use crate::pool::guard::ReadGuard;
use crate::pool::handle::BufferPool;

/// What a `Bytes` made from a pool buffer owns: the held buffer, released on drop.
struct PoolBytes {
    pool: BufferPool,
    index: u32,
    generation: u32,
    /// The filled bytes: valid while the buffer is held, which is until this owner drops.
    start: *const u8,
    len: usize,
}

// SAFETY: the owner only reads memory it holds exclusively for reading (nobody writes a held
// filled buffer), and releasing it is thread-safe.
unsafe impl Send for PoolBytes {}
// SAFETY: as above; `&PoolBytes` only reads.
unsafe impl Sync for PoolBytes {}

impl AsRef<[u8]> for PoolBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start..start + len` are the filled bytes of a buffer this owner holds; they
        // stay valid and unwritten until it is dropped.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

impl Drop for PoolBytes {
    fn drop(&mut self) {
        self.pool.release(self.index, self.generation);
    }
}

impl ReadGuard<'_> {
    #[cfg_attr(docsrs, doc(cfg(feature = "bytes")))]
    /// The filled bytes (`meta().bytes_used()` of them) as a [`Bytes`], without a copy. The
    /// buffer stays held until the last clone of the `Bytes` is dropped, then goes back to the
    /// free queue. Fails for memory the CPU cannot access (the guard is then dropped and the
    /// buffer released).
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("net"), 1, 64)?;
    /// let mut frame = pool.acquire_free(Wait::NoWait)?;
    /// frame.as_mut_slice()?[..5].copy_from_slice(b"hello");
    /// frame.set_bytes_used(5)?;
    /// frame.submit();
    ///
    /// let bytes = pool.acquire_filled(Wait::NoWait)?.into_bytes()?;
    /// let word = bytes.slice(1..4);
    /// drop(bytes);
    /// assert_eq!(&word[..], b"ell");
    /// assert_eq!(pool.counts().free, 0, "a slice still holds the buffer");
    /// drop(word);
    /// assert_eq!(pool.counts().free, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_bytes(self) -> Result<Bytes, AccessError> {
        let bytes = self.as_slice()?;
        let (start, len) = (bytes.as_ptr(), bytes.len());
        let (pool, index, generation) = self.into_parts();
        Ok(Bytes::from_owner(PoolBytes {
            pool: pool.clone(),
            index,
            generation,
            start,
            len,
        }))
    }
}
