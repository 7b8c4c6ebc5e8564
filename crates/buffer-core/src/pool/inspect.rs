//! What a pool looks like right now, for diagnostics (`bufpool inspect`, timeout errors): who
//! holds which buffer and for how long, the attached processes, the ports. These scan the block;
//! they are not meant for the fast path.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::block::memory_kind::MemoryKind;
use crate::block::slot::SlotState;
use crate::lockfree::queue::CellState;
use crate::pool::error::{Holder, Holders};
use crate::pool::handle::BufferPool;
use crate::pool::ids::BufferId;
use crate::shm::segment::{Segment, SegmentName};

/// One buffer's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferInfo {
    /// Its id while in this state (pool, slot, the slot's generation).
    pub id: BufferId,
    /// What the buffer is doing (`None` for a corrupt state word).
    pub state: Option<SlotState>,
    /// The process holding it (or queueing it), if any.
    pub holder: Option<u32>,
    /// How long its current holder has held it, if the pool records hold times.
    pub held_for: Option<Duration>,
    /// Live references: its holder's, plus one per port holding it.
    pub references: u32,
    /// Names of the ports holding it.
    pub ports: Vec<String>,
    /// Its size in bytes.
    pub size: usize,
    /// What memory it is (`None` for a vacant slot).
    pub memory: Option<MemoryKind>,
    /// How long ago it was added to the pool (whole seconds; `None` for a vacant slot).
    pub age: Option<Duration>,
}

/// One attached process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its number in the pool's process table.
    pub actor: u8,
    /// Its process id.
    pub pid: u32,
    /// Whether it is still running (a dead one is reclaimed by the next
    /// [`BufferPool::reclaim_dead`]).
    pub alive: bool,
}

/// One port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Its name.
    pub name: String,
    /// The subscribed process, if any.
    pub subscriber: Option<u32>,
    /// Buffers waiting in it, published and not yet received.
    pub queued: u32,
    /// Buffers its subscriber received and still reads (port guards not dropped yet).
    pub reading: u32,
    /// Buffers published to it since the pool was created.
    pub delivered: u64,
    /// Buffers it refused (full, no subscriber, or already holding that buffer).
    pub refused: u64,
}

impl BufferPool {
    /// The names of the shared pools' segments on this machine (`/dev/shm/bufpool.*`).
    pub fn list_shared() -> Vec<SegmentName> {
        Segment::list()
    }

