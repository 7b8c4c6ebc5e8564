//! A port's subscriptions come and go while a publisher is stopped half-way: a buffer published
//! to one subscription never reaches a later one, however many came in between (a cell's tag
//! is one byte of its subscription's epoch, so tags repeat every 256 subscriptions).

mod common;
mod peer;

use std::io::BufReader;
use std::time::Duration;

use buffer_core::testing::{layout, slot, slot_word};
use buffer_core::{BufferPool, PoolConfig, SlotState, Wait};
use common::{read_until, role, segment_name, spawn, wait_exit};
use peer::RawSegment;

/// The child's entry point; does nothing when run as a test.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let segment = std::env::var("SEGMENT").unwrap();
    match role.as_str() {
        // Attaches, holds one free buffer and waits (stdin) to be killed.
        "holder" => {
            let pool = BufferPool::attach(&segment).unwrap();
            let guard = pool.acquire_free(Wait::NoWait).unwrap();
            println!("held {} {}", guard.id().slot, pool.actor());
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Sweeps of a port stop at a reservation still in progress, so the buffers behind a stopped
/// publisher's cell stay in the port while subscriptions come and go. Whether or not a later
/// subscription's tag equals theirs (255 subscriptions later it does not, 256 later it does),
/// none of them receives them: they precede its first position.
#[test]
fn a_buffer_behind_a_stopped_publisher_reaches_no_later_subscription() {
    if role().is_some() {
        return;
    }
    for cycles in [254, 255, 511] {
        let received = stale_after(cycles, &format!("epochs-{cycles}"));
        assert_eq!(
            received,
            None,
            "a subscription {} later received buffer {received:?}, published to the first",
            cycles + 1
        );
    }
}

/// A publisher process stopped with a reservation at the port's first position, a buffer
/// published behind it to the first subscription, then `cycles` subscriptions come and go
/// before the last one; the publisher dies and is reaped. Returns the slot the last
/// subscription received, if any (it should receive nothing).
fn stale_after(cycles: u32, test: &str) -> Option<u32> {
    const CAPACITY: u32 = 8;
    const DEPTH: u32 = 4;
    let segment = segment_name(test);
    let owner = BufferPool::create_shared(
        &segment,
        PoolConfig::new("tags")
            .with_capacity(CAPACITY)
            .with_ports(["p"])
            .with_port_depth(DEPTH),
        CAPACITY,
        64,
    )
    .unwrap();
    let port = owner.port("p").unwrap();
    let first = owner.subscribe(port).unwrap();

    // The publisher: a live process holding buffer `held`.
    let mut child = spawn("child_entry", "holder", &[("SEGMENT", segment.clone())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let line = read_until(&mut out, "held ");
    let mut parts = line.split(' ');
    let held: u32 = parts.next().unwrap().parse().unwrap();
    let actor: u8 = parts.next().unwrap().parse().unwrap();

    // It reserves port position 0 for `held` and is stopped there (see above).
    let raw = RawSegment::map(&segment);
    let l = layout(CAPACITY, 1, DEPTH);
    let ctrl = 2 * (l.free_cells - l.free_tail);
    let align = ctrl / 2;
    let queue_len = ctrl + l.queue_cells * 8;
    let up = |x: usize| x.div_ceil(align) * align;
    let free_queue = l.free_cells - ctrl;
    let filled_queue = up(free_queue + queue_len);
    let port_queue = up(filled_queue + queue_len);
    let port_tail = port_queue + ctrl / 2;
    let port_cells = port_queue + ctrl;
    let state_at = l.slots + held as usize * l.slot_len + slot::STATE;
    let generation = (raw.load_u64(state_at) >> 32) as u32;
    assert_eq!(raw.load_u64(port_tail), 0, "offsets: port tail");
    assert_eq!(
        raw.load_u64(port_cells),
        0,
        "offsets: port cell 0 empty at 0"
    );
    assert_eq!(
        raw.load_u64(port_cells + 8),
        1 << 32,
        "offsets: port cell 1 empty at 1"
    );
    assert_eq!(
        raw.load_u64(port_cells + 24),
        3 << 32,
        "offsets: port cell 3 empty at 3"
    );
    raw.store_u64(
        state_at,
        slot_word(generation, SlotState::Publishing, actor, 0),
    );
    let reserved = 3u64 << 30 | u64::from(actor) << 22 | u64::from(held);
    raw.store_u64(port_cells, reserved);
    raw.store_u64(port_tail, 1);

    // A frame published to the first subscription, behind the stopped reservation.
    let mut frame = owner.acquire_free(Wait::NoWait).unwrap();
    frame.as_mut_slice().unwrap()[0] = 0xAA;
    let published = frame.publish(&[port]);
    assert_eq!(published.delivered(), 1);
    drop(first);

    // 255 more subscriptions come and go while the publisher is stopped.
    for _ in 0..cycles {
        drop(owner.subscribe(port).unwrap());
    }
    let latest = owner.subscribe(port).unwrap();

    // The stopped publisher dies; it is reaped as usual.
    child.kill().unwrap();
    wait_exit(&mut child, Duration::from_secs(10));
    owner.reclaim_dead();

    let got = latest.receive(Wait::NoWait);
    let received = got.as_ref().map(|guard| guard.id().slot).ok();
    drop(got);
    drop(latest);
    received
}
