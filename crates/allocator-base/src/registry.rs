//! The process-wide registry: the single owner of every pool an allocator created.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use buffer_core::{BufferPool, PoolId, PoolOwner};
use parking_lot::RwLock;

use crate::error::{LookupError, OwnershipError};

/// Identifies one allocator for as long as the process lives (never reused).
///
/// # Examples
///
/// ```
/// use allocator_base::AllocatorId;
///
/// assert_ne!(AllocatorId::next(), AllocatorId::next());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocatorId(u64);

impl AllocatorId {
    /// A fresh id.
    pub fn next() -> AllocatorId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        AllocatorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as a number.
    pub fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for AllocatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allocator#{}", self.0)
    }
}

struct Entry {
    creator: AllocatorId,
    pool: Arc<PoolOwner>,
}

impl Entry {
    /// The pool's creator handle, if `caller` created it.
    fn created_by(
        &self,
        caller: AllocatorId,
        pool: PoolId,
    ) -> Result<&Arc<PoolOwner>, OwnershipError> {
        if self.creator == caller {
            Ok(&self.pool)
        } else {
            Err(OwnershipError::NotOwner {
                pool,
                owner: self.creator,
                caller,
            })
        }
    }
}

/// The single owner of every pool that allocators create. Users hold a [`PoolId`] and get
/// temporary access with [`Registry::get`]; only the allocator that created a pool can change or
/// destroy it.
///
/// A [`BufferPool`] handle obtained from `get` never keeps buffer memory alive by accident: once
/// the creating allocator destroys the pool, the handle sees a closed pool with no free or filled
/// buffers, and each buffer's memory is released as soon as no guard holds it.
///
/// # Examples
///
/// ```
/// use allocator_base::{BackendPools, PoolAllocator, Registry};
/// # use allocator_base::{Backend, Created};
/// # struct Boxes;
/// # // SAFETY: each buffer is its own boxed slice, freed only in `release`.
/// # unsafe impl Backend for Boxes {
/// #     type Memory = Box<[u8]>;
/// #     type Error = std::convert::Infallible;
/// #     fn name(&self) -> &'static str { "boxes" }
/// #     fn memory_kind(&self) -> buffer_core::MemoryKind { buffer_core::MemoryKind::Host }
/// #     fn create(&self, size: usize) -> Result<Created<Box<[u8]>>, Self::Error> {
/// #         let mut memory = vec![0u8; size].into_boxed_slice();
/// #         let addr = memory.as_mut_ptr();
/// #         Ok(Created { memory, addr, phys: None })
/// #     }
/// #     fn release(&self, memory: Box<[u8]>) { drop(memory) }
/// # }
///
/// let allocator = BackendPools::new(Boxes);
/// let id = allocator.allocate_pool_with_buffers(1, 64, "audio", "pcm").unwrap();
/// let pool = Registry::global().get(id).unwrap();
/// assert_eq!(pool.name(), "audio");
/// allocator.destroy_pools();
/// assert!(Registry::global().get(id).is_err());
/// assert!(pool.is_closed());
/// ```
pub struct Registry {
    pools: RwLock<HashMap<PoolId, Entry>>,
}

impl Registry {
    /// The registry of this process.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(|| Registry {
            pools: RwLock::new(HashMap::new()),
        })
    }

    /// Temporary access to a pool: a handle for acquiring and releasing buffers.
    pub fn get(&self, pool: PoolId) -> Result<BufferPool, LookupError> {
        self.pools
            .read()
            .get(&pool)
            .map(|entry| entry.pool.pool().clone())
            .ok_or(LookupError { pool })
    }

    /// Ids of every registered pool.
    pub fn pool_ids(&self) -> Vec<PoolId> {
        let mut ids: Vec<PoolId> = self.pools.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Registers a pool created by `creator`.
    pub(crate) fn register(&self, creator: AllocatorId, pool: PoolOwner) -> PoolId {
        let id = pool.id();
        let entry = Entry {
            creator,
            pool: Arc::new(pool),
        };
        self.pools.write().insert(id, entry);
        id
    }

    /// The creator's handle of `pool`, if `caller` created it (the pool is unknown or
    /// another allocator's otherwise). The registry's lock is not held while the caller uses the
    /// handle, so a long wait on the pool never blocks the registry.
    pub(crate) fn pool_created_by(
        &self,
        caller: AllocatorId,
        pool: PoolId,
    ) -> Result<Arc<PoolOwner>, OwnershipError> {
        let pools = self.pools.read();
        let entry = pools.get(&pool).ok_or(LookupError { pool })?;
        entry.created_by(caller, pool).map(Arc::clone)
    }

    /// Removes `pool` (if `caller` created it) and destroys it: waiters wake, free and filled
    /// buffers are released now, held ones when their guards drop.
    pub(crate) fn unregister(
        &self,
        caller: AllocatorId,
        pool: PoolId,
    ) -> Result<(), OwnershipError> {
        let owner = {
            let mut pools = self.pools.write();
            let entry = pools.get(&pool).ok_or(LookupError { pool })?;
            entry.created_by(caller, pool)?;
            pools.remove(&pool).map(|entry| entry.pool)
        };
        if let Some(owner) = owner {
            // Wake anyone waiting inside an allocator call on this pool; the last of them to
            // finish drops the final `Arc<PoolOwner>`, which destroys the pool.
            owner.close();
        }
        Ok(())
    }
}
