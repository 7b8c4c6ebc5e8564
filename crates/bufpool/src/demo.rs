//! `bufpool demo`: one producer thread, several consumer threads, one pool, zero copies.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allocator_facade::AllocatorType;
use buffer_core::{AcquireError, BufferPool, PixelFormat, VideoFormat, Wait};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{alloc_count, pattern};

/// Frames each pipeline thread handles before its allocations are counted (first-touch page
/// faults, thread-local set-up and the like happen here).
const WARM_UP_FRAMES: u64 = 4;
/// Pixels each consumer checks against the pattern, per frame.
const SPOT_CHECKS: u32 = 64;

/// Options of `bufpool demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Frames to produce.
    #[arg(long, default_value_t = 1800)]
    frames: u64,
    /// Stop producing after this many seconds, even if frames remain.
    #[arg(long, default_value_t = 25)]
    max_seconds: u64,
    /// Buffers in the pool.
    #[arg(long, default_value_t = 8)]
    buffers: u32,
    /// Consumer threads.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 1920)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// Allocator type (auto, normal).
    #[arg(long, default_value_t = AllocatorType::Auto)]
    allocator: AllocatorType,
}

/// What the consumers found.
#[derive(Default)]
struct Tally {
    frames: AtomicU64,
    bad_frames: AtomicU64,
    checksum: AtomicU64,
}

/// Runs the demo and prints its summary.
pub fn run(args: &DemoArgs) -> Result<(), Box<dyn Error>> {
    if args.consumers == 0 || args.buffers == 0 || args.width == 0 || args.height == 0 {
        return Err("--consumers, --buffers, --width and --height must be at least 1".into());
    }
    let format = VideoFormat::packed(PixelFormat::RGBA, args.width, args.height, 4);
    let frame_bytes = usize::try_from(format.byte_len())?;
    let facade = allocator_facade::create(args.allocator)?;
    let pool_id = facade.allocate_pool_with_buffers(args.buffers, frame_bytes, "demo", "video")?;
    let pool = facade.pool(pool_id)?;
    println!(
        "bufpool demo: {} frames of {}x{} RGBA ({:.1} MiB each) through a pool of {} buffers ({} allocator), 1 producer, {} consumers",
        args.frames,
        args.width,
        args.height,
        frame_bytes as f64 / (1 << 20) as f64,
        args.buffers,
        facade.kind(),
        args.consumers
    );

    let tally = Tally::default();
    let started = Instant::now();
    let progress = progress_bar(args.frames);
    let produced = std::thread::scope(|s| -> Result<u64, Box<dyn Error + Send + Sync>> {
        let producer = s.spawn(|| produce(&pool, args, format, started));
        for _ in 0..args.consumers {
            s.spawn(|| consume(&pool, args, &tally));
        }
        while !producer.is_finished() {
            show_progress(&progress, &pool, &tally, started);
            std::thread::sleep(Duration::from_millis(100));
        }
        let produced = producer.join().expect("producer thread panicked")?;
        Ok(produced)
    })
    .map_err(|e| e as Box<dyn Error>)?;
    show_progress(&progress, &pool, &tally, started);
    progress.finish_and_clear();
    summarise(
        args,
        &pool,
        &tally,
        produced,
        started.elapsed(),
        frame_bytes,
    )
}

fn progress_bar(frames: u64) -> ProgressBar {
    let bar = ProgressBar::new(frames);
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} frames  {msg}")
            .expect("valid template"),
    );
    bar
}

fn show_progress(bar: &ProgressBar, pool: &BufferPool, tally: &Tally, started: Instant) {
    let c = pool.counts();
    let frames = tally.frames.load(Ordering::Relaxed);
    bar.set_position(frames);
    bar.set_message(format!(
        "{:>6.0} frames/s  pool: {} free, {} filled, {} in use",
        frames as f64 / started.elapsed().as_secs_f64(),
        c.free,
        c.filled,
        c.in_use
    ));
}

fn produce(
    pool: &BufferPool,
    args: &DemoArgs,
    format: VideoFormat,
    started: Instant,
) -> Result<u64, Box<dyn Error + Send + Sync>> {
    let deadline = started + Duration::from_secs(args.max_seconds);
    let mut produced = 0;
    for sequence in 0..args.frames {
        if sequence == WARM_UP_FRAMES {
            alloc_count::measure_this_thread();
        }
        if Instant::now() >= deadline {
            break;
        }
        let mut frame = pool.acquire_free(Wait::Timeout(Duration::from_secs(10)))?;
        pattern::draw(frame.as_mut_slice()?, args.width, sequence);
        let meta = frame.meta_mut();
        meta.sequence = sequence;
        meta.timestamp_ns = started.elapsed().as_nanos() as i64;
        meta.video = format;
        frame.submit();
        produced += 1;
    }
    alloc_count::stop_measuring_this_thread();
    pool.close(); // consumers drain what is left, then stop
    Ok(produced)
}

fn consume(pool: &BufferPool, args: &DemoArgs, tally: &Tally) {
    let mut handled = 0u64;
    loop {
        if handled == WARM_UP_FRAMES {
            alloc_count::measure_this_thread();
        }
        let frame = match pool.acquire_filled(Wait::Forever) {
            Ok(frame) => frame,
            Err(AcquireError::Closed { .. }) => break,
            Err(other) => unreachable!("waiting forever ends only by closing: {other}"),
        };
        let meta = *frame.meta();
        let bytes = frame.as_slice().expect("host memory");
        let ok = meta.video.width == args.width
            && pattern::spot_check(bytes, args.width, args.height, meta.sequence, SPOT_CHECKS);
        tally
            .checksum
            .fetch_add(pattern::checksum(bytes), Ordering::Relaxed);
        drop(frame);
        if !ok {
            tally.bad_frames.fetch_add(1, Ordering::Relaxed);
        }
        tally.frames.fetch_add(1, Ordering::Relaxed);
        handled += 1;
    }
    alloc_count::stop_measuring_this_thread();
}

fn summarise(
    args: &DemoArgs,
    pool: &BufferPool,
    tally: &Tally,
    produced: u64,
    elapsed: Duration,
    frame_bytes: usize,
) -> Result<(), Box<dyn Error>> {
    let frames = tally.frames.load(Ordering::Relaxed);
    let bad = tally.bad_frames.load(Ordering::Relaxed);
    let stats = pool.stats();
    let fps = frames as f64 / elapsed.as_secs_f64();
    println!("frames:                       {frames} produced {produced}, consumed {frames}");
    println!(
        "frames/s:                     {fps:.1} ({:.2} GB/s of pixels)",
        fps * frame_bytes as f64 / 1e9
    );
    println!(
        "buffers:                      {} ({:.0} MiB in all)",
        args.buffers,
        (args.buffers as usize * frame_bytes) as f64 / (1 << 20) as f64
    );
    println!("bytes copied between stages:  0 (consumers read the producer's buffers in place)");
    println!(
        "allocations after warm-up:    {}",
        alloc_count::measured_allocations()
    );
    println!(
        "acquisitions that waited:     {} of {} (fewest free buffers: {}, most filled: {})",
        stats.waits,
        stats.acquisitions,
        stats.min_free.unwrap_or(0),
        stats.max_filled
    );
    println!("frames failing the check:     {bad}");
    println!(
        "checksum of all frames:       {:016x}",
        tally.checksum.load(Ordering::Relaxed)
    );
    if bad > 0 || frames != produced {
        return Err(format!(
            "{bad} frames failed their pixel check and {} were lost",
            produced - frames
        )
        .into());
    }
    Ok(())
}
