//! [`TieredPool`]: several pools of different buffer sizes (size classes) behind one
//! `acquire(size)`, in private memory or in shared memory.
//!
//! # Which class serves a request
//!
//! A request for `size` bytes goes to the *fitting* class: the smallest whose buffers hold
//! `size` bytes. When that class has no free buffer, the pool's [`WhenEmpty`] policy decides:
//!
//! - [`WhenEmpty::Wait`]: wait (as the request's [`Wait`] says) for a buffer of the fitting
//!   class. Memory use stays tight; a burst of one size waits for its own class.
//! - [`WhenEmpty::TakeLarger`] (the default): take a free buffer of the next larger class that
//!   has one, at once; only if every larger class is empty too, wait for the fitting class.
//!   Requests are served sooner at the price of bigger buffers than needed.
//!
//! Each class is an ordinary [`BufferPool`]: its buffers' ids, guards, ports and (for shared
//! classes) dead-process reclamation work as in any pool, and a buffer goes back to its own
//! class when released.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::lockfree::wait::Wait;
use crate::pool::config::PoolConfig;
use crate::pool::error::{AcquireError, AttachError, CreatePoolError};
use crate::pool::guard::WriteGuard;
use crate::pool::handle::BufferPool;
use crate::pool::owner::PoolOwner;

/// What a [`TieredPool`] does when the class fitting a request (the smallest whose buffers hold
/// the requested size) has no free buffer: wait for that class (memory use stays tight), or
/// take a buffer of a larger class at once (requests are served sooner, in bigger buffers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenEmpty {
    /// Wait for a buffer of the fitting class.
    Wait,
    /// Take a buffer of the next larger class that has one; wait for the fitting class only if
    /// none has.
    #[default]
    TakeLarger,
}

/// One size class to create: `count` buffers of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeClass {
    /// Bytes in each buffer of the class.
    pub size: usize,
    /// Buffers in the class.
    pub count: u32,
}

impl SizeClass {
    /// `count` buffers of `size` bytes.
    pub const fn new(size: usize, count: u32) -> SizeClass {
        SizeClass { size, count }
    }
}

/// Why a [`TieredPool`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateTieredError {
    /// No class was given.
    #[error("a tiered pool needs at least one size class")]
    NoClasses,
    /// Two classes have the same size.
    #[error("two size classes have {size} bytes; give each size once")]
    DuplicateSize {
        /// The repeated size.
        size: usize,
    },
    /// A class was given no buffers: it could never serve a request.
    #[error("the size class of {size} bytes has no buffers; give it at least one")]
    EmptyClass {
        /// The class's size.
        size: usize,
    },
    /// An attached class's segment does not hold buffers of one size, the size its name says
    /// (it is not a class of a tiered pool, or it is damaged).
    #[error(
        "size class segment '{segment}' holds {found}; a class holds one or more buffers of one size, the size in its name"
    )]
    ClassSize {
        /// The class's segment.
        segment: String,
        /// What it holds instead.
        found: String,
    },
    /// A class's pool could not be created.
    #[error("size class of {size} bytes: {source}")]
    Class {
        /// The class's size.
        size: usize,
        /// Why its pool failed.
        #[source]
        source: CreatePoolError,
    },
    /// No segment of a shared tiered pool of that name exists.
    #[error(
        "no shared tiered pool '{name}' (no segment named '{name}.class-SIZE'); create it first with TieredPool::create_shared"
    )]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A class's segment could not be attached.
    #[error("size class segment '{segment}': {source}")]
    Attach {
        /// The class's segment.
        segment: String,
        /// Why attaching failed.
        #[source]
        source: AttachError,
    },
}

/// Why a [`TieredPool`] could not hand out a buffer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TieredAcquireError {
    /// The request is larger than the largest class.
    #[error(
        "no size class holds {size} bytes (the largest holds {largest}); add a larger class or split the request"
    )]
    TooLarge {
        /// Bytes requested.
        size: usize,
        /// The largest class's size.
        largest: usize,
    },
    /// The fitting class gave no buffer (and, with [`WhenEmpty::TakeLarger`], no larger class
    /// had one either).
    #[error("size class of {class} bytes: {source}")]
    Class {
        /// The fitting class's size.
        class: usize,
        /// Why it gave none.
        #[source]
        source: AcquireError,
    },
}

