//! `bufpool`: the command-line tool of the bufpool framework.
//!
//! - `bufpool demo`: a producer thread fills synthetic 1080p frames and consumer threads checksum
//!   them, through one pool, without copying a byte between the stages.

mod alloc_count;
mod demo;
mod pattern;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: alloc_count::CountingAllocator = alloc_count::CountingAllocator;

#[derive(Parser)]
#[command(version, about = "Zero-copy buffer pools for media pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a producer/consumer pipeline of synthetic video frames through one pool.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
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
