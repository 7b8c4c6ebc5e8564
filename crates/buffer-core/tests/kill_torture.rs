//! Kill torture against live peers: [`WORKERS`] worker processes attach to one shared pool and
//! loop over random operations on it at the same time (acquire free buffers with short
//! timeouts, write them, submit them, publish them to ports, receive from their own port,
//! acquire filled buffers, detach ids and redeem them later, hold buffers for a while), while the
//! test process, the supervisor, SIGKILLs one of them at a random moment and respawns it. The
//! others keep working while one dies; what the dead one held is reclaimed by whoever gets there
//! first: a live worker whose wait begins to sleep, the respawned worker's attach, or the
//! supervisor's `reclaim_dead`.
//!
//! # What is checked
//!
//! - **Ownership, by content.** A writer stamps each buffer it acquires with an owner token (its
//!   pid and a nonce, in the payload's first 16 bytes and in the metadata's `timestamp_ns` and
//!   `sequence`), random bytes, and a checksum over both (bytes 16..24). Before it submits,
//!   publishes, detaches, refills or drops the buffer, and after redeeming it, it checks that the
//!   buffer still holds exactly what it wrote: another process writing the same buffer (two
//!   owners at once) breaks that. A reader checks the checksum and the metadata on receipt and
//!   again just before it drops the buffer (or detaches it, or after redeeming it): a writer
//!   given a buffer that is still being read breaks that. Every check is counted, and every
//!   failed one is a violation; the supervisor fails at the first.
//! - **Hangs.** The run fails if no worker acquires or receives a buffer for [`STALL`], if a
//!   running worker completes no operation for [`STALL`], if a respawned worker does not reach
//!   its loop within [`STALL`], if a killed worker's entry is not reclaimed within [`STALL`], or
//!   if the workers do not exit within [`STALL`] of being told to stop; the failure shows the
//!   pool's buffers, processes and ports and each worker's counters.
//! - **Reclamation latency:** from the SIGKILL to the moment the dead worker's entry is gone from
//!   `processes()`, polled every 200 µs, for the workers that had an entry when they were
//!   killed; p50 and p99.
//! - **At the end** the workers are told to stop (a flag in the counters file) and exit normally;
//!   then the pool has exactly one process (the supervisor: every exited worker detached, every
//!   killed one was reclaimed), the ports and the filled queue are drained with the same checks,
//!   `audit()` finds nothing, every buffer is `Free` and `counts().free == BUFFERS` (none lost).
//!
//! # When the kills land
//!
//! Each round picks one of three moments: a random moment in a running worker's life (60 %);
//! 0 to 4 ms after the last respawned worker was spawned, mostly before it attaches (10 %); or
//! inside that worker's `attach`: once it says it is about to attach, after a random delay of up
//! to 1.5 times the mean attach time measured so far (30 %). The summary counts the kills by what
//! the worker was doing as seen just before the kill.
//!
//! # Counters
//!
//! The workers count into a small file of `u64` atomics that every process maps
//! (`/dev/shm/test-torture-stats-PID`), one block per worker slot, so a killed worker's counts
//! survive it: an operation is counted once it completed, so the counts are exact for what
//! completed (an operation interrupted by the kill is not counted).
//!
//! # Knobs
//!
//! - `BUFPOOL_KILL_ROUNDS`: kills (default 500; `cargo xtask stress` runs 10,000 in release).
//! - `BUFPOOL_TORTURE_SEED`: the supervisor's seed (default from the pid; printed on failure).
//!   Timing makes a run irreproducible; the seed only fixes the random choices.
//! - `BUFPOOL_TORTURE_SABOTEUR`, for checking by hand that the detectors fire (the test must
//!   then FAIL): `write` makes the worker of slot 0 keep a pointer to each buffer it submits or
//!   publishes and later write a byte into it, a buffer it no longer owns (the violation counter
//!   must catch it); `stall` makes every worker stop operating once subscribed (the hang detector
//!   must catch it).

mod common;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use buffer_core::{
    AcquireError, BufferId, BufferPool, FrameMeta, PoolConfig, Port, PortGuard, ReadGuard,
    ReceiveError, SlotState, SubscribeError, Subscription, Wait, WriteGuard,
};
use common::{ROLE, Rng, checksum, role, wait_exit};

/// Worker processes running at once (one port each).
const WORKERS: usize = 4;
/// Buffers in the pool.
const BUFFERS: u32 = 24;
/// Bytes per buffer.
const SIZE: usize = 512;
/// Depth of each worker's port.
const PORT_DEPTH: u32 = 2;
/// Most buffers (guards and detached ids) one worker holds at once.
const MAX_HELD: usize = 4;
/// How long nothing may happen before the run counts as hung.
const STALL: Duration = Duration::from_secs(10);
/// Bytes of the stamp at the start of each payload: owner pid, nonce, checksum.
const HEADER: usize = 24;

// ---------------------------------------------------------------------------------------------
// The counters file.

