//! Fan-out ports: named queues of buffers in the pool block, each entry holding one reference,
//! so that one filled buffer reaches several consumers (threads or processes) without a copy.
//!
//! A producer publishes a written buffer to a set of ports ([`WriteGuard::publish`](crate::WriteGuard::publish)); each port
//! has at most one subscriber at a time ([`BufferPool::subscribe`]), which receives the buffers
//! in order as [`PortGuard`]s. The buffer goes back to the free queue when the last port's
//! subscriber drops it.
//!
//! # A slow consumer never blocks the others
//!
//! A port holds at most its depth of buffers, queued and being read together
//! ([`PoolConfig::with_port_depth`](crate::PoolConfig::with_port_depth)). Publishing to a port
//! that is full, or that has no subscriber, *refuses* the buffer for that port: the publication
//! still reaches the other ports, [`Published`] says which ports refused, and the port counts its
//! refusals. So a stalled consumer costs the pool at most its port's depth of buffers.
//!
//! The port is a ring of `depth` places, and a received buffer keeps its place until its
//! [`PortGuard`] drops: a subscriber that keeps one buffer while it receives and drops the
//! next `depth - 1` finds the port refusing the one after, though it holds a single buffer.
//! Drop received buffers in the order they came to use the whole depth.
//!
//! # Examples
//!
//! ```
//! use buffer_core::{BufferPool, PoolConfig, Wait};
//!
//! let pool = BufferPool::with_heap_buffers(
//!     PoolConfig::new("camera").with_ports(["display", "encoder"]), 4, 64)?;
//! let (display, encoder) = (pool.port("display")?, pool.port("encoder")?);
//! let to_display = pool.subscribe(display)?;
//! let to_encoder = pool.subscribe(encoder)?;
//!
//! let mut frame = pool.acquire_free(Wait::NoWait)?;
//! frame.as_mut_slice()?[0] = 9;
//! let published = frame.publish(&[display, encoder]);
//! assert_eq!(published.delivered(), 2);
//!
//! let a = to_display.receive(Wait::NoWait)?;
//! let b = to_encoder.receive(Wait::NoWait)?;
//! assert_eq!((a.as_slice()?[0], b.as_slice()?[0]), (9, 9)); // the same memory, twice
//! drop((a, b)); // the last reference dropped: back to the free queue
//! assert_eq!(pool.counts().free, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::block::port_entry::split_subscription;
pub use crate::block::port_entry::{
    DEFAULT_PORT_DEPTH, MAX_PORT_DEPTH, MAX_PORT_NAME_LEN, MAX_PORTS,
};
use crate::block::slot::{SlotState, SlotWord};
use crate::block::view::Queue;
use crate::lockfree::wait::{Wait, WaitFailure, Waitable, wait_for, wake_one};
use crate::pool::async_acquire::{Registration, WaitSource};
use crate::pool::error::{PortError, ReceiveError, SubscribeError};
use crate::pool::guard::PortGuard;
use crate::pool::handle::BufferPool;
use crate::pool::ids::PoolId;

/// A port of one pool, found by name with [`BufferPool::port`]. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    pool: PoolId,
    index: u8,
}

impl Port {
    /// The port's index in its pool (its bit in [`Published`]).
    pub fn index(self) -> u8 {
        self.index
    }
}

/// Which ports a publication reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    delivered: u16,
    refused: u16,
}

impl Published {
    /// How many ports received the buffer.
    pub fn delivered(self) -> u32 {
        self.delivered.count_ones()
    }

    /// How many ports refused it (full, without a subscriber, already holding this buffer, or
    /// of another pool).
    pub fn refused(self) -> u32 {
        self.refused.count_ones()
    }

    /// Whether `port` received it.
    pub fn reached(self, port: Port) -> bool {
        self.delivered & 1 << port.index != 0
    }
}

