//! A port's subscriptions come and go while a publisher is stopped half-way: a buffer published
//! to one subscription never reaches a later one, however many came in between (a cell's tag
//! is one byte of its subscription's epoch, so tags repeat every 256 subscriptions), and the
//! stopped publisher, resumed, wakes whoever waits behind its cell.

mod common;
mod peer;

use std::io::BufReader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use buffer_core::testing::{disable_idle_polling, layout, slot, slot_word};
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
        // Publishes to port "p" for ever, whenever it finds a free buffer.
        "publisher" => {
            let pool = BufferPool::attach(&segment).unwrap();
            let port = pool.port("p").unwrap();
            println!("actor {}", pool.actor());
            loop {
                match pool.acquire_free(Wait::NoWait) {
                    Ok(guard) => drop(guard.publish(&[port])),
                    Err(_) => std::thread::yield_now(),
                }
            }
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
    let segment = segment_name(test);
    let owner = port_pool(&segment);
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
    let (l, port_queue) = port_layout();
    let port_tail = port_queue + (l.free_cells - l.free_tail);
    let port_cells = port_queue + 2 * (l.free_cells - l.free_tail);
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

/// Buffers of the pools here, and their port's depth.
const CAPACITY: u32 = 8;
const DEPTH: u32 = 4;

/// A shared pool of [`CAPACITY`] buffers with one port `p` of [`DEPTH`].
fn port_pool(segment: &str) -> buffer_core::PoolOwner {
    BufferPool::create_shared(
        segment,
        PoolConfig::new("tags")
            .with_capacity(CAPACITY)
            .with_ports(["p"])
            .with_port_depth(DEPTH),
        CAPACITY,
        64,
    )
    .unwrap()
}

/// The block's layout and the offset of its port's queue (its control words, then its cells).
fn port_layout() -> (buffer_core::testing::Layout, usize) {
    let l = layout(CAPACITY, 1, DEPTH);
    let ctrl = 2 * (l.free_cells - l.free_tail);
    let align = ctrl / 2;
    let queue_len = ctrl + l.queue_cells * 8;
    let up = |x: usize| x.div_ceil(align) * align;
    let free_queue = l.free_cells - ctrl;
    let filled_queue = up(free_queue + queue_len);
    (l, up(filled_queue + queue_len))
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn wait_stopped(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid(2) on our own child.
    let got = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    assert_eq!(got, pid);
    assert!(libc::WIFSTOPPED(status), "child not stopped: {status:#x}");
}

/// A publisher process is stopped right after reserving its cell for subscription A (before
/// it re-reads the subscription word). A ends, B begins, a buffer is delivered to B behind the
/// reservation, and B sleeps on the port. The publisher resumes, finds the subscription
/// changed and publishes its cell under a stale tag: B's buffer is takeable from then on, so B
/// must be woken then, not at the end of its timeout.
#[test]
fn a_refused_reservation_wakes_the_subscriber_waiting_behind_it() {
    if role().is_some() {
        return;
    }
    disable_idle_polling();
    let segment = segment_name("epochs-wake");
    let owner = port_pool(&segment);
    let port = owner.port("p").unwrap();
    let a = owner.subscribe(port).unwrap();

    let mut child = spawn("child_entry", "publisher", &[("SEGMENT", segment.clone())]);
    let pid = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let actor: u64 = read_until(&mut out, "actor ").parse().unwrap();

    let raw = RawSegment::map(&segment);
    let (l, port_queue) = port_layout();
    let port_cells = port_queue + 2 * (l.free_cells - l.free_tail);

    // Stop the publisher until it is caught between its reservation and the slot's port bit
    // (so before its second look at the subscription word), while A receives and drops.
    let stop = AtomicBool::new(false);
    let mut caught = false;
    let mut tries = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match a.receive(Wait::NoWait) {
                    Ok(guard) => drop(guard),
                    Err(_) => std::thread::yield_now(),
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            tries += 1;
            std::thread::sleep(Duration::from_micros(50 + (tries % 13) * 37));
            signal(pid, libc::SIGSTOP);
            wait_stopped(pid);
            for i in 0..DEPTH as usize {
                let cell = raw.load_u64(port_cells + 8 * i);
                let reserved = (cell >> 30) & 3 == 3 && (cell >> 22) & 0xff == actor;
                if !reserved {
                    continue;
                }
                let value = (cell & ((1 << 22) - 1)) as usize;
                let word = raw.load_u64(l.slots + value * l.slot_len + slot::STATE);
                if word & 1 == 0 {
                    caught = true;
                }
            }
            if caught {
                break;
            }
            signal(pid, libc::SIGCONT);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        caught,
        "inconclusive: never caught the publisher in its window in {tries} tries"
    );

    // A ends, B begins, a buffer is delivered to B behind the stopped reservation.
    drop(a);
    let b = owner.subscribe(port).unwrap();
    let frame = owner.acquire_free(Wait::NoWait).unwrap();
    let frame_slot = frame.id().slot;
    assert_eq!(frame.publish(&[port]).delivered(), 1);
    // Hold every free buffer, so the resumed publisher publishes nothing more (whose wake-up
    // would hide the missing one).
    let mut held = Vec::new();
    while let Ok(guard) = owner.acquire_free(Wait::NoWait) {
        held.push(guard);
    }

    // B sleeps until woken: the publisher, resumed, must wake it. A lost wake-up is declared
    // 10 s later and the pool closed, which ends the wait.
    let (done, finished) = std::sync::mpsc::channel();
    let (received, lost) = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let got = b.receive(Wait::Forever).map(|guard| guard.id().slot).ok();
            let _ = done.send(());
            got
        });
        std::thread::sleep(Duration::from_millis(150));
        signal(pid, libc::SIGCONT);
        let lost = finished.recv_timeout(Duration::from_secs(10)).is_err();
        if lost {
            owner.close();
        }
        (waiter.join().unwrap(), lost)
    });
    drop(held);
    drop(b);
    child.kill().unwrap();
    wait_exit(&mut child, Duration::from_secs(10));
    assert!(
        !lost,
        "the publisher resumed (caught after {tries} tries) and published its stale cell \
         without waking the port, though B's buffer was takeable from then on"
    );
    assert_eq!(
        received,
        Some(frame_slot),
        "B receives the buffer delivered to it"
    );
}
