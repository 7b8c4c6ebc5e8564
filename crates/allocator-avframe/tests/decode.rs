//! Decoding synthetic clips through a pool: pictures land in pool memory, exactly.

// Test set-up drives FFmpeg through sequences of C calls; each block's comment covers its
// sequence.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::path::PathBuf;
use std::time::Duration;

use allocator_avframe::{ClipCodec, DecodeError, DecoderOptions, PoolDecoder, pattern, write_clip};
use buffer_core::{BufferPool, PoolConfig, PoolOwner, Wait};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const FRAMES: u64 = 30;

fn clip(name: &str, codec: ClipCodec) -> PathBuf {
    let path = std::env::temp_dir().join(format!("bufpool-{}-{name}", std::process::id()));
    write_clip(&path, codec, WIDTH, HEIGHT, FRAMES).unwrap();
    path
}

fn pool_for(path: &std::path::Path, buffers: u32) -> PoolOwner {
    let info = PoolDecoder::probe(path).unwrap();
    assert!(info.direct_rendering);
    assert!(info.buffer_size >= (WIDTH * HEIGHT * 3 / 2) as usize);
    let config = PoolConfig::new("decode").with_capacity(buffers);
    BufferPool::with_heap_buffers(config, buffers, info.buffer_size).unwrap()
}

