//! `cargo xtask vm-test`: runs the display backend's tests against real kernel drivers in a VM.
//!
//! Neither the build machines nor the GPU machines have `/dev/fb0` or `/dev/dri`, but a Debian
//! kernel boots under QEMU's software emulation in seconds. This downloads the kernel package
//! once (cached under `target/vm`), builds an initramfs holding static busybox, the DRM modules
//! (bochs for a display with fbdev emulation over-allocated to two pages, vgem for PRIME) and the
//! statically linked test binaries, boots it, and turns what the guest prints into pass or fail.
//! When a guest test asks what the screen shows, QEMU's monitor takes a `screendump` and the
//! host compares it with the colour the test drew, then answers on the guest's console.

mod cpio;
mod screen;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use screen::{Screen, parse_rgb};

/// The target the guest's test binaries are built for: static, so the initramfs needs no libc.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Where the kernel, the initramfs and the screendumps are kept between runs.
const CACHE: &str = "target/vm";

/// Modules to load, in dependency order, with their parameters.
const MODULES: &[(&str, &str)] = &[
    ("drm", ""),
    ("drm_kms_helper", "drm_fbdev_overalloc=200"),
    ("ttm", ""),
    ("drm_ttm_helper", ""),
    ("drm_vram_helper", ""),
    ("bochs", ""),
    ("drm_shmem_helper", ""),
    ("vgem", ""),
];

/// The longest a whole VM run may take (boot, every test, power-off) under emulation.
const RUN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The kernel package family: Debian 12's 6.1 kernels.
const KERNEL_PACKAGE_PREFIX: &str = "linux-image-6.1.0-";
const KERNEL_PACKAGE_SUFFIX: &str = "-amd64";

/// An unpacked kernel: its image and its modules.
struct Kernel {
    image: PathBuf,
    modules: PathBuf,
}

/// Boots the VM with the test binaries `tests` and the `bufpool` CLI, and checks every result.
pub fn run(tests: &[PathBuf], bufpool: &Path) -> Result<(), String> {
    if tests.is_empty() {
        return Err("no test binaries were built for the VM".into());
    }
    let cache = Path::new(CACHE);
    std::fs::create_dir_all(cache).map_err(|e| format!("cannot create {CACHE}: {e}"))?;
    let kernel = ensure_kernel(cache)?;
    let initramfs = cache.join("initramfs.cpio");
    write_initramfs(&kernel, tests, bufpool, &initramfs)?;
    boot(&kernel, &initramfs, cache)
}

/// The newest `linux-image-6.1.0-N-amd64` apt knows of, unpacked under `cache/kernel`
/// (downloaded and unpacked once).
fn ensure_kernel(cache: &Path) -> Result<Kernel, String> {
    let root = cache.join("kernel");
    if let Some(kernel) = find_kernel(&root) {
        return Ok(kernel);
    }
    let package = newest_kernel_package()?;
    println!(
        "==> downloading {package} (once; cached in {})",
        root.display()
    );
    let download = cache.join("download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).map_err(|e| format!("cannot create {download:?}: {e}"))?;
    let fetched = Command::new("apt-get")
        .args(["download", &package])
        .current_dir(&download)
        .status()
        .is_ok_and(|s| s.success());
    if !fetched {
        return Err(format!(
            "`apt-get download {package}` failed: check the network and apt sources"
        ));
    }
    let deb = std::fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let unpacking = cache.join("kernel.partial");
    let _ = std::fs::remove_dir_all(&unpacking);
    let unpacked = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacking)
        .status()
        .is_ok_and(|s| s.success());
    if !unpacked {
        return Err(format!("`dpkg -x {}` failed", deb.display()));
    }
    std::fs::rename(&unpacking, &root)
        .map_err(|e| format!("cannot move the kernel into place: {e}"))?;
    let _ = std::fs::remove_dir_all(&download);
    find_kernel(&root).ok_or_else(|| format!("{package} holds no vmlinuz or no modules"))
}

/// The kernel unpacked at `root`, if it is complete.
fn find_kernel(root: &Path) -> Option<Kernel> {
    let image = std::fs::read_dir(root.join("boot"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })?;
    let modules = std::fs::read_dir(root.join("lib/modules"))
        .ok()?
        .flatten()
        .next()?
        .path();
    Some(Kernel { image, modules })
}