/// A subscription to one port: the only way to receive from it. Dropping it unsubscribes and
/// drops the buffers still waiting in the port.
///
/// A subscription receives exactly the buffers published to it: a buffer published to an
/// earlier subscription of the port (a moment before it ended, say, or by a publisher stopped
/// half-way while any number of subscriptions came and went) is dropped instead of received,
/// and a buffer published to the next one is never dropped with this one.
#[derive(Debug)]
pub struct Subscription<'p> {
    pool: &'p BufferPool,
    port: Port,
    /// The tag of the buffers published to this subscription.
    tag: u8,
    /// The port's first position of this subscription: buffers at earlier positions were
    /// published (or reserved) before it began, whatever their tag.
    start: u64,
}

impl Subscription<'_> {
    /// Whether the buffer at `position` with `tag` was published to this subscription.
    fn published_to_me(&self, position: u64, tag: u8) -> bool {
        tag == self.tag && position.wrapping_sub(self.start) as i64 >= 0
    }
}

impl BufferPool {
    /// The port called `name`.
    pub fn port(&self, name: &str) -> Result<Port, PortError> {
        let names = self.port_names();
        names
            .iter()
            .position(|port| port == name)
            .map(|index| Port {
                pool: self.id(),
                index: index as u8,
            })
            .ok_or_else(|| PortError {
                pool: self.inner_name(),
                name: name.to_owned(),
                known: names.to_vec(),
            })
    }

