//! What a pool handle holds of its pool: this process's state beside the block, and where the
//! block lies, made together and never apart.

use std::ops::Deref;
use std::sync::Arc;

use crate::block::view::{BlockAddress, BlockView};
use crate::pool::handle::PoolInner;

/// This process's attachment to a pool, shared by a handle and its clones: the process-local
/// state ([`PoolInner`], which owns the block) and where that block lies, kept beside the `Arc`
/// so that the fast path reaches the block with one load less. Both come from one `PoolInner`
/// in [`Attachment::new`] and neither changes after, so [`Attachment::block`] always views the
/// block this attachment keeps alive. It dereferences to the `PoolInner`.
#[derive(Clone)]
pub(crate) struct Attachment {
    address: BlockAddress,
    inner: Arc<PoolInner>,
}

impl Attachment {
    /// The attachment that `inner` makes.
    pub(crate) fn new(inner: PoolInner) -> Attachment {
        Attachment {
            address: inner.block.address(),
            inner: Arc::new(inner),
        }
    }

    /// The pool's block, for as long as this attachment is borrowed.
    #[inline(always)]
    pub(crate) fn block(&self) -> BlockView<'_> {
        // SAFETY: `address` is where the block that `inner` owns lies (`new` took both from one
        // `PoolInner`, and the fields are private to this module, which never changes them),
        // and `inner` lives at least as long as `self` is borrowed.
        unsafe { self.address.view() }
    }
}

impl Deref for Attachment {
    type Target = PoolInner;

    #[inline(always)]
    fn deref(&self) -> &PoolInner {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use crate::pool::config::PoolConfig;
    use crate::pool::handle::BufferPool;

    #[test]
    fn a_handle_views_the_block_its_attachment_owns_even_after_taking_another_s() {
        let a = BufferPool::create(PoolConfig::new("a")).unwrap();
        let b = BufferPool::create(PoolConfig::new("b")).unwrap();
        let mut handle = a.pool().clone();
        assert_eq!(handle.block().base(), handle.inner.block.region().0);
        handle.inner = b.inner.clone(); // all the crate can do: the address comes along
        assert_eq!(handle.block().base(), handle.inner.block.region().0);
        assert_eq!(handle.block().base(), b.block().base());
        drop(a); // `handle` no longer depends on `a`'s block
        assert_eq!(handle.counts().total, 0);
    }
}