    /// Removes segment `segment` from the namespace if no live process is attached to its pool
    /// any more (its creator died without destroying it): what `bufpool remove` does. Returns
    /// whether it was removed; a pool some live process uses is left alone.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig};
    ///
    /// let name = format!("doc-orphan-{}", std::process::id());
    /// let owner = BufferPool::create_shared(&name, PoolConfig::new("p").with_capacity(1), 1, 64)?;
    /// assert!(!BufferPool::remove_orphaned(&name)?, "its creator is alive");
    /// # drop(owner);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_orphaned(segment: &str) -> Result<bool, crate::pool::error::AttachError> {
        let pool = BufferPool::attach(segment)?;
        let others_alive = pool
            .processes()
            .iter()
            .any(|process| process.actor != pool.actor && process.alive);
        if !others_alive
            && let (Some(name), Some(file)) =
                (&pool.inner.segment_name(), pool.inner.liveness.file())
        {
            Segment::unlink(name, file);
        }
        Ok(!others_alive)
    }

    /// The buffer whose memory (in this process) contains `addr`, with the offset of `addr` in
    /// it; `None` if no buffer of the pool does. For checking where foreign code (a decoder)
    /// put data: scans the pool's buffers.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("p"), 1, 64).unwrap();
    /// let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
    /// let inside = guard.as_mut_slice().unwrap()[10..].as_ptr();
    /// assert_eq!(pool.locate(inside), Some((guard.id(), 10)));
    /// assert_eq!(pool.locate(std::ptr::null()), None);
    /// ```
    pub fn locate(&self, addr: *const u8) -> Option<(crate::pool::ids::BufferId, usize)> {
        (0..self.capacity()).find_map(|index| {
            let start = self.local(index).addr as usize;
            let offset = (addr as usize).checked_sub(start)?;
            (start != 0 && offset < self.len_of(index)).then(|| {
                let generation = self.slot(index).word().generation;
                (
                    crate::pool::ids::BufferId::new(self.id(), index, generation),
                    offset,
                )
            })
        })
    }

    /// The process id of actor `actor`, if it is attached.
    fn pid_of(&self, actor: u8) -> Option<u32> {
        Some(self.block().process(actor)?.read()?.pid)
    }

    /// A snapshot of every slot's buffer, for debugging: id, size, memory kind, state, holder,
    /// age, and how long its holder has had it.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, MemoryKind, PoolConfig, SlotState, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("p").with_capacity(2), 2, 64).unwrap();
    /// let held = pool.acquire_free(Wait::NoWait).unwrap();
    /// let buffers = pool.buffers();
    /// assert_eq!(buffers[0].id, held.id());
    /// assert_eq!(buffers[0].state, Some(SlotState::Writing));
    /// assert_eq!(buffers[0].holder, Some(std::process::id()));
    /// assert_eq!(buffers[0].memory, Some(MemoryKind::Host));
    /// assert!(buffers[0].age.unwrap().as_secs() < 60);
    /// assert_eq!(buffers[1].references, 0);
    /// ```
    pub fn buffers(&self) -> Vec<BufferInfo> {
        let now = crate::shm::clock::coarse_to_duration(crate::shm::clock::coarse_now());
        (0..self.capacity())
            .map(|index| {
                let slot = self.slot(index);
                let word = slot.word();
                let held = word.is_held();
                let held_since =
                    crate::shm::clock::coarse_to_duration(slot.acquired_at.load(Ordering::Relaxed));
                let vacant = word.state == Some(SlotState::Vacant);
                BufferInfo {
                    id: BufferId::new(self.id(), index, word.generation),
                    state: word.state,
                    holder: if word.actor != 0 {
                        self.pid_of(word.actor)
                    } else {
                        None
                    },
                    held_for: now
                        .zip(held_since)
                        .filter(|_| held || word.state == Some(SlotState::Shared))
                        .map(|(now, since)| now.saturating_sub(since)),
                    references: word.references(),
                    ports: (0..self.block().shape().ports as usize)
                        .filter(|port| word.ports & 1 << port != 0)
                        .map(|port| self.port_names()[port].clone())
                        .collect(),
                    size: self.len_of(index),
                    memory: (!vacant)
                        .then(|| MemoryKind::from_word(slot.memory_kind.load(Ordering::Relaxed))),
                    age: (!vacant)
                        .then(|| {
                            now.map(|now| {
                                let added = u64::from(slot.added_at.load(Ordering::Relaxed));
                                Duration::from_secs(now.as_secs().saturating_sub(added))
                            })
                        })
                        .flatten(),
                }
            })
            .collect()
    }

    /// The processes attached to the pool.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.block()
            .processes()
            .filter_map(|(actor, entry)| {
                let record = entry.read()?;
                Some(ProcessInfo {
                    actor,
                    pid: record.pid,
                    alive: actor == self.actor || !self.inner.liveness.is_dead(actor),
                })
            })
            .collect()
    }

    /// The pool's ports.
    pub fn port_infos(&self) -> Vec<PortInfo> {
        (0..self.block().shape().ports as usize)
            .map(|index| {
                let entry = self.block().port(index);
                let (delivered, refused) = entry.counters();
                PortInfo {
                    name: self.port_names()[index].clone(),
                    subscriber: match entry.subscriber() {
                        0 => None,
                        actor => self.pid_of(actor),
                    },
                    queued: self.block().port_queue(index).waiting(),
                    reading: self.block().port_queue(index).count(CellState::Taken),
                    delivered,
                    refused,
                }
            })
            .collect()
    }

    /// Who holds buffers right now: each holder's process id, how many buffers it holds and for
    /// how long it has held the oldest (if the pool records hold times), most buffers first.
    /// Buffers held by ports count for their subscribers. Scans the slot table; meant for
    /// diagnostics, not for the fast path.
    pub fn holders(&self) -> Holders {
        let ports: Vec<Option<u32>> = self.port_infos().iter().map(|p| p.subscriber).collect();
        let mut holders: Vec<Holder> = Vec::new();
        for buffer in self.buffers() {
            let mut pids: Vec<u32> = Vec::new();
            if buffer.state.is_some_and(|_| buffer.references > 0) {
                if let (Some(pid), true) = (
                    buffer.holder,
                    buffer.references as usize > buffer.ports.len(),
                ) {
                    pids.push(pid);
                }
                let word = self.slot(buffer.id.slot).word();
                pids.extend(
                    ports
                        .iter()
                        .enumerate()
                        .filter(|(port, _)| word.ports & 1 << port != 0)
                        .filter_map(|(_, pid)| *pid),
                );
            }
            pids.sort_unstable();
            pids.dedup();
            for pid in pids {
                match holders.iter_mut().find(|holder| holder.pid == pid) {
                    Some(holder) => {
                        holder.buffers += 1;
                        holder.bytes += buffer.size as u64;
                        holder.longest = holder.longest.max(buffer.held_for);
                    }
                    None => holders.push(Holder {
                        pid,
                        buffers: 1,
                        bytes: buffer.size as u64,
                        longest: buffer.held_for,
                    }),
                }
            }
        }
        holders.sort_by(|a, b| b.buffers.cmp(&a.buffers).then(a.pid.cmp(&b.pid)));
        Holders(holders)
    }

    /// Where the pool's buffers and bytes are right now: free, filled, in use, and in use by
    /// each process (any process attached to a shared pool sees the same). Scans the slot
    /// table; meant for diagnostics (`bufpool stats`), not for the fast path.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("u"), 3, 1000).unwrap();
    /// let held = pool.acquire_free(Wait::NoWait).unwrap();
    /// let usage = pool.usage();
    /// assert_eq!((usage.free.buffers, usage.free.bytes), (2, 2000));
    /// assert_eq!((usage.in_use.buffers, usage.in_use.bytes), (1, 1000));
    /// assert_eq!(usage.total().bytes, 3000);
    /// assert_eq!(usage.holders.0[0].pid, std::process::id());
    /// ```
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for buffer in self.buffers() {
            let amount = match buffer.state {
                None | Some(SlotState::Vacant) => continue,
                Some(SlotState::Free) => &mut usage.free,
                Some(SlotState::Filled) => &mut usage.filled,
                Some(_) => &mut usage.in_use,
            };
            amount.buffers += 1;
            amount.bytes += buffer.size as u64;
        }
        usage.holders = self.holders();
        usage
    }
}

