//! Shared segments against bad input: corrupt blocks (corrupted before a child attaches, and
//! while children are attached and at work, by a scribbler writing into the live segment), stale,
//! foreign and random ids, wrong owners and permissions.
//!
//! The corrupt-segment fuzz classifies every case as a clean error (the attachment was refused,
//! or operations returned errors), consistent (everything worked), unsound (the victim was given
//! two guards of one buffer, one of them for writing), a panic, a crash (a signal) or a hang (a
//! child did not finish within [`CHILD_DEADLINE`] of the scribbler's end). It fails on the last
//! four, printing each failing case with its seed and its writes; `BUFPOOL_CORRUPT_REPLAY=KIND:SEED`
//! runs one case again (a case while attached replays the same writes, not the same timing).

mod common;
mod peer;

use std::fmt;
use std::io::{BufReader, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use buffer_core::testing::{self, Layout};
use buffer_core::{
    AttachError, BufferHold, BufferId, BufferPool, MAX_PLANES, PixelFormat, PoolConfig, PoolId,
    Port, PortGuard, Queue, ReadGuard, SlotState, Subscription, VideoFormat, Wait, WriteGuard,
};
use common::{Rng, read_until, role, spawn, wait_exit};
use peer::RawSegment;

/// Buffers of the pools under test: fewer than their slots, so slots `BUFFERS..CAPACITY` are
/// vacant.
const BUFFERS: u32 = 5;
const CAPACITY: u32 = 8;
const PORT_DEPTH: u32 = 2;
const SIZE: usize = 256;

/// How long a child may take to finish after the scribbler stopped (or after it started, for a
/// case corrupted before attaching) before it counts as hung and is killed.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);
/// When a child's watchdog reports what it is stuck in: a little before [`CHILD_DEADLINE`].
const WATCHDOG_AFTER: Duration = Duration::from_secs(15);
/// Operations of the victim of a case corrupted before attaching (deterministic for a seed).
const ITERATIONS_BEFORE: u64 = 400;

fn shm_path(segment: &str) -> String {
    format!("/dev/shm/bufpool.{segment}")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| parse_u64(&value).unwrap())
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let segment = std::env::var("SEGMENT").unwrap();
    match role.as_str() {
        "attach-and-use" => {
            let run = Duration::from_millis(env_u64("RUN_MS", 1_000));
            attach_and_work(
                &segment,
                env_u64("SEED", 1),
                run,
                env_u64("ITERATIONS", 200),
            );
        }
        "own-busy" => own_busy(&segment),
        other => panic!("unknown role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The children: a victim that attaches and works, and the owner of a live pool.

/// What a child is doing, for its watchdog's report when it hangs.
static STEP: AtomicUsize = AtomicUsize::new(0);
/// The victim's iteration, for the same report.
static ITERATION: AtomicU64 = AtomicU64::new(0);

const STEPS: [&str; 19] = [
    "attach",
    "acquire_free",
    "acquire_filled",
    "subscribe/receive",
    "redeem of its own id",
    "redeem of a stranger's id",
    "hold",
    "write guard",
    "read guards",
    "inspection",
    "reclaim_dead",
    "dropping everything",
    "misc",
    "audit",
    "detach",
    "owner: audit",
    "owner: dropping its port read",
    "owner: redeeming its id",
    "owner: destroying the pool",
];

fn step(name: &str) {
    let index = STEPS.iter().position(|known| *known == name).unwrap();
    STEP.store(index, Ordering::Relaxed);
}

/// Reports, at `at`, the step the child is in, so that a hang says where.
fn watchdog(at: Instant) {
    std::thread::spawn(move || {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        eprintln!(
            "watchdog: still running, in {} (iteration {})",
            STEPS[STEP.load(Ordering::Relaxed)],
            ITERATION.load(Ordering::Relaxed)
        );
    });
}

/// The victim: attaches, prints `attached`, works for `run` or `iterations` operations, detaches
/// and prints its outcome.
fn attach_and_work(segment: &str, seed: u64, run: Duration, iterations: u64) {
    let started = Instant::now();
    watchdog(started + run + WATCHDOG_AFTER);
    step("attach");
    let pool = match BufferPool::attach(segment) {
        Err(err) => {
            println!("outcome error: {err}");
            return;
        }
        Ok(pool) => pool,
    };
    println!("attached");
    let mut work = Work::new(&pool, seed);
    while ITERATION.load(Ordering::Relaxed) < iterations && started.elapsed() < run {
        work.one_operation();
        ITERATION.fetch_add(1, Ordering::Relaxed);
    }
    step("dropping everything");
    let tally = work.finish();
    step("audit");
    let audit = pool.audit();
    let counts = pool.counts().to_string();
    step("detach");
    drop(pool);
    println!("outcome {}", tally.verdict(&audit, &counts));
}

/// The owner of a live pool: creates it with some history, prints `ready`, waits for a line on
/// stdin (or its end), then releases its buffers and destroys the pool.
fn own_busy(segment: &str) {
    let audit = with_busy_pool(segment, |pool| {
        println!("ready");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        watchdog(Instant::now() + WATCHDOG_AFTER);
        step("owner: audit");
        pool.audit()
    });
    // `with_busy_pool` released the buffers and destroyed the pool.
    if audit.is_empty() {
        println!("outcome owner consistent");
    } else {
        println!("outcome owner inconsistent: {}", audit.join("; "));
    }
}

/// Creates a pool with some history in `segment` and runs `f` on it: frames filled and consumed,
/// published (one held by a port's reader, whose subscription ended), one detached as an id, one
/// filled and queued, two free, three slots vacant. Then releases what it holds and destroys the
/// pool, whatever `f` or a scribbler did to the block.
fn with_busy_pool<T>(segment: &str, f: impl FnOnce(&BufferPool) -> T) -> T {
    let config = PoolConfig::new("busy")
        .with_capacity(CAPACITY)
        .with_ports(["p"])
        .with_port_depth(PORT_DEPTH);
    let pool = BufferPool::create_shared(segment, config, BUFFERS, SIZE).unwrap();
    for _ in 0..3 {
        pool.acquire_free(Wait::NoWait).unwrap().submit();
        drop(pool.acquire_filled(Wait::NoWait).unwrap());
    }
    let port = pool.port("p").unwrap();
    let subscription = pool.subscribe(port).unwrap();
    for _ in 0..2 {
        let published = pool.acquire_free(Wait::NoWait).unwrap().publish(&[port]);
        assert_eq!(published.delivered(), 1);
    }
    let received = subscription.receive(Wait::NoWait).unwrap();
    // The other published frame goes back to the free queue, and the port is free for another
    // subscriber.
    drop(subscription);
    let detached = pool.acquire_free(Wait::NoWait).unwrap().into_id();
    pool.acquire_free(Wait::NoWait).unwrap().submit();
    let result = f(&pool);
    step("owner: dropping its port read");
    drop(received);
    step("owner: redeeming its id");
    if let Ok(frame) = pool.redeem_write(detached) {
        frame.submit();
    }
    step("owner: destroying the pool");
    drop(pool);
    result
}

/// What the victim's operations came to.
#[derive(Default)]
struct Tally {
    ok: u64,
    refused: u64,
    /// Results a healthy pool does not give (an own id not redeemed, an id of a vacant slot
    /// redeemed, ...): signs that the block is corrupt, which the pool met with errors.
    anomalies: u64,
    first_anomaly: Option<String>,
    /// Two live guards of overlapping memory, one of them for writing: undefined behaviour.
    unsound: Option<String>,
}

impl Tally {
    /// `result`'s value; counts it, and formats its error as a user would.
    fn result<T, E: fmt::Display>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => {
                self.ok += 1;
                Some(value)
            }
            Err(err) => {
                self.refused += 1;
                std::hint::black_box(err.to_string());
                None
            }
        }
    }

    fn anomaly(&mut self, what: impl FnOnce() -> String) {
        self.anomalies += 1;
        if self.first_anomaly.is_none() {
            self.first_anomaly = Some(what());
        }
    }

    /// The outcome line's text.
    fn verdict(&self, audit: &[String], counts: &str) -> String {
        let Tally {
            ok,
            refused,
            anomalies,
            ..
        } = self;
        if let Some(unsound) = &self.unsound {
            format!("unsound: {unsound}")
        } else if *anomalies == 0 && audit.is_empty() {
            format!("attached consistent: {counts}; {ok} ok, {refused} refused")
        } else {
            format!(
                "attached inconsistent: {anomalies} anomalies (first: {}), {} audit findings (first: {}); {ok} ok, {refused} refused",
                self.first_anomaly.as_deref().unwrap_or("none"),
                audit.len(),
                audit.first().map_or("none", String::as_str)
            )
        }
    }
}

/// A memory range a live guard gives access to: start, length, and whether for writing.
type Access = (usize, usize, bool);

/// The victim's state: the pool, what it holds, and its tally.
struct Work<'p> {
    pool: &'p BufferPool,
    rng: Rng,
    writes: Vec<(WriteGuard<'p>, Option<Access>)>,
    reads: Vec<(ReadGuard<'p>, Option<Access>)>,
    received: Vec<(PortGuard<'p>, Option<Access>)>,
    holds: Vec<(BufferHold, Option<Access>)>,
    /// Ids this process detached: the id, and whether it is a writer's.
    ids: Vec<(BufferId, bool)>,
    subscription: Option<Subscription<'p>>,
    tally: Tally,
}

impl<'p> Work<'p> {
    fn new(pool: &'p BufferPool, seed: u64) -> Work<'p> {
        Work {
            pool,
            rng: Rng::new(seed ^ 0x5eed),
            writes: Vec::new(),
            reads: Vec::new(),
            received: Vec::new(),
            holds: Vec::new(),
            ids: Vec::new(),
            subscription: None,
            tally: Tally::default(),
        }
    }

    fn one_operation(&mut self) {
        match self.rng.below(20) {
            0..=2 => self.acquire_free(),
            3..=4 => self.acquire_filled(),
            5..=6 => self.subscribe_or_receive(),
            7 => self.redeem_own(),
            8..=9 => self.redeem_stranger(),
            10 => self.use_hold(),
            11 => self.use_write_guard(),
            12 => self.use_read_guards(),
            13..=14 => self.inspect(),
            15 => {
                step("reclaim_dead");
                std::hint::black_box(self.pool.reclaim_dead());
            }
            16 => {
                step("dropping everything");
                if self.rng.below(4) == 0 {
                    self.drop_all();
                }
            }
            _ => self.misc(),
        }
    }

    /// Ends the work: drops every guard, hold and the subscription, and redeems and drops the
    /// ids it detached.
    fn finish(mut self) -> Tally {
        self.drop_all();
        // Handing a redeemed id on may detach it again, rarely many times in a row.
        for _ in 0..100 {
            if self.ids.is_empty() {
                break;
            }
            self.redeem_own();
            self.drop_all();
        }
        self.tally
    }

    fn drop_all(&mut self) {
        self.writes.clear();
        self.reads.clear();
        self.received.clear();
        self.holds.clear();
        self.subscription = None;
    }

    fn wait(&mut self) -> Wait {
        match self.rng.below(5) {
            0..=2 => Wait::NoWait,
            n => Wait::Timeout(Duration::from_micros(
                (n - 3) * 1_000 + self.rng.below(1_000),
            )),
        }
    }

    fn port(&mut self) -> Option<Port> {
        if self.rng.below(16) == 0 {
            // A name that is none of this pool's.
            self.tally.result(self.pool.port("nope"));
        }
        self.tally.result(self.pool.port("p"))
    }

    /// Records `access` if it overlaps a live guard's where either writes: two guards of one
    /// buffer in one process, so aliased `&mut [u8]`.
    fn check_access(&mut self, access: Option<Access>, what: &str, id: BufferId) {
        let Some((start, len, write)) = access else {
            return;
        };
        let held = self
            .writes
            .iter()
            .map(|(_, access)| access)
            .chain(self.reads.iter().map(|(_, access)| access))
            .chain(self.received.iter().map(|(_, access)| access))
            .chain(self.holds.iter().map(|(_, access)| access))
            .flatten();
        for &(other, other_len, other_write) in held {
            let overlap = start < other.saturating_add(other_len)
                && other < start.saturating_add(len)
                && len > 0
                && other_len > 0;
            // Readers may share a buffer (a published hold and the port's reader do).
            if overlap && (write || other_write) && self.tally.unsound.is_none() {
                self.tally.unsound = Some(format!(
                    "{what} {id} gave {len} bytes at {start:#x}, overlapping the {other_len} bytes at {other:#x} that a live guard of this process holds"
                ));
            }
        }
    }

    /// Writes into a new write guard's buffer and metadata: its access range.
    fn fill(&mut self, frame: &mut WriteGuard<'_>) -> Option<Access> {
        let access = frame.as_mut_slice().ok().map(|bytes| {
            bytes.fill(self.rng.next() as u8);
            (bytes.as_ptr() as usize, bytes.len(), true)
        });
        {
            let mut meta = frame.meta_mut();
            meta.sequence = meta.sequence.wrapping_add(1);
            meta.timestamp_ns = self.rng.next() as i64;
            meta.video = self.video();
        }
        let bytes_used = self.rng.below(SIZE as u64 * 2);
        let _ = self.tally.result(frame.set_bytes_used(bytes_used));
        let meta = frame.meta();
        std::hint::black_box((meta.bytes_used(), meta.video.byte_len(), frame.buffer()));
        std::hint::black_box((frame.len(), frame.is_empty(), frame.id().to_string()));
        access
    }

    /// A picture description: sometimes a sensible one, sometimes nonsense.
    fn video(&mut self) -> VideoFormat {
        let width = self.rng.below(20) as u32;
        let height = self.rng.below(8) as u32;
        let mut video = VideoFormat::packed(PixelFormat::RGBA, width, height, 4);
        if self.rng.below(2) == 0 {
            video.plane_count = self.rng.below(MAX_PLANES as u64 + 3) as u32;
            for plane in &mut video.plane_slots {
                plane.offset = match self.rng.below(3) {
                    0 => self.rng.below(SIZE as u64 + 8),
                    1 => u64::MAX - self.rng.below(4),
                    _ => self.rng.next(),
                };
                plane.stride = self.rng.below(300) as u32;
                plane.rows = self.rng.below(4) as u32;
            }
            if self.rng.below(4) == 0 {
                video.plane_slots[0].stride = u32::MAX;
                video.plane_slots[0].rows = u32::MAX;
            }
        }
        video
    }

    /// Reads a guard's bytes and planes the way a consumer does.
    fn read(bytes: Result<&[u8], buffer_core::AccessError>) -> Option<Access> {
        let bytes = bytes.ok()?;
        std::hint::black_box(bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
        Some((bytes.as_ptr() as usize, bytes.len(), false))
    }

    /// Hands a write guard on in one of the ways a producer can.
    fn hand_on(&mut self, frame: WriteGuard<'p>, access: Option<Access>) {
        match self.rng.below(7) {
            0 => frame.submit(),
            1 => match self.port() {
                Some(port) => {
                    let published = frame.publish(&[port]);
                    let reached = published.reached(port);
                    std::hint::black_box((published.delivered(), published.refused(), reached));
                }
                None => frame.submit(),
            },
            2 => self.ids.push((frame.into_id(), true)),
            3 => self.holds.push((frame.into_hold(), access)),
            4 => drop(frame),
            _ => self.writes.push((frame, access)),
        }
        if self.writes.len() > 2 {
            drop(self.writes.remove(0));
        }
        if self.holds.len() > 2 {
            drop(self.holds.remove(0));
        }
    }

    fn acquire_free(&mut self) {
        step("acquire_free");
        let wait = self.wait();
        let Some(mut frame) = self.tally.result(self.pool.acquire_free(wait)) else {
            return;
        };
        let access = self.fill(&mut frame);
        self.check_access(access, "acquire_free", frame.id());
        self.hand_on(frame, access);
    }

    fn acquire_filled(&mut self) {
        step("acquire_filled");
        let wait = self.wait();
        let Some(frame) = self.tally.result(self.pool.acquire_filled(wait)) else {
            return;
        };
        let access = Self::read(frame.as_slice());
        self.check_access(access, "acquire_filled", frame.id());
        for plane in 0..=MAX_PLANES {
            std::hint::black_box(frame.plane(plane).map(<[u8]>::len).ok());
        }
        std::hint::black_box((frame.meta(), frame.buffer(), frame.pool().name()));
        match self.rng.below(4) {
            0 => self.ids.push((frame.into_id(), false)),
            1 => drop(frame),
            _ => self.reads.push((frame, access)),
        }
        if self.reads.len() > 2 {
            drop(self.reads.remove(0));
        }
    }

    fn subscribe_or_receive(&mut self) {
        step("subscribe/receive");
        let Some(subscription) = self.subscription.take() else {
            if let Some(port) = self.port() {
                self.subscription = self.tally.result(self.pool.subscribe(port));
            }
            return;
        };
        if self.rng.below(20) == 0 {
            return; // unsubscribes
        }
        std::hint::black_box(subscription.port());
        let wait = self.wait();
        if let Some(frame) = self.tally.result(subscription.receive(wait)) {
            let access = Self::read(frame.as_slice());
            self.check_access(access, "receive", frame.id());
            for plane in 0..=MAX_PLANES {
                std::hint::black_box(frame.plane(plane).map(<[u8]>::len).ok());
            }
            std::hint::black_box((frame.meta(), frame.buffer()));
            if self.rng.below(3) == 0 {
                drop(frame);
            } else {
                self.received.push((frame, access));
            }
            if self.received.len() > 2 {
                drop(self.received.remove(0));
            }
        }
        self.subscription = Some(subscription);
    }

    /// Redeems an id this process detached, which a healthy pool honours exactly once.
    fn redeem_own(&mut self) {
        step("redeem of its own id");
        if self.ids.is_empty() {
            return;
        }
        let (id, write) = self
            .ids
            .swap_remove(self.rng.below(self.ids.len() as u64) as usize);
        self.redeem(id, write, true);
    }

    /// Redeems `id` for writing or reading; `own` if this process detached it.
    fn redeem(&mut self, id: BufferId, write: bool, own: bool) {
        let pool = self.pool;
        let vacant = id.slot >= BUFFERS;
        if write {
            match pool.redeem_write(id) {
                Ok(mut frame) => {
                    if vacant {
                        self.tally
                            .anomaly(|| format!("{id}, of a vacant slot, redeemed for writing"));
                    }
                    let access = self.fill(&mut frame);
                    self.check_access(access, "redeem_write", id);
                    // A second redemption of the same id while the first guard lives.
                    if let Ok(mut again) = pool.redeem_write(id) {
                        self.tally
                            .anomaly(|| format!("{id} redeemed twice for writing"));
                        let second = self.fill(&mut again);
                        self.writes.push((frame, access));
                        self.check_access(second, "a second redeem_write of", id);
                        let (first, _) = self.writes.pop().unwrap();
                        drop(again);
                        self.hand_on(first, access);
                        return;
                    }
                    self.hand_on(frame, access);
                }
                Err(err) => {
                    std::hint::black_box(err.to_string());
                    if own {
                        self.tally
                            .anomaly(|| format!("own id {id} not redeemed for writing: {err}"));
                    }
                }
            }
        } else {
            match pool.redeem_read(id) {
                Ok(frame) => {
                    if vacant {
                        self.tally
                            .anomaly(|| format!("{id}, of a vacant slot, redeemed for reading"));
                    }
                    let access = Self::read(frame.as_slice());
                    self.check_access(access, "redeem_read", id);
                    std::hint::black_box((frame.plane(0).ok().map(<[u8]>::len), frame.meta()));
                    if self.rng.below(2) == 0 {
                        self.reads.push((frame, access));
                        if self.reads.len() > 2 {
                            drop(self.reads.remove(0));
                        }
                    }
                }
                Err(err) => {
                    std::hint::black_box(err.to_string());
                    if own {
                        self.tally
                            .anomaly(|| format!("own id {id} not redeemed for reading: {err}"));
                    }
                }
            }
        }
    }

    /// Redeems an id this process did not detach: of a vacant slot (with the generation the pool
    /// shows, or another), of no slot, of another process's buffer, or random.
    fn redeem_stranger(&mut self) {
        step("redeem of a stranger's id");
        let pool_id = self.pool.id();
        let vacant_slot = BUFFERS + self.rng.below(u64::from(CAPACITY - BUFFERS)) as u32;
        let id = match self.rng.below(7) {
            0 | 1 => {
                let infos = self.pool.buffers();
                let vacant: Vec<BufferId> = infos
                    .iter()
                    .filter(|info| info.state == Some(SlotState::Vacant))
                    .map(|info| info.id)
                    .collect();
                match vacant.get(self.rng.below(vacant.len().max(1) as u64) as usize) {
                    Some(&id) => id,
                    None => BufferId::new(pool_id, vacant_slot, 0),
                }
            }
            2 => BufferId::new(pool_id, vacant_slot, self.rng.below(8) as u32),
            3 => {
                let slot = match self.rng.below(3) {
                    0 => CAPACITY + self.rng.below(4) as u32,
                    1 => u32::MAX - self.rng.below(2) as u32,
                    _ => self.rng.next() as u32,
                };
                BufferId::new(pool_id, slot, self.rng.next() as u32)
            }
            4 | 5 => {
                let infos = self.pool.buffers();
                match infos.get(self.rng.below(infos.len().max(1) as u64) as usize) {
                    Some(info) => {
                        let generation = info.id.generation.wrapping_add(self.rng.below(3) as u32);
                        let generation = generation.wrapping_sub(1);
                        std::hint::black_box((info.holder, info.references, info.ports.len()));
                        BufferId::new(info.id.pool, info.id.slot, generation)
                    }
                    None => BufferId::new(pool_id, 0, 0),
                }
            }
            _ => {
                BufferId::from_bits(u128::from(self.rng.next()) << 64 | u128::from(self.rng.next()))
            }
        };
        let write = self.rng.below(2) == 0;
        self.redeem(id, write, false);
    }

    fn use_hold(&mut self) {
        step("hold");
        if self.holds.is_empty() {
            return;
        }
        let index = self.rng.below(self.holds.len() as u64) as usize;
        let (mut hold, access) = self.holds.swap_remove(index);
        std::hint::black_box((hold.id(), hold.len(), hold.is_empty(), hold.meta()));
        std::hint::black_box((hold.is_published(), hold.pool().name().len()));
        if let Ok(bytes) = hold.as_mut_slice() {
            bytes.fill(7);
        }
        std::hint::black_box(Self::read(hold.as_slice()));
        std::hint::black_box(hold.as_mut_ptr().ok());
        if let Some(mut meta) = self.tally.result(hold.meta_mut()) {
            meta.sequence = meta.sequence.wrapping_add(1);
        }
        match self.rng.below(4) {
            0 => hold.submit(),
            1 => {
                let access = match self.port() {
                    Some(port) => {
                        std::hint::black_box(hold.publish(&[port]).delivered());
                        // Published: only read from now on, by the hold and the port's reader.
                        access.map(|(start, len, _)| (start, len, false))
                    }
                    None => access,
                };
                self.holds.push((hold, access));
            }
            2 => drop(hold),
            _ => self.holds.push((hold, access)),
        }
    }

    fn use_write_guard(&mut self) {
        step("write guard");
        if self.writes.is_empty() {
            return;
        }
        let index = self.rng.below(self.writes.len() as u64) as usize;
        let (mut frame, access) = self.writes.swap_remove(index);
        self.fill(&mut frame);
        self.hand_on(frame, access);
    }

    fn use_read_guards(&mut self) {
        step("read guards");
        for (frame, _) in &self.reads {
            std::hint::black_box(frame.as_slice().ok().map(<[u8]>::len));
            std::hint::black_box((frame.plane(0).ok().map(<[u8]>::len), frame.meta()));
        }
        for (frame, _) in &self.received {
            std::hint::black_box(frame.as_slice().ok().map(<[u8]>::len));
            std::hint::black_box((frame.plane(1).ok().map(<[u8]>::len), frame.id()));
        }
        if !self.reads.is_empty() && self.rng.below(2) == 0 {
            let (frame, _) = self.reads.swap_remove(0);
            if self.rng.below(2) == 0 {
                self.ids.push((frame.into_id(), false));
            }
        }
        if !self.received.is_empty() && self.rng.below(2) == 0 {
            drop(self.received.swap_remove(0));
        }
    }

    fn inspect(&mut self) {
        step("inspection");
        let pool = self.pool;
        std::hint::black_box(pool.counts().to_string());
        std::hint::black_box(pool.stats().hit_rate());
        std::hint::black_box(format!("{:?}", pool.buffers()));
        std::hint::black_box(pool.holders().to_string());
        std::hint::black_box(pool.audit());
        std::hint::black_box(format!("{:?}", pool.processes()));
        std::hint::black_box(format!("{:?}", pool.port_infos()));
        std::hint::black_box(format!("{:?}", pool.usage().total()));
        std::hint::black_box((
            pool.capacity(),
            pool.name(),
            pool.category(),
            pool.segment(),
        ));
        std::hint::black_box((pool.actor(), pool.is_closed()));
        // Addresses inside and around the buffers this process holds, and anywhere.
        let around = self.writes.first().and_then(|(_, access)| *access);
        let addr = match around {
            Some((start, len, _)) => start.wrapping_add(self.rng.below(len as u64 + 64) as usize),
            None => self.rng.next() as usize,
        };
        std::hint::black_box(pool.locate(std::ptr::without_provenance(addr)));
    }

    fn misc(&mut self) {
        step("misc");
        let clone = self.pool.clone();
        std::hint::black_box(clone.counts());
        drop(clone);
        std::hint::black_box(self.port());
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: mutations, the scribbler, and the classification of cases.

/// One write into a block: `width` bytes (1, 4 or 8, aligned) at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mutation {
    offset: usize,
    width: u8,
    op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set(u64),
    Xor(u64),
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = u32::from(self.width) * 8;
        match self.op {
            Op::Set(value) => write!(f, "{:#x}:u{bits}={value:#x}", self.offset),
            Op::Xor(mask) => write!(f, "{:#x}:u{bits}^={mask:#x}", self.offset),
        }
    }
}

/// Where the parts of the block under test lie.
struct Regions {
    layout: Layout,
    /// The header, the process table and the port table: everything before the queues.
    tables_end: usize,
    /// The free, filled and port queues (control words and cells).
    queues: std::ops::Range<usize>,
    /// The whole segment's length (block and buffers).
    segment_len: usize,
}

impl Regions {
    fn new(segment_len: usize) -> Regions {
        let layout = testing::layout(CAPACITY, 1, PORT_DEPTH);
        // The free queue's control block (head, then tail, each padded alike) ends where its
        // cells begin.
        let control = 2 * (layout.free_cells - layout.free_tail);
        let free_queue = layout.free_cells - control;
        Regions {
            layout,
            tables_end: free_queue,
            queues: free_queue..layout.slots,
            segment_len,
        }
    }

    /// A value that often matters to a block: a limit, a length, a boundary, or random.
    fn value(&self, rng: &mut Rng) -> u64 {
        let len = self.layout.block_len as u64;
        let values = [
            0,
            1,
            2,
            u64::from(BUFFERS),
            u64::from(CAPACITY),
            u64::from(CAPACITY) + 1,
            255,
            256,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            1 << 32,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
            len,
            len - 8,
            self.segment_len as u64,
            self.segment_len as u64 - 1,
        ];
        match rng.below(3) {
            0 => rng.next(),
            1 => rng.below(16),
            _ => values[rng.below(values.len() as u64) as usize],
        }
    }

    /// An op for a word of `width` bytes: a value, or a flipped bit or a few low bits.
    fn op(&self, rng: &mut Rng, width: u8) -> Op {
        match rng.below(4) {
            0 => Op::Xor(1 << rng.below(u64::from(width) * 8)),
            1 => Op::Xor(1 + rng.below(7)),
            _ => Op::Set(self.value(rng) & (u64::MAX >> (64 - u32::from(width) * 8))),
        }
    }

    /// Which part of the block `offset` lies in, for reports.
    fn describe(&self, offset: usize) -> String {
        let layout = &self.layout;
        let slots_end = layout.slots + CAPACITY as usize * layout.slot_len;
        let control = layout.free_cells - self.queues.start;
        let free_cells_end = layout.free_cells + layout.queue_cells * 8;
        if (layout.slots..slots_end).contains(&offset) {
            let slot = (offset - layout.slots) / layout.slot_len;
            let within = (offset - layout.slots) % layout.slot_len;
            let fields = [
                (testing::slot::STATE, 8, "state"),
                (testing::slot::SIZE, 8, "size"),
                (testing::slot::DATA_OFFSET, 8, "data_offset"),
                (testing::slot::MEMORY_KIND, 4, "memory_kind"),
                (testing::slot::FLAGS, 4, "flags"),
            ];
            let field = fields
                .iter()
                .find(|(at, width, _)| (*at..at + width).contains(&within))
                .map_or(format!("+{within:#x}"), |&(at, _, name)| {
                    match within - at {
                        0 => name.to_owned(),
                        byte => format!("{name}+{byte}"),
                    }
                });
            format!("slot {slot} {field}")
        } else if (self.queues.start..layout.free_cells).contains(&offset) {
            let half = if offset - self.queues.start < control / 2 {
                "head"
            } else {
                "tail"
            };
            format!("free queue {half}")
        } else if (layout.free_cells..free_cells_end).contains(&offset) {
            format!("free queue cell {}", (offset - layout.free_cells) / 8)
        } else if self.queues.contains(&offset) {
            format!("filled/port queues+{:#x}", offset - free_cells_end)
        } else if offset < self.tables_end {
            format!("header/processes/ports+{offset:#x}")
        } else {
            "after the slots".to_owned()
        }
    }

    /// A slot: most often a vacant one.
    fn slot(rng: &mut Rng) -> u64 {
        if rng.below(2) == 0 {
            u64::from(BUFFERS) + rng.below(u64::from(CAPACITY - BUFFERS))
        } else {
            rng.below(u64::from(CAPACITY))
        }
    }

    /// A random write: a slot's state word (often naming a state with a buffer, for a vacant
    /// slot), another field of a slot, a queue word (often a full cell naming a vacant slot), a
    /// word of the tables, or anything anywhere in the block.
    fn mutation(&self, rng: &mut Rng) -> Mutation {
        let layout = &self.layout;
        let slot_at = |slot: u64| layout.slots + slot as usize * layout.slot_len;
        let aligned = |rng: &mut Rng, range: std::ops::Range<usize>, width: u8| {
            let width = usize::from(width);
            let words = (range.end - range.start) / width;
            range.start + rng.below(words as u64) as usize * width
        };
        let width_any = |rng: &mut Rng| [1u8, 4, 8][rng.below(3) as usize];
        match rng.below(10) {
            0 | 1 => {
                let offset = slot_at(Self::slot(rng)) + testing::slot::STATE;
                let op = if rng.below(3) == 0 {
                    self.op(rng, 8)
                } else {
                    let generation = match rng.below(2) {
                        0 => rng.below(8) as u32,
                        _ => rng.next() as u32,
                    };
                    let states: Vec<SlotState> = testing::slot_states().collect();
                    let state = states[rng.below(states.len() as u64) as usize];
                    let actor = rng.below(4) as u8;
                    let ports = rng.below(4) as u16;
                    Op::Set(testing::slot_word(generation, state, actor, ports))
                };
                Mutation {
                    offset,
                    width: 8,
                    op,
                }
            }
            2 => {
                let (field, width) = [
                    (testing::slot::SIZE, 8),
                    (testing::slot::DATA_OFFSET, 8),
                    (testing::slot::MEMORY_KIND, 4),
                    (testing::slot::FLAGS, 4),
                ][rng.below(4) as usize];
                Mutation {
                    offset: slot_at(Self::slot(rng)) + field,
                    width,
                    op: self.op(rng, width),
                }
            }
            3 | 4 => {
                let offset = aligned(rng, self.queues.clone(), 8);
                let op = if rng.below(2) == 0 {
                    let position = match rng.below(2) {
                        0 => rng.below(16),
                        _ => rng.next(),
                    };
                    let value = match rng.below(3) {
                        0 => Self::slot(rng) as u32,
                        1 => CAPACITY + rng.below(4) as u32,
                        _ => rng.next() as u32,
                    };
                    Op::Set(testing::full_cell(position, value))
                } else {
                    self.op(rng, 8)
                };
                Mutation {
                    offset,
                    width: 8,
                    op,
                }
            }
            5 | 6 => {
                let width = width_any(rng);
                let offset = aligned(rng, 0..self.tables_end, width);
                Mutation {
                    offset,
                    width,
                    op: self.op(rng, width),
                }
            }
            _ => {
                let width = width_any(rng);
                let offset = aligned(rng, 0..layout.block_len, width);
                Mutation {
                    offset,
                    width,
                    op: self.op(rng, width),
                }
            }
        }
    }
}

impl Mutation {
    /// Applies the write to a copy of a segment.
    fn apply_to(&self, bytes: &mut [u8]) {
        let width = usize::from(self.width);
        let field = &mut bytes[self.offset..self.offset + width];
        let mut word = [0; 8];
        word[..width].copy_from_slice(field);
        let old = u64::from_le_bytes(word);
        let new = match self.op {
            Op::Set(value) => value,
            Op::Xor(mask) => old ^ mask,
        };
        field.copy_from_slice(&new.to_le_bytes()[..width]);
    }
}

/// Writes `mutation` into the live block of `raw` (the first `block_len` bytes of the segment)
/// as a scribbling peer would: with plain atomic stores, while the pool's processes work on it.
fn scribble(raw: &RawSegment, block_len: usize, mutation: Mutation) {
    let width = usize::from(mutation.width);
    assert!(
        mutation.offset + width <= block_len,
        "a mutation outside the block"
    );
    let (offset, relaxed) = (mutation.offset, Ordering::Relaxed);
    match (width, mutation.op) {
        (1, Op::Set(value)) => raw.u8_at(offset).store(value as u8, relaxed),
        (1, Op::Xor(mask)) => _ = raw.u8_at(offset).fetch_xor(mask as u8, relaxed),
        (4, Op::Set(value)) => raw.u32_at(offset).store(value as u32, relaxed),
        (4, Op::Xor(mask)) => _ = raw.u32_at(offset).fetch_xor(mask as u32, relaxed),
        (_, Op::Set(value)) => raw.u64_at(offset).store(value, relaxed),
        (_, Op::Xor(mask)) => _ = raw.u64_at(offset).fetch_xor(mask, relaxed),
    }
}

/// How a case, or one process of it, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Consistent,
    CleanError,
    Unsound,
    Panic,
    Crash,
    Hang,
}

impl Class {
    fn failed(self) -> bool {
        self > Class::CleanError
    }
}

/// A child process of a case, its lines read on threads of their own.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    outcome: Option<String>,
    /// Whether its stdout ended.
    closed: bool,
}

impl Running {
    fn start(vars: &[(&str, String)], role: &str) -> Running {
        let mut child = common::spawn_captured("child_entry", role, vars);
        let lines = common::lines_of(child.stdout.take().unwrap());
        let stderr = Some(common::read_all(child.stderr.take().unwrap()));
        Running {
            child,
            lines,
            stderr,
            outcome: None,
            closed: false,
        }
    }

    /// Waits, until `deadline`, for a line starting with `prefix` (or the outcome line); whether
    /// it came.
    fn wait_for(&mut self, prefix: &str, deadline: Instant) -> bool {
        match common::line_before(&self.lines, &[prefix, "outcome "], deadline) {
            Some(line) if line.starts_with(prefix) => true,
            Some(line) => {
                self.outcome = Some(line);
                false
            }
            None => false,
        }
    }

    /// Whether the child has printed its outcome (or closed its output), without waiting.
    fn done(&mut self) -> bool {
        while self.outcome.is_none() && !self.closed {
            match self.lines.try_recv() {
                Ok(line) if line.starts_with("outcome ") => self.outcome = Some(line),
                Ok(_) => {}
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => self.closed = true,
            }
        }
        true
    }

    /// Waits until `deadline` for the outcome and the exit (killing the child if either is
    /// late), and classifies them.
    fn finish(mut self, deadline: Instant) -> Ended {
        if self.outcome.is_none() {
            self.outcome = common::line_before(&self.lines, &["outcome "], deadline);
        }
        // Without an outcome it died (and exits at once) or hangs (and is killed now).
        let limit = match &self.outcome {
            Some(_) => deadline,
            None => deadline.min(Instant::now() + Duration::from_secs(1)),
        };
        let status = common::exit_before(&mut self.child, limit);
        let mut stuck = None;
        if status.is_none() {
            stuck = Some(common::stuck_report(self.child.id()));
            self.child.kill().ok();
            self.child.wait().ok();
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let class = classify(self.outcome.as_deref(), status, &stderr);
        Ended {
            class,
            outcome: self.outcome,
            status,
            stderr,
            stuck,
        }
    }
}

/// How one child ended.
struct Ended {
    class: Class,
    outcome: Option<String>,
    status: Option<ExitStatus>,
    stderr: String,
    /// What a hung child was doing when it was killed.
    stuck: Option<String>,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self
            .status
            .map_or("killed after the deadline".to_owned(), |status| {
                status.to_string()
            });
        write!(
            f,
            "{:?} ({status}): {}",
            self.class,
            self.outcome.as_deref().unwrap_or("no outcome")
        )?;
        if !self.class.failed() {
            return Ok(());
        }
        // The panic message and the first frames of the library and this test, the watchdog's
        // report, or the first of whatever else it printed.
        let lines: Vec<&str> = self.stderr.lines().collect();
        let mut shown = 0;
        for (index, line) in lines.iter().enumerate() {
            let after_panic = index > 0 && lines[index - 1].contains("panicked at");
            let ours = line.contains("buffer_core::")
                || line.contains("segments::")
                || line.contains("at ./src/")
                || line.contains("at ./tests/");
            let keep = line.contains("panicked at")
                || after_panic
                || line.contains("watchdog")
                || (ours && shown < 30)
                || (index < 6 && !line.trim().is_empty());
            if keep && shown < 40 {
                write!(f, "\n      | {line}")?;
                shown += 1;
            }
        }
        if let Some(stuck) = &self.stuck {
            for line in stuck.lines() {
                write!(f, "\n      > {line}")?;
            }
        }
        Ok(())
    }
}

fn classify(outcome: Option<&str>, status: Option<ExitStatus>, stderr: &str) -> Class {
    let Some(status) = status else {
        return Class::Hang;
    };
    if status.signal().is_some() {
        return Class::Crash;
    }
    if !status.success() || stderr.contains("panicked at") {
        return Class::Panic;
    }
    match outcome {
        None => Class::Panic, // exited without a word
        Some(outcome) if outcome.starts_with("outcome unsound") => Class::Unsound,
        Some(outcome)
            if outcome.starts_with("outcome attached consistent")
                || outcome == "outcome owner consistent" =>
        {
            Class::Consistent
        }
        Some(_) => Class::CleanError,
    }
}

/// A case: corrupted before attaching, or while attached; and its seed.
#[derive(Debug, Clone, Copy)]
struct Case {
    live: bool,
    seed: u64,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.live { "live" } else { "before" };
        write!(f, "{kind}:{:#x}", self.seed)
    }
}

impl Case {
    fn parse(text: &str) -> Case {
        let (kind, seed) = text
            .split_once(':')
            .expect("BUFPOOL_CORRUPT_REPLAY is KIND:SEED, KIND `before` or `live`");
        Case {
            live: kind == "live",
            seed: parse_u64(seed).expect("a seed is a number (0x for hex)"),
        }
    }
}

/// What a case did and how it ended.
struct Report {
    case: Case,
    class: Class,
    /// The writes, each with the microseconds since the scribbler started (0 before attaching).
    writes: Vec<(u64, Mutation)>,
    victim: Ended,
    owner: Option<Ended>,
    /// How the live case ran: the victim's run, the mean pause between bursts, and whether the
    /// scribbling began before the victim attached.
    schedule: String,
}

impl Report {
    /// The report of a failing case, with the block's parts its writes hit.
    fn render(&self, regions: &Regions) -> String {
        let mut text = String::new();
        self.write(&mut text, regions).unwrap();
        text
    }

    fn write(&self, f: &mut impl fmt::Write, regions: &Regions) -> fmt::Result {
        writeln!(
            f,
            "case {} ({:?}), replay with BUFPOOL_CORRUPT_REPLAY={} {}",
            self.case, self.class, self.case, self.schedule
        )?;
        writeln!(f, "    victim: {}", self.victim)?;
        if let Some(owner) = &self.owner {
            writeln!(f, "    owner: {owner}")?;
        }
        write!(f, "    {} writes:", self.writes.len())?;
        for (index, (at, mutation)) in self.writes.iter().enumerate() {
            if self.case.live {
                // Many: eight a line, at microseconds since the scribbler began.
                let start = if index % 8 == 0 { "\n     " } else { "" };
                write!(f, "{start} {at}µs {mutation}")?;
            } else {
                let part = regions.describe(mutation.offset);
                write!(f, "\n      {mutation} ({part})")?;
            }
        }
        Ok(())
    }
}

/// A copy of `original` with `mutations` applied, attached by a victim.
fn run_before(
    case: Case,
    original: &[u8],
    regions: &Regions,
    mutations: Option<&[Mutation]>,
) -> Report {
    let generated: Vec<Mutation>;
    let mutations = match mutations {
        Some(mutations) => mutations,
        None => {
            let mut rng = Rng::new(case.seed);
            let count = 1 + rng.below(24);
            generated = (0..count).map(|_| regions.mutation(&mut rng)).collect();
            &generated
        }
    };
    let mut bytes = original.to_vec();
    for mutation in mutations {
        mutation.apply_to(&mut bytes);
    }
    let segment = common::segment_name(&format!("corrupt-{:x}", case.seed));
    write_segment(&segment, &bytes);
    let victim = Running::start(
        &[
            ("SEGMENT", segment.clone()),
            ("SEED", case.seed.to_string()),
            ("ITERATIONS", ITERATIONS_BEFORE.to_string()),
            // Only a backstop: the iterations end the run, so that a seed replays exactly.
            ("RUN_MS", "4000".to_owned()),
        ],
        "attach-and-use",
    );
    let victim = victim.finish(Instant::now() + CHILD_DEADLINE);
    std::fs::remove_file(shm_path(&segment)).unwrap();
    Report {
        case,
        class: victim.class,
        writes: mutations.iter().map(|&mutation| (0, mutation)).collect(),
        victim,
        owner: None,
        schedule: String::new(),
    }
}

/// A live pool, its owner holding buffers, a victim at work on it, and the scribbler writing
/// into its block meanwhile.
fn run_live(case: Case, regions: &Regions) -> Report {
    let mut rng = Rng::new(case.seed);
    let run = Duration::from_millis(50 + rng.below(250));
    let pause_us = [100, 1_000, 5_000, 20_000][rng.below(4) as usize];
    let early = rng.below(4) == 0;
    let segment = common::segment_name(&format!("live-{:x}", case.seed));
    let vars = [
        ("SEGMENT", segment.clone()),
        ("SEED", case.seed.to_string()),
        ("RUN_MS", run.as_millis().to_string()),
        ("ITERATIONS", u64::MAX.to_string()),
    ];
    let mut owner = Running::start(&vars, "own-busy");
    if !owner.wait_for("ready", Instant::now() + CHILD_DEADLINE) {
        let ended = owner.finish(Instant::now());
        panic!("the owner of case {case} did not create its pool: {ended}");
    }
    let raw = RawSegment::map(&segment);
    let mut victim = Running::start(&vars, "attach-and-use");
    if !early {
        victim.wait_for("attached", Instant::now() + CHILD_DEADLINE);
    }
    let started = Instant::now();
    let mut writes = Vec::new();
    while started.elapsed() < run + Duration::from_millis(20) && !victim.done() {
        for _ in 0..1 + rng.below(4) {
            let mutation = regions.mutation(&mut rng);
            scribble(&raw, regions.layout.block_len, mutation);
            writes.push((started.elapsed().as_micros() as u64, mutation));
        }
        std::thread::sleep(Duration::from_micros(rng.below(2 * pause_us)));
    }
    drop(raw);
    let victim = victim.finish(Instant::now() + CHILD_DEADLINE);
    if let Some(mut stdin) = owner.child.stdin.take() {
        let _ = stdin.write_all(b"stop\n");
    }
    let owner = owner.finish(Instant::now() + CHILD_DEADLINE);
    // The owner removes the segment's name, unless it failed to.
    let _ = std::fs::remove_file(shm_path(&segment));
    Report {
        case,
        // The victim's work says whether the pool worked; the owner only adds its failures.
        class: if owner.class.failed() {
            victim.class.max(owner.class)
        } else {
            victim.class
        },
        writes,
        victim,
        owner: Some(owner),
        schedule: format!(
            "(victim's run {run:?}, bursts of 1-4 writes every ~{pause_us}µs, scribbling {} attaching)",
            if early { "before" } else { "after" }
        ),
    }
}

/// Drops writes from a failing case corrupted before attaching while it still fails alike.
fn minimize(report: Report, original: &[u8], regions: &Regions) -> Report {
    if report.class == Class::Hang {
        return report; // each try would take the whole deadline
    }
    let mut best = report;
    let mut index = 0;
    while index < best.writes.len() && best.writes.len() > 1 {
        let mut fewer: Vec<Mutation> = best.writes.iter().map(|&(_, mutation)| mutation).collect();
        fewer.remove(index);
        let tried = run_before(best.case, original, regions, Some(&fewer));
        if tried.class == best.class {
            best = tried;
        } else {
            index += 1;
        }
    }
    best
}

/// Counts of cases by kind and class.
#[derive(Default)]
struct Summary {
    before: u32,
    live: u32,
    writes: usize,
    classes: [u32; 6],
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [consistent, clean, unsound, panics, crashes, hangs] = self.classes;
        write!(
            f,
            "corrupt: {} cases ({} before attach, {} while attached, {} writes): {clean} clean errors, {consistent} consistent, {unsound} unsound, {panics} panics, {crashes} crashes, {hangs} hangs",
            self.before + self.live,
            self.before,
            self.live,
            self.writes
        )
    }
}

/// Writes `bytes` as a new segment file with mode 0600.
fn write_segment(segment: &str, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(segment))
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Cases of the corrupt-segment fuzz: `BUFPOOL_CORRUPT_CASES` (48 by default; `cargo xtask
/// stress` runs 2,000), alternately corrupted before attaching and while attached.
fn corrupt_cases() -> u64 {
    env_u64("BUFPOOL_CORRUPT_CASES", 48)
}

/// A seed of its own for case `index` of a run seeded with `base` (splitmix64).
fn case_seed(base: u64, index: u64) -> u64 {
    let mut z = base.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn a_corrupt_block_gives_an_error_or_a_usable_pool_never_a_crash() {
    if role().is_some() {
        return;
    }
    let base = std::env::var("BUFPOOL_CORRUPT_SEED").map_or_else(
        |_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        },
        |seed| parse_u64(&seed).expect("BUFPOOL_CORRUPT_SEED is a number (0x for hex)"),
    );
    let cases: Vec<Case> = match std::env::var("BUFPOOL_CORRUPT_REPLAY") {
        Ok(case) => vec![Case::parse(&case)],
        Err(_) => (0..corrupt_cases())
            .map(|index| Case {
                live: index % 2 == 1,
                seed: case_seed(base, index),
            })
            .collect(),
    };
    let source = common::segment_name("corrupt-src");
    let original = with_busy_pool(&source, |_| std::fs::read(shm_path(&source)).unwrap());
    let regions = Regions::new(original.len());
    assert!(regions.layout.block_len < original.len());

    let started = Instant::now();
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for case in cases {
        let mut report = if case.live {
            summary.live += 1;
            run_live(case, &regions)
        } else {
            summary.before += 1;
            run_before(case, &original, &regions, None)
        };
        summary.writes += report.writes.len();
        summary.classes[report.class as usize] += 1;
        if report.class.failed() {
            if !case.live {
                report = minimize(report, &original, &regions);
            }
            // Straight to the terminal: the harness would hold back a passing test's output, and
            // this is what a failing one needs.
            let _ = writeln!(std::io::stderr(), "\n{}", report.render(&regions));
            failures.push(report.case);
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{summary} in {:.1?} (seed {base:#x})",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{summary}: the failing cases are printed above ({})",
        failures
            .iter()
            .map(Case::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn an_unchanged_copy_attaches_and_works() {
    if role().is_some() {
        return;
    }
    let original = common::segment_name("copy-src");
    let bytes = with_busy_pool(&original, |_| std::fs::read(shm_path(&original)).unwrap());
    let copy = common::segment_name("copy");
    write_segment(&copy, &bytes);
    let mut child = spawn(
        "child_entry",
        "attach-and-use",
        &[("SEGMENT", copy.clone())],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let outcome = read_until(&mut out, "outcome ");
    assert!(outcome.starts_with("attached consistent"), "{outcome}");
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    std::fs::remove_file(shm_path(&copy)).unwrap();
}

#[test]
fn stale_foreign_and_random_ids_are_rejected() {
    if role().is_some() {
        return;
    }
    let segment = common::segment_name("ids");
    let pool = BufferPool::create_shared(
        &segment,
        PoolConfig::new("ids").with_capacity(BUFFERS),
        BUFFERS,
        SIZE,
    )
    .unwrap();
    let other = BufferPool::with_heap_buffers(PoolConfig::new("other"), 1, 8).unwrap();
    let live = pool.acquire_free(Wait::NoWait).unwrap().into_id();
    let guard = pool.acquire_filled(Wait::NoWait);
    assert!(guard.is_err());

    // Stale: released, so its generation moved on.
    let stale = pool.acquire_free(Wait::NoWait).unwrap().id();
    assert!(pool.redeem_write(stale).is_err() && pool.redeem_read(stale).is_err());
    // Foreign: a live id of another pool.
    let foreign = other.acquire_free(Wait::NoWait).unwrap().into_id();
    assert!(pool.redeem_write(foreign).is_err());
    // Random: whole ids, and ids with this pool's id and random slot and generation.
    let mut rng = Rng::new(42);
    for round in 0..100_000u32 {
        let id = if round % 2 == 0 {
            BufferId::from_bits(u128::from(rng.next()) << 64 | u128::from(rng.next()))
        } else {
            BufferId::new(
                pool.id(),
                rng.next() as u32 % (BUFFERS * 2),
                rng.next() as u32,
            )
        };
        if id == live {
            continue;
        }
        assert!(pool.redeem_write(id).is_err(), "{id} redeemed as write");
        assert!(pool.redeem_read(id).is_err(), "{id} redeemed as read");
    }
    // The live id still works, exactly once.
    drop(pool.redeem_write(live).unwrap());
    assert!(pool.redeem_write(live).is_err());
    assert_eq!(pool.audit(), Vec::<String>::new());
    assert_ne!(pool.id(), PoolId::from_raw(1));
}

#[test]
fn segments_with_wrong_permissions_or_owner_are_refused() {
    if role().is_some() {
        return;
    }
    let segment = common::segment_name("perm");
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("perm").with_capacity(1), 1, SIZE)
            .unwrap();
    let path = shm_path(&segment);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created with mode 0600");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = BufferPool::attach(&segment).unwrap_err();
    assert!(matches!(err, AttachError::Permission { .. }), "{err}");
    assert!(err.to_string().contains("mode 666"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    BufferPool::attach(&segment).unwrap();

    if rustix::process::geteuid().is_root() {
        // Root can give the segment to another user, as another user's segment would be.
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = BufferPool::attach(&segment).unwrap_err();
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
    } else {
        println!("skipped the other-owner case: changing a segment's owner needs root");
    }
    drop(pool);
    assert!(matches!(
        BufferPool::attach(&segment),
        Err(AttachError::NotFound { .. })
    ));
}

#[test]
fn names_existing_segments_and_non_pools_are_refused() {
    if role().is_some() {
        return;
    }
    for bad in ["", "a/b", "../x"] {
        assert!(
            matches!(BufferPool::attach(bad), Err(AttachError::Name(_))),
            "{bad:?}"
        );
        assert!(BufferPool::create_shared(bad, PoolConfig::new("n"), 1, 8).is_err());
    }
    let segment = common::segment_name("twice");
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("n").with_capacity(1), 1, 8).unwrap();
    let err = BufferPool::create_shared(&segment, PoolConfig::new("n").with_capacity(1), 1, 8)
        .unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    drop(pool);

    let junk = common::segment_name("junk");
    write_segment(&junk, &[0x42; 8192]);
    assert!(matches!(
        BufferPool::attach(&junk),
        Err(AttachError::NotAPool { .. })
    ));
    std::fs::remove_file(shm_path(&junk)).unwrap();
    write_segment(&junk, &[]);
    assert!(matches!(
        BufferPool::attach(&junk),
        Err(AttachError::Truncated { .. })
    ));
    std::fs::remove_file(shm_path(&junk)).unwrap();

    // Shared pools keep their buffers.
    let segment = common::segment_name("fixed");
    let pool =
        BufferPool::create_shared(&segment, PoolConfig::new("f").with_capacity(2), 1, 8).unwrap();
    assert!(pool.remove(Wait::NoWait).is_err());
    let mut byte = 0u8;
    // SAFETY: the pool refuses the memory without touching it.
    let memory = unsafe {
        buffer_core::BufferMemory::external(&mut byte, 1, buffer_core::MemoryKind::Host, None)
    };
    assert!(pool.inject(memory, Queue::Free).is_err());
}