/// Counts of one size class, as seen by this process's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassStats {
    /// The class's buffer size.
    pub size: usize,
    /// Requests this class fitted.
    pub requests: u64,
    /// Requests it fitted and served itself.
    pub hits: u64,
    /// Requests it fitted that a larger class served ([`WhenEmpty::TakeLarger`]).
    pub promoted: u64,
    /// Requests it fitted that failed.
    pub failures: u64,
}

impl ClassStats {
    /// Hits per request (1.0 before the first request).
    pub fn hit_rate(&self) -> f64 {
        rate(self.hits, self.requests)
    }
}

fn rate(hits: u64, requests: u64) -> f64 {
    if requests == 0 {
        1.0
    } else {
        hits as f64 / requests as f64
    }
}

/// Counts of a whole [`TieredPool`], per class and in total.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TieredStats {
    /// Each class, smallest first.
    pub classes: Vec<ClassStats>,
}

impl TieredStats {
    /// Requests served by the class that fitted them, over all requests.
    pub fn hit_rate(&self) -> f64 {
        let (hits, requests) = self.classes.iter().fold((0, 0), |(hits, requests), class| {
            (hits + class.hits, requests + class.requests)
        });
        rate(hits, requests)
    }
}

/// This process's counters of one class (relaxed atomics, off the pools' shared state). A
/// request is counted once, by its outcome: requests are the sum.
#[derive(Default)]
struct ClassCounters {
    hits: AtomicU64,
    promoted: AtomicU64,
    failures: AtomicU64,
}

/// Pools of several buffer sizes behind one `acquire(size)`: a request goes to the smallest
/// class that holds it, or, when that class is empty, as the pool's [`WhenEmpty`] says. Each
/// class is an ordinary [`BufferPool`] (ids, guards, ports and dead-process reclamation as
/// usual), and a buffer goes back to its own class when released.
///
/// # Examples
///
/// ```
/// use buffer_core::{SizeClass, TieredPool, Wait, WhenEmpty};
///
/// let pool = TieredPool::with_heap_buffers(
///     "packets",
///     &[SizeClass::new(512, 2), SizeClass::new(2048, 1)],
///     WhenEmpty::TakeLarger,
/// )?;
/// let small = pool.acquire(300, Wait::NoWait)?;
/// assert_eq!(small.len(), 512);
/// let other = pool.acquire(300, Wait::NoWait)?;
/// let promoted = pool.acquire(100, Wait::NoWait)?; // the 512-byte class is empty now
/// assert_eq!(promoted.len(), 2048);
/// assert!(pool.acquire(4096, Wait::NoWait).is_err()); // no class holds 4 KiB
/// drop((small, other, promoted));
/// assert_eq!(pool.stats().classes[0].promoted, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TieredPool {
    /// Each class's pool handle, smallest first.
    classes: Box<[BufferPool]>,
    /// Each class's buffer size, ascending (searched on every request).
    sizes: Box<[usize]>,
    counters: Box<[ClassCounters]>,
    policy: WhenEmpty,
    /// The classes' owners, for pools this handle created (dropping them destroys the pools);
    /// empty for attached ones.
    _owners: Vec<PoolOwner>,
}

impl TieredPool {
    /// A private tiered pool whose classes hold zeroed heap buffers (as
    /// [`BufferPool::with_heap_buffers`]), each class a pool named `NAME.class-SIZE`.
    pub fn with_heap_buffers(
        name: &str,
        classes: &[SizeClass],
        policy: WhenEmpty,
    ) -> Result<TieredPool, CreateTieredError> {
        TieredPool::create_with(name, classes, policy, |config, class| {
            BufferPool::with_heap_buffers(config, class.count, class.size)
        })
    }

