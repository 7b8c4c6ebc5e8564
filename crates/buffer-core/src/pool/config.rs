//! What a new pool is called, how many buffers it can hold, and how it behaves
//! ([`PoolConfig`]).

use crate::block::layout::{BUFFER_ALIGN, MAX_CATEGORY_LEN, MAX_NAME_LEN, Shape};
use crate::block::port_entry::{DEFAULT_PORT_DEPTH, MAX_PORT_NAME_LEN};
use crate::pool::error::CreatePoolError;
use crate::shm::region::REGION_ALIGN;
use crate::shm::segment::{DEFAULT_SEGMENT_MODE, mode_is_safe};

/// Capacity of a pool when none is given: room to grow well past typical frame-pool sizes.
pub const DEFAULT_CAPACITY: u32 = 64;

/// What a new pool is called and how many buffers it can ever hold.
///
/// # Examples
///
/// ```
/// use buffer_core::PoolConfig;
///
/// let config = PoolConfig::new("decoder")
///     .with_category("video")
///     .with_capacity(16)
///     .with_hold_times(false);
/// assert!(!config.hold_times());
/// assert_eq!(config.capacity(), 16);
/// assert_eq!(config.category(), "video");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub(super) name: String,
    pub(super) category: String,
    pub(super) capacity: u32,
    pub(super) hold_times: bool,
    pub(super) ports: Vec<String>,
    pub(super) port_depth: u32,
    pub(super) segment_mode: u32,
    pub(super) alignment: usize,
}

