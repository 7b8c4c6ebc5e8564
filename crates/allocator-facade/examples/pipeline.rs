//! A three-stage pipeline (read → parse → process) over the frames of a YUV4MPEG2 (`.y4m`) file,
//! with tokio for the I/O stage and rayon for the CPU stages. Work items carry their pool
//! buffers; a buffer goes back to its pool when its work item is done, on whichever thread
//! finished it.
//!
//! ```text
//! tokio task:  acquire_free_async ─► read "FRAME\n" + picture into the buffer ─► work item
//! rayon:       parse (header check, plane layout into the buffer's metadata)
//! rayon:       process (luma histogram and checksum, rows in parallel) ─► result; buffer freed
//! ```
//!
//! The reader waits (asynchronously) for a free buffer whenever every buffer is in flight, so
//! the pool's size bounds the memory in use. Run it with a file of your own, or without one for
//! a generated 640x360 clip:
//!
//! ```text
//! cargo run --release -p allocator-facade --example pipeline [-- FILE.y4m]
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use allocator_facade::{AllocatorConfig, AllocatorType, MemoryLimit, create_with_config};
use buffer_core::{BufferHold, BufferPool, PixelFormat, Plane, PoolConfig, VideoFormat};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The marker that starts every frame record.
const FRAME_MARKER: &[u8] = b"FRAME\n";
/// Buffers in flight at most.
const BUFFERS: u32 = 8;

/// What the pipeline found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Frames processed.
    pub frames: u64,
    /// Picture width and height.
    pub size: (u32, u32),
    /// Sum of every frame's checksum (FNV-1a of its three planes).
    pub checksum: u64,
    /// Mean luma over all frames.
    pub mean_luma: f64,
    /// Distinct threads that dropped the last work item of a buffer (returned it to the pool).
    pub releasing_threads: usize,
    /// The pool's hit rate: the share of buffer requests the reader got without waiting.
    pub hit_rate: f64,
    /// The most bytes the allocator held at once.
    pub peak_bytes: u64,
}

/// The stream header: picture size.
fn parse_header(line: &str) -> Result<(u32, u32), Box<dyn Error>> {
    let mut fields = line.trim_end().split(' ');
    if fields.next() != Some("YUV4MPEG2") {
        return Err("not a YUV4MPEG2 file (the first line must start with 'YUV4MPEG2')".into());
    }
    let (mut width, mut height) = (None, None);
    for field in fields {
        match field.split_at(1) {
            ("W", value) => width = Some(value.parse()?),
            ("H", value) => height = Some(value.parse()?),
            ("C", colour) if !colour.starts_with("420") => {
                return Err(format!("colour space C{colour}: only 4:2:0 is supported").into());
            }
            _ => {}
        }
    }
    match (width, height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err("the header gives no picture size (W and H)".into()),
    }
}

/// A frame read into a pool buffer: the first stage's work item.
struct Record {
    sequence: u64,
    buffer: BufferHold,
}

/// A parsed frame: the second stage's work item, the same buffer with its planes described.
struct Frame {
    sequence: u64,
    buffer: BufferHold,
}

/// Checks the record's marker and describes the picture's planes in the buffer's metadata.
fn parse(record: Record, (width, height): (u32, u32)) -> Result<Frame, String> {
    let Record {
        sequence,
        mut buffer,
    } = record;
    let bytes = buffer.as_slice().map_err(|e| e.to_string())?;
    if !bytes.starts_with(FRAME_MARKER) {
        return Err(format!(
            "frame {sequence}: no 'FRAME' marker (frame parameters are not supported)"
        ));
    }
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let luma = FRAME_MARKER.len() as u64;
    let u = luma + u64::from(width) * u64::from(height);
    let v = u + u64::from(cw) * u64::from(ch);
    let plane = |offset, stride, rows| Plane {
        offset,
        stride,
        rows,
    };
    let mut meta = buffer.meta_mut().map_err(|e| e.to_string())?;
    meta.sequence = sequence;
    meta.video = VideoFormat {
        pixel_format: PixelFormat::YUV420,
        width,
        height,
        plane_count: 3,
        plane_slots: [
            plane(luma, width, height),
            plane(u, cw, ch),
            plane(v, cw, ch),
            Plane::default(),
        ],
    };
    drop(meta); // written back to the buffer's record
    Ok(Frame { sequence, buffer })
}

/// One frame's result.
struct Processed {
    sequence: u64,
    checksum: u64,
    luma_sum: u64,
    pixels: u64,
}

/// FNV-1a over `bytes`, continuing from `hash`.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Checksums the planes and sums the luma, rows in parallel.
fn process(frame: &Frame) -> Result<Processed, String> {
    use rayon::prelude::*;
    let meta = frame.buffer.meta();
    let planes = meta.video.planes();
    let bytes = frame.buffer.as_slice().map_err(|e| e.to_string())?;
    let plane = |plane: &Plane| {
        bytes
            .get(plane.offset as usize..plane.end() as usize)
            .ok_or_else(|| format!("frame {}: a plane lies outside its buffer", frame.sequence))
    };
    let luma = plane(&planes[0])?;
    let luma_sum: u64 = luma
        .par_chunks(planes[0].stride as usize)
        .map(|row| row.iter().map(|&v| u64::from(v)).sum::<u64>())
        .sum();
    let mut checksum = 0xcbf2_9ce4_8422_2325;
    for each in planes {
        checksum = fnv1a(checksum, plane(each)?);
    }
    Ok(Processed {
        sequence: frame.sequence,
        checksum,
        luma_sum,
        pixels: luma.len() as u64,
    })
}

