//! `bufpool demo` end to end: the real binary, small frames, its summary checked.

use std::process::Command;

fn run_demo(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bufpool"))
        .arg("demo")
        .args(args)
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
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{stdout}"))
        .trim()
}

#[test]
fn the_demo_moves_every_frame_without_allocating() {
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
    assert_eq!(
        summary_value(&stdout, "frames:"),
        "120 produced 120, consumed 120"
    );
    assert_eq!(summary_value(&stdout, "frames failing the check:"), "0");
    assert_eq!(summary_value(&stdout, "allocations after warm-up:"), "0");
    assert!(summary_value(&stdout, "bytes copied between stages:").starts_with('0'));
    assert!(summary_value(&stdout, "buffers:").starts_with("4 "));
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let (ok, _, stderr) = run_demo(&["--consumers", "0"]);
    assert!(!ok);
    assert!(stderr.contains("must be at least 1"), "{stderr}");
    let (ok, _, stderr) = run_demo(&["--allocator", "quantum"]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown allocator type 'quantum'"),
        "{stderr}"
    );
}