impl PoolConfig {
    /// A pool called `name`, category `"default"`, capacity [`DEFAULT_CAPACITY`].
    pub fn new(name: impl Into<String>) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            category: "default".to_owned(),
            capacity: DEFAULT_CAPACITY,
            hold_times: true,
            ports: Vec::new(),
            port_depth: DEFAULT_PORT_DEPTH,
            segment_mode: DEFAULT_SEGMENT_MODE,
            alignment: BUFFER_ALIGN as usize,
        }
    }

    /// The alignment of every buffer a shared pool ([`BufferPool::create_shared`]) places in
    /// its segment: a power of two from 64 (the default, one cache line) to the page size
    /// ([`REGION_ALIGN`](crate::REGION_ALIGN), 4096: a segment is mapped at a page boundary,
    /// in each process at another one). Pools whose buffers come from elsewhere (injected,
    /// foreign) have their memory's own alignment.
    ///
    /// [`BufferPool::create_shared`]: crate::BufferPool::create_shared
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let name = format!("doc-align-{}", std::process::id());
    /// let pool = BufferPool::create_shared(&name, PoolConfig::new("a").with_alignment(4096), 2, 1000)?;
    /// for _ in 0..2 {
    ///     let frame = pool.acquire_free(Wait::NoWait)?;
    ///     assert_eq!(frame.buffer().virt_addr % 4096, 0);
    ///     std::mem::forget(frame.into_id());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_alignment(mut self, alignment: usize) -> PoolConfig {
        self.alignment = alignment;
        self
    }

    /// The alignment set.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// The permissions of the segment of a shared pool ([`BufferPool::create_shared`]):
    /// [`DEFAULT_SEGMENT_MODE`] (0600) by default; 0640 or 0644 let other users of the group, or
    /// everyone, read the frames. No mode that lets anyone but the owner write is accepted, and
    /// only the owner can attach (attaching maps the segment for writing).
    ///
    /// [`BufferPool::create_shared`]: crate::BufferPool::create_shared
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::PoolConfig;
    ///
    /// assert_eq!(PoolConfig::new("p").segment_mode(), 0o600);
    /// assert_eq!(PoolConfig::new("p").with_segment_mode(0o640).segment_mode(), 0o640);
    /// ```
    pub fn with_segment_mode(mut self, mode: u32) -> PoolConfig {
        self.segment_mode = mode;
        self
    }

    /// The segment mode set.
    pub fn segment_mode(&self) -> u32 {
        self.segment_mode
    }

    /// Adds fan-out ports with these names (at most [`MAX_PORTS`](crate::MAX_PORTS) in all): named queues through
    /// which one buffer reaches several consumers (see [`BufferPool::port`]).
    ///
    /// [`BufferPool::port`]: crate::BufferPool::port
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::PoolConfig;
    ///
    /// let config = PoolConfig::new("camera").with_ports(["display", "encoder"]).with_port_depth(8);
    /// assert_eq!(config.ports(), ["display", "encoder"]);
    /// assert_eq!(config.port_depth(), 8);
    /// ```
    pub fn with_ports<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> PoolConfig {
        self.ports.extend(names.into_iter().map(Into::into));
        self
    }

    /// How many buffers each port can hold at once, queued and being read together (a power of
    /// two, 2 to [`MAX_PORT_DEPTH`](crate::MAX_PORT_DEPTH); [`DEFAULT_PORT_DEPTH`] by default).
    /// A port that is full refuses further buffers, so a slow consumer holds at most this many.
    /// A received buffer keeps its place in the port until dropped (see the [`port`](crate::port)
    /// module), so keep a port's buffers no longer than the ones received after them.
    pub fn with_port_depth(mut self, depth: u32) -> PoolConfig {
        self.port_depth = depth;
        self
    }

    /// The port names set.
    pub fn ports(&self) -> &[String] {
        &self.ports
    }

    /// The port depth set.
    pub fn port_depth(&self) -> u32 {
        self.port_depth
    }

    /// Sets the category (a free-form grouping such as "video" or "audio").
    pub fn with_category(mut self, category: impl Into<String>) -> PoolConfig {
        self.category = category.into();
        self
    }

    /// Sets the most buffers the pool can ever hold (1 to [`MAX_CAPACITY`](crate::MAX_CAPACITY)).
    pub fn with_capacity(mut self, capacity: u32) -> PoolConfig {
        self.capacity = capacity;
        self
    }

    /// Whether acquiring records the time in the buffer's slot (on by default), so that
    /// [`BufferPool::holders`] and timeout errors can say how long buffers have been held.
    /// Reading the clock costs a few nanoseconds per acquisition (a vDSO call, no system call);
    /// pools that hand out millions of small buffers per second can turn it off.
    ///
    /// [`BufferPool::holders`]: crate::BufferPool::holders
    pub fn with_hold_times(mut self, hold_times: bool) -> PoolConfig {
        self.hold_times = hold_times;
        self
    }

    /// Whether hold times are recorded.
    pub fn hold_times(&self) -> bool {
        self.hold_times
    }

    /// The name set.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The category set.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The capacity set.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Checks that a pool of this configuration can start with `count` buffers of `size`
    /// bytes: at most the capacity, at least 1 byte each.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{CreatePoolError, PoolConfig};
    ///
    /// let config = PoolConfig::new("p").with_capacity(2);
    /// assert!(config.check_initial_buffers(2, 64).is_ok());
    /// assert_eq!(config.check_initial_buffers(3, 64), Err(CreatePoolError::TooManyBuffers { count: 3, capacity: 2 }));
    /// assert_eq!(config.check_initial_buffers(1, 0), Err(CreatePoolError::ZeroSize));
    /// ```
    pub fn check_initial_buffers(&self, count: u32, size: usize) -> Result<(), CreatePoolError> {
        if count > self.capacity {
            return Err(CreatePoolError::TooManyBuffers {
                count,
                capacity: self.capacity,
            });
        }
        if size == 0 {
            return Err(CreatePoolError::ZeroSize);
        }
        Ok(())
    }

    pub(crate) fn shape(&self) -> Shape {
        Shape {
            capacity: self.capacity,
            ports: self.ports.len().try_into().unwrap_or(u32::MAX),
            port_depth: self.port_depth,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), CreatePoolError> {
        if self.capacity == 0 || self.capacity > crate::block::layout::MAX_CAPACITY {
            return Err(CreatePoolError::Capacity {
                capacity: self.capacity,
            });
        }
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN || self.name.contains('\0') {
            return Err(CreatePoolError::Name {
                name: self.name.clone(),
            });
        }
        if self.category.len() > MAX_CATEGORY_LEN || self.category.contains('\0') {
            return Err(CreatePoolError::Category {
                category: self.category.clone(),
            });
        }
        for (index, port) in self.ports.iter().enumerate() {
            if port.is_empty()
                || port.len() > MAX_PORT_NAME_LEN
                || self.ports[..index].contains(port)
            {
                return Err(CreatePoolError::PortName { name: port.clone() });
            }
        }
        if !self.alignment.is_power_of_two()
            || !(BUFFER_ALIGN as usize..=REGION_ALIGN).contains(&self.alignment)
        {
            return Err(CreatePoolError::Alignment {
                alignment: self.alignment,
            });
        }
        if !mode_is_safe(self.segment_mode) {
            return Err(CreatePoolError::SegmentMode {
                mode: self.segment_mode,
            });
        }
        self.shape()
            .check()
            .map_err(|reason| CreatePoolError::Shape { reason })
    }
}