    /// Subscribes this process to `port`. A port has one subscriber at a time; one whose process
    /// died is replaced.
    pub fn subscribe(&self, port: Port) -> Result<Subscription<'_>, SubscribeError> {
        self.check_port(port)
            .map_err(|name| SubscribeError::WrongPool { port: name })?;
        let entry = self.block().port(usize::from(port.index));
        let port_name = || self.port_names()[usize::from(port.index)].clone();
        for attempt in 0..2 {
            // Every position before this was claimed before the subscription began.
            let start = self
                .block()
                .port_queue(usize::from(port.index))
                .settled_tail();
            match entry.try_subscribe(self.actor) {
                Ok(tag) => {
                    // Buffers left from earlier subscriptions go back to the pool.
                    self.sweep_port(port.index);
                    return Ok(Subscription {
                        pool: self,
                        port,
                        tag,
                        start,
                    });
                }
                Err(holder) => {
                    let holder = holder as u8;
                    let record = self.block().process(holder).and_then(|entry| entry.read());
                    if holder == self.actor {
                        return Err(SubscribeError::Taken {
                            port: port_name(),
                            pid: std::process::id(),
                        });
                    }
                    let alive = record.is_some() && !self.inner.liveness.is_dead(holder);
                    if alive || attempt == 1 {
                        return Err(SubscribeError::Taken {
                            port: port_name(),
                            pid: record.map_or(0, |record| record.pid),
                        });
                    }
                    self.reclaim_dead();
                    // A corrupt subscriber number with no process behind it.
                    if record.is_none() {
                        entry.unsubscribe(holder);
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// `Err(port's pool's description)` if `port` is not one of this pool's.
    fn check_port(&self, port: Port) -> Result<(), String> {
        if port.pool == self.id() && u32::from(port.index) < self.block().shape().ports {
            Ok(())
        } else {
            Err(format!("port {} of {}", port.index, port.pool))
        }
    }

    fn inner_name(&self) -> Arc<str> {
        self.name().into()
    }

    /// Hands the held buffer in slot `index` to `ports` and ends this holder's reference (a
    /// write guard's `publish`).
    pub(crate) fn publish(&self, index: u32, generation: u32, ports: &[Port]) -> Published {
        // The guard only passes the buffer on: this process's subscribers may read it at once.
        self.unclaim(index);
        let published = self.deliver(index, ports);
        self.end_publication(index, generation);
        published
    }

    /// Gives `ports` a reference each to the buffer in slot `index`, which this process holds
    /// (`Writing`, or `Publishing` from an earlier delivery), and keeps holding it.
    pub(crate) fn deliver(&self, index: u32, ports: &[Port]) -> Published {
        let slot = self.slot(index);
        // Subscribers of an earlier delivery may clear their bits meanwhile: a CAS keeps them.
        slot.update(|word| {
            (word.state != Some(SlotState::Publishing)).then_some(SlotWord {
                state: Some(SlotState::Publishing),
                actor: self.actor,
                ..word
            })
        });
        let mut published = Published::default();
        if slot.word().state != Some(SlotState::Publishing) {
            // A corrupt slot word (a peer's): deliver nothing.
            for port in ports {
                published.refused |= 1u16.checked_shl(u32::from(port.index)).unwrap_or(0);
            }
            return published;
        }
        for &port in ports {
            let bit = 1u16.checked_shl(u32::from(port.index)).unwrap_or(0);
            if (published.delivered | published.refused) & bit != 0 {
                continue;
            }
            if self.check_port(port).is_err() {
                published.refused |= bit;
                continue;
            }
            let entry = self.block().port(usize::from(port.index));
            let queue = self.block().port_queue(usize::from(port.index));
            // A port holds one reference to a buffer at most: a holder delivering again to a
            // port that still has it (the port's subscriber has not dropped it) is refused, or
            // the buffer would go back to the free queue while that port still read it.
            let held_already = slot.word().ports & bit != 0;
            let seen = entry.subscription_word();
            let (subscriber, tag) = split_subscription(seen);
            if subscriber == 0 {
                // Buffers left from ended subscriptions go back to the pool.
                self.sweep_port(port.index);
            }
            let reserved = if subscriber == 0 || held_already {
                None
            } else {
                queue.reserve(index, self.actor).ok()
            };
            let Some(position) = reserved else {
                entry.refused.fetch_add(1, Ordering::Relaxed);
                published.refused |= bit;
                continue;
            };
            // The port's reference is counted before the subscriber can take the cell. (If a
            // peer keeps the word from changing, the cell still goes to the subscriber, which
            // skips a cell whose buffer does not count its reference.)
            slot.update(|word| {
                Some(SlotWord {
                    ports: word.ports | bit,
                    ..word
                })
            });
            // The subscription seen must still be the port's now that the position is ours: a
            // subscription that began meanwhile starts after this position, and one that ended
            // must not see its tag come back 256 subscriptions later. Otherwise the buffer goes
            // in with a tag no current or later subscription receives, and is dropped there.
            let now = entry.subscription_word();
            let current = now == seen;
            let tag = if current {
                tag
            } else {
                split_subscription(now).1.wrapping_sub(1)
            };
            queue.fill(position, index, tag);
            // Either way the subscriber is woken: what waits behind this cell is takeable now.
            wake_one(&entry.wait);
            if current {
                entry.delivered.fetch_add(1, Ordering::Relaxed);
                published.delivered |= bit;
            } else {
                entry.refused.fetch_add(1, Ordering::Relaxed);
                published.refused |= bit;
            }
        }
        published
    }

    /// Drops, from the front of port `port`, the buffers published to subscriptions that have
    /// ended (their tag is not the current subscription's): they would otherwise hold their
    /// buffers until someone subscribes. Stops at the first buffer of the current subscription,
    /// or at one still being published.
    pub(crate) fn sweep_port(&self, port: u8) {
        let index = usize::from(port);
        let entry = self.block().port(index);
        let queue = self.block().port_queue(index);
        for _ in 0..queue.cell_count() {
            let (_, current) = entry.subscription();
            let Some((position, slot, _)) = queue.take_tagged(self.actor, Some(current)) else {
                return;
            };
            queue.release_unpassed(position);
            if let Some(word) = self.block().slot_checked(slot).map(|s| s.word()) {
                self.drop_port_reference(port, slot, word.generation);
            }
        }
    }

    /// Ends this process's reference to the buffer it delivered to ports: the ports keep it, or
    /// nobody does and it goes back to the free queue.
    pub(crate) fn end_publication(&self, index: u32, generation: u32) {
        let changed = self.slot(index).update(|word| {
            Some(if word.ports == 0 {
                SlotWord::new(generation.wrapping_add(1), SlotState::Free).by(self.actor)
            } else {
                SlotWord {
                    state: Some(SlotState::Shared),
                    actor: 0,
                    ..word
                }
            })
        });
        if let Some((_, after)) = changed
            && after.state == Some(SlotState::Free)
        {
            self.push(Queue::Free, index);
        }
    }

    /// Drops port `port`'s reference to slot `index` at `generation` (a port guard's drop, after
    /// it released its cell); puts the buffer back on the free queue if it was the last.
    pub(crate) fn drop_port_reference(&self, port: u8, index: u32, generation: u32) {
        let bit = 1u16 << port;
        let changed = self.slot(index).update(|word| {
            if word.generation != generation || word.ports & bit == 0 {
                // Already dropped by a reaper that found the cell gone.
                return None;
            }
            let ports = word.ports & !bit;
            Some(if word.state == Some(SlotState::Shared) && ports == 0 {
                SlotWord::new(generation.wrapping_add(1), SlotState::Free).by(self.actor)
            } else {
                SlotWord { ports, ..word }
            })
        });
        if let Some((_, after)) = changed
            && after.state == Some(SlotState::Free)
        {
            self.push(Queue::Free, index);
        }
    }
}

impl<'p> Subscription<'p> {
    /// The port subscribed to.
    pub fn port(&self) -> Port {
        self.port
    }

    /// Receives the next buffer published to the port, waiting as `wait` says. After
    /// [`BufferPool::close`], buffers already published are still received; `Closed` comes once
    /// the port is empty.
    pub fn receive(&self, wait: Wait) -> Result<PortGuard<'p>, ReceiveError> {
        let pool = self.pool;
        let entry = pool.block().port(usize::from(self.port.index));
        let source = ReceiveFrom { subscription: self };
        let taken = match source.try_take() {
            Some(taken) => Ok(taken),
            None => wait_for(
                &source,
                &entry.wait,
                pool.sleepers(WaitSource::Port(self.port.index)),
                wait,
                || {
                    pool.block().header().waits.fetch_add(1, Ordering::Relaxed);
                },
            ),
        };
        match taken {
            Ok(taken) => Ok(self.guard(taken)),
            Err(WaitFailure::Closed) => Err(self.closed()),
            Err(WaitFailure::TimedOut) => Err(match wait {
                Wait::Timeout(waited) => ReceiveError::Timeout {
                    pool: pool.inner_name(),
                    port: self.port_name(),
                    waited,
                },
                Wait::NoWait | Wait::Forever => ReceiveError::Empty {
                    pool: pool.inner_name(),
                    port: self.port_name(),
                },
            }),
        }
    }

    /// The guard of a buffer just taken from the port: its cell position, slot and generation.
    fn guard(&self, (position, index, generation): (u64, u32, u32)) -> PortGuard<'p> {
        PortGuard::new(self.pool, self.port.index, position, index, generation)
    }

    /// The error once the pool is closed and the port empty.
    fn closed(&self) -> ReceiveError {
        ReceiveError::Closed {
            pool: self.pool.inner_name(),
            port: self.port_name(),
        }
    }

    fn port_name(&self) -> String {
        self.pool.port_names()[usize::from(self.port.index)].clone()
    }
    /// A future for the next buffer published to the port: ready at once if one waits,
    /// otherwise when one is published (by any process attached to the pool). Works under any
    /// executor; time it out with the executor's timer. Dropping the future before it is ready
    /// loses no buffer. After [`BufferPool::close`] it still yields the buffers already
    /// published, then `Closed`.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
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
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("cam").with_ports(["view"]), 2, 64)?;
    /// let view = pool.port("view")?;
    /// let subscription = pool.subscribe(view)?;
    /// let producer = {
    ///     let pool = pool.clone();
    ///     std::thread::spawn(move || {
    ///         let mut frame = pool.acquire_free(Wait::Forever).unwrap();
    ///         frame.as_mut_slice().unwrap()[0] = 7;
    ///         frame.publish(&[view]);
    ///     })
    /// };
    /// let frame = block_on(subscription.receive_async())?;
    /// assert_eq!(frame.as_slice()?[0], 7);
    /// # producer.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_async<'s>(&'s self) -> Receive<'s, 'p> {
        Receive {
            subscription: self,
            registration: Registration::new(self.pool, WaitSource::Port(self.port.index)),
        }
    }
}

