//! `bufpool demo`: one producer process and several consumer processes (spawned by the demo)
//! share one pool in shared memory. Every frame is published to one port per consumer, so each
//! consumer reads every frame in place: no byte is copied between processes. Partway through,
//! the demo kills one consumer with SIGKILL and shows that the buffers it held come back.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use buffer_core::{
    BufferPool, PixelFormat, PoolConfig, ReceiveError, VideoFormat, Wait, alloc_count,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{display, pattern};

/// Frames the producer handles before its allocations are counted (first-touch page faults and
/// the like happen here).
const WARM_UP_FRAMES: u64 = 4;
/// The port the display thread reads (with `--display`).
const DISPLAY_PORT: &str = "display";
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
    /// Consumer processes.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 1920)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// Do not kill a consumer partway through.
    #[arg(long)]
    no_kill: bool,
    /// Also show the frames on screen: on the first DRM card with a connected display, else on
    /// /dev/fb0 (the producer then runs at the display's pace).
    #[arg(long)]
    display: bool,
    /// A video file to decode into the pool (with the `avframe` feature; without a file, a
    /// test clip is encoded in-process).
    #[cfg(feature = "avframe")]
    #[arg(long)]
    input: Option<std::path::PathBuf>,
    /// Draw the synthetic RGBA pattern instead of decoding (with the `avframe` feature).
    #[cfg(feature = "avframe")]
    #[arg(long)]
    pattern: bool,
}

/// Options of the consumer processes the demo starts (`bufpool demo-consumer`).
#[derive(clap::Args, Debug)]
pub struct ConsumerArgs {
    /// The pool's segment.
    #[arg(long)]
    segment: String,
    /// The port to read.
    #[arg(long)]
    port: String,
    /// Frame width in pixels.
    #[arg(long)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long)]
    height: u32,
    /// What the frames hold: "rgba" (the synthetic pattern), "test-clip" (decoded test-clip
    /// frames, every plane checked), or "decoded" (decoded frames of a user's file, checksummed).
    #[arg(long, default_value = "rgba")]
    frames: String,
}

/// Where the producer's frames come from.
enum Source {
    /// The synthetic RGBA pattern, drawn into each buffer.
    Pattern(VideoFormat),
    /// A clip decoded with FFmpeg straight into the pool.
    #[cfg(feature = "avframe")]
    Clip(crate::decoded::Clip),
}

impl Source {
    /// The source the build and the arguments ask for.
    fn new(args: &DemoArgs) -> Result<Source, Box<dyn Error>> {
        #[cfg(feature = "avframe")]
        if !args.pattern {
            return Ok(Source::Clip(crate::decoded::Clip::prepare(
                args.input.as_deref(),
                args.frames,
            )?));
        }
        Ok(Source::Pattern(VideoFormat::packed(
            PixelFormat::RGBA,
            args.width,
            args.height,
            4,
        )))
    }

    /// Bytes one buffer needs.
    fn buffer_bytes(&self) -> Result<usize, Box<dyn Error>> {
        match self {
            Source::Pattern(format) => Ok(usize::try_from(format.byte_len())?),
            #[cfg(feature = "avframe")]
            Source::Clip(clip) => Ok(clip.info.buffer_size),
        }
    }

    /// What the consumers check (`ConsumerArgs::frames`), and the picture size.
    fn kind(&self) -> (&'static str, u32, u32) {
        match self {
            Source::Pattern(format) => ("rgba", format.width, format.height),
            #[cfg(feature = "avframe")]
            Source::Clip(clip) => (
                if clip.synthetic {
                    "test-clip"
                } else {
                    "decoded"
                },
                clip.info.width,
                clip.info.height,
            ),
        }
    }

