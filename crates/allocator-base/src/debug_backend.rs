//! A backend wrapper for debugging and tests: logs every create and release through `tracing`,
//! keeps the live buffers, and fails creations on request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use buffer_core::{MemoryKind, Ownership};
use parking_lot::Mutex;

use crate::backend::{Backend, Created};

/// Wraps any [`Backend`]: logs every buffer created and released (target
/// `bufpool::backend`, debug level), counts them, keeps the live ones, and fails creations when
/// told to, so that tests can reach the error paths of code above it (a pool that cannot be
/// completed, a full device). Its [`DebugProbe`] tells what happened and sets failures, also
/// after the allocator that owns the backend is gone.
///
/// Use it as the backend of a [`BackendPools`](crate::BackendPools); nothing else changes.
///
/// # Panics
///
/// When the wrapped backend breaks its contract in a way the wrapper sees: handing out memory
/// that is still live, or getting back memory it never created (both would be a bug in the
/// backend or in the allocator, which this wrapper exists to catch).
///
/// # Examples
///
/// ```
/// use allocator_base::{AllocatePoolError, Backend, BackendPools, Created, DebugBackend, PoolAllocator};
/// use buffer_core::MemoryKind;
/// # struct Boxes;
/// # // SAFETY: each buffer is its own boxed slice, freed only in `release`.
/// # unsafe impl Backend for Boxes {
/// #     type Memory = Box<[u8]>;
/// #     type Error = std::convert::Infallible;
/// #     fn name(&self) -> &'static str { "boxes" }
/// #     fn memory_kind(&self) -> MemoryKind { MemoryKind::Host }
/// #     fn create(&self, size: usize) -> Result<Created<Box<[u8]>>, Self::Error> {
/// #         let mut memory = vec![0u8; size].into_boxed_slice();
/// #         let addr = memory.as_mut_ptr();
/// #         Ok(Created { memory, addr, phys: None })
/// #     }
/// #     fn release(&self, memory: Box<[u8]>) { drop(memory) }
/// # }
///
/// let backend = DebugBackend::new(Boxes);
/// let probe = backend.probe();
/// let allocator = BackendPools::new(backend);
/// // The third buffer fails: the pool is not created, and the two before it are released.
/// probe.fail_after(2, 1);
/// let err = allocator.allocate_pool_with_buffers(4, 256, "frames", "video").unwrap_err();
/// assert!(matches!(err, AllocatePoolError::Backend { index: 2, .. }));
/// assert_eq!((probe.created(), probe.released(), probe.failed()), (2, 2, 1));
///
/// let id = allocator.allocate_pool_with_buffers(2, 256, "frames", "video").unwrap();
/// assert_eq!(probe.live().len(), 2);
/// drop(allocator);
/// assert!(probe.live().is_empty());
/// ```
pub struct DebugBackend<B: Backend> {
    inner: B,
    probe: Arc<DebugProbe>,
}

/// What a [`DebugBackend`] saw, and the failures it is to inject.
#[derive(Debug, Default)]
pub struct DebugProbe {
    plan: Mutex<FailurePlan>,
    calls: AtomicU64,
    created: AtomicU64,
    released: AtomicU64,
    failed: AtomicU64,
    /// Live buffers by address.
    live: Mutex<BTreeMap<usize, LiveBuffer>>,
}

/// A buffer a [`DebugBackend`] created and has not released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBuffer {
    /// Where it starts.
    pub addr: usize,
    /// Its size in bytes.
    pub size: usize,
    /// Which creation made it (counting from 1).
    pub call: u64,
}

/// Which coming creations fail.
#[derive(Debug, Default, Clone, Copy)]
struct FailurePlan {
    /// Creations that still succeed before failures begin.
    succeed_first: u64,
    /// Creations that fail after those.
    then_fail: u64,
}

/// A buffer of a [`DebugBackend`]: the wrapped backend's memory, and where it lies.
#[derive(Debug)]
pub struct DebugMemory<M> {
    memory: M,
    addr: usize,
}

