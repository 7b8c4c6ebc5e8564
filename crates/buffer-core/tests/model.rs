//! Property tests: random operation sequences against a simple model of the pool.
//!
//! The single-threaded tests predict every step exactly (queues are FIFO, so the model knows
//! which slot each acquisition returns). The multi-threaded test cannot predict order, so it
//! checks what must hold whatever the interleaving: no buffer in two places, counts adding up,
//! nothing lost, no torn frame, no fill handed out twice, no slot going back in time.
//!
//! The other mechanisms have their own exact models, one module each: fan-out ports and
//! [`BufferHold`](buffer_core::BufferHold) (`model/ports.rs`), reclamation of what a detaching
//! attachment held (`model/reclaim.rs`), tiered pools (`model/tiered.rs`) and the futures
//! (`model/futures.rs`).

#[path = "model/futures.rs"]
mod futures;
#[path = "model/ports.rs"]
mod ports;
#[path = "model/reclaim.rs"]
mod reclaim;
#[path = "model/tiered.rs"]
mod tiered;

use std::collections::{HashMap, HashSet, VecDeque};

use buffer_core::{
    BufferId, BufferMemory, BufferPool, MemoryKind, PoolConfig, PoolOwner, Queue, ReadGuard, Wait,
    WriteGuard,
};
use parking_lot::Mutex;
use proptest::prelude::*;

const CAPACITY: u32 = 6;
const SIZE: usize = 16;

#[derive(Debug, Clone, Copy)]
enum Op {
    AcquireFree,
    Submit(usize),
    DropWrite(usize),
    AcquireFilled,
    DropRead(usize),
    DetachWrite(usize),
    DetachRead(usize),
    Redeem(usize),
    RedeemStale(usize),
    Inject(bool),
    Remove,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::AcquireFree),
        3 => any::<usize>().prop_map(Op::Submit),
        1 => any::<usize>().prop_map(Op::DropWrite),
        4 => Just(Op::AcquireFilled),
        3 => any::<usize>().prop_map(Op::DropRead),
        1 => any::<usize>().prop_map(Op::DetachWrite),
        1 => any::<usize>().prop_map(Op::DetachRead),
        2 => any::<usize>().prop_map(Op::Redeem),
        1 => any::<usize>().prop_map(Op::RedeemStale),
        1 => any::<bool>().prop_map(Op::Inject),
        1 => Just(Op::Remove),
    ]
}

fn heap_memory() -> BufferMemory {
    let mut storage = vec![0u8; SIZE].into_boxed_slice();
    let addr = storage.as_mut_ptr();
    // SAFETY: the storage moves into the owner, which the pool drops when the buffer leaves.
    unsafe { BufferMemory::owned(addr, SIZE, MemoryKind::Host, None, Box::new(storage)) }
}

fn stamp(guard: &mut WriteGuard<'_>, token: u64) {
    guard.as_mut_slice().unwrap()[..8].copy_from_slice(&token.to_le_bytes());
    guard.meta_mut().sequence = token;
}

fn read_token(guard: &ReadGuard<'_>) -> u64 {
    let data = guard.as_slice().unwrap();
    let token = u64::from_le_bytes(data[..8].try_into().unwrap());
    assert_eq!(
        token,
        guard.meta().sequence,
        "data and metadata disagree: torn or mixed buffer"
    );
    token
}

