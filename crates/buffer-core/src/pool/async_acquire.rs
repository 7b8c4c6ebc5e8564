//! Acquiring without blocking a thread: futures for a free or a filled buffer, and for a port's
//! next buffer, that work under any executor (no runtime dependency).
//!
//! # How a waiting future is woken
//!
//! A future that finds its queue (or port) empty registers its task's waker with the pool
//! handle's waiter list of that queue. Releases may come from any process attached to the pool,
//! so they cannot call our wakers; instead one *notifier* thread per queue and process, started
//! when the first future waits, sleeps on the queue's futex word exactly like a blocked
//! `acquire_free` (see the wait module), and on every wake-up wakes all registered wakers. Each
//! woken future tries to take a buffer when polled, and registers again if another got it. The
//! release fast path is unchanged: it wakes a futex sleeper only when one is registered.
//!
//! A future never holds a buffer while pending: it takes one only in the poll that returns
//! it. Dropping a pending future (a timeout of the executor's timer, a `select!` branch not
//! taken) therefore loses no buffer; it only removes its waker.
//!
//! The notifier passes each wake-up on to one other sleeper of the queue (a thread blocked in
//! `acquire_free`), so that mixing blocking and async waiters on one queue delays neither. It
//! looks for dead processes' buffers every 100 ms as blocked waiters do, and exits after a
//! short idle time without waiters. It sleeps whenever no buffer can be taken, including while
//! a port's next buffer is reserved by a publisher that has not finished (maybe one that is
//! stopped): that publisher wakes it when it finishes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::block::view::Queue;
use crate::lockfree::wait::{WaitWord, idle_slice, wake_one};
use crate::pool::error::AcquireError;
use crate::pool::guard::{ReadGuard, WriteGuard};
use crate::pool::handle::BufferPool;
use crate::sync::primitives::futex_wait;

/// What a future waits on: one of the pool's queues, or a port (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitSource {
    Queue(Queue),
    Port(u8),
}

impl WaitSource {
    /// The source's index among a pool's per-source records: 0 free, 1 filled, 2 + port.
    pub(crate) fn index(self) -> usize {
        match self {
            WaitSource::Queue(queue) => usize::from(queue == Queue::Filled),
            WaitSource::Port(port) => 2 + usize::from(port),
        }
    }
}

impl std::fmt::Display for WaitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitSource::Queue(queue) => write!(f, "{queue}"),
            WaitSource::Port(port) => write!(f, "port{port}"),
        }
    }
}

impl BufferPool {
    /// The futex word that releases to `source` bump.
    fn wait_word(&self, source: WaitSource) -> &WaitWord {
        match source {
            WaitSource::Queue(queue) => self.block().queue(queue).1,
            WaitSource::Port(port) => &self.block().port(usize::from(port)).wait,
        }
    }

    /// Whether a future waiting on `source` should try again: a buffer can be taken, or the
    /// pool is closed.
    fn has_buffers_or_closed(&self, source: WaitSource) -> bool {
        self.is_closed()
            || match source {
                WaitSource::Queue(queue) => self.block().queue(queue).0.has_ready(),
                WaitSource::Port(port) => self.block().port_queue(usize::from(port)).has_ready(),
            }
    }
}

/// How long a notifier thread lingers without waiters before it exits.
const NOTIFIER_LINGER: Duration = Duration::from_millis(200);

/// One queue's async waiters in this process.
#[derive(Default)]
pub(crate) struct AsyncWaiters {
    list: Mutex<WaiterList>,
    registered: Condvar,
}

#[derive(Default)]
struct WaiterList {
    /// Registered wakers by key.
    wakers: Vec<(u64, Waker)>,
    next_key: u64,
    notifier_running: bool,
}

impl AsyncWaiters {
    /// Registers (or updates) the waker of the future with `key`; returns its key and whether a
    /// notifier thread must be started.
    fn register(&self, key: Option<u64>, waker: &Waker) -> (u64, bool) {
        let mut list = self.list.lock();
        let key = key.unwrap_or_else(|| {
            list.next_key += 1;
            list.next_key
        });
        match list.wakers.iter_mut().find(|(k, _)| *k == key) {
            Some((_, registered)) => registered.clone_from(waker),
            None => list.wakers.push((key, waker.clone())),
        }
        let start = !list.notifier_running;
        list.notifier_running = true;
        drop(list);
        self.registered.notify_one();
        (key, start)
    }

    fn deregister(&self, key: u64) {
        self.list.lock().wakers.retain(|(k, _)| *k != key);
    }

    /// Wakes and forgets every registered waker (woken futures register again if they lose).
    fn wake_all(&self) {
        let wakers = std::mem::take(&mut self.list.lock().wakers);
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Waits until a waker is registered; `false` (and the notifier marked stopped) if none
    /// comes within [`NOTIFIER_LINGER`].
    fn wait_for_waiters(&self) -> bool {
        let mut list = self.list.lock();
        let deadline = Instant::now() + NOTIFIER_LINGER;
        while list.wakers.is_empty() {
            if self.registered.wait_until(&mut list, deadline).timed_out() && list.wakers.is_empty()
            {
                list.notifier_running = false;
                return false;
            }
        }
        true
    }
}

/// The notifier of `source` of `pool` (see the module docs).
fn run_notifier(pool: BufferPool, source: WaitSource) {
    let waiters = pool.async_waiters(source);
    let word = pool.wait_word(source);
    let sleepers = pool.sleepers(source);
    let mut last_idle = Instant::now();
    while waiters.wait_for_waiters() {
        word.register(sleepers);
        let seq = word.seq.load(Ordering::SeqCst);
        let ready = pool.has_buffers_or_closed(source);
        if !ready {
            futex_wait(&word.seq, seq, idle_slice());
        }
        word.unregister(sleepers);
        if idle_slice().is_some_and(|idle| last_idle.elapsed() >= idle) {
            pool.reclaim_dead();
            last_idle = Instant::now();
        }
        waiters.wake_all();
        if !ready {
            wake_one(word);
        }
    }
}

/// A pending future's place in the waiter list of its source; leaves it when dropped.
pub(crate) struct Registration<'p> {
    pool: &'p BufferPool,
    source: WaitSource,
    /// The key in the waiter list, once registered.
    key: Option<u64>,
}

