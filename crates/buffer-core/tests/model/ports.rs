//! Fan-out ports and [`BufferHold`] against an exact model.
//!
//! The model knows, for every slot, who holds it (a queue, a write guard, a hold, a read guard,
//! or only ports) and which ports hold a reference; for every port, whether it has a
//! subscriber, the buffers waiting in it in order, and which of its cells are in use. It
//! predicts which ports each publication reaches and which refuse it, which buffer each receive
//! returns (and its contents), and when a buffer goes back to the free queue: after every step
//! the pool's counts, each port's counters and each slot's state, ports and references must be
//! what the model says.

use std::collections::VecDeque;

use buffer_core::{
    AccessError, BufferHold, BufferPool, PoolConfig, Port, PortGuard, ReadGuard, ReceiveError,
    SlotState, SubscribeError, Subscription, Wait, WriteGuard,
};
use proptest::prelude::*;

use super::{pick, read_token, stamp};

const PORTS: usize = 3;
const PORT_NAMES: [&str; PORTS] = ["a", "b", "c"];
const BUFFERS: u32 = 6;

/// Where a buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    Free,
    Filled,
    /// Held by a write guard.
    Write,
    /// Held by a [`BufferHold`] never published.
    Hold,
    /// Held by a [`BufferHold`] that published it (to zero or more ports).
    PublishedHold,
    Read,
    /// Held only by the ports whose bits it has.
    Shared,
}

impl At {
    /// The slot state the pool reports for a buffer here.
    fn state(self) -> SlotState {
        match self {
            At::Free => SlotState::Free,
            At::Filled => SlotState::Filled,
            At::Write | At::Hold => SlotState::Writing,
            At::PublishedHold => SlotState::Publishing,
            At::Read => SlotState::Reading,
            At::Shared => SlotState::Shared,
        }
    }

    /// Whether a holder (guard or hold) has a reference besides the ports.
    fn held(self) -> bool {
        matches!(self, At::Write | At::Hold | At::PublishedHold | At::Read)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SlotModel {
    pub(super) at: At,
    /// The token its contents and metadata carry.
    pub(super) token: u64,
    /// The ports holding a reference (queued there, or read by a port guard).
    pub(super) ports: u16,
}

#[derive(Debug, Clone)]
pub(super) struct PortModel {
    pub(super) subscribed: bool,
    /// Buffers waiting to be received, oldest first: (position, slot).
    pub(super) waiting: VecDeque<(u64, u32)>,
    /// For each cell of the ring (position modulo depth): in use by a buffer queued or read.
    cells: Vec<bool>,
    /// The position the next accepted buffer gets.
    tail: u64,
    pub(super) delivered: u64,
    pub(super) refused: u64,
}

impl PortModel {
    /// Whether a publication finds room: the port is a ring of `depth` places (the `port`
    /// module's docs), and a publication needs the place at the ring's tail, which a buffer
    /// still being read from `depth` publications ago keeps.
    fn has_room(&self) -> bool {
        !self.cells[(self.tail % self.cells.len() as u64) as usize]
    }
}

/// The whole pool as the model sees it.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) free: VecDeque<u32>,
    pub(super) filled: VecDeque<u32>,
    pub(super) slots: Vec<SlotModel>,
    pub(super) ports: Vec<PortModel>,
}

impl Model {
    /// `buffers` buffers, all free in slot order, and `ports` ports of `depth` without
    /// subscribers.
    pub(super) fn new(buffers: u32, ports: usize, depth: u32) -> Model {
        Model {
            free: (0..buffers).collect(),
            filled: VecDeque::new(),
            slots: vec![
                SlotModel {
                    at: At::Free,
                    token: 0,
                    ports: 0
                };
                buffers as usize
            ],
            ports: (0..ports)
                .map(|_| PortModel {
                    subscribed: false,
                    waiting: VecDeque::new(),
                    cells: vec![false; depth as usize],
                    tail: 0,
                    delivered: 0,
                    refused: 0,
                })
                .collect(),
        }
    }