    /// Puts the next frame into the pool and publishes it; `false` when there is none left.
    fn publish_next(
        &mut self,
        pool: &BufferPool,
        targets: &[buffer_core::Port],
        sequence: u64,
        started: Instant,
    ) -> Result<bool, Box<dyn Error>> {
        match self {
            Source::Pattern(format) => {
                let mut frame = pool.acquire_free(Wait::Timeout(Duration::from_secs(10)))?;
                pattern::draw(frame.as_mut_slice()?, format.width, sequence);
                {
                    let mut meta = frame.meta_mut();
                    meta.sequence = sequence;
                    meta.timestamp_ns = started.elapsed().as_nanos() as i64;
                    meta.video = *format;
                }
                frame.publish(targets);
                Ok(true)
            }
            #[cfg(feature = "avframe")]
            Source::Clip(clip) => clip.publish_next(pool, targets),
        }
    }

    /// How many frames it will give, when known.
    fn frames(&self, asked: u64) -> u64 {
        match self {
            Source::Pattern(_) => asked,
            #[cfg(feature = "avframe")]
            Source::Clip(clip) => clip.frames.unwrap_or(asked),
        }
    }

    /// The demo's first line's description of the frames.
    fn describe(&self, frame_bytes: usize) -> String {
        match self {
            Source::Pattern(format) => format!(
                "{}x{} RGBA frames ({:.1} MiB each) drawn into",
                format.width,
                format.height,
                frame_bytes as f64 / (1 << 20) as f64
            ),
            #[cfg(feature = "avframe")]
            Source::Clip(clip) => clip.describe(),
        }
    }
}

/// A consumer process and what it reported.
struct Consumer {
    port: String,
    child: Child,
    out: BufReader<ChildStdout>,
    killed: bool,
}

/// Runs the demo and prints its summary.
pub fn run(args: &DemoArgs) -> Result<(), Box<dyn Error>> {
    if args.consumers == 0 || args.buffers == 0 || args.width == 0 || args.height == 0 {
        return Err("--consumers, --buffers, --width and --height must be at least 1".into());
    }
    let max_consumers = buffer_core::MAX_PORTS - usize::from(args.display);
    if args.consumers as usize > max_consumers {
        return Err(format!("--consumers can be at most {max_consumers}").into());
    }
    let screen = args.display.then(display::Screen::open).transpose()?;
    let mut source = Source::new(args)?;
    let frame_bytes = source.buffer_bytes()?;
    let ports: Vec<String> = (0..args.consumers)
        .map(|i| format!("consumer-{i}"))
        .collect();
    let display_port = screen.is_some().then(|| DISPLAY_PORT.to_owned());
    let segment = format!("demo-{}", std::process::id());
    let config = PoolConfig::new("demo")
        .with_category("video")
        .with_capacity(args.buffers)
        .with_ports(ports.iter().chain(&display_port).cloned())
        // A port as deep as the pool never refuses a frame: a slow consumer slows the producer
        // down instead of missing frames (a dead one is reclaimed).
        .with_port_depth(args.buffers.next_power_of_two().max(2));
    let pool = BufferPool::create_shared(&segment, config, args.buffers, frame_bytes)?;
    println!(
        "bufpool demo: {} {} shared pool '{segment}' of {} buffers, 1 producer process, {} consumer processes",
        source.frames(args.frames),
        source.describe(frame_bytes),
        args.buffers,
        args.consumers
    );
    let mut consumers = ports
        .iter()
        .map(|port| start_consumer(&segment, port, source.kind()))
        .collect::<Result<Vec<_>, _>>()?;
    let shower = screen.zip(display_port).map(|(screen, port)| {
        println!("showing every frame on {}", screen.describe());
        display::spawn(screen, pool.clone(), port)
    });
    let targets = ports
        .iter()
        .map(String::as_str)
        .chain(shower.is_some().then_some(DISPLAY_PORT))
        .map(|port| pool.port(port))
        .collect::<Result<Vec<_>, _>>()?;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let progress = progress_bar(source.frames(args.frames));
    let kill_at = (!args.no_kill && args.consumers > 1).then_some(source.frames(args.frames) / 2);
    let mut produced = 0;
    let mut reclaimed_after_kill = None;
    for sequence in 0..args.frames {
        if sequence == WARM_UP_FRAMES {
            alloc_count::measure_this_thread();
        }
        if Instant::now() >= deadline {
            break;
        }
        if Some(sequence) == kill_at {
            // Not part of the frame path: its diagnostics allocate.
            alloc_count::stop_measuring_this_thread();
            reclaimed_after_kill = Some(kill_one(&pool, &mut consumers[0])?);
            alloc_count::measure_this_thread();
        }
        if !source.publish_next(&pool, &targets, sequence, started)? {
            break;
        }
        produced += 1;
        if sequence % 16 == 0 && sequence >= WARM_UP_FRAMES {
            alloc_count::stop_measuring_this_thread();
            show_progress(&progress, &pool, produced, started);
            alloc_count::measure_this_thread();
        }
    }
    alloc_count::stop_measuring_this_thread();
    let elapsed = started.elapsed();
    // A decoder lets go of the reference pictures it kept.
    #[cfg(feature = "avframe")]
    drop(source);
    pool.close(); // consumers drain their ports, then stop
    progress.finish_and_clear();
    let reports = consumers
        .iter_mut()
        .map(finish_consumer)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(shower) = shower {
        let shown = shower.join().map_err(|_| "the display thread panicked")??;
        println!("displayed {shown} frames");
    }
    summarise(
        args,
        &pool,
        produced,
        elapsed,
        frame_bytes,
        &reports,
        reclaimed_after_kill,
    )
}