/// A held item of the model: a guard or a detached id, with the slot it is on.
enum Held<'p> {
    Write(WriteGuard<'p>),
    Read(ReadGuard<'p>),
    WriteId(BufferId),
    ReadId(BufferId),
}

/// The model: which slot is where, and what token each filled slot carries.
#[derive(Default)]
struct Model {
    free: VecDeque<u32>,
    filled: VecDeque<(u32, u64)>,
    vacant: Vec<u32>,
}

fn pick<T>(items: &mut Vec<T>, i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items.swap_remove(i % items.len()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn single_thread_matches_the_model_step_by_step(ops in prop::collection::vec(op(), 1..120)) {
        let pool = BufferPool::create(PoolConfig::new("model").with_capacity(CAPACITY)).unwrap();
        let mut model = Model { vacant: (0..CAPACITY).rev().collect(), ..Model::default() };
        let mut held: Vec<(u32, Held<'_>)> = Vec::new();
        let mut stale: Vec<BufferId> = Vec::new();
        let mut token = 0u64;

        for op in ops {
            match op {
                Op::AcquireFree => match model.free.pop_front() {
                    Some(slot) => {
                        let mut g = pool.acquire_free(Wait::NoWait).unwrap();
                        prop_assert_eq!(g.id().slot, slot);
                        token += 1;
                        stamp(&mut g, token);
                        held.push((slot, Held::Write(g)));
                    }
                    None => prop_assert!(pool.acquire_free(Wait::NoWait).is_err()),
                },
                Op::AcquireFilled => match model.filled.pop_front() {
                    Some((slot, want)) => {
                        let g = pool.acquire_filled(Wait::NoWait).unwrap();
                        prop_assert_eq!(g.id().slot, slot);
                        prop_assert_eq!(read_token(&g), want);
                        held.push((slot, Held::Read(g)));
                    }
                    None => prop_assert!(pool.acquire_filled(Wait::NoWait).is_err()),
                },
                Op::Submit(i) | Op::DropWrite(i) | Op::DropRead(i) | Op::DetachWrite(i) | Op::DetachRead(i) => {
                    if let Some((slot, item)) = pick(&mut held, i) {
                        match (op, item) {
                            (Op::Submit(_), Held::Write(g)) => {
                                model.filled.push_back((slot, g.meta().sequence));
                                g.submit();
                            }
                            (Op::DetachWrite(_), Held::Write(g)) => held.push((slot, Held::WriteId(g.into_id()))),
                            (Op::DetachRead(_), Held::Read(g)) => held.push((slot, Held::ReadId(g.into_id()))),
                            (_, Held::Write(g)) => {
                                stale.push(g.id());
                                drop(g);
                                model.free.push_back(slot);
                            }
                            (_, Held::Read(g)) => {
                                stale.push(g.id());
                                drop(g);
                                model.free.push_back(slot);
                            }
                            (_, id) => held.push((slot, id)),
                        }
                    }
                }
                Op::Redeem(i) => {
                    if let Some((slot, item)) = pick(&mut held, i) {
                        let item = match item {
                            Held::WriteId(id) => Held::Write(pool.redeem_write(id).unwrap()),
                            Held::ReadId(id) => {
                                let g = pool.redeem_read(id).unwrap();
                                read_token(&g);
                                Held::Read(g)
                            }
                            guard => guard,
                        };
                        held.push((slot, item));
                    }
                }
                Op::RedeemStale(i) => {
                    if let Some(&id) = stale.get(i % stale.len().max(1)) {
                        prop_assert!(pool.redeem_write(id).is_err());
                        prop_assert!(pool.redeem_read(id).is_err());
                    }
                }
                Op::Inject(to_filled) => {
                    let result = pool.inject(heap_memory(), if to_filled { Queue::Filled } else { Queue::Free });
                    match model.vacant.pop() {
                        Some(slot) => {
                            prop_assert!(result.is_ok());
                            if to_filled {
                                // A fresh buffer is zeroed and its record reset: token 0.
                                model.filled.push_back((slot, 0));
                            } else {
                                model.free.push_back(slot);
                            }
                        }
                        None => prop_assert!(result.is_err()),
                    }
                }
                Op::Remove => match model.free.pop_front() {
                    Some(slot) => {
                        pool.remove(Wait::NoWait).unwrap();
                        model.vacant.push(slot);
                        model.vacant.sort_unstable_by(|a, b| b.cmp(a));
                    }
                    None => prop_assert!(pool.remove(Wait::NoWait).is_err()),
                },
            }
            let counts = pool.counts();
            prop_assert_eq!(counts.free as usize, model.free.len());
            prop_assert_eq!(counts.filled as usize, model.filled.len());
            prop_assert_eq!(counts.in_use as usize, held.len());
            prop_assert_eq!(counts.total, CAPACITY - model.vacant.len() as u32);
        }
        // Every slot is in exactly one place.
        let mut places: Vec<u32> = model.free.iter().copied()
            .chain(model.filled.iter().map(|&(s, _)| s))
            .chain(model.vacant.iter().copied())
            .chain(held.iter().map(|&(s, _)| s))
            .collect();
        places.sort_unstable();
        prop_assert_eq!(places, (0..CAPACITY).collect::<Vec<_>>());
    }

    #[test]
    fn threads_lose_and_duplicate_nothing(
        plans in prop::collection::vec(prop::collection::vec(op(), 1..200), 2..4)
    ) {
        let pool = BufferPool::create(PoolConfig::new("threads").with_capacity(CAPACITY)).unwrap();
        for _ in 0..3 {
            pool.inject(heap_memory(), Queue::Free).unwrap();
        }
        // Detached ids travel between threads through this mailbox.
        let mailbox: Mutex<Vec<(bool, BufferId)>> = Mutex::new(Vec::new());
        let net_injected = std::sync::atomic::AtomicI64::new(3);
        let handed_out = Mutex::new(HashSet::new());
        std::thread::scope(|s| {
            for (t, plan) in plans.iter().enumerate() {
                let shared = Shared {
                    pool: &pool,
                    mailbox: &mailbox,
                    net_injected: &net_injected,
                    handed_out: &handed_out,
                };
                s.spawn(move || run_plan(shared, t as u64, plan));
            }
        });
        for (is_write, id) in mailbox.into_inner() {
            if is_write { drop(pool.redeem_write(id).unwrap()) } else { drop(pool.redeem_read(id).unwrap()) }
        }
        let total = net_injected.load(std::sync::atomic::Ordering::SeqCst) as u32;
        let counts = pool.counts();
        prop_assert_eq!(counts.total, total);
        prop_assert_eq!(counts.in_use, 0);
        prop_assert_eq!(counts.free + counts.filled, total);
        let mut seen = HashSet::new();
        let mut handed_out = handed_out.into_inner();
        while let Ok(g) = pool.acquire_filled(Wait::NoWait) {
            let token = read_token(&g);
            // A fill still queued at the end was never handed out before.
            prop_assert!(token == 0 || handed_out.insert(token), "fill {:#x} queued after it was read", token);
            prop_assert!(seen.insert(g.id().slot));
            let _kept_out = g.into_id();
        }
        while let Ok(g) = pool.acquire_free(Wait::NoWait) {
            prop_assert!(seen.insert(g.id().slot), "slot {} in two places", g.id().slot);
            let _kept_out = g.into_id();
        }
        prop_assert_eq!(seen.len() as u32, total);
    }
}

/// What the threads of [`threads_lose_and_duplicate_nothing`] share.
#[derive(Clone, Copy)]
struct Shared<'a> {
    pool: &'a PoolOwner,
    /// Detached ids, and whether each is a write guard's.
    mailbox: &'a Mutex<Vec<(bool, BufferId)>>,
    /// Buffers injected minus buffers removed.
    net_injected: &'a std::sync::atomic::AtomicI64,
    /// Every token (but 0, an injected filled buffer's) read from the filled queue: each fill is
    /// handed out once.
    handed_out: &'a Mutex<HashSet<u64>>,
}

/// One thread's plan. Tokens are `thread << 32 | n`, `n` growing with each write, and every
/// buffer acquired free is stamped at once, so: a token comes out of the filled queue at most
/// once (`handed_out`), and in one slot a thread sees each writer's tokens in increasing order
/// (`last_seen`: a slot is written again only after its fill was consumed, so an older token
/// after a newer one is stale data or a buffer handed out twice).
fn run_plan(shared: Shared<'_>, thread: u64, plan: &[Op]) {
    let Shared {
        pool,
        mailbox,
        net_injected,
        handed_out,
    } = shared;
    let mut writes: Vec<WriteGuard<'_>> = Vec::new();
    let mut reads: Vec<ReadGuard<'_>> = Vec::new();
    let mut token = thread << 32;
    // The newest token seen in each (slot, writing thread).
    let mut last_seen: HashMap<(u32, u64), u64> = HashMap::new();
    for &op in plan {
        match op {
            Op::AcquireFree => {
                if let Ok(mut g) = pool.acquire_free(Wait::NoWait) {
                    token += 1;
                    stamp(&mut g, token);
                    writes.push(g);
                }
            }
            Op::AcquireFilled => {
                if let Ok(g) = pool.acquire_filled(Wait::NoWait) {
                    let seen = read_token(&g);
                    if seen != 0 {
                        assert!(
                            handed_out.lock().insert(seen),
                            "fill {seen:#x} handed out twice by the filled queue"
                        );
                        let key = (g.id().slot, seen >> 32);
                        if let Some(&before) = last_seen.get(&key) {
                            assert!(
                                seen > before,
                                "slot {} gave fill {seen:#x} after the newer {before:#x}",
                                key.0
                            );
                        }
                        last_seen.insert(key, seen);
                    }
                    reads.push(g);
                }
            }
            Op::Submit(i) => {
                if let Some(g) = pick(&mut writes, i) {
                    g.submit()
                }
            }
            Op::DropWrite(i) => drop(pick(&mut writes, i)),
            Op::DropRead(i) => drop(pick(&mut reads, i)),
            Op::DetachWrite(i) => {
                if let Some(g) = pick(&mut writes, i) {
                    mailbox.lock().push((true, g.into_id()))
                }
            }
            Op::DetachRead(i) => {
                if let Some(g) = pick(&mut reads, i) {
                    mailbox.lock().push((false, g.into_id()))
                }
            }
            Op::Redeem(i) => {
                let entry = pick(&mut mailbox.lock(), i);
                match entry {
                    Some((true, id)) => writes.push(
                        pool.redeem_write(id)
                            .expect("a mailed write id redeems once"),
                    ),
                    Some((false, id)) => {
                        let g = pool.redeem_read(id).expect("a mailed read id redeems once");
                        read_token(&g);
                        reads.push(g);
                    }
                    None => {}
                }
            }
            Op::RedeemStale(_) => {
                if let Some(g) = reads.last() {
                    let mut id = g.id();
                    id.generation = id.generation.wrapping_sub(1);
                    assert!(pool.redeem_read(id).is_err());
                }
            }
            Op::Inject(to_filled) => {
                if pool
                    .inject(
                        heap_memory(),
                        if to_filled {
                            Queue::Filled
                        } else {
                            Queue::Free
                        },
                    )
                    .is_ok()
                {
                    net_injected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Op::Remove => {
                if pool.remove(Wait::NoWait).is_ok() {
                    net_injected.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    }
}
