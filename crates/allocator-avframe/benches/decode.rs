//! Side by side in one run, on the same synthetic clip:
//!
//! - decoding with FFmpeg's own frame allocator, against decoding straight into a pool
//!   (frames per CPU second of the decoding thread, interleaved rounds, median), and FFmpeg's allocator followed by the copy into a
//!   pool buffer that a consumer in another process would need (bytes copied per frame);
//! - the pool's acquire→release against `av_buffer_pool_get` + `av_buffer_unref` (ns).
//!
//! Run: `cargo bench -p allocator-avframe --bench decode`.

// The benchmark drives FFmpeg through sequences of C calls; each block's comment covers its
// sequence.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use allocator_avframe::{ClipCodec, DecoderOptions, PoolDecoder, ffi as ff, write_clip};
use buffer_core::{BufferPool, PoolConfig, Wait};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;

/// CPU seconds this thread has run: unlike wall time, it leaves out the time the hypervisor
/// gives this VM's core to others, which on a shared machine swings single runs by 20 %.
fn thread_cpu_seconds() -> f64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Frames per CPU second decoding `path` with FFmpeg's allocator; with `copy_into`, each picture is also
/// copied into a buffer of that pool (what a consumer outside the decoder's process needs).
fn decode_ffmpeg(path: &Path, copy_into: Option<&BufferPool>) -> (f64, u64) {
    let mut decoder = PoolDecoder::with_ffmpeg_allocator(path, 1).unwrap();
    let started = thread_cpu_seconds();
    let (mut frames, mut copied) = (0u64, 0u64);
    while let Some(frame) = decoder.next_frame().unwrap() {
        if let Some(pool) = copy_into {
            let mut target = pool.acquire_free(Wait::Forever).unwrap();
            let bytes = target.as_mut_slice().unwrap();
            let mut at = 0;
            for plane in 0..3 {
                let source = frame.plane(plane).unwrap();
                bytes[at..at + source.len()].copy_from_slice(source);
                at += source.len();
                copied += source.len() as u64;
            }
            target.submit();
            drop(pool.acquire_filled(Wait::NoWait).unwrap());
        }
        black_box(&frame);
        frames += 1;
    }
    (
        frames as f64 / (thread_cpu_seconds() - started),
        copied / frames.max(1),
    )
}

/// Frames per CPU second decoding `path` into `pool`; checks every picture is in pool memory.
fn decode_pool(path: &Path, pool: &BufferPool) -> f64 {
    let options = DecoderOptions {
        threads: 1,
        ..DecoderOptions::default()
    };
    let mut decoder = PoolDecoder::open(path, pool, options).unwrap();
    let started = thread_cpu_seconds();
    let mut frames = 0u64;
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert!(frame.planes_within(pool));
        black_box(&frame);
        frames += 1;
    }
    frames as f64 / (thread_cpu_seconds() - started)
}

/// Nanoseconds per `av_buffer_pool_get` + `av_buffer_unref`.
fn av_buffer_pool_cycle(size: usize, rounds: u32) -> f64 {
    // SAFETY: a pool of `size`-byte buffers made with FFmpeg's default allocator; every buffer
    // taken is unreferenced; the pool is uninitialised at the end.
    unsafe {
        let mut pool = ff::av_buffer_pool_init(size, None);
        ff::av_buffer_unref(&mut ff::av_buffer_pool_get(pool)); // warm: one buffer allocated
        let started = Instant::now();
        for _ in 0..rounds {
            let mut buf = ff::av_buffer_pool_get(pool);
            black_box(buf);
            ff::av_buffer_unref(&mut buf);
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(rounds);
        ff::av_buffer_pool_uninit(&mut pool);
        ns
    }
}

/// Nanoseconds per acquire→release of our pool.
fn bufpool_cycle(pool: &BufferPool, rounds: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..rounds {
        drop(black_box(pool.acquire_free(Wait::NoWait).unwrap()));
    }
    started.elapsed().as_nanos() as f64 / f64::from(rounds)
}

/// Pool sizes compared: the fewest buffers this clip's decoder needs (the reference picture,
/// the one being decoded, the frame the consumer holds), and a pipeline's worth.
const POOL_SIZES: [u32; 2] = [3, 8];

fn main() {
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let (frames, rounds) = if quick { (5, 1) } else { (120, 15) };
    let path = std::env::temp_dir().join(format!("bufpool-bench-{}.avi", std::process::id()));
    write_clip(&path, ClipCodec::Mpeg4, WIDTH, HEIGHT, frames).unwrap();
    let info = PoolDecoder::probe(&path).unwrap();
    let pools = POOL_SIZES.map(|count| {
        BufferPool::with_heap_buffers(PoolConfig::new("bench"), count, info.buffer_size).unwrap()
    });
    println!(
        "{frames} frames of {WIDTH}x{HEIGHT} MPEG-4, 1 decoder thread, {rounds} interleaved rounds"
    );
    // Contestants: FFmpeg's allocator, then one per pool size.
    let mut fps = vec![Vec::new(); 1 + pools.len()];
    let (mut copying, mut copied) = (Vec::new(), 0);
    for round in 0..rounds {
        // Rotate which goes first, so that none always runs on a warmer machine.
        for turn in 0..fps.len() {
            let contestant = (round + turn) % fps.len();
            fps[contestant].push(match contestant {
                0 => decode_ffmpeg(&path, None).0,
                pool => decode_pool(&path, &pools[pool - 1]),
            });
        }
        let (rate, bytes) = decode_ffmpeg(&path, Some(&pools[pools.len() - 1]));
        copying.push(rate);
        copied = bytes;
    }
    let fps: Vec<f64> = fps.iter_mut().map(|values| median(values)).collect();
    let copying = median(&mut copying);
    println!(
        "FFmpeg's allocator                       {:8.1} frames/CPU-s   0 bytes copied (consumer in the decoder's process only)",
        fps[0]
    );
    for (count, rate) in POOL_SIZES.iter().zip(&fps[1..]) {
        println!(
            "into a pool of {count} buffers (get_buffer2)  {rate:8.1} frames/CPU-s   0 bytes copied (any process attached to the pool); ratio {:.3}",
            rate / fps[0]
        );
    }
    println!(
        "FFmpeg's allocator, copied into pool     {copying:8.1} frames/CPU-s   {copied} bytes copied per frame"
    );

    let cycles = if quick { 1000 } else { 2_000_000 };
    let (mut theirs, mut mine) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        theirs.push(av_buffer_pool_cycle(info.buffer_size, cycles));
        mine.push(bufpool_cycle(&pools[0], cycles));
    }
    let (theirs, mine) = (median(&mut theirs), median(&mut mine));
    println!("av_buffer_pool_get + av_buffer_unref  {theirs:6.1} ns");
    println!(
        "bufpool acquire_free + release        {mine:6.1} ns   (ratio {:.2})",
        mine / theirs
    );
    std::fs::remove_file(path).unwrap();
}
