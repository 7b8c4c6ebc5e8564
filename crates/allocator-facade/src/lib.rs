//! One object to create and hold any bufpool allocator.
//!
//! - [`AllocatorType`]: which backend, chosen at run time (parsed from and printed as a name).
//! - [`create`], [`create_with_config`], [`create_by_name`]: the factory.
//! - [`AllocatorFacade`]: owns one allocator and forwards every operation of
//!   [`PoolAllocator`] to it (through `Deref`), gives temporary access to its pools, and the
//!   allocator itself.
//!
//! Backends other than `normal` come with cargo features named after them; `normal` is always
//! compiled, and [`AllocatorType::Auto`] picks it.
//!
//! # Examples
//!
//! ```
//! use allocator_facade::{create_by_name, AllocatorType};
//! use buffer_core::Wait;
//!
//! let facade = create_by_name("auto")?;
//! assert_eq!(facade.kind(), AllocatorType::Normal);
//! let id = facade.allocate_pool_with_buffers(4, 1 << 20, "frames", "video")?;
//! let pool = facade.pool(id)?;
//! let mut frame = pool.acquire_free(Wait::NoWait)?;
//! frame.as_mut_slice()?.fill(0x80);
//! frame.submit();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use allocator_base::SharedMemoryPools;
pub use allocator_base::{
    ByteCount, MemoryLimit, MemoryStats, PoolAllocator, Registry, process_memory,
};
use allocator_normal::{AlignmentError, DEFAULT_ALIGNMENT, NormalAllocator, NormalBackend};

/// Which backend an allocator uses.
///
/// # Examples
///
/// ```
/// use allocator_facade::AllocatorType;
///
/// let kind: AllocatorType = "Normal".parse().unwrap();
/// assert_eq!(kind, AllocatorType::Normal);
/// assert_eq!(kind.to_string(), "normal");
/// assert!("gpu".parse::<AllocatorType>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AllocatorType {
    /// The best backend compiled in for host frames: today `Normal`.
    #[default]
    Auto,
    /// Aligned host memory (`allocator-normal`).
    Normal,
    /// Host memory in named shared-memory segments, one per pool (named after the pool), that
    /// other processes attach to with `BufferPool::attach`:
    /// [`SharedMemoryPools`] with the configured alignment.
    Shared,
}

impl AllocatorType {
    /// Every type this build knows, in the order `--help` lists them.
    pub const ALL: &'static [AllocatorType] = &[
        AllocatorType::Auto,
        AllocatorType::Normal,
        AllocatorType::Shared,
    ];

    /// The concrete type `Auto` stands for; any other type is itself.
    pub fn resolve(self) -> AllocatorType {
        match self {
            AllocatorType::Auto => AllocatorType::Normal,
            other => other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            AllocatorType::Auto => "auto",
            AllocatorType::Normal => "normal",
            AllocatorType::Shared => "shared",
        }
    }
}

impl fmt::Display for AllocatorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no allocator type of this build.
///
/// # Examples
///
/// ```
/// use allocator_facade::AllocatorType;
///
/// let err = "tpu".parse::<AllocatorType>().unwrap_err();
/// assert_eq!(err.name, "tpu");
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown allocator type '{name}': this build knows {}", known_names())]
pub struct ParseAllocatorTypeError {
    /// The name given.
    pub name: String,
}

fn known_names() -> String {
    let names: Vec<&str> = AllocatorType::ALL.iter().map(|t| t.name()).collect();
    names.join(", ")
}

impl FromStr for AllocatorType {
    type Err = ParseAllocatorTypeError;

    /// Parses a type name, ignoring ASCII case.
    fn from_str(name: &str) -> Result<AllocatorType, ParseAllocatorTypeError> {
        AllocatorType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| ParseAllocatorTypeError {
                name: name.to_owned(),
            })
    }
}

/// Settings for a new allocator; each backend uses those that apply to it.
///
/// # Examples
///
/// ```
/// use allocator_facade::{create_with_config, AllocatorConfig, AllocatorType};
///
/// use allocator_facade::MemoryLimit;
///
/// let config = AllocatorConfig::default()
///     .with_alignment(4096)
///     .with_memory_limit(MemoryLimit::new(256 << 20));
/// let facade = create_with_config(AllocatorType::Normal, &config).unwrap();
/// assert_eq!(facade.kind(), AllocatorType::Normal);
/// assert_eq!(facade.limit(), Some(MemoryLimit::new(256 << 20)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatorConfig {
    alignment: usize,
    limit: Option<MemoryLimit>,
}

impl Default for AllocatorConfig {
    fn default() -> AllocatorConfig {
        AllocatorConfig {
            alignment: DEFAULT_ALIGNMENT,
            limit: None,
        }
    }
}

impl AllocatorConfig {
    /// Sets the alignment of host buffers (a power of two; default 64).
    pub fn with_alignment(mut self, alignment: usize) -> AllocatorConfig {
        self.alignment = alignment;
        self
    }

    /// The alignment set.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Limits the memory the allocator may hold (none by default): see [`MemoryLimit`].
    pub fn with_memory_limit(mut self, limit: MemoryLimit) -> AllocatorConfig {
        self.limit = Some(limit);
        self
    }

    /// The memory limit set, if any.
    pub fn memory_limit(&self) -> Option<MemoryLimit> {
        self.limit
    }
}

