//! Helpers for the tests that run several processes: the test binary re-runs itself as the
//! child, with the child's role in an environment variable.

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the role a child process plays.
pub const ROLE: &str = "BUFPOOL_TEST_ROLE";

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Starts this test binary again as a child running only `entry` (a test that dispatches on
/// [`role`]), with `role` and the extra environment `vars`.
pub fn spawn(entry: &str, role: &str, vars: &[(&str, String)]) -> Child {
    spawn_with_stderr(entry, role, vars, Stdio::inherit())
}

/// [`spawn`], with the child's stderr going to `stderr`.
fn spawn_with_stderr(entry: &str, role: &str, vars: &[(&str, String)], stderr: Stdio) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (key, value) in vars {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Reads lines from a child's stdout until one starts with `prefix`; returns the rest.
pub fn read_until(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "child closed its output before printing {prefix:?}");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

/// Waits for `child` to exit, at most `limit`; kills it and fails if it does not.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("child {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A unique segment name for this test process.
pub fn segment_name(test: &str) -> String {
    format!("test-{test}-{}", std::process::id())
}

/// The byte pattern of frame `sequence`: every byte depends on the sequence and its position.
pub fn fill(frame: &mut [u8], sequence: u64) {
    for (i, byte) in frame.iter_mut().enumerate() {
        *byte = (sequence as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
}

/// A checksum of a frame (FNV-1a).
pub fn checksum(frame: &[u8]) -> u64 {
    frame.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A small deterministic random number generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// [`spawn`], with the child's stderr piped too (read it with [`read_all`]), for tests that
/// report what a child printed when it failed.
pub fn spawn_captured(entry: &str, role: &str, vars: &[(&str, String)]) -> Child {
    spawn_with_stderr(entry, role, vars, Stdio::piped())
}

/// The lines a child writes to `out`, read on a thread of their own, so that a test can wait
/// for one with a deadline ([`line_before`]) even if the child hangs.
pub fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The rest of the first line from `lines` that starts with one of `prefixes` (with the
/// prefix), waiting until `deadline`; `None` if the child closed its output or the deadline
/// passed first.
pub fn line_before(
    lines: &std::sync::mpsc::Receiver<String>,
    prefixes: &[&str],
    deadline: Instant,
) -> Option<String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).ok()?;
        if prefixes.iter().any(|prefix| line.starts_with(prefix)) {
            return Some(line);
        }
    }
}

/// Everything a child writes to `out` (its stderr, say), read on a thread of its own; join the
/// handle once the child exited.
pub fn read_all(out: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut out = out;
        let _ = std::io::Read::read_to_end(&mut out, &mut text);
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Waits for `child` to exit until `deadline`: its status, or `None` if it still runs then (the
/// caller decides what to do with it), for tests that count hangs instead of failing on the first.
pub fn exit_before(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What a process that seems stuck is doing: its scheduler state and wait channel from
/// `/proc` (for a report; liveness is never decided from `/proc`), and every thread's backtrace
/// if `gdb` is installed (at most a minute).
pub fn stuck_report(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or("?")
        .to_owned();
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let mut report = format!("state {state} (R: running, S: sleeping), wait channel {wchan:?}");
    let gdb = Command::new("timeout")
        .args(["60", "gdb", "-batch", "-nx", "-p", &pid.to_string()])
        .args(["-ex", "thread apply all bt 12"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(gdb) = gdb {
        for line in String::from_utf8_lossy(&gdb.stdout).lines() {
            if line.starts_with("Thread ") || line.starts_with('#') {
                report.push('\n');
                report.push_str(line);
            }
        }
    }
    report
}