/// Runs the pipeline over `input`.
pub fn run(input: &Path) -> Result<Report, Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(input.to_owned()))
}

async fn run_async(input: PathBuf) -> Result<Report, Box<dyn Error>> {
    let file = tokio::fs::File::open(&input)
        .await
        .map_err(|e| format!("cannot open {}: {e}", input.display()))?;
    let mut reader = BufReader::new(file);
    let mut header = String::new();
    reader.read_line(&mut header).await?;
    let size = parse_header(&header)?;
    let (w, h) = (size.0 as usize, size.1 as usize);
    let record_len = FRAME_MARKER.len() + w * h + 2 * w.div_ceil(2) * h.div_ceil(2);

    // The pool: its allocator refuses to hold more than the pipeline needs.
    let limit = MemoryLimit::new(u64::from(BUFFERS) * record_len as u64);
    let allocator = create_with_config(
        AllocatorType::Normal,
        &AllocatorConfig::default().with_memory_limit(limit),
    )?;
    let config = PoolConfig::new("y4m-frames").with_category("pipeline");
    let id = allocator.allocate_pool(config, BUFFERS, record_len)?;
    let pool: BufferPool = allocator.pool(id)?;

    let (results, mut done) = tokio::sync::mpsc::unbounded_channel::<Result<Processed, String>>();
    let releasers = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let mut sequence = 0;
    loop {
        // Stage 1 (tokio): wait without blocking a thread for a free buffer, read into it.
        let mut buffer = pool.acquire_free_async().await?.into_hold();
        let read = reader.read_exact(buffer.as_mut_slice()?).await;
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let record = Record { sequence, buffer };
        sequence += 1;
        // Stages 2 and 3 (rayon): the work item owns the buffer; when it is done, on whichever
        // rayon thread, dropping it returns the buffer to the pool.
        let results = results.clone();
        let releasers = Arc::clone(&releasers);
        rayon::spawn(move || {
            let outcome = parse(record, size).and_then(|frame| {
                let processed = process(&frame);
                drop(frame);
                releasers.lock().insert(std::thread::current().id());
                processed
            });
            // The receiver lives until every result is in.
            let _ = results.send(outcome);
        });
    }
    drop(results);

    let (mut frames, mut checksum, mut luma, mut pixels) = (0, 0u64, 0u64, 0u64);
    let mut seen = vec![false; sequence as usize];
    while let Some(result) = done.recv().await {
        let processed = result?;
        seen[processed.sequence as usize] = true;
        frames += 1;
        checksum = checksum.wrapping_add(processed.checksum);
        luma += processed.luma_sum;
        pixels += processed.pixels;
    }
    assert!(seen.iter().all(|&s| s), "every frame read was processed");
    assert_eq!(pool.counts().free, BUFFERS, "every buffer is back");
    let releasing_threads = releasers.lock().len();
    Ok(Report {
        frames,
        size,
        checksum,
        mean_luma: if pixels == 0 {
            0.0
        } else {
            luma as f64 / pixels as f64
        },
        releasing_threads,
        hit_rate: pool.stats().hit_rate().unwrap_or(1.0),
        peak_bytes: allocator.memory().bytes_peak,
    })
}

/// Writes a `frames`-frame 4:2:0 clip of moving gradients to `path`.
pub fn write_test_clip(path: &Path, (w, h): (usize, usize), frames: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg")?;
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    for n in 0..frames {
        out.write_all(FRAME_MARKER)?;
        let luma: Vec<u8> = (0..w * h)
            .map(|i| ((i % w + i / w + 3 * n) % 256) as u8)
            .collect();
        out.write_all(&luma)?;
        out.write_all(&vec![(64 + n % 128) as u8; cw * ch])?;
        out.write_all(&vec![(192 - n % 128) as u8; cw * ch])?;
    }
    out.flush()
}

fn main() -> Result<(), Box<dyn Error>> {
    let (input, generated) = match std::env::args_os().nth(1) {
        Some(path) => (PathBuf::from(path), false),
        None => {
            let path =
                std::env::temp_dir().join(format!("bufpool-pipeline-{}.y4m", std::process::id()));
            write_test_clip(&path, (640, 360), 240)?;
            (path, true)
        }
    };
    let started = Instant::now();
    let report = run(&input);
    let elapsed = started.elapsed();
    if generated {
        std::fs::remove_file(&input)?;
    }
    let report = report?;
    let megabytes = report.frames as f64 * (report.size.0 * report.size.1) as f64 * 1.5 / 1e6;
    println!(
        "{} frames of {}x{} in {:.2} s ({:.0} frames/s, {:.0} MB/s)",
        report.frames,
        report.size.0,
        report.size.1,
        elapsed.as_secs_f64(),
        report.frames as f64 / elapsed.as_secs_f64(),
        megabytes / elapsed.as_secs_f64()
    );
    println!(
        "checksum {:#018x}, mean luma {:.2}",
        report.checksum, report.mean_luma
    );
    println!(
        "buffers returned to the pool from {} rayon threads; reader hit rate {:.1} %; peak memory {} bytes ({} buffers)",
        report.releasing_threads,
        report.hit_rate * 100.0,
        report.peak_bytes,
        BUFFERS
    );
    Ok(())
}
