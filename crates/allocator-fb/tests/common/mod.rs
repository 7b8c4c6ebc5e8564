//! What the device tests share: finding the devices (or saying why they skip) and asking the
//! VM host what the display shows.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, Write};
use std::path::Path;

/// The DRM card the tests use.
pub const CARD: &str = "/dev/dri/card0";
/// The framebuffer the tests use.
pub const FB: &str = "/dev/fb0";

/// Whether `path` exists; prints why the test skips when it does not.
pub fn present(path: &str) -> bool {
    let exists = Path::new(path).exists();
    if !exists {
        eprintln!(
            "skipped: {path} does not exist on this machine; `cargo xtask vm-test` runs this test against real kernel drivers in a VM"
        );
    }
    exists
}

/// Asks the VM host to compare the screen with a solid `rgb` picture. `None` outside the VM
/// (where nobody can look at the screen); otherwise the host's verdict.
pub fn screen_shows(label: &str, rgb: [u8; 3]) -> Option<Result<(), String>> {
    std::env::var_os("BUFPOOL_SCREENDUMP")?;
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
