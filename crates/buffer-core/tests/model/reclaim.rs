//! Reclamation against an exact model, in one process: each attachment to a shared pool
//! ([`BufferPool::attach`]) is another actor of the pool, as another process would be, and
//! detaching one (dropping its last handle) is that process going away.
//!
//! Guards borrow their handle, so every operation here ends its guards within the step: a
//! buffer is kept across steps only as a detached id, held by the actor that last detached it
//! (redeeming an id through another actor's handle makes that actor its holder). The model
//! predicts, when an actor detaches, that exactly the ids it holds go back to the free queue
//! (in slot order: the reaper scans the slot table) and become stale everywhere, while the
//! ids other actors hold stay redeemable; and every step's counts and attached processes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

use buffer_core::{BufferId, BufferPool, PoolConfig, PoolOwner, SlotState, Wait, WriteGuard};
use proptest::prelude::*;

use super::{pick, read_token, stamp};

const BUFFERS: u32 = 5;
/// Actor 0 is the pool's creator (never detached: that would destroy the pool); the others
/// attach and detach.
const ACTORS: usize = 3;

/// What to do with a write guard (or a read guard: `Submit` is `Drop` there) at the end of a
/// step.
#[derive(Debug, Clone, Copy)]
enum Then {
    Submit,
    Drop,
    Detach,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Acquire a free buffer through this actor's handle and stamp it.
    Produce(usize, Then),
    /// Acquire a filled buffer and read it; detach it into an id or drop it.
    Consume(usize, bool),
    /// Redeem a live id through this actor's handle.
    Redeem(usize, usize, Then),
    /// Redeeming a stale id fails, through any handle.
    RedeemStale(usize, usize),
    /// Attach this actor, or clone its handle if it is attached.
    Attach(usize),
    /// Drop one handle of this actor; the last one detaches it.
    Detach(usize),
}

fn then() -> impl Strategy<Value = Then> {
    prop_oneof![1 => Just(Then::Submit), 1 => Just(Then::Drop), 2 => Just(Then::Detach)]
}

fn op() -> impl Strategy<Value = Op> {
    let actor = || 0..ACTORS;
    let attached = || 1..ACTORS;
    prop_oneof![
        4 => (actor(), then()).prop_map(|(a, t)| Op::Produce(a, t)),
        3 => (actor(), any::<bool>()).prop_map(|(a, d)| Op::Consume(a, d)),
        3 => (actor(), any::<usize>(), then()).prop_map(|(a, i, t)| Op::Redeem(a, i, t)),
        1 => (actor(), any::<usize>()).prop_map(|(a, i)| Op::RedeemStale(a, i)),
        2 => attached().prop_map(Op::Attach),
        2 => attached().prop_map(Op::Detach),
    ]
}

/// A detached id nobody redeemed yet.
#[derive(Debug, Clone, Copy)]
struct Live {
    id: BufferId,
    /// Detached from a write guard (else a read guard).
    write: bool,
    /// The actor whose handle detached it last.
    holder: usize,
    token: u64,
}

#[derive(Debug, Default)]
struct Model {
    free: VecDeque<u32>,
    filled: VecDeque<(u32, u64)>,
    live: Vec<Live>,
    stale: Vec<BufferId>,
}

/// A segment name no other test (or run) uses.
fn segment_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "model-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The handle actor `actor` acts through, if it is attached.
fn handle<'a>(
    owner: &'a PoolOwner,
    handles: &'a [Vec<BufferPool>],
    actor: usize,
) -> Option<&'a BufferPool> {
    if actor == 0 {
        Some(owner.pool())
    } else {
        handles[actor].last()
    }
}