/// The name of the newest 6.1 kernel package apt can download (updating apt's lists first when
/// it knows none and we are root).
fn newest_kernel_package() -> Result<String, String> {
    let search = || -> Option<String> {
        let out = Command::new("apt-cache")
            .args([
                "search",
                "--names-only",
                "^linux-image-6\\.1\\.0-[0-9]+-amd64$",
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter_map(|name| {
                let abi = name
                    .strip_prefix(KERNEL_PACKAGE_PREFIX)?
                    .strip_suffix(KERNEL_PACKAGE_SUFFIX)?;
                Some((abi.parse::<u32>().ok()?, name.to_owned()))
            })
            .max()
            .map(|(_, name)| name)
    };
    if let Some(name) = search() {
        return Ok(name);
    }
    if crate::is_root() {
        let _ = Command::new("apt-get").arg("update").status();
        if let Some(name) = search() {
            return Ok(name);
        }
    }
    Err(format!(
        "apt knows no {KERNEL_PACKAGE_PREFIX}N{KERNEL_PACKAGE_SUFFIX} package: run `apt-get update` on a Debian 12 machine"
    ))
}

/// Finds `name.ko` under the kernel's modules.
fn module_path(kernel: &Kernel, name: &str) -> Result<PathBuf, String> {
    fn walk(dir: &Path, file: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(found) = walk(&path, file) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|n| n == file) {
                return Some(path);
            }
        }
        None
    }
    walk(&kernel.modules.join("kernel"), &format!("{name}.ko")).ok_or_else(|| {
        format!(
            "the kernel has no module {name}.ko under {}",
            kernel.modules.display()
        )
    })
}

/// The demo run on the VM's display: small frames, one consumer; it must show frames.
const DEMO: &str =
    "bufpool demo --display --frames 24 --width 320 --height 180 --consumers 1 --no-kill";

/// The guest's `/init`: mount, load the modules, run every test binary and the demo, power off.
fn init_script(tests: &[String]) -> String {
    let mut script = String::from(
        "#!/bin/sh\nexport PATH=/bin\nbusybox mount -t devtmpfs dev /dev\nbusybox mount -t proc proc /proc\nbusybox mount -t sysfs sys /sys\nbusybox mkdir -p /dev/shm\nbusybox mount -t tmpfs shm /dev/shm\n",
    );
    for (module, params) in MODULES {
        script.push_str(&format!(
            "busybox insmod /mods/{module}.ko {params} || echo 'BUFPOOL-RESULT insmod-{module} 1'\n"
        ));
    }
    // Every device is there, so a test that would skip for want of one fails instead.
    script.push_str("export BUFPOOL_SCREENDUMP=1 BUFPOOL_REQUIRE_DISPLAY=1 TMPDIR=/tmp RUST_BACKTRACE=1 PROPTEST_DISABLE_FAILURE_PERSISTENCE=1\ncd /tmp\n");
    for test in tests {
        script.push_str(&format!(
            "/tests/{test} --test-threads=1 --nocapture; echo \"BUFPOOL-RESULT {test} $?\"\n"
        ));
    }
    script.push_str(&format!(
        "{DEMO} > /tmp/demo.log 2>&1; status=$?; busybox cat /tmp/demo.log\n\
         [ $status = 0 ] && busybox grep -q '^displayed [1-9]' /tmp/demo.log; echo \"BUFPOOL-RESULT demo-display $?\"\n"
    ));
    script.push_str("echo BUFPOOL-VM-DONE\nbusybox poweroff -f\n");
    script
}