/// The future of [`Subscription::receive_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct Receive<'s, 'p> {
    subscription: &'s Subscription<'p>,
    registration: Registration<'p>,
}

impl<'p> Receive<'_, 'p> {
    /// The next buffer, `Closed` once the pool is closed and the port empty, `None` to wait.
    fn attempt(&self) -> Option<Result<PortGuard<'p>, ReceiveError>> {
        let subscription = self.subscription;
        let source = ReceiveFrom { subscription };
        if let Some(taken) = source.try_take() {
            return Some(Ok(subscription.guard(taken)));
        }
        source.is_closed().then(|| Err(subscription.closed()))
    }
}

impl<'p> Future for Receive<'_, 'p> {
    type Output = Result<PortGuard<'p>, ReceiveError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(result) = this.attempt() {
            return Poll::Ready(result);
        }
        this.registration.register(cx);
        match this.attempt() {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for Receive<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receive")
            .field("port", &self.subscription.port)
            .finish()
    }
}

/// A wait for a buffer on a port.
struct ReceiveFrom<'s, 'p> {
    subscription: &'s Subscription<'p>,
}

impl Waitable for ReceiveFrom<'_, '_> {
    type Item = (u64, u32, u32);

    /// Takes the next cell published to this subscription; its buffer must count this port's
    /// reference (a cell whose reference is gone, in a corrupt block, is skipped). Buffers
    /// published to an earlier subscription are dropped on the way.
    fn try_take(&self) -> Option<(u64, u32, u32)> {
        let subscription = self.subscription;
        let pool = subscription.pool;
        let port = subscription.port.index;
        let queue = pool.block().port_queue(usize::from(port));
        for _ in 0..queue.cell_count() {
            let (position, index, tag) = queue.take_tagged(pool.actor, None)?;
            let Some(slot) = pool.block().slot_checked(index) else {
                queue.release_unpassed(position);
                continue;
            };
            let word = slot.word();
            if !subscription.published_to_me(position, tag) {
                queue.release_unpassed(position);
                pool.drop_port_reference(port, index, word.generation);
                continue;
            }
            // A port guard reads: never beside a guard of this process that may write.
            let readable = !pool.peers || pool.inner.local.claim_shared(index);
            if word.ports & 1 << port != 0 && pool.len_of(index) != 0 && readable {
                slot.note_received(pool.hold_time());
                return Some((position, index, word.generation));
            }
            if readable && pool.peers {
                pool.inner.local.end_shared(index);
            }
            queue.release_unpassed(position);
        }
        None
    }

    fn is_closed(&self) -> bool {
        let pool = self.subscription.pool;
        let queue = pool
            .block()
            .port_queue(usize::from(self.subscription.port.index));
        pool.is_closed() && !queue.has_claimed()
    }

    fn on_idle(&self) {
        self.subscription.pool.reclaim_dead();
    }
}

impl Drop for Subscription<'_> {
    /// Unsubscribes, then drops the buffers published to this subscription that are waiting in
    /// the port. One a producer publishes a moment later, or one behind a publication still in
    /// progress, is dropped by whoever next looks at the port (the next subscriber, a
    /// producer, a reaper); a buffer published to the next subscription is never dropped here.
    fn drop(&mut self) {
        let pool = self.pool;
        pool.block()
            .port(usize::from(self.port.index))
            .unsubscribe(pool.actor);
        pool.sweep_port(self.port.index);
    }
}
