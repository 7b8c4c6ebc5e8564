//! Cross-process hand-off latency, side by side in one run: a frame goes from this process to an
//! echo process and back (a round trip), through
//!
//! - bufpool: a shared pool with ports "ping" and "pong"; each way is acquire a free buffer,
//!   write the sequence number, publish its id to the port; receive, read, drop;
//! - iceoryx2 0.10: services "ping" and "pong" of `[u8; 4096]`; each way is loan, write the
//!   sequence number, send; receive, read, drop.
//!
//! Both move a 4 KiB payload by reference (neither copies it) and write only its first 8 bytes.
//! Busy-poll mode for both; blocking mode (futex waits) for bufpool.
//!
//! Run: `cargo run --release --manifest-path benches/ipc/Cargo.toml [ROUND_TRIPS]`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use buffer_core::{BufferPool, PoolConfig, Wait};
use iceoryx2::prelude::*;

const PAYLOAD: usize = 4096;
const WARM_UP: u64 = 10_000;
/// Alternating rounds of the busy-poll comparison.
const ROUNDS: u64 = 5;
type Frame = [u8; PAYLOAD];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("echo-bufpool") => return echo_bufpool(&args[2], args[3] == "blocking"),
        Some("echo-iceoryx2") => return echo_iceoryx2(&args[2]),
        _ => {}
    }
    let round_trips: u64 = args.get(1).map_or(Ok(100_000), |n| n.parse())?;
    println!(
        "{round_trips} round trips of a {PAYLOAD}-byte payload between two processes, after {WARM_UP} warm-up trips"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "", "mean", "p50", "p99", "p99.9"
    );
    // Busy-polling needs both processes on a core; on a small shared machine one of them is
    // sometimes descheduled for a whole run. Alternating short rounds spreads that over both,
    // and the ratio is the median of the rounds'.
    let (mut busy_ours, mut busy_theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (ours, theirs) = if round % 2 == 0 {
            let ours = bufpool_round_trips(round_trips / ROUNDS, false)?;
            (ours, iceoryx2_round_trips(round_trips / ROUNDS)?)
        } else {
            let theirs = iceoryx2_round_trips(round_trips / ROUNDS)?;
            (bufpool_round_trips(round_trips / ROUNDS, false)?, theirs)
        };
        ratios
            .push(percentile(&ours, 50.0).as_secs_f64() / percentile(&theirs, 50.0).as_secs_f64());
        busy_ours.extend(ours);
        busy_theirs.extend(theirs);
    }
    report("bufpool, busy-poll", &busy_ours);
    report("iceoryx2 0.10, busy-poll", &busy_theirs);
    let blocking = bufpool_round_trips(round_trips, true)?;
    report("bufpool, blocking", &blocking);
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio bufpool / iceoryx2 (busy-poll p50), median of {ROUNDS} alternating rounds: {:.2} (rounds: {})",
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

fn spawn_echo(
    kind: &str,
    name: &str,
    mode: &str,
) -> Result<(Child, BufReader<std::process::ChildStdout>), Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([kind, name, mode])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no echo output")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("echo did not start: {line:?}").into());
    }
    Ok((child, out))
}

fn write_sequence(frame: &mut [u8], sequence: u64) {
    frame[..8].copy_from_slice(&sequence.to_le_bytes());
}

fn read_sequence(frame: &[u8]) -> u64 {
    u64::from_le_bytes(frame[..8].try_into().unwrap())
}

fn bufpool_round_trips(
    round_trips: u64,
    blocking: bool,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let segment = format!("ipc-bench-{}-{blocking}", std::process::id());
    let config = PoolConfig::new("ipc")
        .with_capacity(8)
        .with_ports(["ping", "pong"])
        .with_hold_times(false);
    let pool = BufferPool::create_shared(&segment, config, 8, PAYLOAD)?;
    let (ping, pong) = (pool.port("ping")?, pool.port("pong")?);
    let replies = pool.subscribe(pong)?;
    let (mut child, _out) = spawn_echo(
        "echo-bufpool",
        &segment,
        if blocking { "blocking" } else { "busy" },
    )?;
    let wait = if blocking {
        Wait::Forever
    } else {
        Wait::NoWait
    };
    let mut times = Vec::with_capacity(round_trips as usize);
    for sequence in 0..WARM_UP + round_trips {
        let started = Instant::now();
        let mut frame = pool.acquire_free(Wait::Forever)?;
        write_sequence(frame.as_mut_slice()?, sequence);
        let published = frame.publish(&[ping]);
        assert_eq!(published.delivered(), 1);
        let reply = loop {
            if let Ok(reply) = replies.receive(wait) {
                break reply;
            }
        };
        assert_eq!(read_sequence(reply.as_slice()?), sequence);
        drop(reply);
        if sequence >= WARM_UP {
            times.push(started.elapsed());
        }
    }
    pool.close();
    child.wait()?;
    Ok(times)
}