    /// Takes the next free buffer for a holder `at`.
    pub(super) fn acquire_free(&mut self, at: At) -> Option<u32> {
        let slot = self.free.pop_front()?;
        self.slots[slot as usize].at = at;
        Some(slot)
    }

    pub(super) fn push_free(&mut self, slot: u32) {
        self.slots[slot as usize].at = At::Free;
        self.free.push_back(slot);
    }

    pub(super) fn push_filled(&mut self, slot: u32) {
        self.slots[slot as usize].at = At::Filled;
        self.filled.push_back(slot);
    }

    /// Gives `ports` (duplicates count once) a reference each to `slot`, which a holder has;
    /// returns the bits of the ports that took it and of those that refused.
    pub(super) fn deliver(&mut self, slot: u32, ports: &[u8]) -> (u16, u16) {
        let (mut delivered, mut refused) = (0u16, 0u16);
        for &port in ports {
            let bit = 1u16 << port;
            if (delivered | refused) & bit != 0 {
                continue;
            }
            let holds_it = self.slots[slot as usize].ports & bit != 0;
            let entry = &mut self.ports[usize::from(port)];
            if !entry.subscribed || holds_it || !entry.has_room() {
                entry.refused += 1;
                refused |= bit;
                continue;
            }
            let position = entry.tail;
            entry.tail += 1;
            let cells = entry.cells.len() as u64;
            entry.cells[(position % cells) as usize] = true;
            entry.waiting.push_back((position, slot));
            entry.delivered += 1;
            self.slots[slot as usize].ports |= bit;
            delivered |= bit;
        }
        (delivered, refused)
    }

    /// The holder of a published buffer lets go: the ports keep it, or it is free.
    pub(super) fn end_holder(&mut self, slot: u32) {
        if self.slots[slot as usize].ports == 0 {
            self.push_free(slot);
        } else {
            self.slots[slot as usize].at = At::Shared;
        }
    }

    /// The next buffer waiting in `port`, now read: (position, slot).
    pub(super) fn receive(&mut self, port: u8) -> Option<(u64, u32)> {
        self.ports[usize::from(port)].waiting.pop_front()
    }

    /// Port `port` lets go of the buffer at `position` (a port guard dropped, or a waiting
    /// buffer dropped with its subscription).
    pub(super) fn drop_port_reference(&mut self, port: u8, position: u64, slot: u32) {
        let entry = &mut self.ports[usize::from(port)];
        let cells = entry.cells.len() as u64;
        entry.cells[(position % cells) as usize] = false;
        let record = &mut self.slots[slot as usize];
        record.ports &= !(1u16 << port);
        if record.at == At::Shared && record.ports == 0 {
            self.push_free(slot);
        }
    }

    /// The subscription of `port` ends: what waits in it is dropped, oldest first.
    pub(super) fn unsubscribe(&mut self, port: u8) {
        self.ports[usize::from(port)].subscribed = false;
        while let Some((position, slot)) = self.receive(port) {
            self.drop_port_reference(port, position, slot);
        }
    }