fn start_consumer(
    segment: &str,
    port: &str,
    (frames, width, height): (&str, u32, u32),
) -> Result<Consumer, Box<dyn Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("demo-consumer")
        .args(["--segment", segment, "--port", port, "--frames", frames])
        .args(["--width", &width.to_string()])
        .args(["--height", &height.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no consumer output")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("consumer for port {port} did not start: {line:?}").into());
    }
    Ok(Consumer {
        port: port.to_owned(),
        child,
        out,
        killed: false,
    })
}

/// Kills `consumer` with SIGKILL, then reclaims what it held; returns how many buffers came back.
fn kill_one(pool: &BufferPool, consumer: &mut Consumer) -> Result<usize, Box<dyn Error>> {
    let held = pool
        .holders()
        .0
        .iter()
        .find(|holder| holder.pid == consumer.child.id())
        .map_or(0, |holder| holder.buffers);
    consumer.child.kill()?;
    consumer.child.wait()?;
    consumer.killed = true;
    let reclaimed = pool.reclaim_dead();
    println!(
        "killed consumer of port {} (pid {}) with SIGKILL while it held {held} buffer(s); reclaimed {reclaimed}",
        consumer.port,
        consumer.child.id()
    );
    Ok(reclaimed)
}

/// A consumer's final report: frames received, frames failing the check, checksum.
struct Report {
    port: String,
    killed: bool,
    frames: u64,
    bad: u64,
    checksum: u64,
}

fn finish_consumer(consumer: &mut Consumer) -> Result<Report, Box<dyn Error>> {
    let mut report = Report {
        port: consumer.port.clone(),
        killed: consumer.killed,
        frames: 0,
        bad: 0,
        checksum: 0,
    };
    if consumer.killed {
        return Ok(report);
    }
    let mut line = String::new();
    consumer.out.read_line(&mut line)?;
    let status = consumer.child.wait()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|field| field.split_once('=')?.1.parse().ok())
        .collect();
    match (status.success(), fields.as_slice()) {
        (true, &[frames, bad, checksum]) => {
            report.frames = frames;
            report.bad = bad;
            report.checksum = checksum;
            Ok(report)
        }
        _ => Err(format!(
            "consumer of port {} failed ({status}): {line:?}",
            consumer.port
        )
        .into()),
    }
}

