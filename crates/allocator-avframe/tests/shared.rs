//! Decoding into a shared-memory pool in this process while a consumer process checksums the
//! pictures in place: its checksums equal those of a private decode.

// Test set-up drives FFmpeg through sequences of C calls; each block's comment covers its
// sequence.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use allocator_avframe::{ClipCodec, DecodedFrame, DecoderOptions, PoolDecoder, write_clip};
use buffer_core::{BufferPool, PoolConfig, ReceiveError, VideoFormat, Wait};

const WIDTH: u32 = 176;
const HEIGHT: u32 = 144;
const FRAMES: u64 = 20;
const ROLE: &str = "BUFPOOL_AVFRAME_CONSUMER";

/// FNV-1a over the visible samples of each plane (padding excluded).
fn checksum(planes: &[(&[u8], usize, usize, usize)]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &(bytes, stride, width, rows) in planes {
        for row in 0..rows {
            for &byte in &bytes[row * stride..row * stride + width] {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    hash
}

fn visible_width(video: &VideoFormat, plane: usize) -> usize {
    if plane == 0 {
        video.width as usize
    } else {
        (video.width as usize).div_ceil(2)
    }
}

fn frame_checksum(frame: &DecodedFrame) -> u64 {
    let (width, _) = frame.size();
    let planes: Vec<_> = (0..3)
        .map(|plane| {
            let bytes = frame.plane(plane).unwrap();
            let rows = if plane == 0 {
                HEIGHT as usize
            } else {
                (HEIGHT as usize).div_ceil(2)
            };
            let w = if plane == 0 {
                width as usize
            } else {
                (width as usize).div_ceil(2)
            };
            (bytes, bytes.len() / rows, w, rows)
        })
        .collect();
    checksum(&planes)
}

/// The consumer process: receives every picture from port "consumer" and checksums it in place.
#[test]
fn consumer_entry() {
    let Ok(segment) = std::env::var(ROLE) else {
        return;
    };
    let pool = BufferPool::attach(&segment).unwrap();
    let subscription = pool.subscribe(pool.port("consumer").unwrap()).unwrap();
    println!("ready");
    loop {
        let frame = match subscription.receive(Wait::Forever) {
            Ok(frame) => frame,
            Err(ReceiveError::Closed { .. }) => break,
            Err(error) => panic!("{error}"),
        };
        let video = frame.meta().video;
        let bytes = frame.as_slice().unwrap();
        let planes: Vec<_> = video
            .planes()
            .iter()
            .enumerate()
            .map(|(index, plane)| {
                let start = plane.offset as usize;
                let end = plane.end() as usize;
                (
                    &bytes[start..end],
                    plane.stride as usize,
                    visible_width(&video, index),
                    plane.rows as usize,
                )
            })
            .collect();
        println!("frame {} {}", frame.meta().sequence, checksum(&planes));
    }
    println!("done");
}

#[test]
fn a_consumer_process_reads_pictures_decoded_into_shared_memory() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let path = std::env::temp_dir().join(format!("bufpool-shared-{}.mkv", std::process::id()));
    write_clip(&path, ClipCodec::Ffv1, WIDTH, HEIGHT, FRAMES).unwrap();
    let info = PoolDecoder::probe(&path).unwrap();
    let options = DecoderOptions {
        threads: 1,
        ..DecoderOptions::default()
    };

    // The reference: a private decode.
    let private =
        BufferPool::with_heap_buffers(PoolConfig::new("private"), 4, info.buffer_size).unwrap();
    let mut decoder = PoolDecoder::open(&path, &private, options).unwrap();
    let mut expected = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        expected.push(format!(
            "frame {} {}",
            frame.number(),
            frame_checksum(&frame)
        ));
    }
    drop(decoder);

    // The shared decode, read by another process.
    let segment = format!("avframe-test-{}", std::process::id());
    let config = PoolConfig::new("decoded")
        .with_capacity(8)
        .with_ports(["consumer"])
        .with_port_depth(8);
    let pool = BufferPool::create_shared(&segment, config, 8, info.buffer_size).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["consumer_entry", "--exact", "--nocapture", "-q"])
        .env(ROLE, &segment)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "consumer ended early"
        );
    }
    let port = pool.port("consumer").unwrap();
    let mut decoder = PoolDecoder::open(&path, &pool, options).unwrap();
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert!(frame.planes_within(&pool));
        let published = frame.publish(&pool, &[port]).unwrap();
        assert_eq!(published.delivered(), 1);
    }
    drop(decoder);
    pool.close();
    // Read to the end: the child's test harness prints after our lines.
    let lines: Vec<String> = out.lines().map(Result::unwrap).collect();
    assert!(lines.iter().any(|line| line == "done"), "{lines:?}");
    let seen: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with("frame "))
        .collect();
    let expected: Vec<&String> = expected.iter().collect();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        seen, expected,
        "the consumer saw every picture, bit for bit"
    );
    assert_eq!(
        pool.counts().free,
        8,
        "every buffer came back from both processes"
    );
    std::fs::remove_file(path).unwrap();
}