/// Writes the initramfs: busybox, the modules, the tests, `/init`.
fn write_initramfs(
    kernel: &Kernel,
    tests: &[PathBuf],
    bufpool: &Path,
    out: &Path,
) -> Result<(), String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut archive = cpio::Archive::default();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "mods", "tests"] {
        archive.dir(dir);
    }
    archive.file("bin/busybox", &read(Path::new("/bin/busybox"))?);
    archive.symlink("bin/sh", "busybox");
    archive.file("bin/bufpool", &read(bufpool)?);
    for (module, _) in MODULES {
        archive.file(
            &format!("mods/{module}.ko"),
            &read(&module_path(kernel, module)?)?,
        );
    }
    let mut names = Vec::new();
    for test in tests {
        // Cargo names test binaries `<target>-<hash>`.
        let file = test
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("bad test path")?;
        let name = file
            .rsplit_once('-')
            .map_or(file, |(name, _)| name)
            .to_owned();
        archive.file(&format!("tests/{name}"), &read(test)?);
        names.push(name);
    }
    archive.file("init", init_script(&names).as_bytes());
    let mut file =
        std::fs::File::create(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    archive
        .write_to(&mut file)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// What the guest reported.
#[derive(Default)]
struct Outcome {
    results: Vec<(String, i32)>,
    screens: Vec<(String, Result<(), String>)>,
    done: bool,
}

impl Outcome {
    fn verdict(&self) -> Result<(), String> {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter(|(_, code)| *code != 0)
            .map(|(name, code)| format!("{name} (exit {code})"))
            .chain(self.screens.iter().filter_map(|(label, r)| {
                r.as_ref().err().map(|why| format!("screen {label}: {why}"))
            }))
            .collect();
        if !failed.is_empty() {
            return Err(format!("failed in the VM: {}", failed.join("; ")));
        }
        if !self.done || self.results.is_empty() {
            return Err("the VM stopped before every test ran: its console output is above".into());
        }
        Ok(())
    }
}

/// Boots the VM, serves its screendump requests, and collects its results.
fn boot(kernel: &Kernel, initramfs: &Path, cache: &Path) -> Result<(), String> {
    let monitor_path = cache.join("monitor.sock");
    let _ = std::fs::remove_file(&monitor_path);
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-m", "1024", "-vga", "std", "-display", "none",
        ])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-monitor")
        .arg(format!(
            "unix:{},server=on,wait=off",
            monitor_path.display()
        ))
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 fbcon=map:1 quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e} (install qemu-system-x86)"))?;
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = kill_after(qemu.id(), RUN_TIMEOUT, Arc::clone(&finished));
    let outcome = serve(&mut qemu, &monitor_path, cache);
    finished.store(true, Ordering::Release);
    let status = qemu.wait().map_err(|e| e.to_string())?;
    drop(watchdog);
    let outcome = outcome?;
    println!(
        "==> VM: {} test binaries ran, {} screens checked (qemu {status})",
        outcome.results.len(),
        outcome.screens.len()
    );
    outcome.verdict()
}

/// Kills process `pid` after `timeout` unless `finished` is set by then.
fn kill_after(
    pid: u32,
    timeout: Duration,
    finished: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if finished.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("==> VM: still running after {timeout:?}; killing it");
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    })
}

/// Reads the guest's console until it ends, echoing it, answering screendump requests.
fn serve(qemu: &mut Child, monitor_path: &Path, cache: &Path) -> Result<Outcome, String> {
    let console = BufReader::new(qemu.stdout.take().ok_or("no console")?);
    let mut input = qemu.stdin.take().ok_or("no console input")?;
    let mut monitor = None;
    let mut outcome = Outcome::default();
    for line in console.split(b'\n') {
        let line = line.map_err(|e| format!("reading the VM console: {e}"))?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        println!("vm | {line}");
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("BUFPOOL-SCREENDUMP"), Some(label), Some(hex)) => {
                let monitor = match &mut monitor {
                    Some(monitor) => monitor,
                    None => monitor.insert(Monitor::connect(monitor_path)?),
                };
                let verdict = check_screen(monitor, cache, label, hex);
                println!(
                    "==> VM: screen {label}: {}",
                    verdict
                        .as_ref()
                        .map_or_else(|e| e.clone(), |()| "as drawn".into())
                );
                answer(&mut input, &verdict)?;
                outcome.screens.push((label.to_owned(), verdict));
            }
            (Some("BUFPOOL-RESULT"), Some(name), Some(code)) => {
                outcome
                    .results
                    .push((name.to_owned(), code.parse().unwrap_or(-1)));
            }
            (Some("BUFPOOL-VM-DONE"), None, None) => outcome.done = true,
            _ => {}
        }
    }
    Ok(outcome)
}