#[test]
fn ffv1_frames_are_decoded_into_pool_memory_exactly() {
    let path = clip("exact.mkv", ClipCodec::Ffv1);
    let pool = pool_for(&path, 6);
    let options = DecoderOptions {
        threads: 1,
        ..DecoderOptions::default()
    };
    let mut decoder = PoolDecoder::open(&path, &pool, options).unwrap();
    assert!(decoder.direct_rendering());
    let counts = decoder.counts();
    let mut frames = 0;
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert!(
            frame.planes_within(&pool),
            "frame {frames} outside pool memory"
        );
        let (id, offset) = frame.pool_buffer(&pool).unwrap();
        assert_eq!(offset, 0, "plane 0 starts the buffer");
        assert_eq!(id.pool, pool.id());
        for plane in 0..3 {
            let bytes = frame.plane(plane).unwrap();
            let (w, h) = if plane == 0 {
                (WIDTH, HEIGHT)
            } else {
                (WIDTH / 2, HEIGHT / 2)
            };
            let stride = bytes.len() / h as usize;
            assert_eq!(stride % 64, 0, "line sizes are 64-byte aligned");
            for y in 0..h as usize {
                for x in 0..w as usize {
                    assert_eq!(
                        bytes[y * stride + x],
                        pattern(plane, x, y, frames),
                        "frame {frames} plane {plane} ({x},{y})"
                    );
                }
            }
        }
        let format = frame.format_in(&pool).unwrap();
        assert_eq!(format.pixel_format, buffer_core::PixelFormat::YUV420);
        assert_eq!(
            (format.planes()[1].rows, format.planes()[0].rows),
            (HEIGHT / 2, HEIGHT)
        );
        frames += 1;
    }
    assert_eq!(frames, FRAMES);
    drop(decoder);
    assert_eq!(
        counts.allocations(),
        counts.frees(),
        "every buffer given to FFmpeg came back"
    );
    assert!(counts.allocations() >= FRAMES);
    assert_eq!(counts.fallbacks(), 0);
    assert_eq!(pool.counts().free, 6);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn mpeg4_with_frame_threads_keeps_reference_frames_until_ffmpeg_lets_go() {
    let path = clip("threads.avi", ClipCodec::Mpeg4);
    let pool = pool_for(&path, 16);
    let options = DecoderOptions {
        threads: 4,
        ..DecoderOptions::default()
    };
    let mut decoder = PoolDecoder::open(&path, &pool, options).unwrap();
    let counts = decoder.counts();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert!(frame.planes_within(&pool));
        // Keep a few frames alive across later decodes, as a slow consumer would.
        frames.push(frame);
        if frames.len() > 3 {
            frames.remove(0);
        }
    }
    drop(frames);
    // The decoder still holds its reference frames until it is closed.
    drop(decoder);
    assert_eq!(counts.allocations(), counts.frees());
    assert_eq!(pool.counts().free, 16);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn an_empty_pool_makes_the_decoder_fail_naming_the_holder_and_recover() {
    let path = clip("exhaust.mkv", ClipCodec::Ffv1);
    let pool = pool_for(&path, 3);
    let options = DecoderOptions {
        threads: 1,
        timeout: Duration::from_millis(100),
    };
    let mut decoder = PoolDecoder::open(&path, &pool, options).unwrap();
    let mut held = Vec::new();
    let error = loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => held.push(frame),
            Ok(None) => panic!("the clip ended before the pool ran dry"),
            Err(error) => break error,
        }
    };
    assert!(matches!(error, DecodeError::Exhausted(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("held by pid {}", std::process::id())),
        "{message}"
    );
    assert_eq!(held.len(), 3);
    held.remove(0);
    let next = decoder
        .next_frame()
        .unwrap()
        .expect("decoding goes on once a buffer is free");
    assert!(next.planes_within(&pool));
    drop((next, held, decoder));
    assert_eq!(pool.counts().free, 3);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn buffers_too_small_for_the_stream_give_an_error_with_the_size_needed() {
    let path = clip("small.mkv", ClipCodec::Ffv1);
    let info = PoolDecoder::probe(&path).unwrap();
    let pool =
        BufferPool::with_heap_buffers(PoolConfig::new("small"), 2, info.buffer_size / 2).unwrap();
    let options = DecoderOptions {
        threads: 1,
        ..DecoderOptions::default()
    };
    let mut decoder = PoolDecoder::open(&path, &pool, options).unwrap();
    let err = decoder.next_frame().unwrap_err();
    assert!(
        matches!(err, DecodeError::BufferTooSmall { needed, .. } if needed == info.buffer_size),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("at least {} bytes", info.buffer_size))
    );
    drop(decoder);
    assert_eq!(
        pool.counts().free,
        2,
        "the buffer taken for the refused frame went back"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_size_change_mid_stream_is_decoded_into_the_same_pool() {
    // Two MPEG-4 streams of different sizes in MPEG-TS, one file after the other (TS streams
    // concatenate): the decoder meets a new sequence header halfway and re-initialises with
    // the new size; the demuxer warns about the timestamp jump.
    let dir = std::env::temp_dir();
    let small = dir.join(format!("bufpool-{}-small.ts", std::process::id()));
    let large = dir.join(format!("bufpool-{}-large.ts", std::process::id()));
    write_clip(&large, ClipCodec::Mpeg4, WIDTH, HEIGHT, 10).unwrap();
    write_clip(&small, ClipCodec::Mpeg4, WIDTH / 2, HEIGHT / 2, 10).unwrap();
    let both = dir.join(format!("bufpool-{}-both.ts", std::process::id()));
    let mut bytes = std::fs::read(&large).unwrap();
    bytes.extend(std::fs::read(&small).unwrap());
    std::fs::write(&both, bytes).unwrap();
    let pool = pool_for(&large, 8);
    let options = DecoderOptions {
        threads: 1,
        ..DecoderOptions::default()
    };
    let mut decoder = PoolDecoder::open(&both, &pool, options).unwrap();
    let mut sizes = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert!(frame.planes_within(&pool));
        let format = frame.format_in(&pool).unwrap();
        assert_eq!((format.width, format.height), frame.size());
        sizes.push(frame.size());
    }
    assert_eq!(sizes.len(), 20);
    assert_eq!(sizes[0], (WIDTH, HEIGHT));
    assert_eq!(sizes[19], (WIDTH / 2, HEIGHT / 2));
    drop(decoder);
    assert_eq!(pool.counts().free, 8);
    for path in [small, large, both] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn a_decoder_without_direct_rendering_says_so_and_its_frames_are_wrapped() {
    let path = clip("raw.nut", ClipCodec::Raw);
    let info = PoolDecoder::probe(&path).unwrap();
    assert!(!info.direct_rendering, "rawvideo has no direct rendering");
    let pool = BufferPool::create(PoolConfig::new("wrapped").with_capacity(4)).unwrap();
    let options = DecoderOptions {
        threads: 1,
        ..DecoderOptions::default()
    };
    let mut decoder = PoolDecoder::open(&path, &pool, options).unwrap();
    assert!(!decoder.direct_rendering());
    let mut frames = 0;
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert!(
            frame.pool_buffer(&pool).is_none(),
            "not rendered into the pool"
        );
        frame.into_pool(&pool).unwrap();
        let read = pool.acquire_filled(Wait::NoWait).unwrap();
        assert_eq!(read.plane(0).unwrap()[5], pattern(0, 5, 0, frames));
        frames += 1;
    }
    assert_eq!(frames, FRAMES);
    assert_eq!(decoder.counts().allocations(), 0);
    std::fs::remove_file(path).unwrap();
}
