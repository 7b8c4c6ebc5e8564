//! The pipeline example (tokio read → rayon parse → rayon process) against a sequential
//! reading of the same file, and on malformed input.

// The example's `main` is not called here.
#[allow(dead_code)]
#[path = "../examples/pipeline.rs"]
mod pipeline;

use std::path::PathBuf;

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("{name}-{}.y4m", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The checksum and luma sum computed plainly, frame by frame, from the file's bytes.
fn sequential(bytes: &[u8], (w, h): (usize, usize)) -> (u64, u64, u64) {
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let picture = w * h + 2 * w.div_ceil(2) * h.div_ceil(2);
    let (mut frames, mut checksum, mut luma) = (0, 0u64, 0u64);
    for record in bytes[header_end..].chunks_exact(6 + picture) {
        assert_eq!(&record[..6], b"FRAME\n");
        let data = &record[6..];
        luma += data[..w * h].iter().map(|&v| u64::from(v)).sum::<u64>();
        let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
        checksum = checksum.wrapping_add(hash);
        frames += 1;
    }
    (frames, checksum, luma)
}

#[test]
fn the_pipeline_agrees_with_a_sequential_reading() {
    let file = TempFile::new("pipeline-test");
    // Odd sizes: chroma planes round up.
    let size = (161, 91);
    pipeline::write_test_clip(&file.0, size, 100).unwrap();
    let report = pipeline::run(&file.0).unwrap();

    let (frames, checksum, luma) = sequential(&std::fs::read(&file.0).unwrap(), size);
    assert_eq!(report.frames, frames);
    assert_eq!(report.frames, 100);
    assert_eq!(report.size, (161, 91));
    assert_eq!(report.checksum, checksum);
    let mean = luma as f64 / (frames * 161 * 91) as f64;
    assert!(
        (report.mean_luma - mean).abs() < 1e-9,
        "{} vs {mean}",
        report.mean_luma
    );
    assert!(report.releasing_threads >= 1);
    // The pool's 8 buffers, each one frame record, are all the pipeline ever allocated.
    let record = 6 + 161 * 91 + 2 * 81 * 46;
    assert_eq!(report.peak_bytes, 8 * record as u64);
}

#[test]
fn malformed_files_give_clear_errors() {
    let file = TempFile::new("pipeline-bad");
    std::fs::write(&file.0, b"P6 640 480 255\n").unwrap();
    let err = pipeline::run(&file.0).unwrap_err().to_string();
    assert!(err.contains("not a YUV4MPEG2 file"), "{err}");

    std::fs::write(&file.0, b"YUV4MPEG2 W4 H4 C444\n").unwrap();
    let err = pipeline::run(&file.0).unwrap_err().to_string();
    assert!(err.contains("only 4:2:0"), "{err}");

    let mut clip = b"YUV4MPEG2 W4 H2 C420jpeg\n".to_vec();
    clip.extend_from_slice(b"FRAME\n");
    clip.extend_from_slice(&[1; 12]);
    clip.extend_from_slice(b"FRAME Ixyz\n");
    clip.extend_from_slice(&[1; 12]);
    std::fs::write(&file.0, &clip).unwrap();
    let err = pipeline::run(&file.0).unwrap_err().to_string();
    assert!(err.contains("frame 1: no 'FRAME' marker"), "{err}");

    let missing = std::env::temp_dir().join("no-such-clip.y4m");
    let err = pipeline::run(&missing).unwrap_err().to_string();
    assert!(err.contains("cannot open"), "{err}");
}