/// Why a [`DebugBackend`] could not create a buffer.
///
/// # Examples
///
/// ```
/// use allocator_base::DebugError;
///
/// let err: DebugError<std::io::Error> = DebugError::Injected { backend: "normal", call: 3, size: 64 };
/// assert!(err.to_string().contains("injected"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum DebugError<E: std::error::Error + 'static> {
    /// A failure asked for with [`DebugProbe::fail_next`] or [`DebugProbe::fail_after`].
    #[error(
        "injected failure of {backend} creation #{call} ({size} bytes), as the DebugBackend was told"
    )]
    Injected {
        /// The wrapped backend's name.
        backend: &'static str,
        /// Which creation this was (counting from 1).
        call: u64,
        /// The size asked for.
        size: usize,
    },
    /// The wrapped backend failed.
    #[error(transparent)]
    Backend(E),
}

impl<B: Backend> DebugBackend<B> {
    /// Wraps `inner`; nothing fails until asked.
    pub fn new(inner: B) -> DebugBackend<B> {
        DebugBackend {
            inner,
            probe: Arc::default(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// What this backend saw, and the failures to inject; keep it to look after the allocator
    /// that owns the backend is gone.
    pub fn probe(&self) -> Arc<DebugProbe> {
        Arc::clone(&self.probe)
    }
}

impl DebugProbe {
    /// The next `count` creations fail.
    pub fn fail_next(&self, count: u64) {
        self.fail_after(0, count);
    }

    /// The next `succeed` creations work, the `fail` after them fail, later ones work again.
    /// Replaces any earlier plan.
    pub fn fail_after(&self, succeed: u64, fail: u64) {
        *self.plan.lock() = FailurePlan {
            succeed_first: succeed,
            then_fail: fail,
        };
    }

    /// Buffers created so far.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Buffers released so far.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }

    /// Creations failed so far, injected or not.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The buffers created and not released, by address.
    pub fn live(&self) -> Vec<LiveBuffer> {
        self.live.lock().values().copied().collect()
    }

    /// Whether this creation is one the plan fails.
    fn should_fail(&self) -> bool {
        let mut plan = self.plan.lock();
        if plan.succeed_first > 0 {
            plan.succeed_first -= 1;
            false
        } else if plan.then_fail > 0 {
            plan.then_fail -= 1;
            true
        } else {
            false
        }
    }
}

// SAFETY: creation and release are the wrapped backend's, unchanged: every `Created` returned
// is the inner backend's, with the same address, size, kind and alignment, and its memory goes
// back to the inner backend's `release` exactly once.
unsafe impl<B: Backend> Backend for DebugBackend<B> {
    type Memory = DebugMemory<B::Memory>;
    type Error = DebugError<B::Error>;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn memory_kind(&self) -> MemoryKind {
        self.inner.memory_kind()
    }

    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn ownership(&self) -> Ownership {
        self.inner.ownership()
    }

    fn create(&self, size: usize) -> Result<Created<Self::Memory>, Self::Error> {
        let probe = &*self.probe;
        let call = probe.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let backend = self.inner.name();
        if probe.should_fail() {
            probe.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "bufpool::backend", backend, call, size, "create failed (injected)");
            return Err(DebugError::Injected {
                backend,
                call,
                size,
            });
        }
        match self.inner.create(size) {
            Ok(Created { memory, addr, phys }) => {
                let buffer = LiveBuffer {
                    addr: addr as usize,
                    size,
                    call,
                };
                let earlier = probe.live.lock().insert(buffer.addr, buffer);
                assert!(
                    earlier.is_none(),
                    "{backend} backend handed out live memory again: {earlier:?}, now {buffer:?}"
                );
                probe.created.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    target: "bufpool::backend",
                    backend, call, size, addr = ?addr, phys = ?phys, "created"
                );
                let memory = DebugMemory {
                    memory,
                    addr: buffer.addr,
                };
                Ok(Created { memory, addr, phys })
            }
            Err(err) => {
                probe.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "bufpool::backend", backend, call, size, error = %err, "create failed");
                Err(DebugError::Backend(err))
            }
        }
    }

    fn release(&self, memory: Self::Memory) {
        let DebugMemory { memory, addr } = memory;
        let backend = self.inner.name();
        let Some(buffer) = self.probe.live.lock().remove(&addr) else {
            panic!("{backend} buffer at {addr:#x} released twice or never created");
        };
        self.inner.release(memory);
        self.probe.released.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: "bufpool::backend",
            backend, call = buffer.call, size = buffer.size, addr = format_args!("{addr:#x}"),
            "released"
        );
    }
}

impl<B: Backend + std::fmt::Debug> std::fmt::Debug for DebugBackend<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugBackend")
            .field("inner", &self.inner)
            .field("probe", &self.probe)
            .finish()
    }
}
