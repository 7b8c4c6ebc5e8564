//! What every allocator keeps, whatever places its buffers: its id, its accounting, and the pools
//! it created and has not destroyed. [`BackendPools`](crate::BackendPools) and
//! [`SharedMemoryPools`](crate::SharedMemoryPools) each hold one.

use std::fmt;
use std::sync::Arc;

use buffer_core::{PoolId, PoolOwner};
use parking_lot::Mutex;

use crate::accounting::Ledger;
use crate::error::OwnershipError;
use crate::registry::{AllocatorId, Registry};

/// One pool an allocator created, with what it keeps until it destroys the pool (`K`).
struct CreatedPool<K> {
    id: PoolId,
    _keep: K,
}

/// An allocator's id, accounting and created pools; dropping it destroys the pools.
pub(crate) struct CreatedPools<K> {
    id: AllocatorId,
    ledger: Arc<Ledger>,
    pools: Mutex<Vec<CreatedPool<K>>>,
}

impl<K> CreatedPools<K> {
    /// A new allocator's, named `backend` in messages.
    pub(crate) fn new(backend: &'static str) -> CreatedPools<K> {
        let id = AllocatorId::next();
        CreatedPools {
            id,
            ledger: Arc::new(Ledger::new(id, backend, None)),
            pools: Mutex::new(Vec::new()),
        }
    }

    /// The allocator's id.
    pub(crate) fn id(&self) -> AllocatorId {
        self.id
    }

    /// The allocator's accounting.
    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Registers a pool just created, keeping `keep` until the pool is destroyed.
    pub(crate) fn register(&self, owner: PoolOwner, keep: K) -> PoolId {
        let id = Registry::global().register(self.id, owner);
        self.pools.lock().push(CreatedPool { id, _keep: keep });
        id
    }

    /// The creator's handle of `pool`, if this allocator created it.
    pub(crate) fn creator_handle(&self, pool: PoolId) -> Result<Arc<PoolOwner>, OwnershipError> {
        Registry::global().pool_created_by(self.id, pool)
    }

    /// Runs `f` with the creator's handle of `pool` (see
    /// [`PoolAllocator::with_owner`](crate::PoolAllocator::with_owner)).
    pub(crate) fn with_owner(
        &self,
        pool: PoolId,
        f: &mut dyn FnMut(&PoolOwner),
    ) -> Result<(), OwnershipError> {
        f(&*self.creator_handle(pool)?);
        Ok(())
    }

    /// Destroys one pool this allocator created.
    pub(crate) fn destroy(&self, pool: PoolId) -> Result<(), OwnershipError> {
        Registry::global().unregister(self.id, pool)?;
        self.pools.lock().retain(|created| created.id != pool);
        Ok(())
    }

    /// Destroys every pool this allocator created.
    pub(crate) fn destroy_all(&self) {
        let pools = std::mem::take(&mut *self.pools.lock());
        for pool in pools {
            // Only this allocator unregisters its pools, so each is still registered.
            let _ = Registry::global().unregister(self.id, pool.id);
        }
    }

    /// Ids of the pools this allocator created and has not destroyed.
    pub(crate) fn ids(&self) -> Vec<PoolId> {
        self.pools.lock().iter().map(|created| created.id).collect()
    }

    /// Adds the id, limit, memory and pools to an allocator's `Debug` output.
    pub(crate) fn debug_fields(&self, f: &mut fmt::DebugStruct<'_, '_>) {
        f.field("id", &self.id)
            .field("limit", &self.ledger.limit())
            .field("memory", &self.ledger.snapshot())
            .field("pools", &self.ids());
    }
}

impl<K> Drop for CreatedPools<K> {
    fn drop(&mut self) {
        self.destroy_all();
    }
}

/// The [`PoolAllocator`](crate::PoolAllocator) methods that every allocator answers the same
/// way from its `pools: CreatedPools<_>` field: its id, destroying, listing, accounting, lending
/// the creator's handle, and removing a buffer (the pool decides: a shared pool refuses). Used
/// inside each `impl PoolAllocator`, so that the lifecycle is written once.
macro_rules! common_lifecycle_methods {
    () => {
        fn id(&self) -> $crate::AllocatorId {
            self.pools.id()
        }

        fn remove_buffer(
            &self,
            pool: ::buffer_core::PoolId,
            wait: ::buffer_core::Wait,
        ) -> Result<(), $crate::RemoveBufferError> {
            self.pools.creator_handle(pool)?.remove(wait)?;
            Ok(())
        }

        fn destroy_pool(&self, pool: ::buffer_core::PoolId) -> Result<(), $crate::OwnershipError> {
            self.pools.destroy(pool)
        }

        fn destroy_pools(&self) {
            self.pools.destroy_all();
        }

        fn pool_ids(&self) -> Vec<::buffer_core::PoolId> {
            self.pools.ids()
        }

        fn memory(&self) -> $crate::MemoryStats {
            self.pools.ledger().snapshot()
        }

        fn limit(&self) -> Option<$crate::MemoryLimit> {
            self.pools.ledger().limit()
        }

        fn set_limit(&self, limit: Option<$crate::MemoryLimit>) {
            self.pools.ledger().set_limit(limit);
        }

        fn with_owner(
            &self,
            pool: ::buffer_core::PoolId,
            f: &mut dyn FnMut(&::buffer_core::PoolOwner),
        ) -> Result<(), $crate::OwnershipError> {
            self.pools.with_owner(pool, f)
        }

        fn as_any(&self) -> &dyn ::std::any::Any {
            self
        }
    };
}

pub(crate) use common_lifecycle_methods;
