//! `bufpool inspect [NAME]`: the shared pools on this machine, or one pool in detail.

use std::error::Error;

use allocator_facade::ByteCount;
use buffer_core::{BufferInfo, BufferPool, SlotState};

/// Options of `bufpool inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The pool's segment name (as listed without a name); without it, every pool is listed.
    name: Option<String>,
}

/// Options of `bufpool remove`.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The pool's segment name.
    name: String,
}

/// Removes an orphaned pool's segment.
pub fn remove(args: &RemoveArgs) -> Result<(), Box<dyn Error>> {
    if BufferPool::remove_orphaned(&args.name)? {
        println!(
            "removed shared pool '{}': no live process used it",
            args.name
        );
        Ok(())
    } else {
        Err(format!(
            "shared pool '{}' is in use by a live process; `bufpool inspect {}` shows which",
            args.name, args.name
        )
        .into())
    }
}

/// Runs the command.
pub fn run(args: &InspectArgs) -> Result<(), Box<dyn Error>> {
    match &args.name {
        None => list(),
        Some(name) => show(name),
    }
}

fn list() -> Result<(), Box<dyn Error>> {
    let header = format!(
        "{:<32} {:<16} {:>7} {:>5} {:>6} {:>6}  processes",
        "SEGMENT", "POOL", "BUFFERS", "FREE", "FILLED", "IN USE"
    );
    for_each_shared_pool(&header, |pool| {
        let counts = pool.counts();
        let others: Vec<_> = other_processes(pool);
        let alive = others.iter().filter(|p| p.alive).count();
        let orphaned = if alive == 0 {
            "  ORPHANED: no live process uses it (`bufpool remove` deletes it)".to_owned()
        } else {
            String::new()
        };
        format!(
            "{:<16} {:>7} {:>5} {:>6} {:>6}  {alive} alive of {}{}{orphaned}",
            pool.name(),
            counts.total,
            counts.free,
            counts.filled,
            counts.in_use,
            others.len(),
            starvation(pool).map_or(String::new(), |s| format!("  STARVED: {s}")),
        )
    });
    Ok(())
}

/// Prints `header`, then for each shared pool on the machine its segment name and what `line`
/// says about it; or that there are none.
pub fn for_each_shared_pool(header: &str, line: impl Fn(&BufferPool) -> String) {
    let names = BufferPool::list_shared();
    if names.is_empty() {
        println!("no shared pools on this machine (/dev/shm/bufpool.*)");
        return;
    }
    println!("{header}");
    for name in names {
        match BufferPool::attach(name.as_str()) {
            Ok(pool) => println!("{:<32} {}", name.as_str(), line(&pool)),
            Err(err) => println!("{:<32} cannot attach: {err}", name.as_str()),
        }
    }
}

/// The attached processes other than this one.
fn other_processes(pool: &BufferPool) -> Vec<buffer_core::ProcessInfo> {
    pool.processes()
        .into_iter()
        .filter(|p| p.actor != pool.actor())
        .collect()
}

/// "all 8 buffers held by pid 4711 for 12 s" when no buffer is free.
fn starvation(pool: &BufferPool) -> Option<String> {
    let counts = pool.counts();
    if counts.free > 0 || counts.total == 0 {
        return None;
    }
    let holders = pool.holders();
    let top = holders.0.first()?;
    let share = if top.buffers == counts.total {
        format!("all {} buffers", counts.total)
    } else {
        format!("{} of {} buffers", top.buffers, counts.total)
    };
    let held_for = top
        .longest
        .map_or(String::new(), |d| format!(" for {:.0} s", d.as_secs_f64()));
    Some(format!("{share} held by pid {}{held_for}", top.pid))
}

fn show(name: &str) -> Result<(), Box<dyn Error>> {
    let pool = BufferPool::attach(name)?;
    let counts = pool.counts();
    let stats = pool.stats();
    println!(
        "pool '{}' ({}), segment '{name}', category '{}'",
        pool.name(),
        pool.id(),
        pool.category()
    );
    println!("  {counts}; closed: {}", pool.is_closed());
    println!(
        "  acquisitions {}, waits {}, timeouts {}, buffers reclaimed from dead processes {}",
        stats.acquisitions, stats.waits, stats.timeouts, stats.reclaimed
    );
    if let Some(starved) = starvation(&pool) {
        println!("  STARVED: {starved}");
    }
    println!("processes:");
    for process in other_processes(&pool) {
        let status = if process.alive {
            "alive"
        } else {
            "DEAD (reclaimed by the next waiting acquisition or attach)"
        };
        println!("  #{:<3} pid {:<8} {status}", process.actor, process.pid);
    }
    let ports = pool.port_infos();
    if !ports.is_empty() {
        println!("ports:");
        for port in ports {
            println!(
                "  {:<24} subscriber {:<12} queued {:<4} reading {:<4} delivered {:<10} refused {}",
                port.name,
                port.subscriber
                    .map_or("none".to_owned(), |pid| format!("pid {pid}")),
                port.queued,
                port.reading,
                port.delivered,
                port.refused
            );
        }
    }
    println!("buffers:");
    println!("  {BUFFER_HEADER}");
    for buffer in pool.buffers() {
        if buffer.state == Some(SlotState::Vacant) {
            continue;
        }
        println!("  {}", buffer_line(&buffer));
    }
    Ok(())
}

/// The header of [`buffer_line`]'s table.
pub const BUFFER_HEADER: &str = "SLOT  GEN SIZE       MEMORY             STATE            HOLDER       AGE      HELD REFS  ports";

/// One buffer as a row of a table headed by [`BUFFER_HEADER`].
pub fn buffer_line(buffer: &BufferInfo) -> String {
    let state = buffer
        .state
        .map_or("corrupt".to_owned(), |state| format!("{state:?}"));
    let holder = match (buffer.holder, buffer.state) {
        (Some(pid), Some(state)) if !matches!(state, SlotState::Free | SlotState::Filled) => {
            format!("pid {pid}")
        }
        _ => "-".to_owned(),
    };
    let held = buffer
        .held_for
        .map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    let memory = buffer
        .memory
        .map_or("-".to_owned(), |memory| memory.to_string());
    let age = buffer
        .age
        .map_or("-".to_owned(), |d| format!("{} s", d.as_secs()));
    format!(
        "{:>4} {:>4} {:<10} {:<18} {:<16} {:<12} {:>5} {:>9} {:>4}  {}",
        buffer.id.slot,
        buffer.id.generation,
        ByteCount(buffer.size as u64).to_string(),
        memory,
        state,
        holder,
        age,
        held,
        buffer.references,
        buffer.ports.join(",")
    )
}