/// Word of the counters file that tells the workers to stop (non-zero).
const STOP_WORD: usize = 0;
/// First word of slot 0's block.
const SLOT_BASE: usize = 8;
/// Words per slot block.
const SLOT_WORDS: usize = 16;
/// Words in the counters file.
const WORDS: usize = SLOT_BASE + WORKERS * SLOT_WORDS;

/// What a worker is doing: word 0 of its slot's block holds `pid << 8 | phase`, so the
/// supervisor can tell the current worker's phase from a killed predecessor's.
const ATTACHING: u64 = 1;
const SUBSCRIBING: u64 = 2;
const RUNNING: u64 = 3;
const STOPPING: u64 = 4;
const DONE: u64 = 5;

/// A worker slot's counters (word 1 onwards of its block); cumulative over its incarnations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// Completed calls into the pool (acquisitions that timed out included).
    Ops = 1,
    /// Buffers acquired (free or filled), received or redeemed: what a hang stops.
    Progress,
    /// Content checks done.
    Checks,
    /// Content checks failed (and refused redeems of the worker's own ids).
    Violations,
    /// Subscribe attempts refused because the dead predecessor still held the port.
    SubscribeRetries,
    /// Port deliveries.
    Published,
    /// Buffers received from a port.
    Received,
    /// Ids redeemed.
    Redeemed,
    /// Time spent in `attach`, in microseconds, and attaches completed.
    AttachMicros,
    Attaches,
    /// Bytes the saboteur wrote into buffers it did not own.
    Sabotage,
    /// Worker incarnations that ran hot (see [`Worker::hot`]).
    Hot,
}

const COUNTERS: [Counter; 12] = [
    Counter::Ops,
    Counter::Progress,
    Counter::Checks,
    Counter::Violations,
    Counter::SubscribeRetries,
    Counter::Published,
    Counter::Received,
    Counter::Redeemed,
    Counter::AttachMicros,
    Counter::Attaches,
    Counter::Sabotage,
    Counter::Hot,
];

/// The counters file, mapped shared into every process of the test.
#[derive(Clone, Copy)]
struct Board(&'static [AtomicU64]);

impl Board {
    /// Creates (zeroed) or opens the file at `path` and maps it. The mapping is never unmapped:
    /// it lives as long as the process.
    fn map(path: &Path, create: bool) -> Board {
        let len = WORDS * size_of::<u64>();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(path)
            .unwrap_or_else(|error| panic!("counters file {}: {error}", path.display()));
        if create {
            file.set_len(len as u64).unwrap();
        }
        // SAFETY: a new shared mapping chosen by the kernel (null hint, no MAP_FIXED), so it
        // replaces nothing of this process; `file` is open read-write and `len` bytes long (set
        // by its creator before any worker is spawned).
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                &file,
                0,
            )
        }
        .unwrap_or_else(|error| panic!("mapping {}: {error}", path.display()));
        debug_assert!(base.cast::<AtomicU64>().is_aligned());
        // SAFETY: the mapping is `len` = `WORDS` × 8 bytes, page-aligned (so aligned for
        // `AtomicU64`), readable and writable, and never unmapped, so valid for `'static`; the
        // other processes touch it only through atomics too, and every bit pattern is a valid
        // `u64`.
        Board(unsafe { std::slice::from_raw_parts(base.cast::<AtomicU64>(), WORDS) })
    }

    fn word(self, slot: usize, offset: usize) -> &'static AtomicU64 {
        &self.0[SLOT_BASE + slot * SLOT_WORDS + offset]
    }

    fn add(self, slot: usize, counter: Counter, n: u64) {
        self.word(slot, counter as usize)
            .fetch_add(n, Ordering::Relaxed);
    }

    fn get(self, slot: usize, counter: Counter) -> u64 {
        self.word(slot, counter as usize).load(Ordering::Relaxed)
    }

    fn total(self, counter: Counter) -> u64 {
        (0..WORKERS).map(|slot| self.get(slot, counter)).sum()
    }

    fn set_phase(self, slot: usize, pid: u32, phase: u64) {
        self.word(slot, 0)
            .store((u64::from(pid) << 8) | phase, Ordering::Release);
    }

    /// The phase of worker `pid` in `slot`; 0 if it has not started (the word is still its
    /// predecessor's).
    fn phase(self, slot: usize, pid: u32) -> u64 {
        let word = self.word(slot, 0).load(Ordering::Acquire);
        if word >> 8 == u64::from(pid) {
            word & 0xff
        } else {
            0
        }
    }

    fn stop(self) {
        self.0[STOP_WORD].store(1, Ordering::Release);
    }

    fn stopping(self) -> bool {
        self.0[STOP_WORD].load(Ordering::Acquire) != 0
    }

    /// One line per slot, for failure reports.
    fn describe(self) -> String {
        let mut out = String::new();
        for slot in 0..WORKERS {
            let word = self.word(slot, 0).load(Ordering::Relaxed);
            out += &format!("  slot {slot}: pid {} phase {}", word >> 8, word & 0xff);
            for counter in COUNTERS {
                out += &format!(", {counter:?} {}", self.get(slot, counter));
            }
            out += "\n";
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The content stamp.

/// What a writer put into a buffer: owner token and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    owner: u64,
    nonce: u64,
    sum: u64,
}

/// The checksum of a payload: everything but the checksum field itself.
fn payload_sum(bytes: &[u8]) -> u64 {
    checksum(&bytes[..16]).rotate_left(17) ^ checksum(&bytes[HEADER..])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Writes a fresh stamp (owner, nonce, random bytes, checksum) into `guard`'s buffer and
/// metadata.
fn stamp(guard: &mut WriteGuard<'_>, owner: u64, rng: &mut Rng) -> Stamp {
    let nonce = rng.next();
    let bytes = guard.as_mut_slice().unwrap();
    bytes[..8].copy_from_slice(&owner.to_le_bytes());
    bytes[8..16].copy_from_slice(&nonce.to_le_bytes());
    for chunk in bytes[HEADER..].chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
    }
    let sum = payload_sum(bytes);
    bytes[16..HEADER].copy_from_slice(&sum.to_le_bytes());
    let mut meta = guard.meta_mut();
    meta.timestamp_ns = owner as i64;
    meta.sequence = nonce;
    Stamp { owner, nonce, sum }
}

/// A guard a worker reads through: a filled buffer's or a port's.
trait Reading {
    fn id(&self) -> BufferId;
    fn bytes(&self) -> &[u8];
    fn meta(&self) -> FrameMeta;
}

/// Implements [`Reading`] for a guard type with `id`, `as_slice` and `meta` methods.
macro_rules! reading {
    ($guard:ident) => {
        impl Reading for $guard<'_> {
            fn id(&self) -> BufferId {
                $guard::id(self)
            }
            fn bytes(&self) -> &[u8] {
                self.as_slice().unwrap()
            }
            fn meta(&self) -> FrameMeta {
                $guard::meta(self)
            }
        }
    };
}
reading!(ReadGuard);
reading!(PortGuard);

