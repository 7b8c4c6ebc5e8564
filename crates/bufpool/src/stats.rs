//! `bufpool stats [NAME] [--buffers]`: the accounting of live shared pools: buffers and bytes by
//! state and by process, acquisitions and hit rate, and (with `--buffers`) every live buffer.

use std::error::Error;

use allocator_facade::ByteCount;
use buffer_core::{Amount, BufferPool, SlotState, Stats};

use crate::inspect::{buffer_line, for_each_shared_pool};

/// Options of `bufpool stats`.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// The pool's segment name (as `bufpool inspect` lists it); without it, one line per pool.
    name: Option<String>,
    /// Also list every live buffer: id, size, memory, state, holder, age.
    #[arg(long)]
    buffers: bool,
}

/// Runs the command.
pub fn run(args: &StatsArgs) -> Result<(), Box<dyn Error>> {
    match &args.name {
        None => summary(),
        Some(name) => detail(name, args.buffers),
    }
}

/// "3 buffers (3.0 MiB)".
fn amount(amount: Amount) -> String {
    let plural = if amount.buffers == 1 { "" } else { "s" };
    format!(
        "{} buffer{plural} ({})",
        amount.buffers,
        ByteCount(amount.bytes)
    )
}

/// "97.5 %", or "-" before the first acquisition.
fn hit_rate(stats: &Stats) -> String {
    stats
        .hit_rate()
        .map_or("-".to_owned(), |rate| format!("{:.1} %", rate * 100.0))
}

fn summary() -> Result<(), Box<dyn Error>> {
    let header = format!(
        "{:<32} {:<16} {:>7} {:>11} {:>11} {:>12} {:>8}",
        "SEGMENT", "POOL", "BUFFERS", "BYTES", "IN USE", "ACQUISITIONS", "HIT RATE"
    );
    for_each_shared_pool(&header, |pool| {
        let (usage, stats) = (pool.usage(), pool.stats());
        format!(
            "{:<16} {:>7} {:>11} {:>11} {:>12} {:>8}",
            pool.name(),
            usage.total().buffers,
            ByteCount(usage.total().bytes).to_string(),
            ByteCount(usage.in_use.bytes + usage.filled.bytes).to_string(),
            stats.acquisitions,
            hit_rate(&stats)
        )
    });
    Ok(())
}

fn detail(name: &str, buffers: bool) -> Result<(), Box<dyn Error>> {
    let pool = BufferPool::attach(name)?;
    let (usage, stats) = (pool.usage(), pool.stats());
    let total = usage.total();
    println!(
        "pool '{}' ({}), segment '{name}', category '{}'",
        pool.name(),
        pool.id(),
        pool.category()
    );
    println!("  memory:   {}", amount(total));
    println!(
        "  free:     {}; filled: {}; in use: {}",
        amount(usage.free),
        amount(usage.filled),
        amount(usage.in_use)
    );
    if let Some(min_free) = stats.min_free {
        println!(
            "  peak:     {} of {} buffers in use at once (fewest free: {min_free}); most filled waiting: {}",
            total.buffers.saturating_sub(min_free),
            total.buffers,
            stats.max_filled
        );
    }
    println!(
        "  acquired: {} times, hit rate {} ({} waited, {} timed out); {} reclaimed from dead processes",
        stats.acquisitions,
        hit_rate(&stats),
        stats.waits,
        stats.timeouts,
        stats.reclaimed
    );
    println!("by process:");
    for process in pool.processes() {
        let held = usage
            .holders
            .0
            .iter()
            .find(|holder| holder.pid == process.pid);
        let status = if process.alive { "alive" } else { "DEAD" };
        let me = if process.actor == pool.actor() {
            " (this command)"
        } else {
            ""
        };
        let holding = held.map_or("holds nothing".to_owned(), |holder| {
            let oldest = holder.longest.map_or(String::new(), |d| {
                format!(", the oldest for {:.1} s", d.as_secs_f64())
            });
            format!(
                "holds {}{oldest}",
                amount(Amount {
                    buffers: holder.buffers,
                    bytes: holder.bytes
                })
            )
        });
        println!("  pid {:<8} {status:<5} {holding}{me}", process.pid);
    }
    if buffers {
        println!("live buffers:");
        println!("  {}", crate::inspect::BUFFER_HEADER);
        for buffer in pool.buffers() {
            if buffer.state != Some(SlotState::Vacant) {
                println!("  {}", buffer_line(&buffer));
            }
        }
    }
    Ok(())
}