    /// A tiered pool in shared memory: each class is a shared pool in a segment named
    /// `NAME.class-SIZE` (see [`BufferPool::create_shared`]), which other processes reach with
    /// [`TieredPool::attach`]. Dropping the returned pool destroys the classes.
    pub fn create_shared(
        name: &str,
        classes: &[SizeClass],
        policy: WhenEmpty,
    ) -> Result<TieredPool, CreateTieredError> {
        TieredPool::create_with(name, classes, policy, |config, class| {
            let segment = config.name().to_owned();
            BufferPool::create_shared(&segment, config, class.count, class.size)
        })
    }

    /// Attaches to the shared tiered pool `name` made by [`TieredPool::create_shared`] (in any
    /// process), finding its classes by their segments' names: exactly `NAME.class-SIZE`, so a
    /// pool whose name merely extends that prefix (`NAME.class-x`, or the classes of a tiered
    /// pool `NAME.class-1`) is not one of them. A class's buffers must all be of the size in its
    /// name, checked in the class itself.
    pub fn attach(name: &str, policy: WhenEmpty) -> Result<TieredPool, CreateTieredError> {
        // Only `NAME.class-SIZE` itself: not another pool whose name extends this prefix.
        let segments: Vec<(String, usize)> = BufferPool::list_shared()
            .into_iter()
            .filter_map(|segment| {
                let size = class_size(name, segment.as_str())?;
                Some((segment.as_str().to_owned(), size))
            })
            .collect();
        if segments.is_empty() {
            return Err(CreateTieredError::NotFound {
                name: name.to_owned(),
            });
        }
        let mut found = Vec::with_capacity(segments.len());
        for (segment, named) in segments {
            let pool =
                BufferPool::attach(&segment).map_err(|source| CreateTieredError::Attach {
                    segment: segment.clone(),
                    source,
                })?;
            let size = buffer_size(&pool)
                .and_then(|size| {
                    (size == named)
                        .then_some(size)
                        .ok_or_else(|| format!("buffers of {size} bytes"))
                })
                .map_err(|found| CreateTieredError::ClassSize {
                    segment: segment.clone(),
                    found,
                })?;
            found.push((size, pool));
        }
        found.sort_unstable_by_key(|(size, _)| *size);
        if let Some(pair) = found.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(CreateTieredError::DuplicateSize { size: pair[0].0 });
        }
        let sizes = found.iter().map(|(size, _)| *size).collect();
        let classes = found.into_iter().map(|(_, pool)| pool).collect();
        Ok(TieredPool::assemble(classes, sizes, policy, Vec::new()))
    }

    /// Checks `classes` and creates one pool per class with `create`, given the class's config
    /// (named `NAME.class-SIZE`, room for its buffers).
    fn create_with(
        name: &str,
        classes: &[SizeClass],
        policy: WhenEmpty,
        mut create: impl FnMut(PoolConfig, &SizeClass) -> Result<PoolOwner, CreatePoolError>,
    ) -> Result<TieredPool, CreateTieredError> {
        let mut sorted = classes.to_vec();
        sorted.sort_unstable_by_key(|class| class.size);
        if sorted.is_empty() {
            return Err(CreateTieredError::NoClasses);
        }
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0].size == pair[1].size) {
            return Err(CreateTieredError::DuplicateSize { size: pair[0].size });
        }
        if let Some(empty) = sorted.iter().find(|class| class.count == 0) {
            return Err(CreateTieredError::EmptyClass { size: empty.size });
        }
        let mut owners = Vec::with_capacity(sorted.len());
        for class in &sorted {
            let config = PoolConfig::new(class_name(name, class.size)).with_capacity(class.count);
            let owner = create(config, class).map_err(|source| CreateTieredError::Class {
                size: class.size,
                source,
            })?;
            owners.push(owner);
        }
        let pools = owners.iter().map(|owner| (**owner).clone()).collect();
        let sizes = sorted.iter().map(|class| class.size).collect();
        Ok(TieredPool::assemble(pools, sizes, policy, owners))
    }

    /// Builds a tiered pool of `classes`, sorted by their buffers' `sizes`.
    fn assemble(
        classes: Vec<BufferPool>,
        sizes: Vec<usize>,
        policy: WhenEmpty,
        owners: Vec<PoolOwner>,
    ) -> TieredPool {
        TieredPool {
            counters: classes.iter().map(|_| ClassCounters::default()).collect(),
            classes: classes.into_boxed_slice(),
            sizes: sizes.into_boxed_slice(),
            policy,
            _owners: owners,
        }
    }

    /// The index of the class fitting `size`, or the error naming the largest class.
    #[inline(always)]
    fn fitting(&self, size: usize) -> Result<usize, TieredAcquireError> {
        // Counting the smaller classes, rather than a binary search: no branch on the sizes, so
        // a mix of request sizes costs no mispredictions (a handful of classes is the norm).
        let class = self.sizes.iter().filter(|&&class| class < size).count();
        if class < self.sizes.len() {
            Ok(class)
        } else {
            Err(TieredAcquireError::TooLarge {
                size,
                largest: self.sizes[self.sizes.len() - 1],
            })
        }
    }

    /// A free buffer of at least `size` bytes, from the class fitting it, or by the pool's
    /// [`WhenEmpty`] policy when that class is empty. The guard's buffer is the class's size;
    /// set the bytes used to what you write.
    #[inline(always)]
    pub fn acquire(&self, size: usize, wait: Wait) -> Result<WriteGuard<'_>, TieredAcquireError> {
        let class = self.fitting(size)?;
        if let Some(guard) = self.classes[class].acquire_free_now() {
            self.counters[class].hits.fetch_add(1, Ordering::Relaxed);
            return Ok(guard);
        }
        self.acquire_slow(class, wait)
    }

    #[cold]
    fn acquire_slow(&self, class: usize, wait: Wait) -> Result<WriteGuard<'_>, TieredAcquireError> {
        let counters = &self.counters[class];
        if self.policy == WhenEmpty::TakeLarger {
            for larger in &self.classes[class + 1..] {
                if let Some(guard) = larger.acquire_free_now() {
                    counters.promoted.fetch_add(1, Ordering::Relaxed);
                    return Ok(guard);
                }
            }
        }
        match self.classes[class].acquire_free(wait) {
            Ok(guard) => {
                counters.hits.fetch_add(1, Ordering::Relaxed);
                Ok(guard)
            }
            Err(source) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                Err(TieredAcquireError::Class {
                    class: self.sizes[class],
                    source,
                })
            }
        }
    }

    /// One buffer for each of `sizes`, all or none: if one cannot be had, the buffers already
    /// taken go back and the error is returned.
    pub fn acquire_batch(
        &self,
        sizes: &[usize],
        wait: Wait,
    ) -> Result<Vec<WriteGuard<'_>>, TieredAcquireError> {
        sizes.iter().map(|&size| self.acquire(size, wait)).collect()
    }

    /// Releases every guard of `guards` (unsubmitted: back to their classes' free queues) and
    /// returns how many went back.
    pub fn release_batch<'p>(&'p self, guards: impl IntoIterator<Item = WriteGuard<'p>>) -> usize {
        guards.into_iter().map(drop).count()
    }

    /// Each class's buffer size, smallest first.
    pub fn class_sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The pool of the class holding buffers of exactly `size` bytes.
    pub fn class(&self, size: usize) -> Option<&BufferPool> {
        let class = self.sizes.binary_search(&size).ok()?;
        Some(&self.classes[class])
    }

    /// The policy for an empty fitting class.
    pub fn policy(&self) -> WhenEmpty {
        self.policy
    }

    /// This handle's counts per class and in total (each process counts its own requests).
    pub fn stats(&self) -> TieredStats {
        TieredStats {
            classes: self
                .sizes
                .iter()
                .zip(self.counters.iter())
                .map(|(&size, counters)| {
                    let hits = counters.hits.load(Ordering::Relaxed);
                    let promoted = counters.promoted.load(Ordering::Relaxed);
                    let failures = counters.failures.load(Ordering::Relaxed);
                    ClassStats {
                        size,
                        requests: hits + promoted + failures,
                        hits,
                        promoted,
                        failures,
                    }
                })
                .collect(),
        }
    }
}