/// Reads the stamp of a written buffer and checks it against the content and the metadata.
fn read_stamp(bytes: &[u8], meta: FrameMeta) -> Result<Stamp, String> {
    let found = Stamp {
        owner: u64_at(bytes, 0),
        nonce: u64_at(bytes, 8),
        sum: u64_at(bytes, 16),
    };
    let sum = payload_sum(bytes);
    if sum != found.sum {
        return Err(format!(
            "checksum {sum:#x} of the content, {:#x} stamped (stamp {found:x?})",
            found.sum
        ));
    }
    if (meta.timestamp_ns as u64, meta.sequence) != (found.owner, found.nonce) {
        return Err(format!(
            "metadata names owner {} nonce {:#x}, the content {found:x?}",
            meta.timestamp_ns, meta.sequence
        ));
    }
    Ok(found)
}

/// Checks that a buffer still holds `expected`.
fn still(bytes: &[u8], meta: FrameMeta, expected: Stamp) -> Result<(), String> {
    let found = read_stamp(bytes, meta)?;
    if found == expected {
        Ok(())
    } else {
        Err(format!("holds {found:x?}, expected {expected:x?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The workers.

fn port_name(slot: usize) -> String {
    format!("w{slot}")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// The worker processes' entry point; does nothing when run as a test.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "worker");
    let slot: usize = env("SLOT").parse().unwrap();
    let board = Board::map(Path::new(&env("STATS")), false);
    let sabotage = std::env::var("SABOTEUR").ok();
    worker(
        slot,
        board,
        &env("SEGMENT"),
        env("SEED").parse().unwrap(),
        std::env::var_os("HOT").is_some(),
        sabotage.as_deref(),
    );
}

fn worker(slot: usize, board: Board, segment: &str, seed: u64, hot: bool, sabotage: Option<&str>) {
    let pid = std::process::id();
    let parent = std::os::unix::process::parent_id();
    board.set_phase(slot, pid, ATTACHING);
    let started = Instant::now();
    let pool = BufferPool::attach(segment).unwrap_or_else(|error| panic!("attach: {error}"));
    board.add(
        slot,
        Counter::AttachMicros,
        started.elapsed().as_micros() as u64,
    );
    board.add(slot, Counter::Attaches, 1);
    board.set_phase(slot, pid, SUBSCRIBING);
    let ports: Vec<Port> = (0..WORKERS)
        .map(|i| pool.port(&port_name(i)).unwrap())
        .collect();
    // The killed predecessor may still hold the port until it is reclaimed (subscribe reclaims
    // a dead subscriber itself, so this rarely retries).
    let subscription = loop {
        match pool.subscribe(ports[slot]) {
            Ok(subscription) => break subscription,
            Err(SubscribeError::Taken { .. }) => {
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(3); // the supervisor is gone
                }
                board.add(slot, Counter::SubscribeRetries, 1);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => panic!("subscribe: {error}"),
        }
    };
    board.set_phase(slot, pid, RUNNING);
    let mut worker = Worker {
        pool: &pool,
        slot,
        board,
        owner: u64::from(pid),
        rng: Rng::new(seed),
        ports,
        subscription,
        writing: Vec::new(),
        write_ids: Vec::new(),
        reading: Vec::new(),
        read_ids: Vec::new(),
        received: Vec::new(),
        hot,
        saboteur: sabotage == Some("write") && slot == 0,
        stale: None,
        reported: std::cell::Cell::new(0),
    };
    if worker.hot {
        board.add(slot, Counter::Hot, 1);
    }
    let mut steps = 0u64;
    while !board.stopping() {
        steps += 1;
        if steps.is_multiple_of(64) && std::os::unix::process::parent_id() != parent {
            std::process::exit(3); // the supervisor is gone
        }
        if sabotage == Some("stall") {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        worker.step();
    }
    board.set_phase(slot, pid, STOPPING);
    worker.release_all();
    drop(worker);
    drop(pool);
    board.set_phase(slot, pid, DONE);
}

/// One worker's state: what it holds, each with the stamp it expects.
struct Worker<'p> {
    pool: &'p BufferPool,
    slot: usize,
    board: Board,
    owner: u64,
    rng: Rng,
    ports: Vec<Port>,
    subscription: Subscription<'p>,
    writing: Vec<(WriteGuard<'p>, Stamp)>,
    write_ids: Vec<(BufferId, Stamp)>,
    reading: Vec<(ReadGuard<'p>, Stamp)>,
    read_ids: Vec<(BufferId, Stamp)>,
    received: Vec<(PortGuard<'p>, Stamp)>,
    /// Whether this worker writes into buffers it gave away (`BUFPOOL_TORTURE_SABOTEUR=write`).
    /// Whether this worker never waits or sleeps: it spends its time inside the pool's
    /// operations, so that kills land there and not in a sleep, and it races the others'
    /// operations as closely as it can. The others wait (and so reclaim) and hold buffers for a
    /// while. The supervisor makes at most one live worker hot: a dead worker is reclaimed
    /// only when someone waits, attaches or calls `reclaim_dead`, so the live peers must not
    /// all be hot, and one hot worker keeps one core busy.
    hot: bool,
    saboteur: bool,
    /// Violations printed so far (the first few are).
    reported: std::cell::Cell<u32>,
    /// The saboteur's pointer to the payload of a buffer it submitted or published.
    stale: Option<*mut u8>,
}

impl<'p> Worker<'p> {
    fn held(&self) -> usize {
        self.writing.len()
            + self.write_ids.len()
            + self.reading.len()
            + self.read_ids.len()
            + self.received.len()
    }

    fn count(&self, counter: Counter) {
        self.board.add(self.slot, counter, 1);
    }

    /// Records a check's outcome.
    fn verdict(&self, what: &str, id: BufferId, outcome: Result<(), String>) {
        self.count(Counter::Checks);
        if let Err(problem) = outcome {
            self.count(Counter::Violations);
            let reported = self.reported.get();
            self.reported.set(reported + 1);
            if reported < 5 {
                eprintln!(
                    "torture: VIOLATION in worker pid {} (slot {}): {what} {id}: {problem}",
                    self.owner, self.slot
                );
            } else if reported == 5 {
                eprintln!(
                    "torture: worker pid {}: further violations only counted",
                    self.owner
                );
            }
        }
    }

    /// A short random wait: none, or up to `max_us` microseconds.
    fn wait(&mut self, max_us: u64) -> Wait {
        if self.hot || self.rng.below(4) == 0 {
            Wait::NoWait
        } else {
            Wait::Timeout(Duration::from_micros(self.rng.below(max_us)))
        }
    }

    /// Removes a random element of `items`.
    fn take<T>(rng: &mut Rng, items: &mut Vec<T>) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items.swap_remove(rng.below(items.len() as u64) as usize))
        }
    }

    fn check_write(&self, what: &str, guard: &mut WriteGuard<'_>, expected: Stamp) {
        let meta = guard.meta();
        let outcome = still(guard.as_mut_slice().unwrap(), meta, expected);
        self.verdict(what, guard.id(), outcome);
    }

    fn check_read(&self, what: &str, guard: &impl Reading, seen: Stamp) {
        self.verdict(what, guard.id(), still(guard.bytes(), guard.meta(), seen));
    }

    /// Checks a buffer just read; returns its stamp (a default one if it failed, so that the
    /// later checks fail too).
    fn check_receipt(&self, what: &str, guard: &impl Reading) -> Stamp {
        let id = guard.id();
        let outcome = read_stamp(guard.bytes(), guard.meta());
        let stamp = outcome.clone().unwrap_or(Stamp {
            owner: 0,
            nonce: 0,
            sum: 0,
        });
        self.verdict(what, id, outcome.map(drop));
        stamp
    }

    /// One random operation.
    fn step(&mut self) {
        match self.rng.below(16) {
            0..=2 if self.held() < MAX_HELD => {
                let wait = self.wait(2000);
                let acquired = self.pool.acquire_free(wait);
                self.count(Counter::Ops);
                match acquired {
                    Ok(mut guard) => {
                        self.count(Counter::Progress);
                        let stamp = stamp(&mut guard, self.owner, &mut self.rng);
                        self.writing.push((guard, stamp));
                    }
                    Err(AcquireError::Empty { .. } | AcquireError::Timeout { .. }) => {}
                    Err(error) => panic!("acquire_free: {error}"),
                }
            }
            3 => {
                if let Some((mut guard, expected)) = Self::take(&mut self.rng, &mut self.writing) {
                    self.check_write("before refilling", &mut guard, expected);
                    let stamp = stamp(&mut guard, self.owner, &mut self.rng);
                    self.writing.push((guard, stamp));
                }
            }
            4 | 5 => {
                if let Some((mut guard, expected)) = Self::take(&mut self.rng, &mut self.writing) {
                    self.check_write("before passing on", &mut guard, expected);
                    let payload = guard.as_mut_slice().unwrap().as_mut_ptr();
                    match self.rng.below(5) {
                        0 | 1 => {
                            guard.submit();
                            self.gave_away(payload);
                        }
                        2 => {
                            let ports: Vec<Port> = self
                                .ports
                                .iter()
                                .copied()
                                .filter(|_| self.rng.below(2) == 0)
                                .collect();
                            let published = guard.publish(&ports);
                            self.board.add(
                                self.slot,
                                Counter::Published,
                                published.delivered().into(),
                            );
                            self.gave_away(payload);
                        }
                        3 => self.write_ids.push((guard.into_id(), expected)),
                        _ => drop(guard),
                    }
                    self.count(Counter::Ops);
                }
            }
            6 | 7 if self.held() < MAX_HELD => {
                let wait = self.wait(500);
                let acquired = self.pool.acquire_filled(wait);
                self.count(Counter::Ops);
                match acquired {
                    Ok(guard) => {
                        self.count(Counter::Progress);
                        let seen = self.check_receipt("on acquiring filled", &guard);
                        self.reading.push((guard, seen));
                    }
                    Err(AcquireError::Empty { .. } | AcquireError::Timeout { .. }) => {}
                    Err(error) => panic!("acquire_filled: {error}"),
                }
            }
            8 => {
                if let Some((guard, seen)) = Self::take(&mut self.rng, &mut self.reading) {
                    let what = "before releasing filled";
                    self.check_read(what, &guard, seen);
                    if self.rng.below(3) == 0 {
                        self.read_ids.push((guard.into_id(), seen));
                    } else {
                        drop(guard);
                    }
                    self.count(Counter::Ops);
                }
            }
            9 => {
                if let Some((id, expected)) = Self::take(&mut self.rng, &mut self.write_ids) {
                    self.redeem_write(id, expected);
                }
            }
            10 => {
                if let Some((id, seen)) = Self::take(&mut self.rng, &mut self.read_ids) {
                    self.redeem_read(id, seen);
                }
            }
            11..=13 => {
                let wait = self.wait(1000);
                let received = self.subscription.receive(wait);
                self.count(Counter::Ops);
                match received {
                    Ok(guard) => {
                        self.count(Counter::Progress);
                        self.count(Counter::Received);
                        let seen = self.check_receipt("on receipt", &guard);
                        if self.held() < MAX_HELD {
                            self.received.push((guard, seen));
                        } else {
                            let what = "before dropping a receipt";
                            self.check_read(what, &guard, seen);
                        }
                    }
                    Err(ReceiveError::Empty { .. } | ReceiveError::Timeout { .. }) => {}
                    Err(error) => panic!("receive: {error}"),
                }
            }
            14 => {
                if let Some((guard, seen)) = Self::take(&mut self.rng, &mut self.received) {
                    let what = "before dropping a receipt";
                    self.check_read(what, &guard, seen);
                    drop(guard);
                    self.count(Counter::Ops);
                }
            }
            15 => {
                // Hold what is held for a while (and leave the CPU to the others).
                if self.hot {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(self.rng.below(1000)));
                }
                self.sabotage();
            }
            _ => {}
        }
    }

    fn redeem_write(&mut self, id: BufferId, expected: Stamp) {
        let redeemed = self.pool.redeem_write(id);
        self.count(Counter::Ops);
        match redeemed {
            Ok(mut guard) => {
                self.count(Counter::Progress);
                self.count(Counter::Redeemed);
                self.check_write("after redeeming", &mut guard, expected);
                self.writing.push((guard, expected));
            }
            Err(error) => self.verdict("redeeming own write id", id, Err(error.to_string())),
        }
    }

    fn redeem_read(&mut self, id: BufferId, seen: Stamp) {
        let redeemed = self.pool.redeem_read(id);
        self.count(Counter::Ops);
        match redeemed {
            Ok(guard) => {
                self.count(Counter::Progress);
                self.count(Counter::Redeemed);
                let what = "after redeeming";
                self.check_read(what, &guard, seen);
                self.reading.push((guard, seen));
            }
            Err(error) => self.verdict("redeeming own read id", id, Err(error.to_string())),
        }
    }

    /// Records the payload of a buffer this worker no longer owns, for the saboteur.
    fn gave_away(&mut self, payload: *mut u8) {
        if self.saboteur {
            self.stale = Some(payload);
        }
    }

    /// The saboteur writes a byte into a buffer it gave away.
    fn sabotage(&mut self) {
        let Some(payload) = self.stale.take() else {
            return;
        };
        let at = HEADER + self.rng.below((SIZE - HEADER) as u64) as usize;
        debug_assert!(at < SIZE);
        // SAFETY: `payload` is the start of a buffer of this pool, `SIZE` bytes long, mapped in
        // this process for as long as the pool handle `self.pool` lives, which outlives `self`;
        // `at < SIZE`. This process holds no reference to those bytes any more (the guard is
        // gone), so the write aliases nothing here; that it breaks the pool's ownership rule for
        // other processes is the point of the saboteur, which the checks must catch.
        unsafe { std::ptr::write_volatile(payload.wrapping_add(at), self.rng.next() as u8) };
        self.count(Counter::Sabotage);
    }

    /// Releases everything held, with the checks, before a normal exit.
    fn release_all(&mut self) {
        while let Some((id, expected)) = self.write_ids.pop() {
            self.redeem_write(id, expected);
        }
        while let Some((id, seen)) = self.read_ids.pop() {
            self.redeem_read(id, seen);
        }
        for (mut guard, expected) in std::mem::take(&mut self.writing) {
            self.check_write("before dropping at exit", &mut guard, expected);
        }
        for (guard, seen) in std::mem::take(&mut self.reading) {
            let what = "before releasing filled at exit";
            self.check_read(what, &guard, seen);
        }
        for (guard, seen) in std::mem::take(&mut self.received) {
            let what = "before dropping a receipt at exit";
            self.check_read(what, &guard, seen);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The supervisor.

/// When a round's kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// At a random moment of a running worker's life.
    Running,
    /// Soon after the last respawn, mostly before the new worker attaches.
    AfterSpawn,
    /// Inside the last respawned worker's `attach`.
    InAttach,
}

/// Who is expected to reclaim a killed worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reaper {
    /// The live workers' waits; the slot is respawned once the entry is gone.
    Peers,
    /// The supervisor's `reclaim_dead`, called at once.
    Supervisor,
    /// The respawned worker's attach, racing the peers: respawned at once.
    Attach,
}

const REAPERS: [Reaper; 3] = [Reaper::Peers, Reaper::Supervisor, Reaper::Attach];

/// A running worker.
struct Live {
    hot: bool,
    child: Child,
    pid: u32,
    spawned: Instant,
    /// Its ops count and when it last changed, for the stall check.
    ops: (u64, Instant),
}

struct Supervisor<'a> {
    pool: &'a BufferPool,
    segment: String,
    stats: PathBuf,
    board: Board,
    seed: u64,
    rng: Rng,
    sabotage: Option<String>,
    workers: Vec<Option<Live>>,
    /// Total progress and when it last changed.
    progress: (u64, Instant),
    /// Checks done by the supervisor itself (while draining at the end).
    checks: u64,
}

impl Drop for Supervisor<'_> {
    fn drop(&mut self) {
        for worker in self.workers.iter_mut().flatten() {
            worker.child.kill().ok();
            worker.child.wait().ok();
        }
        std::fs::remove_file(&self.stats).ok();
    }
}

impl Supervisor<'_> {
    fn spawn(&mut self, slot: usize) {
        let seed = self.rng.next();
        let others_hot = self.workers.iter().flatten().any(|live| live.hot);
        let hot = !others_hot && self.rng.below(2) == 0;
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "child_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(ROLE, "worker")
            .env("SEGMENT", &self.segment)
            .env("STATS", &self.stats)
            .env("SLOT", slot.to_string())
            .env("SEED", seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if hot {
            command.env("HOT", "1");
        }
        if let Some(sabotage) = &self.sabotage {
            command.env("SABOTEUR", sabotage);
        }
        let child = command.spawn().unwrap();
        let now = Instant::now();
        self.workers[slot] = Some(Live {
            hot,
            pid: child.id(),
            child,
            spawned: now,
            ops: (self.board.get(slot, Counter::Ops), now),
        });
    }

    /// Fails the run, with everything that helps to see why: the pool's state is taken first,
    /// then the workers are killed (so that they stop while the panic is reported).
    fn fail(&mut self, why: &str) -> ! {
        let unusual: Vec<_> = self
            .pool
            .buffers()
            .into_iter()
            .filter(|buffer| buffer.state != Some(SlotState::Free))
            .collect();
        let report = format!(
            "torture (seed {:#x}): {why}\ncounts: {}\nbuffers not free: {unusual:#?}\nprocesses: {:#?}\nports: {:#?}\nworkers:\n{}",
            self.seed,
            self.pool.counts(),
            self.pool.processes(),
            self.pool.port_infos(),
            self.board.describe()
        );
        for live in self.workers.iter_mut().flatten() {
            live.child.kill().ok();
            live.child.wait().ok();
        }
        panic!("{report}");
    }

    /// The checks made while the workers run: violations, stalls, workers that exit.
    fn check(&mut self) {
        let now = Instant::now();
        if self.board.total(Counter::Violations) > 0 {
            self.fail("a content check failed (see the VIOLATION lines above)");
        }
        let progress = self.board.total(Counter::Progress);
        if progress != self.progress.0 {
            self.progress = (progress, now);
        } else if now - self.progress.1 > STALL {
            self.fail(&format!(
                "hang: no worker acquired or received a buffer for {STALL:?}"
            ));
        }
        for slot in 0..WORKERS {
            let board = self.board;
            let Some(worker) = self.workers[slot].as_mut() else {
                continue;
            };
            if let Some(status) = worker.child.try_wait().unwrap() {
                let pid = worker.pid;
                self.fail(&format!(
                    "worker pid {pid} (slot {slot}) exited by itself: {status}"
                ));
            }
            let phase = board.phase(slot, worker.pid);
            let ops = board.get(slot, Counter::Ops);
            if ops != worker.ops.0 {
                worker.ops = (ops, now);
            }
            let (pid, spawned, stalled) = (worker.pid, worker.spawned, now - worker.ops.1);
            if phase < RUNNING && now - spawned > STALL {
                self.fail(&format!(
                    "hang: worker pid {pid} (slot {slot}) is in phase {phase} {STALL:?} after its spawn"
                ));
            }
            if phase == RUNNING && stalled > STALL {
                self.fail(&format!(
                    "hang: worker pid {pid} (slot {slot}) completed no operation for {STALL:?}"
                ));
            }
        }
    }

    /// Waits `duration` while checking.
    fn watch(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        loop {
            self.check();
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(1)));
        }
    }

    /// Waits until the entry of `pid` is gone from the pool's process table; returns when.
    fn wait_reclaimed(&mut self, pid: u32, killed: Instant) -> Instant {
        loop {
            if !self.pool.processes().iter().any(|p| p.pid == pid) {
                return Instant::now();
            }
            if killed.elapsed() > STALL {
                self.fail(&format!(
                    "hang: killed worker pid {pid} not reclaimed within {STALL:?}"
                ));
            }
            self.check();
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits until the worker in `slot` says it is about to attach. It spins (yielding the
    /// core) rather than sleeps, so that the kill that follows can land inside an attach that
    /// lasts a tenth of a millisecond; it checks once a millisecond.
    fn wait_attaching(&mut self, slot: usize) {
        let pid = self.workers[slot].as_ref().unwrap().pid;
        let mut checked = Instant::now();
        while self.board.phase(slot, pid) < ATTACHING {
            if checked.elapsed() > Duration::from_millis(1) {
                self.check();
                checked = Instant::now();
            }
            std::thread::yield_now();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[test]
fn live_workers_killed_at_random_moments_lose_nothing_and_share_nothing() {
    if role().is_some() {
        return;
    }
    let rounds: u64 = std::env::var("BUFPOOL_KILL_ROUNDS")
        .ok()
        .map_or(500, |rounds| rounds.parse().unwrap());
    let seed: u64 = std::env::var("BUFPOOL_TORTURE_SEED").ok().map_or_else(
        || 0x5eed ^ (u64::from(std::process::id()) << 16),
        |seed| seed.parse().unwrap(),
    );
    let segment = common::segment_name("torture");
    let ports: Vec<String> = (0..WORKERS).map(port_name).collect();
    let config = PoolConfig::new("torture")
        .with_capacity(BUFFERS)
        .with_ports(ports)
        .with_port_depth(PORT_DEPTH);
    let pool = BufferPool::create_shared(&segment, config, BUFFERS, SIZE).unwrap();
    let stats = PathBuf::from(format!(
        "/dev/shm/test-torture-stats-{}",
        std::process::id()
    ));
    std::fs::remove_file(&stats).ok();
    let started = Instant::now();
    let mut sup = Supervisor {
        pool: &pool,
        segment,
        board: Board::map(&stats, true),
        stats,
        seed,
        rng: Rng::new(seed),
        sabotage: std::env::var("BUFPOOL_TORTURE_SABOTEUR").ok(),
        workers: (0..WORKERS).map(|_| None).collect(),
        progress: (0, started),
        checks: 0,
    };
    for slot in 0..WORKERS {
        sup.spawn(slot);
    }

    // Kills by the phase the victim was in (0 = not started yet) and latencies by reaper.
    let mut by_phase = [0u64; 4];
    let mut latencies: [Vec<Duration>; 3] = Default::default();
    let mut last_spawned = 0;
    for _ in 0..rounds {
        let moment = match sup.rng.below(10) {
            0 => Moment::AfterSpawn,
            1..=3 => Moment::InAttach,
            _ => Moment::Running,
        };
        let victim = match moment {
            Moment::Running => {
                let pause = Duration::from_micros(sup.rng.below(20_000));
                sup.watch(pause);
                sup.rng.below(WORKERS as u64) as usize
            }
            Moment::AfterSpawn => {
                let spawned = sup.workers[last_spawned].as_ref().unwrap().spawned;
                let at = spawned + Duration::from_micros(sup.rng.below(4000));
                sup.watch(at.saturating_duration_since(Instant::now()));
                last_spawned
            }
            Moment::InAttach => {
                sup.wait_attaching(last_spawned);
                let attaches = sup.board.total(Counter::Attaches).max(1);
                let mean = sup.board.total(Counter::AttachMicros) / attaches;
                let delay = sup.rng.below(mean.max(50) * 3 / 2);
                let until = Instant::now() + Duration::from_micros(delay);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                last_spawned
            }
        };
        let mut worker = sup.workers[victim].take().unwrap();
        let phase = sup.board.phase(victim, worker.pid);
        let registered = sup.pool.processes().iter().any(|p| p.pid == worker.pid);
        let killed = Instant::now();
        worker.child.kill().unwrap();
        worker.child.wait().unwrap();
        by_phase[phase.min(RUNNING) as usize] += 1;
        let reaper = REAPERS[sup.rng.below(4).saturating_sub(1) as usize];
        match reaper {
            Reaper::Supervisor => {
                sup.pool.reclaim_dead();
            }
            Reaper::Attach => sup.spawn(victim),
            Reaper::Peers => {}
        }
        let gone = sup.wait_reclaimed(worker.pid, killed);
        if registered {
            latencies[reaper as usize].push(gone - killed);
        }
        if reaper != Reaper::Attach {
            sup.spawn(victim);
        }
        last_spawned = victim;
    }

    // Stop: every worker exits normally.
    sup.board.stop();
    for slot in 0..WORKERS {
        let mut worker = sup.workers[slot].take().unwrap();
        let status = wait_exit(&mut worker.child, STALL);
        assert!(
            status.success(),
            "worker pid {} (slot {slot}) failed at exit: {status}",
            worker.pid
        );
        assert_eq!(sup.board.phase(slot, worker.pid), DONE);
    }
    let processes = pool.processes();
    if processes.len() != 1 {
        sup.fail(
            "the workers' entries outlived them (exited ones detach, killed ones are reclaimed)",
        );
    }
    if sup.board.total(Counter::Violations) > 0 {
        sup.fail("a content check failed (see the VIOLATION lines above)");
    }

    // Drain the ports and the filled queue, with the readers' checks.
    let mut problems = Vec::new();
    for slot in 0..WORKERS {
        let subscription = pool
            .subscribe(pool.port(&port_name(slot)).unwrap())
            .unwrap();
        while let Ok(guard) = subscription.receive(Wait::NoWait) {
            sup.checks += 1;
            if let Err(problem) = read_stamp(guard.as_slice().unwrap(), guard.meta()) {
                problems.push(format!("port {slot}, {}: {problem}", guard.id()));
            }
        }
    }
    while let Ok(guard) = pool.acquire_filled(Wait::NoWait) {
        sup.checks += 1;
        if let Err(problem) = read_stamp(guard.as_slice().unwrap(), guard.meta()) {
            problems.push(format!("filled {}: {problem}", guard.id()));
        }
    }
    if !problems.is_empty() {
        sup.fail(&format!("drained buffers fail their checks: {problems:#?}"));
    }
    let audit = pool.audit();
    if !audit.is_empty() {
        sup.fail(&format!("audit: {audit:#?}"));
    }
    let lost = BUFFERS.saturating_sub(pool.counts().free);
    if lost != 0
        || pool
            .buffers()
            .iter()
            .any(|b| b.state != Some(SlotState::Free))
    {
        sup.fail(&format!("{lost} buffers lost"));
    }

    let board = sup.board;
    let mut all: Vec<Duration> = latencies.iter().flatten().copied().collect();
    all.sort();
    let mut by_reaper = String::new();
    for reaper in REAPERS {
        let sorted = &mut latencies[reaper as usize];
        sorted.sort();
        by_reaper += &format!(
            "; {reaper:?} {} p50 {:.1} ms p99 {:.1} ms",
            sorted.len(),
            ms(percentile(sorted, 0.5)),
            ms(percentile(sorted, 0.99)),
        );
    }
    let attaches = board.total(Counter::Attaches).max(1);
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "torture: {rounds} kills, {} operations, {} checks, {} violations, {lost} lost, 0 hangs, reclamation p50 {:.1} ms p99 {:.1} ms, {:.1} s",
        board.total(Counter::Ops),
        board.total(Counter::Checks) + sup.checks,
        board.total(Counter::Violations),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        started.elapsed().as_secs_f64(),
    )
    .unwrap();
    writeln!(
        err,
        "torture: seed {seed:#x}; kills {} before attach, {} in attach, {} subscribing, {} running; latency measured for {} kills{by_reaper}; {} buffers reclaimed, {} received, {} published, {} redeemed, {} subscribe retries, {} of {} attached workers hot, attach {:.2} ms on average",
        by_phase[0],
        by_phase[1],
        by_phase[2],
        by_phase[3],
        all.len(),
        pool.stats().reclaimed,
        board.total(Counter::Received),
        board.total(Counter::Published),
        board.total(Counter::Redeemed),
        board.total(Counter::SubscribeRetries),
        board.total(Counter::Hot),
        board.total(Counter::Attaches),
        board.total(Counter::AttachMicros) as f64 / 1e3 / attaches as f64,
    )
    .unwrap();
}
