//! `bufpool demo` end to end: the real binary, small frames, its summary checked.

use std::process::Command;

fn run_demo(args: &[&str]) -> (bool, String, String) {
    // Built with `avframe`, the demo decodes a clip unless told to draw its pattern.
    let pattern: &[&str] = if cfg!(feature = "avframe") && !args.contains(&"--decode") {
        &["--pattern"]
    } else {
        &[]
    };
    let args: Vec<&str> = args
        .iter()
        .copied()
        .filter(|&arg| arg != "--decode")
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_bufpool"))
        .arg("demo")
        .args(pattern)
        .args(&args)
        .output()
        .expect("the bufpool binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn summary_value<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{stdout}"))
        .trim()
}

#[test]
fn the_demo_moves_every_frame_between_processes_and_survives_a_kill() {
    let (ok, stdout, stderr) = run_demo(&[
        "--frames",
        "120",
        "--width",
        "320",
        "--height",
        "240",
        "--buffers",
        "4",
        "--consumers",
        "3",
    ]);
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    assert_eq!(summary_value(&stdout, "frames:"), "120 produced");
    assert!(
        stdout.contains("killed consumer of port consumer-0"),
        "{stdout}"
    );
    assert!(summary_value(&stdout, "consumer-0").starts_with("killed partway"));
    for survivor in ["consumer-1", "consumer-2"] {
        assert!(
            summary_value(&stdout, survivor).starts_with("received 120, failing the check 0"),
            "{stdout}"
        );
    }
    assert_eq!(
        summary_value(&stdout, "allocations after warm-up:"),
        "0 (producer)"
    );
    assert!(summary_value(&stdout, "bytes copied between processes:").starts_with('0'));
    assert!(summary_value(&stdout, "buffers:").starts_with("4 "));
    assert_eq!(
        summary_value(&stdout, "pool at the end:"),
        "4 buffers: 4 free, 0 filled, 0 in use"
    );
}

#[test]
fn without_a_kill_every_consumer_gets_every_frame() {
    let (ok, stdout, stderr) = run_demo(&[
        "--frames",
        "60",
        "--width",
        "64",
        "--height",
        "64",
        "--consumers",
        "2",
        "--no-kill",
    ]);
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    for consumer in ["consumer-0", "consumer-1"] {
        assert!(summary_value(&stdout, consumer).starts_with("received 60, failing the check 0"));
    }
    assert!(
        summary_value(&stdout, "buffers reclaimed:")
            .starts_with("0 (from the killed consumer: none killed)")
    );
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let (ok, _, stderr) = run_demo(&["--consumers", "0"]);
    assert!(!ok);
    assert!(stderr.contains("must be at least 1"), "{stderr}");
    let (ok, _, stderr) = run_demo(&["--consumers", "17"]);
    assert!(!ok);
    assert!(stderr.contains("at most 16"), "{stderr}");
}

#[test]
fn display_shows_frames_or_says_why_it_cannot() {
    let devices = ["/dev/dri/card0", "/dev/fb0"];
    let (ok, stdout, stderr) = run_demo(&[
        "--display",
        "--frames",
        "24",
        "--consumers",
        "1",
        "--width",
        "320",
        "--height",
        "180",
        "--no-kill",
    ]);
    if devices.iter().any(|d| std::path::Path::new(d).exists()) {
        assert!(ok, "{stdout}\n{stderr}");
        assert!(stdout.contains("showing every frame on"), "{stdout}");
        assert!(
            summary_value(&stdout, "displayed").ends_with("frames"),
            "{stdout}"
        );
    } else {
        assert!(!ok, "{stdout}");
        assert!(
            stderr.contains("--display found no usable display device"),
            "{stderr}"
        );
        assert!(
            stderr.contains("/dev/fb0: no framebuffer device at /dev/fb0"),
            "{stderr}"
        );
    }
}

#[cfg(feature = "avframe")]
#[test]
fn the_demo_decodes_a_clip_into_shared_memory_for_every_consumer() {
    let (ok, stdout, stderr) = run_demo(&[
        "--decode",
        "--frames",
        "24",
        "--consumers",
        "2",
        "--no-kill",
    ]);
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("decoded by FFmpeg"), "{stdout}");
    assert_eq!(summary_value(&stdout, "frames:"), "24 produced");
    for consumer in ["consumer-0", "consumer-1"] {
        assert!(
            summary_value(&stdout, consumer).starts_with("received 24, failing the check 0"),
            "{stdout}"
        );
    }
    assert!(summary_value(&stdout, "bytes copied between processes:").starts_with('0'));
    assert_eq!(
        summary_value(&stdout, "pool at the end:"),
        "8 buffers: 8 free, 0 filled, 0 in use"
    );
}