/// Some buffers and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amount {
    /// How many buffers.
    pub buffers: u32,
    /// Their size in bytes, together.
    pub bytes: u64,
}

/// Where a pool's buffers and bytes are at one moment ([`BufferPool::usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// On the free queue.
    pub free: Amount,
    /// On the filled queue.
    pub filled: Amount,
    /// Held by producers or consumers, or waiting in ports (including buffers on their way
    /// between states).
    pub in_use: Amount,
    /// The processes holding buffers (ports count for their subscribers), most buffers first.
    pub holders: Holders,
}

impl Usage {
    /// Every buffer in the pool.
    pub fn total(&self) -> Amount {
        Amount {
            buffers: self.free.buffers + self.filled.buffers + self.in_use.buffers,
            bytes: self.free.bytes + self.filled.bytes + self.in_use.bytes,
        }
    }
}

impl BufferPool {
    /// Checks that every buffer is in exactly one place: each queued buffer (`Free`, `Filled`)
    /// in exactly one cell of its queue, each held buffer in none, each port reference in one
    /// cell of its port, no cell taken or reserved, and the queues' lengths adding up. Returns
    /// the problems found (none for a consistent pool).
    ///
    /// Meaningful only while no thread or process is in the middle of an operation on the pool
    /// (a take or a push in flight looks like a problem): for tests and post-mortems.
    ///
    /// # Examples
    ///
    /// ```
    /// use buffer_core::{BufferPool, PoolConfig, Wait};
    ///
    /// let pool = BufferPool::with_heap_buffers(PoolConfig::new("p"), 3, 64).unwrap();
    /// pool.acquire_free(Wait::NoWait).unwrap().submit();
    /// assert_eq!(pool.audit(), Vec::<String>::new());
    /// ```
    pub fn audit(&self) -> Vec<String> {
        use crate::lockfree::queue::CellState;
        let capacity = self.capacity();
        let mut problems = Vec::new();
        let count =
            |ring: crate::lockfree::queue::QueueRef<'_>, what: &str, problems: &mut Vec<String>| {
                let mut seen = vec![0u32; capacity as usize];
                for (index, cell) in ring.cells() {
                    match cell.state {
                        CellState::Empty => {}
                        CellState::Full if cell.value < capacity => seen[cell.value as usize] += 1,
                        state => problems.push(format!(
                            "{what} cell {index} is {state:?} (actor {}, value {})",
                            cell.actor, cell.value
                        )),
                    }
                }
                seen
            };
        let free = count(self.block().free_queue(), "free queue", &mut problems);
        let filled = count(self.block().filled_queue(), "filled queue", &mut problems);
        let ports: Vec<Vec<u32>> = (0..self.block().shape().ports as usize)
            .map(|port| count(self.block().port_queue(port), "port queue", &mut problems))
            .collect();
        let mut buffers = 0;
        for index in 0..capacity {
            let word = self.slot(index).word();
            let i = index as usize;
            let (want_free, want_filled) = match word.state {
                Some(SlotState::Vacant) => (0, 0),
                Some(SlotState::Free) => (1, 0),
                Some(SlotState::Filled) => (0, 1),
                _ => (0, 0),
            };
            if word.state != Some(SlotState::Vacant) {
                buffers += 1;
            }
            if (free[i], filled[i]) != (want_free, want_filled) {
                problems.push(format!(
                    "buffer {index} ({:?}) is in the free queue {} times and in the filled queue {} times",
                    word.state, free[i], filled[i]
                ));
            }
            for (port, seen) in ports.iter().enumerate() {
                let counted = u32::from(word.ports & 1 << port != 0);
                if seen[i] != counted {
                    problems.push(format!(
                        "buffer {index} is queued {} times in port {port}, which holds {counted} reference(s) to it",
                        seen[i]
                    ));
                }
            }
        }
        let counts = self.counts();
        let queued = free.iter().sum::<u32>() + filled.iter().sum::<u32>();
        if counts.free + counts.filled != queued || counts.total != buffers {
            problems.push(format!(
                "counts {counts} disagree with the {buffers} buffers and {queued} queued cells found"
            ));
        }
        problems
    }
}