    /// Checks the pool's counts, port counters and slot states against the model.
    pub(super) fn check(&self, pool: &BufferPool, names: &[&str]) -> Result<(), TestCaseError> {
        let counts = pool.counts();
        let total = self.slots.len() as u32;
        prop_assert_eq!(counts.total, total);
        prop_assert_eq!(counts.free as usize, self.free.len(), "free count");
        prop_assert_eq!(counts.filled as usize, self.filled.len(), "filled count");
        prop_assert_eq!(
            counts.in_use as usize,
            total as usize - self.free.len() - self.filled.len(),
            "in-use count"
        );
        for (index, (info, port)) in pool.port_infos().iter().zip(&self.ports).enumerate() {
            prop_assert_eq!(info.subscriber.is_some(), port.subscribed, "port {}", index);
            prop_assert_eq!(
                info.delivered,
                port.delivered,
                "delivered to port {}",
                index
            );
            prop_assert_eq!(info.refused, port.refused, "refused by port {}", index);
            prop_assert_eq!(
                info.queued as usize,
                port.waiting.len(),
                "queued in port {}",
                index
            );
            let places = port.cells.iter().filter(|&&used| used).count();
            prop_assert_eq!(
                info.reading as usize,
                places - port.waiting.len(),
                "being read from port {}",
                index
            );
        }
        for (info, want) in pool.buffers().iter().zip(&self.slots) {
            let slot = info.id.slot;
            prop_assert_eq!(info.state, Some(want.at.state()), "state of slot {}", slot);
            let ports: Vec<String> = (0..names.len())
                .filter(|&port| want.ports & 1 << port != 0)
                .map(|port| names[port].to_owned())
                .collect();
            prop_assert_eq!(&info.ports, &ports, "ports holding slot {}", slot);
            prop_assert_eq!(
                info.references,
                u32::from(want.at.held()) + want.ports.count_ones(),
                "references to slot {}",
                slot
            );
        }
        Ok(())
    }
}

/// Acquires a free buffer for writing where the model predicts one (which, and whether any)
/// and stamps it with the next `token`; `None` where the model predicts none.
pub(super) fn acquire_write<'p>(
    model: &mut Model,
    pool: &'p BufferPool,
    token: &mut u64,
) -> Result<Option<(u32, WriteGuard<'p>)>, TestCaseError> {
    let Some(slot) = model.acquire_free(At::Write) else {
        prop_assert!(pool.acquire_free(Wait::NoWait).is_err());
        return Ok(None);
    };
    let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
    prop_assert_eq!(guard.id().slot, slot);
    *token += 1;
    stamp(&mut guard, *token);
    model.slots[slot as usize].token = *token;
    Ok(Some((slot, guard)))
}

/// Checks what a publication reports against the model's delivered and refused bits.
pub(super) fn check_published(
    published: buffer_core::Published,
    ports: &[Port],
    (delivered, refused): (u16, u16),
) -> Result<(), TestCaseError> {
    prop_assert_eq!(published.delivered(), delivered.count_ones(), "delivered");
    prop_assert_eq!(published.refused(), refused.count_ones(), "refused");
    for &port in ports {
        prop_assert_eq!(
            published.reached(port),
            delivered & 1 << port.index() != 0,
            "reached port {}",
            port.index()
        );
    }
    Ok(())
}

/// The token a port guard's buffer carries (contents and metadata agreeing).
pub(super) fn port_token(guard: &PortGuard<'_>) -> u64 {
    let data = guard.as_slice().unwrap();
    let token = u64::from_le_bytes(data[..8].try_into().unwrap());
    assert_eq!(token, guard.meta().sequence, "data and metadata disagree");
    token
}

/// The token a hold's buffer carries (contents and metadata agreeing).
fn hold_token(hold: &BufferHold) -> u64 {
    let data = hold.as_slice().unwrap();
    let token = u64::from_le_bytes(data[..8].try_into().unwrap());
    assert_eq!(token, hold.meta().sequence, "data and metadata disagree");
    token
}

#[derive(Debug, Clone)]
enum Op {
    AcquireFree,
    Submit(usize),
    DropWrite(usize),
    Publish(usize, Vec<u8>),
    IntoHold(usize),
    /// Write the hold's buffer again (refused once published), and read it back.
    HoldWrite(usize),
    HoldPublish(usize, Vec<u8>),
    HoldSubmit(usize),
    DropHold(usize),
    Subscribe(u8),
    Unsubscribe(u8),
    Receive(u8),
    DropPortGuard(usize),
    AcquireFilled,
    DropRead(usize),
}

fn port_list() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..PORTS as u8, 0..=4)
}