/// An allocator could not be created.
///
/// # Examples
///
/// ```
/// use allocator_facade::{create_by_name, CreateAllocatorError};
///
/// assert!(matches!(create_by_name("tpu"), Err(CreateAllocatorError::UnknownType(_))));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CreateAllocatorError {
    /// The type name is unknown.
    #[error(transparent)]
    UnknownType(#[from] ParseAllocatorTypeError),
    /// The alignment is unusable.
    #[error(transparent)]
    Alignment(#[from] AlignmentError),
}

/// Owns one allocator of any type and forwards every [`PoolAllocator`] operation to it.
///
/// Dropping the facade drops the allocator, which destroys its pools.
///
/// # Examples
///
/// ```
/// use allocator_facade::{create, AllocatorType};
/// use allocator_normal::NormalAllocator;
///
/// let facade = create(AllocatorType::Auto).unwrap();
/// let id = facade.allocate_pool_with_buffers(1, 64, "tiny", "test").unwrap();
/// assert_eq!(facade.pool(id).unwrap().counts().total, 1);
/// assert!(facade.downcast::<NormalAllocator>().is_some());
/// assert_eq!(facade.allocator().backend_name(), "normal");
/// ```
pub struct AllocatorFacade {
    kind: AllocatorType,
    allocator: Box<dyn PoolAllocator>,
}

impl AllocatorFacade {
    /// The concrete type of the allocator held (never `Auto`).
    pub fn kind(&self) -> AllocatorType {
        self.kind
    }

    /// The allocator held.
    pub fn allocator(&self) -> &dyn PoolAllocator {
        &*self.allocator
    }

    /// The allocator held as its concrete type, if it is a `T`.
    pub fn downcast<T: PoolAllocator>(&self) -> Option<&T> {
        self.allocator.as_any().downcast_ref::<T>()
    }
}

impl Deref for AllocatorFacade {
    type Target = dyn PoolAllocator;

    fn deref(&self) -> &(dyn PoolAllocator + 'static) {
        &*self.allocator
    }
}

impl fmt::Debug for AllocatorFacade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocatorFacade")
            .field("kind", &self.kind)
            .field("id", &self.allocator.id())
            .field("pools", &self.allocator.pool_ids())
            .finish()
    }
}

/// Creates an allocator of `kind` with default settings.
pub fn create(kind: AllocatorType) -> Result<AllocatorFacade, CreateAllocatorError> {
    create_with_config(kind, &AllocatorConfig::default())
}

/// Creates an allocator of `kind` with `config`.
pub fn create_with_config(
    kind: AllocatorType,
    config: &AllocatorConfig,
) -> Result<AllocatorFacade, CreateAllocatorError> {
    let kind = kind.resolve();
    // Checks the alignment for every type, the shared one included.
    let backend = NormalBackend::with_alignment(config.alignment)?;
    let allocator: Box<dyn PoolAllocator> = match kind {
        AllocatorType::Normal | AllocatorType::Auto => Box::new(NormalAllocator::new(backend)),
        AllocatorType::Shared => Box::new(SharedMemoryPools::new(backend.alignment())),
    };
    allocator.set_limit(config.limit);
    Ok(AllocatorFacade { kind, allocator })
}

/// Creates an allocator from a type name ("auto", "normal", ...) with default settings.
pub fn create_by_name(name: &str) -> Result<AllocatorFacade, CreateAllocatorError> {
    create(name.parse()?)
}

/// The FFmpeg backend (feature `avframe`): [`PoolDecoder`](allocator_avframe::PoolDecoder)
/// decodes into any pool this facade's allocators make (private or shared), and
/// [`DecodedFrame::into_pool`](allocator_avframe::DecodedFrame::into_pool) wraps frames FFmpeg
/// allocated.
#[cfg(feature = "avframe")]
#[cfg_attr(docsrs, doc(cfg(feature = "avframe")))]
pub use allocator_avframe as avframe;

/// The display backend (feature `fb`): pools of scan-out memory
/// ([`ExternalMemoryBackend`](allocator_fb::ExternalMemoryBackend) over memory ranges someone
/// else mapped, [`FbBackend`](allocator_fb::FbBackend) over `/dev/fbN` pages,
/// [`DumbBackend`](allocator_fb::DumbBackend) over DRM dumb buffers) and a
/// [`Presenter`](allocator_fb::Presenter) that shows filled buffers by panning or page flips.
#[cfg(feature = "fb")]
#[cfg_attr(docsrs, doc(cfg(feature = "fb")))]
pub use allocator_fb as fb;

/// The CUDA backend (feature `cuda`): pools of device memory
/// ([`DeviceBackend`](allocator_cuda::DeviceBackend)) and pinned host memory
/// ([`PinnedBackend`](allocator_cuda::PinnedBackend)), copies between pool buffers on a
/// [`CudaStream`](allocator_cuda::CudaStream), and device pools shared between processes
/// ([`DeviceIpcPool`](allocator_cuda::DeviceIpcPool)).
#[cfg(feature = "cuda")]
#[cfg_attr(docsrs, doc(cfg(feature = "cuda")))]
pub use allocator_cuda as cuda;

/// The README's example, compiled and run as a doc test so that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;

/// This crate's own README (the one it is published with), run as a doc test too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeExample;