fn echo_bufpool(segment: &str, blocking: bool) -> Result<(), Box<dyn std::error::Error>> {
    let pool = BufferPool::attach(segment)?;
    let (ping, pong) = (pool.port("ping")?, pool.port("pong")?);
    let requests = pool.subscribe(ping)?;
    println!("ready");
    std::io::stdout().flush()?;
    let wait = if blocking {
        Wait::Forever
    } else {
        Wait::NoWait
    };
    loop {
        let request = match requests.receive(wait) {
            Ok(request) => request,
            Err(buffer_core::ReceiveError::Closed { .. }) => return Ok(()),
            Err(_) => continue,
        };
        let sequence = read_sequence(request.as_slice()?);
        drop(request);
        let mut reply = pool.acquire_free(Wait::Forever)?;
        write_sequence(reply.as_mut_slice()?, sequence);
        reply.publish(&[pong]);
    }
}

fn iceoryx2_round_trips(round_trips: u64) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let prefix = format!("ipc-bench-{}", std::process::id());
    let (_node, ping, pong) = iceoryx2_services(&prefix)?;
    let publisher = ping.publisher_builder().create()?;
    let subscriber = pong.subscriber_builder().create()?;
    let (mut child, _out) = spawn_echo("echo-iceoryx2", &prefix, "busy")?;
    std::thread::sleep(Duration::from_millis(200)); // let the ports connect
    let mut times = Vec::with_capacity(round_trips as usize);
    for sequence in 0..WARM_UP + round_trips {
        let started = Instant::now();
        send_sequence(&publisher, sequence)?;
        let reply = loop {
            if let Some(reply) = subscriber.receive()? {
                break reply;
            }
        };
        assert_eq!(read_sequence(&*reply), sequence);
        drop(reply);
        if sequence >= WARM_UP {
            times.push(started.elapsed());
        }
    }
    // A payload with sequence u64::MAX tells the echo to stop.
    send_sequence(&publisher, u64::MAX)?;
    child.wait()?;
    Ok(times)
}

fn echo_iceoryx2(prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (_node, ping, pong) = iceoryx2_services(prefix)?;
    let subscriber = ping.subscriber_builder().create()?;
    let publisher = pong.publisher_builder().create()?;
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        let Some(request) = subscriber.receive()? else {
            continue;
        };
        let sequence = read_sequence(&*request);
        drop(request);
        if sequence == u64::MAX {
            return Ok(());
        }
        send_sequence(&publisher, sequence)?;
    }
}

type Service =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, Frame, ()>;

/// The node and the "ping" and "pong" services of one run (the node must outlive them).
fn iceoryx2_services(
    prefix: &str,
) -> Result<(Node<ipc::Service>, Service, Service), Box<dyn std::error::Error>> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let open = |name: &str| -> Result<Service, Box<dyn std::error::Error>> {
        Ok(node
            .service_builder(&format!("{prefix}/{name}").as_str().try_into()?)
            .publish_subscribe::<Frame>()
            .open_or_create()?)
    };
    let (ping, pong) = (open("ping")?, open("pong")?);
    Ok((node, ping, pong))
}

/// Loans a sample, writes `sequence` into its first 8 bytes (all the receiver reads) and sends
/// it: a 4 KiB payload moved by reference.
fn send_sequence(
    publisher: &iceoryx2::port::publisher::Publisher<ipc::Service, Frame, ()>,
    sequence: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut sample = publisher.loan_uninit()?;
    // SAFETY: the payload is plain bytes; only its first 8, written here, are ever read.
    write_sequence(unsafe { &mut *sample.payload_mut().as_mut_ptr() }, sequence);
    // SAFETY: as above: the bytes the receiver reads are written.
    unsafe { sample.assume_init() }.send()?;
    Ok(())
}

fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn mean(times: &[Duration]) -> f64 {
    times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64
}

fn report(label: &str, times: &[Duration]) {
    let us = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6);
    println!(
        "{label:<28} {:>10} {:>10} {:>10} {:>10}",
        format!("{:.2} µs", mean(times) * 1e6),
        us(percentile(times, 50.0)),
        us(percentile(times, 99.0)),
        us(percentile(times, 99.9))
    );
}