fn op() -> impl Strategy<Value = Op> {
    let port = || 0..PORTS as u8;
    prop_oneof![
        5 => Just(Op::AcquireFree),
        1 => any::<usize>().prop_map(Op::Submit),
        1 => any::<usize>().prop_map(Op::DropWrite),
        5 => (any::<usize>(), port_list()).prop_map(|(i, ports)| Op::Publish(i, ports)),
        2 => any::<usize>().prop_map(Op::IntoHold),
        1 => any::<usize>().prop_map(Op::HoldWrite),
        3 => (any::<usize>(), port_list()).prop_map(|(i, ports)| Op::HoldPublish(i, ports)),
        1 => any::<usize>().prop_map(Op::HoldSubmit),
        2 => any::<usize>().prop_map(Op::DropHold),
        3 => port().prop_map(Op::Subscribe),
        1 => port().prop_map(Op::Unsubscribe),
        5 => port().prop_map(Op::Receive),
        4 => any::<usize>().prop_map(Op::DropPortGuard),
        1 => Just(Op::AcquireFilled),
        1 => any::<usize>().prop_map(Op::DropRead),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn ports_and_holds_match_the_model_step_by_step(
        depth in prop::sample::select(vec![2u32, 4]),
        subscribed in prop::collection::vec(any::<bool>(), PORTS),
        ops in prop::collection::vec(op(), 1..160),
    ) {
        let config = PoolConfig::new("ports")
            .with_capacity(BUFFERS)
            .with_ports(PORT_NAMES)
            .with_port_depth(depth);
        let pool = BufferPool::with_heap_buffers(config, BUFFERS, 16).unwrap();
        let ports: Vec<Port> = PORT_NAMES.iter().map(|name| pool.port(name).unwrap()).collect();
        let mut model = Model::new(BUFFERS, PORTS, depth);
        let mut subs: Vec<Option<Subscription<'_>>> = subscribed
            .iter()
            .zip(&ports)
            .map(|(&subscribe, &port)| subscribe.then(|| pool.subscribe(port).unwrap()))
            .collect();
        for (port, &subscribe) in model.ports.iter_mut().zip(&subscribed) {
            port.subscribed = subscribe;
        }
        let mut writes: Vec<(u32, WriteGuard<'_>)> = Vec::new();
        let mut holds: Vec<(u32, BufferHold)> = Vec::new();
        let mut reads: Vec<(u32, ReadGuard<'_>)> = Vec::new();
        let mut port_reads: Vec<(u8, u64, u32, PortGuard<'_>)> = Vec::new();
        let mut token = 0u64;
        let to_ports = |list: &[u8]| list.iter().map(|&p| ports[usize::from(p)]).collect::<Vec<_>>();

        for op in ops {
            match op {
                Op::AcquireFree => writes.extend(acquire_write(&mut model, &pool, &mut token)?),
                Op::Submit(i) => if let Some((slot, g)) = pick(&mut writes, i) {
                    g.submit();
                    model.push_filled(slot);
                },
                Op::DropWrite(i) => if let Some((slot, g)) = pick(&mut writes, i) {
                    drop(g);
                    model.push_free(slot);
                },
                Op::Publish(i, list) => if let Some((slot, g)) = pick(&mut writes, i) {
                    let targets = to_ports(&list);
                    let published = g.publish(&targets);
                    let bits = model.deliver(slot, &list);
                    model.end_holder(slot);
                    check_published(published, &targets, bits)?;
                },
                Op::IntoHold(i) => if let Some((slot, g)) = pick(&mut writes, i) {
                    holds.push((slot, g.into_hold()));
                    model.slots[slot as usize].at = At::Hold;
                },
                Op::HoldWrite(i) => if !holds.is_empty() {
                    let n = holds.len();
                    let (slot, hold) = &mut holds[i % n];
                    let record = &mut model.slots[*slot as usize];
                    let published = record.at == At::PublishedHold;
                    prop_assert_eq!(hold.is_published(), published);
                    if published {
                        let refused = matches!(hold.as_mut_slice(), Err(AccessError::Published { .. }));
                        prop_assert!(refused, "a published hold's buffer is writable");
                        let refused = matches!(hold.meta_mut(), Err(AccessError::Published { .. }));
                        prop_assert!(refused, "a published hold's record is writable");
                    } else {
                        token += 1;
                        hold.as_mut_slice().unwrap()[..8].copy_from_slice(&token.to_le_bytes());
                        hold.meta_mut().unwrap().sequence = token;
                        record.token = token;
                    }
                    prop_assert_eq!(hold_token(hold), record.token);
                },
                Op::HoldPublish(i, list) => if !holds.is_empty() {
                    let n = holds.len();
                    let (slot, hold) = &mut holds[i % n];
                    let targets = to_ports(&list);
                    let published = hold.publish(&targets);
                    model.slots[*slot as usize].at = At::PublishedHold;
                    let bits = model.deliver(*slot, &list);
                    check_published(published, &targets, bits)?;
                },
                Op::HoldSubmit(i) => if let Some((slot, hold)) = pick(&mut holds, i) {
                    hold.submit();
                    // Only a hold never published reaches the filled queue.
                    if model.slots[slot as usize].at == At::Hold {
                        model.push_filled(slot);
                    } else {
                        model.end_holder(slot);
                    }
                },
                Op::DropHold(i) => if let Some((slot, hold)) = pick(&mut holds, i) {
                    drop(hold);
                    if model.slots[slot as usize].at == At::Hold {
                        model.push_free(slot);
                    } else {
                        model.end_holder(slot);
                    }
                },
                Op::Subscribe(p) => {
                    let result = pool.subscribe(ports[usize::from(p)]);
                    if model.ports[usize::from(p)].subscribed {
                        let taken = matches!(result, Err(SubscribeError::Taken { .. }));
                        prop_assert!(taken, "a second subscription to port {}", p);
                    } else {
                        subs[usize::from(p)] = Some(result.unwrap());
                        model.ports[usize::from(p)].subscribed = true;
                    }
                }
                Op::Unsubscribe(p) => if let Some(sub) = subs[usize::from(p)].take() {
                    drop(sub);
                    model.unsubscribe(p);
                },
                Op::Receive(p) => if let Some(sub) = &subs[usize::from(p)] {
                    match model.receive(p) {
                        Some((position, slot)) => {
                            let g = sub.receive(Wait::NoWait).unwrap();
                            prop_assert_eq!(g.id().slot, slot, "port {} out of order", p);
                            prop_assert_eq!(port_token(&g), model.slots[slot as usize].token);
                            port_reads.push((p, position, slot, g));
                        }
                        None => {
                            let result = sub.receive(Wait::NoWait);
                            prop_assert!(matches!(result, Err(ReceiveError::Empty { .. })), "{:?}", result);
                        }
                    }
                },
                Op::DropPortGuard(i) => if let Some((p, position, slot, g)) = pick(&mut port_reads, i) {
                    drop(g);
                    model.drop_port_reference(p, position, slot);
                },
                Op::AcquireFilled => match model.filled.pop_front() {
                    Some(slot) => {
                        let g = pool.acquire_filled(Wait::NoWait).unwrap();
                        prop_assert_eq!(g.id().slot, slot);
                        prop_assert_eq!(read_token(&g), model.slots[slot as usize].token);
                        model.slots[slot as usize].at = At::Read;
                        reads.push((slot, g));
                    }
                    None => prop_assert!(pool.acquire_filled(Wait::NoWait).is_err()),
                },
                Op::DropRead(i) => if let Some((slot, g)) = pick(&mut reads, i) {
                    drop(g);
                    model.push_free(slot);
                },
            }
            model.check(&pool, &PORT_NAMES)?;
        }
        // Everything let go: each buffer is free or filled, and the block agrees with itself.
        drop((port_reads, subs, reads, holds, writes));
        let counts = pool.counts();
        prop_assert_eq!(counts.in_use, 0);
        prop_assert_eq!(counts.filled as usize, model.filled.len());
        prop_assert_eq!(pool.audit(), Vec::<String>::new());
    }
}