/// The consumer process: receives every frame of its port and checks it in place.
pub fn consume(args: &ConsumerArgs) -> Result<(), Box<dyn Error>> {
    let pool = BufferPool::attach(&args.segment)?;
    let subscription = pool.subscribe(pool.port(&args.port)?)?;
    println!("ready");
    let (mut frames, mut bad, mut checksum) = (0u64, 0u64, 0u64);
    loop {
        let frame = match subscription.receive(Wait::Forever) {
            Ok(frame) => frame,
            Err(ReceiveError::Closed { .. }) => break,
            Err(other) => return Err(other.into()),
        };
        let meta = frame.meta();
        let (ok, sum) = match args.frames.as_str() {
            "rgba" => {
                let bytes = frame.as_slice()?;
                let ok = meta.video.width == args.width
                    && pattern::spot_check(
                        bytes,
                        args.width,
                        args.height,
                        meta.sequence,
                        SPOT_CHECKS,
                    );
                (ok, pattern::checksum(bytes))
            }
            kind => {
                let planes = meta.video.planes().len();
                let sum = (0..planes).try_fold(0u64, |sum, plane| {
                    Ok::<_, buffer_core::AccessError>(
                        sum.wrapping_add(pattern::checksum(frame.plane(plane)?)),
                    )
                })?;
                #[cfg(feature = "avframe")]
                let ok = kind != "test-clip" || crate::decoded::check_planes(&frame, meta.sequence);
                #[cfg(not(feature = "avframe"))]
                let ok = kind == "decoded";
                (ok && meta.video.width == args.width, sum)
            }
        };
        checksum = checksum.wrapping_add(sum);
        bad += u64::from(!ok);
        frames += 1;
    }
    println!("frames={frames} bad={bad} checksum={checksum}");
    Ok(())
}

fn progress_bar(frames: u64) -> ProgressBar {
    let bar = ProgressBar::new(frames);
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} frames  {msg}")
            .expect("valid template"),
    );
    bar
}

fn show_progress(bar: &ProgressBar, pool: &BufferPool, produced: u64, started: Instant) {
    let c = pool.counts();
    bar.set_position(produced);
    bar.set_message(format!(
        "{:>6.0} frames/s  pool: {} free, {} in use",
        produced as f64 / started.elapsed().as_secs_f64(),
        c.free,
        c.in_use
    ));
}

fn summarise(
    args: &DemoArgs,
    pool: &BufferPool,
    produced: u64,
    elapsed: Duration,
    frame_bytes: usize,
    reports: &[Report],
    reclaimed_after_kill: Option<usize>,
) -> Result<(), Box<dyn Error>> {
    let stats = pool.stats();
    let fps = produced as f64 / elapsed.as_secs_f64();
    println!("frames:                       {produced} produced");
    let refused: Vec<u64> = pool.port_infos().iter().map(|p| p.refused).collect();
    for (report, refused) in reports.iter().zip(refused) {
        if report.killed {
            println!(
                "  {:<26} killed partway (SIGKILL); {refused} frames refused after its death",
                report.port
            );
        } else {
            println!(
                "  {:<26} received {}, failing the check {}, checksum {:016x}",
                report.port, report.frames, report.bad, report.checksum
            );
        }
    }
    println!(
        "frames/s:                     {fps:.1} ({:.2} GB/s of pixels per consumer)",
        fps * frame_bytes as f64 / 1e9
    );
    println!(
        "buffers:                      {} ({:.0} MiB of shared memory)",
        args.buffers,
        (args.buffers as usize * frame_bytes) as f64 / (1 << 20) as f64
    );
    println!("bytes copied between processes: 0 (consumers read the producer's buffers in place)");
    println!(
        "buffers reclaimed:            {} (from the killed consumer: {})",
        stats.reclaimed,
        reclaimed_after_kill.map_or("none killed".to_owned(), |n| n.to_string())
    );
    println!(
        "allocations after warm-up:    {} (producer)",
        alloc_count::measured_allocations()
    );
    println!(
        "acquisitions that waited:     {} of {} (fewest free buffers: {})",
        stats.waits,
        stats.acquisitions,
        stats.min_free.unwrap_or(0)
    );
    let counts = pool.counts();
    println!("pool at the end:              {counts}");
    let bad: u64 = reports.iter().map(|r| r.bad).sum();
    let survivors_short = reports
        .iter()
        .filter(|r| !r.killed && r.frames != produced)
        .count();
    if bad > 0 || survivors_short > 0 || counts.free != args.buffers {
        return Err(format!(
            "{bad} frames failed their pixel check, {survivors_short} consumers missed frames, {} buffers did not come back",
            args.buffers - counts.free
        )
        .into());
    }
    Ok(())
}