/// The token a write guard's buffer carries.
fn write_token(guard: &mut WriteGuard<'_>) -> u64 {
    let token = u64::from_le_bytes(guard.as_mut_slice().unwrap()[..8].try_into().unwrap());
    assert_eq!(token, guard.meta().sequence, "data and metadata disagree");
    token
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 128 }, ..ProptestConfig::default() })]

    #[test]
    fn a_detaching_actor_gives_back_exactly_the_ids_it_holds(ops in prop::collection::vec(op(), 1..100)) {
        let segment = segment_name();
        let config = PoolConfig::new("reclaim").with_capacity(BUFFERS);
        let owner = BufferPool::create_shared(&segment, config, BUFFERS, 64).unwrap();
        // Every actor but the creator starts attached, with one handle.
        let mut handles: Vec<Vec<BufferPool>> = (0..ACTORS)
            .map(|actor| if actor == 0 { Vec::new() } else { vec![BufferPool::attach(&segment).unwrap()] })
            .collect();
        let mut model = Model { free: (0..BUFFERS).collect(), ..Model::default() };
        let mut token = 0u64;

        for op in ops {
            match op {
                Op::Produce(actor, then) => {
                    let Some(pool) = handle(&owner, &handles, actor) else { continue };
                    match model.free.pop_front() {
                        Some(slot) => {
                            let mut g = pool.acquire_free(Wait::NoWait).unwrap();
                            prop_assert_eq!(g.id().slot, slot);
                            token += 1;
                            stamp(&mut g, token);
                            match then {
                                Then::Submit => {
                                    g.submit();
                                    model.filled.push_back((slot, token));
                                }
                                Then::Drop => {
                                    model.stale.push(g.id());
                                    drop(g);
                                    model.free.push_back(slot);
                                }
                                Then::Detach => {
                                    let id = g.into_id();
                                    model.live.push(Live { id, write: true, holder: actor, token });
                                }
                            }
                        }
                        None => prop_assert!(pool.acquire_free(Wait::NoWait).is_err()),
                    }
                }
                Op::Consume(actor, detach) => {
                    let Some(pool) = handle(&owner, &handles, actor) else { continue };
                    match model.filled.pop_front() {
                        Some((slot, want)) => {
                            let g = pool.acquire_filled(Wait::NoWait).unwrap();
                            prop_assert_eq!(g.id().slot, slot);
                            prop_assert_eq!(read_token(&g), want);
                            if detach {
                                let id = g.into_id();
                                model.live.push(Live { id, write: false, holder: actor, token: want });
                            } else {
                                model.stale.push(g.id());
                                drop(g);
                                model.free.push_back(slot);
                            }
                        }
                        None => prop_assert!(pool.acquire_filled(Wait::NoWait).is_err()),
                    }
                }
                Op::Redeem(actor, i, then) => {
                    let Some(pool) = handle(&owner, &handles, actor) else { continue };
                    let Some(live) = pick(&mut model.live, i) else { continue };
                    let slot = live.id.slot;
                    if live.write {
                        let mut g = pool.redeem_write(live.id).unwrap();
                        prop_assert_eq!(write_token(&mut g), live.token);
                        match then {
                            Then::Submit => {
                                g.submit();
                                model.filled.push_back((slot, live.token));
                            }
                            Then::Drop => {
                                drop(g);
                                model.stale.push(live.id);
                                model.free.push_back(slot);
                            }
                            Then::Detach => {
                                let id = g.into_id();
                                prop_assert_eq!(id, live.id);
                                model.live.push(Live { holder: actor, ..live });
                            }
                        }
                    } else {
                        let g = pool.redeem_read(live.id).unwrap();
                        prop_assert_eq!(read_token(&g), live.token);
                        if let Then::Detach = then {
                            let id = g.into_id();
                            prop_assert_eq!(id, live.id);
                            model.live.push(Live { holder: actor, ..live });
                        } else {
                            drop(g);
                            model.stale.push(live.id);
                            model.free.push_back(slot);
                        }
                    }
                }
                Op::RedeemStale(actor, i) => {
                    let Some(pool) = handle(&owner, &handles, actor) else { continue };
                    if let Some(&id) = model.stale.get(i % model.stale.len().max(1)) {
                        prop_assert!(pool.redeem_write(id).is_err(), "stale {:?} redeemed", id);
                        prop_assert!(pool.redeem_read(id).is_err(), "stale {:?} redeemed", id);
                    }
                }
                Op::Attach(actor) => {
                    let next = match handles[actor].last() {
                        Some(pool) => pool.clone(),
                        None => BufferPool::attach(&segment).unwrap(),
                    };
                    handles[actor].push(next);
                }
                Op::Detach(actor) => {
                    let Some(pool) = handles[actor].pop() else { continue };
                    drop(pool);
                    if handles[actor].is_empty() {
                        // Gone: what it held goes back, in slot order, and its ids go stale.
                        let (mine, others): (Vec<Live>, Vec<Live>) =
                            model.live.iter().partition(|live| live.holder == actor);
                        model.live = others;
                        let mut slots: Vec<u32> = mine.iter().map(|live| live.id.slot).collect();
                        slots.sort_unstable();
                        model.free.extend(slots);
                        for live in mine {
                            let id = live.id;
                            prop_assert!(owner.redeem_write(id).is_err(), "{:?} redeemed, holder gone", id);
                            prop_assert!(owner.redeem_read(id).is_err(), "{:?} redeemed, holder gone", id);
                            model.stale.push(id);
                        }
                    }
                }
            }
            let counts = owner.counts();
            prop_assert_eq!(counts.total, BUFFERS);
            prop_assert_eq!(counts.free as usize, model.free.len(), "free");
            prop_assert_eq!(counts.filled as usize, model.filled.len(), "filled");
            prop_assert_eq!(counts.in_use as usize, model.live.len(), "in use");
            let attached = 1 + handles.iter().filter(|h| !h.is_empty()).count();
            prop_assert_eq!(owner.processes().len(), attached, "attached processes");
            let buffers = owner.buffers();
            for live in &model.live {
                let want = if live.write { SlotState::WritingDetached } else { SlotState::ReadingDetached };
                let info = &buffers[live.id.slot as usize];
                prop_assert_eq!(info.state, Some(want), "slot {}", live.id.slot);
                prop_assert_eq!(info.id, live.id);
            }
        }
        // The ids still live redeem, through any handle; then every buffer is back.
        for live in std::mem::take(&mut model.live) {
            let pool = handle(&owner, &handles, ACTORS - 1 - live.holder % ACTORS).unwrap_or(&owner);
            if live.write {
                drop(pool.redeem_write(live.id).unwrap());
            } else {
                drop(pool.redeem_read(live.id).unwrap());
            }
        }
        drop(handles);
        let counts = owner.counts();
        prop_assert_eq!((counts.in_use, counts.free + counts.filled), (0, BUFFERS));
        prop_assert_eq!(owner.audit(), Vec::<String>::new());
    }
}