/// Tells the waiting guest test what the host saw.
fn answer(input: &mut ChildStdin, verdict: &Result<(), String>) -> Result<(), String> {
    let reply = match verdict {
        Ok(()) => "ok".to_owned(),
        Err(why) => why.replace('\n', " "),
    };
    writeln!(input, "BUFPOOL-VERDICT {reply}")
        .and_then(|()| input.flush())
        .map_err(|e| format!("cannot answer the guest: {e}"))
}

/// Dumps the screen and compares it with a solid colour.
fn check_screen(monitor: &mut Monitor, cache: &Path, label: &str, hex: &str) -> Result<(), String> {
    let expected = parse_rgb(hex).ok_or_else(|| format!("the guest asked for colour {hex:?}"))?;
    let path = std::path::absolute(cache.join(format!("screen-{label}.ppm")))
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    monitor.command(&format!("screendump {}", path.display()))?;
    let bytes = std::fs::read(&path).map_err(|e| format!("screendump wrote nothing: {e}"))?;
    Screen::from_ppm(&bytes)?.check_solid(expected)
}

/// QEMU's human monitor, over its unix socket.
struct Monitor {
    stream: UnixStream,
}

const PROMPT: &str = "(qemu) ";

impl Monitor {
    fn connect(path: &Path) -> Result<Monitor, String> {
        let stream = UnixStream::connect(path)
            .map_err(|e| format!("cannot reach the QEMU monitor at {}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut monitor = Monitor { stream };
        monitor.until_prompt()?;
        Ok(monitor)
    }

    /// Runs one command and waits for the prompt that follows it.
    fn command(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.stream, "{command}").map_err(|e| format!("monitor: {e}"))?;
        self.until_prompt()
    }

    fn until_prompt(&mut self) -> Result<String, String> {
        let mut text = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&text).ends_with(PROMPT) {
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| format!("monitor: {e}"))?;
            if n == 0 {
                return Err("the QEMU monitor closed".into());
            }
            text.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_script_loads_modules_in_order_and_reports_every_test() {
        let script = init_script(&["dumb".into(), "fbdev".into()]);
        let drm = script.find("insmod /mods/drm.ko").unwrap();
        let bochs = script.find("insmod /mods/bochs.ko").unwrap();
        assert!(drm < bochs);
        assert!(script.contains("drm_kms_helper.ko drm_fbdev_overalloc=200"));
        assert!(script.contains(
            "/tests/fbdev --test-threads=1 --nocapture; echo \"BUFPOOL-RESULT fbdev $?\""
        ));
        assert!(script.ends_with("busybox poweroff -f\n"));
    }

    #[test]
    fn the_init_script_makes_the_tests_fail_instead_of_skipping() {
        let script = init_script(&["dumb".into()]);
        let export = script
            .lines()
            .position(|line| {
                line.starts_with("export ")
                    && line
                        .split_whitespace()
                        .any(|w| w == "BUFPOOL_REQUIRE_DISPLAY=1")
            })
            .expect("the init script exports BUFPOOL_REQUIRE_DISPLAY=1");
        let first_test = script
            .lines()
            .position(|line| line.starts_with("/tests/"))
            .unwrap();
        assert!(export < first_test, "exported before the tests run");
    }

    #[test]
    fn a_run_passes_only_when_everything_ran_and_passed() {
        let mut outcome = Outcome::default();
        assert!(outcome.verdict().is_err(), "nothing ran");
        outcome.results.push(("dumb".into(), 0));
        assert!(outcome.verdict().is_err(), "not done");
        outcome.done = true;
        assert!(outcome.verdict().is_ok());
        outcome
            .screens
            .push(("red".into(), Err("1 of 4 pixels differ".into())));
        assert!(outcome.verdict().unwrap_err().contains("screen red"));
        outcome.screens.clear();
        outcome.results.push(("fbdev".into(), 101));
        assert!(outcome.verdict().unwrap_err().contains("fbdev (exit 101)"));
    }
}