impl std::fmt::Debug for TieredPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredPool")
            .field("classes", &self.sizes)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The size of every buffer of `pool` as this process knows them (checked against the segment
/// when attaching), or what the pool holds instead of buffers of one size.
fn buffer_size(pool: &BufferPool) -> Result<usize, String> {
    let mut sizes = (0..pool.capacity())
        .map(|index| pool.len_of(index))
        .filter(|&len| len != 0);
    let first = sizes.next().ok_or_else(|| "no buffers".to_owned())?;
    match sizes.find(|&len| len != first) {
        None => Ok(first),
        Some(other) => Err(format!("buffers of {first} and of {other} bytes")),
    }
}

/// The pool (and segment) name of class `size` of tiered pool `name`.
fn class_name(name: &str, size: usize) -> String {
    format!("{name}.class-{size}")
}

/// The class size that `segment` is named for, if it is a class of tiered pool `name`: exactly
/// [`class_name`]`(name, size)`.
fn class_size(name: &str, segment: &str) -> Option<usize> {
    let size: usize = segment
        .strip_prefix(name)?
        .strip_prefix(".class-")?
        .parse()
        .ok()?;
    (class_name(name, size) == segment).then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(policy: WhenEmpty) -> TieredPool {
        TieredPool::with_heap_buffers(
            "t",
            &[SizeClass::new(4096, 1), SizeClass::new(512, 2)],
            policy,
        )
        .unwrap()
    }

    #[test]
    fn classes_are_sorted_and_a_request_goes_to_the_smallest_that_fits() {
        let pool = pool(WhenEmpty::Wait);
        assert_eq!(pool.class_sizes(), &[512, 4096]);
        assert_eq!(pool.acquire(1, Wait::NoWait).unwrap().len(), 512);
        assert_eq!(pool.acquire(512, Wait::NoWait).unwrap().len(), 512);
        assert_eq!(pool.acquire(513, Wait::NoWait).unwrap().len(), 4096);
        assert_eq!(
            pool.acquire(4097, Wait::NoWait).unwrap_err(),
            TieredAcquireError::TooLarge {
                size: 4097,
                largest: 4096
            }
        );
    }

    #[test]
    fn an_empty_class_waits_or_takes_a_larger_buffer_by_policy() {
        let waiting = pool(WhenEmpty::Wait);
        let held = waiting.acquire_batch(&[10, 10], Wait::NoWait).unwrap();
        let err = waiting.acquire(10, Wait::NoWait).unwrap_err();
        assert!(matches!(err, TieredAcquireError::Class { class: 512, .. }));
        assert!(
            err.to_string()
                .starts_with("size class of 512 bytes: pool 't.class-512'")
        );
        assert_eq!(waiting.release_batch(held), 2);
        assert_eq!(waiting.stats().classes[0].failures, 1);

        let taking = pool(WhenEmpty::TakeLarger);
        let _held = taking.acquire_batch(&[10, 10], Wait::NoWait).unwrap();
        assert_eq!(taking.acquire(10, Wait::NoWait).unwrap().len(), 4096);
        let stats = taking.stats();
        assert_eq!(
            (stats.classes[0].requests, stats.classes[0].promoted),
            (3, 1)
        );
        assert!((stats.hit_rate() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_failed_batch_gives_back_what_it_took() {
        let pool = pool(WhenEmpty::Wait);
        assert!(pool.acquire_batch(&[10, 10, 10], Wait::NoWait).is_err());
        assert_eq!(pool.class(512).unwrap().counts().free, 2);
    }

    #[test]
    fn bad_class_lists_are_refused() {
        assert!(matches!(
            TieredPool::with_heap_buffers("t", &[], WhenEmpty::Wait),
            Err(CreateTieredError::NoClasses)
        ));
        assert!(matches!(
            TieredPool::with_heap_buffers(
                "t",
                &[SizeClass::new(64, 1), SizeClass::new(64, 2)],
                WhenEmpty::Wait
            ),
            Err(CreateTieredError::DuplicateSize { size: 64 })
        ));
        assert!(matches!(
            TieredPool::with_heap_buffers("t", &[SizeClass::new(0, 1)], WhenEmpty::Wait),
            Err(CreateTieredError::Class { size: 0, .. })
        ));
    }
}
