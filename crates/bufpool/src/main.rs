//! `bufpool`: the command-line tool of the bufpool framework.
//!
//! - `bufpool demo`: a producer process fills synthetic 1080p frames and consumer processes check
//!   them, through one pool in shared memory, without copying a byte between processes; one
//!   consumer is killed partway and its buffers come back.
//! - `bufpool inspect [NAME]`: the shared pools on this machine, or one pool's buffers, processes
//!   and ports, with starvation flagged.
//! - `bufpool stats [NAME] [--buffers]`: the accounting of live shared pools: buffers and bytes
//!   by state and by process, acquisitions and hit rate, and every live buffer.
//! - `bufpool remove NAME`: removes a shared pool's segment that no live process uses.

#[cfg(feature = "avframe")]
mod decoded;
mod demo;
mod display;
mod inspect;
mod pattern;
mod stats;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: buffer_core::alloc_count::CountingAllocator =
    buffer_core::alloc_count::CountingAllocator;

#[derive(Parser)]
#[command(version, about = "Zero-copy buffer pools for media pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a producer process and consumer processes on synthetic video frames through one
    /// shared pool.
    Demo(demo::DemoArgs),
    /// List the shared pools on this machine, or show one pool in detail.
    Inspect(inspect::InspectArgs),
    /// Show the accounting of the shared pools, or of one pool: buffers and bytes by state and
    /// by process, acquisitions and hit rate, and (with --buffers) every live buffer.
    Stats(stats::StatsArgs),
    /// Remove the segment of a shared pool that no live process uses (its creator died).
    Remove(inspect::RemoveArgs),
    /// A consumer process of the demo (started by `bufpool demo`).
    #[command(hide = true)]
    DemoConsumer(demo::ConsumerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Remove(args) => inspect::remove(&args),
        Command::DemoConsumer(args) => demo::consume(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bufpool: {error}");
            let mut source = std::error::Error::source(&*error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            std::process::ExitCode::FAILURE
        }
    }
}