impl<'p> Registration<'p> {
    pub(crate) fn new(pool: &'p BufferPool, source: WaitSource) -> Registration<'p> {
        Registration {
            pool,
            source,
            key: None,
        }
    }

    /// Registers the task's waker, starting the source's notifier if none runs. The caller
    /// tries its source once more afterwards, so that a buffer released in between is not
    /// missed.
    #[cold]
    pub(crate) fn register(&mut self, cx: &mut Context<'_>) {
        let waiters = self.pool.async_waiters(self.source);
        let (key, start) = waiters.register(self.key, cx.waker());
        self.key = Some(key);
        if start {
            let (pool, source) = (self.pool.clone(), self.source);
            let spawned = std::thread::Builder::new()
                .name(format!("bufpool-notify-{source}"))
                .spawn(move || run_notifier(pool, source));
            if spawned.is_err() {
                // No thread to wait with: poll again soon rather than never.
                waiters.list.lock().notifier_running = false;
                cx.waker().wake_by_ref();
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.pool.async_waiters(self.source).deregister(key);
        }
    }
}

/// A future for a buffer of one queue; see [`BufferPool::acquire_free_async`] and
/// [`BufferPool::acquire_filled_async`].
struct Acquire<'p> {
    pool: &'p BufferPool,
    queue: Queue,
    registration: Registration<'p>,
}

impl Acquire<'_> {
    /// Takes a buffer if one is ready, registering the task's waker if none is; `Err` once the
    /// queue is closed for good. The slow path: each future tries its queue once before.
    #[cold]
    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Result<(u32, u32), AcquireError>> {
        let attempt = |pool: &BufferPool| match pool.try_take(self.queue) {
            Some(taken) => Some(Ok(taken)),
            None if pool.is_closed()
                && (self.queue == Queue::Free || pool.block().queue(self.queue).0.len() == 0) =>
            {
                Some(Err(AcquireError::Closed {
                    pool: pool.name_arc(),
                    queue: self.queue,
                }))
            }
            None => None,
        };
        if let Some(result) = attempt(self.pool) {
            return Poll::Ready(result);
        }
        self.registration.register(cx);
        match attempt(self.pool) {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

impl<'p> Acquire<'p> {
    fn new(pool: &'p BufferPool, queue: Queue) -> Acquire<'p> {
        Acquire {
            pool,
            queue,
            registration: Registration::new(pool, WaitSource::Queue(queue)),
        }
    }
}

/// The future of [`BufferPool::acquire_free_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct AcquireFree<'p>(Acquire<'p>);

/// The future of [`BufferPool::acquire_filled_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct AcquireFilled<'p>(Acquire<'p>);

impl<'p> Future for AcquireFree<'p> {
    type Output = Result<WriteGuard<'p>, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let pool = this.0.pool;
        // The fast path, as `acquire_free`: a buffer is free at the first poll.
        if let Some(guard) = pool.acquire_free_now() {
            return Poll::Ready(Ok(guard));
        }
        this.0
            .poll_take(cx)
            .map_ok(|(index, generation)| pool.free_guard(index, generation))
    }
}

impl<'p> Future for AcquireFilled<'p> {
    type Output = Result<ReadGuard<'p>, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let pool = this.0.pool;
        if let Some((index, generation)) = pool.try_take(Queue::Filled) {
            return Poll::Ready(Ok(ReadGuard::new(pool, index, generation)));
        }
        this.0
            .poll_take(cx)
            .map_ok(|(index, generation)| ReadGuard::new(pool, index, generation))
    }
}

impl std::fmt::Debug for AcquireFree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireFree")
            .field("pool", &self.0.pool.name())
            .finish()
    }
}

impl std::fmt::Debug for AcquireFilled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireFilled")
            .field("pool", &self.0.pool.name())
            .finish()
    }
}

impl BufferPool {
    /// A future for a free buffer: ready at once if one is free, otherwise when one is released
    /// (in any process attached to the pool). Works under any executor; time it out with the
    /// executor's timer. Dropping the future before it is ready loses no buffer.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("a"), 1, 64).unwrap();
    /// let held = pool.acquire_free(Wait::NoWait).unwrap().into_hold(); // 'static
    /// let releaser = std::thread::spawn(move || drop(held));
    /// # // A minimal executor: block the thread on the future.
    /// # fn block_on<F: std::future::Future>(future: F) -> F::Output {
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl std::task::Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut future = std::pin::pin!(future);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) { return out; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// let frame = block_on(pool.acquire_free_async()).unwrap();
    /// assert_eq!(frame.len(), 64);
    /// # releaser.join().unwrap();
    /// ```
    pub fn acquire_free_async(&self) -> AcquireFree<'_> {
        AcquireFree(Acquire::new(self, Queue::Free))
    }

    /// A future for a filled buffer, as [`acquire_free_async`](Self::acquire_free_async). After
    /// [`close`](Self::close) it still yields the buffers already submitted, then `Closed`.
    pub fn acquire_filled_async(&self) -> AcquireFilled<'_> {
        AcquireFilled(Acquire::new(self, Queue::Filled))
    }
}
