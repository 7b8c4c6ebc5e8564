//! What the device tests share: finding the devices (or saying why they skip) and asking the
//! VM host what the display shows.
//!
//! A test skips, printing `skipped: REASON`, when this machine lacks what it needs, through
//! [`skip`] and nothing else. With `BUFPOOL_REQUIRE_DISPLAY` set (as the guest of
//! `cargo xtask vm-test` sets it) the same reason is a panic instead, so a test there cannot pass
//! without having run.

#![allow(dead_code)] // each test binary uses part of it

use std::fmt::Display;
use std::io::{BufRead, Write};
use std::path::Path;

/// The DRM card the tests use.
pub const CARD: &str = "/dev/dri/card0";
/// The framebuffer the tests use.
pub const FB: &str = "/dev/fb0";

/// Set where every display device and check must be there (the VM of `cargo xtask vm-test`).
pub const REQUIRE: &str = "BUFPOOL_REQUIRE_DISPLAY";

/// Says why the calling test (or check) skips; panics with that reason instead where
/// [`REQUIRE`] is set.
pub fn skip(reason: impl Display) {
    if std::env::var_os(REQUIRE).is_some() {
        panic!("{REQUIRE} is set, so this may not skip: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Whether `path` exists; [`skip`]s when it does not.
pub fn present(path: &str) -> bool {
    let exists = Path::new(path).exists();
    if !exists {
        skip(format_args!(
            "{path} does not exist on this machine; `cargo xtask vm-test` runs this test against real kernel drivers in a VM"
        ));
    }
    exists
}

/// Asks the VM host to compare the screen with a solid `rgb` picture. `None` outside the VM
/// (where nobody can look at the screen, so the check [`skip`]s); otherwise the host's verdict.
pub fn screen_shows(label: &str, rgb: [u8; 3]) -> Option<Result<(), String>> {
    if std::env::var_os("BUFPOOL_SCREENDUMP").is_none() {
        skip(format_args!(
            "the screen check {label}: only the host of `cargo xtask vm-test` (which sets BUFPOOL_SCREENDUMP) can see the screen"
        ));
        return None;
    }
    let [r, g, b] = rgb;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nBUFPOOL-SCREENDUMP {label} {r:02x}{g:02x}{b:02x}").unwrap();
    out.flush().unwrap();
    drop(out);
    let mut reply = String::new();
    for line in std::io::stdin().lock().lines() {
        reply = line.expect("the VM host answers on the console");
        if let Some(verdict) = reply.trim().strip_prefix("BUFPOOL-VERDICT ") {
            return Some(match verdict {
                "ok" => Ok(()),
                other => Err(other.to_string()),
            });
        }
    }
    panic!("the console closed before the VM host answered (last line: {reply:?})");
}

/// Fills a `width` × `rows` XRGB8888 picture with rows `pitch` bytes apart with one colour.
pub fn fill_xrgb(bytes: &mut [u8], pitch: usize, width: usize, rows: usize, rgb: [u8; 3]) {
    let [r, g, b] = rgb;
    for row in bytes.chunks_mut(pitch).take(rows) {
        for pixel in row[..width * 4].chunks_exact_mut(4) {
            pixel.copy_from_slice(&[b, g, r, 0]);
        }
    }
}
