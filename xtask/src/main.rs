//! Project automation. `cargo xtask ci` runs every check CI runs, in order, and stops at the
//! first failure with a line saying what to fix. `cargo xtask stress` runs the multi-process
//! torture tests at full length (10,000 kills, 2,000 corrupt segments; `ci` runs 2,000 and
//! 600). `cargo xtask vm-test` runs the display backend's tests against real kernel drivers in a
//! QEMU VM (also part of `ci`). `cargo xtask layers` checks that each module of buffer-core
//! imports only from its own layer or those below it (also part of `ci`, right after formatting).

mod gpu;
mod layers;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// One check: what it is, the cargo arguments (none for a check run here), extra environment,
/// and what to do when it fails.
struct Step {
    title: String,
    args: Vec<&'static str>,
    env: &'static [(&'static str, &'static str)],
    fix: &'static str,
    /// What runs the test binaries the cargo command built, if it only builds them
    /// (`--no-run --message-format=json`).
    then: Then,
}

/// Where built test binaries run, or what checks instead of cargo.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Nothing: the cargo command is the whole step.
    Done,
    /// Under valgrind's memcheck, one by one.
    Valgrind,
    /// In a VM with real display drivers ([`vm`]).
    Vm,
    /// No cargo command: [`layers::run`] reads buffer-core's sources here.
    Layers,
    /// The cargo command with every Rust file git tracks appended after `--` (rustfmt then
    /// checks files no `mod` item reaches too, such as modules declared inside a macro).
    EveryRustFile,
}

/// Clippy runs on each feature set a user can build: the default members (which include the
/// display backend, through `bufpool`) and everything (the FFmpeg backend, `bytes`).
const CLIPPY_FEATURE_SETS: &[&[&str]] = &[
    &["--workspace", "--all-targets"],
    &["--workspace", "--all-targets", "--all-features"],
];

/// Where `cargo package` builds the crates it verifies.
const PACKAGE_TARGET_DIR: &str = "target/package-verify";

/// Every check, in the order CI runs them: cheapest first.
fn plan() -> Vec<Step> {
    let mut steps = vec![
        Step {
            title: "formatting".into(),
            args: vec!["fmt", "--all", "--check"],
            env: &[],
            fix: "run `cargo fmt --all -- $(git ls-files '*.rs')` and commit the result",
            then: Then::EveryRustFile,
        },
        layers_step(),
    ];
    for set in CLIPPY_FEATURE_SETS {
        let mut args = vec!["clippy", "--locked"];
        args.extend_from_slice(set);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        steps.push(Step {
            title: format!("clippy {}", set.join(" ")),
            args,
            env: &[],
            fix: "fix the lints above (clippy runs with -D warnings)",
            then: Then::Done,
        });
    }
    steps.extend([
        Step {
            title: "tests (unit, integration, property, conformance) and doc tests".into(),
            args: vec!["test", "--workspace", "--all-features", "--locked"],
            env: &[],
            fix: "fix the failing tests above (rerun one with `cargo test -p CRATE --test NAME`)",
            then: Then::Done,
        },
        Step {
            title: "loom model check of the queue and the wake-up protocol".into(),
            args: vec!["test", "-p", "buffer-core", "--release", "--lib", "--locked", "loom"],
            env: &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", "target/loom")],
            fix: "an interleaving broke an invariant of the queue or the wake-up protocol: loom printed the failing schedule above",
            then: Then::Done,
        },
        Step {
            title: "valgrind over the FFmpeg backend's tests: no leak, no invalid access".into(),
            args: vec![
                "test",
                "-p",
                "allocator-avframe",
                "--locked",
                "--no-run",
                "--message-format=json",
            ],
            // rustix's own vDSO parser crashes under valgrind (rustix issue #1559); its libc
            // backend calls glibc, which valgrind understands. A build directory of its own
            // keeps that from rebuilding the main one.
            env: &[
                ("RUSTFLAGS", "--cfg rustix_use_libc"),
                ("CARGO_TARGET_DIR", "target/valgrind"),
            ],
            fix: "valgrind found a leak or an invalid access in the FFmpeg backend: its report is above",
            then: Then::Valgrind,
        },
    ]);
    // About 20 s and 60 s on two cores, plus the release build.
    steps.extend(torture_steps(
        &[("BUFPOOL_KILL_ROUNDS", "2000")],
        &[("BUFPOOL_CORRUPT_CASES", "600")],
    ));
    steps.extend([
        vm_step(),
        Step {
            title: "documentation".into(),
            args: vec!["doc", "--workspace", "--no-deps", "--all-features", "--locked"],
            env: &[("RUSTDOCFLAGS", "-D warnings")],
            fix: "fix the rustdoc warnings above (broken links, missing docs)",
            then: Then::Done,
        },
        Step {
            title: "packaging of every publishable crate".into(),
            args: vec!["package", "--workspace", "--exclude", "xtask", "--locked", "--allow-dirty"],
            // Verification builds of their own, cleared before each run (`forget_packaged_sources`).
            env: &[("CARGO_TARGET_DIR", PACKAGE_TARGET_DIR)],
            fix: "make each crate package on its own: path dependencies need a version, files must lie inside the crate",
            then: Then::Done,
        },
    ]);
    steps
}

/// buffer-core's modules import only from their own layer or below ([`layers`]); no cargo.
fn layers_step() -> Step {
    Step {
        title: "layering of buffer-core: each module imports only from its own layer or below"
            .into(),
        args: vec![],
        env: &[],
        fix: layers::FIX,
        then: Then::Layers,
    }
}

/// The display backend's tests, built static for the VM and run there against real drivers.
fn vm_step() -> Step {
    Step {
        title: "display backend against real kernel drivers in a VM (bochs-drm, vgem, fbdev)"
            .into(),
        args: vec![
            "test",
            "-p",
            "allocator-fb",
            "--target",
            vm::MUSL_TARGET,
            "--locked",
            "--no-run",
            "--message-format=json",
        ],
        env: &[],
        fix: "a display test failed in the VM (or the VM did not boot): the guest's console is above, lines prefixed `vm | `",
        then: Then::Vm,
    }
}

/// The torture tests in release builds (where races are tightest), `kills` SIGKILLs and
/// `cases` corrupt segments long (each the value of its environment variable): `ci` runs them
/// at a length that fits its time budget, `stress` at full length.
fn torture_steps(
    kills: &'static [(&'static str, &'static str)],
    cases: &'static [(&'static str, &'static str)],
) -> Vec<Step> {
    let release_test = |test| {
        vec![
            "test",
            "-p",
            "buffer-core",
            "--release",
            "--locked",
            "--test",
            test,
        ]
    };
    vec![
        Step {
            title: format!(
                "kill torture in release, {} SIGKILLs of workers among live peers",
                kills[0].1
            ),
            args: release_test("kill_torture"),
            env: kills,
            fix: "a buffer was lost, shared by two owners or corrupted, or the pool hung, while workers were killed among live peers: the panic above gives the seed, the pool's buffers, processes and ports, and each worker's counters",
            then: Then::Done,
        },
        Step {
            title: format!(
                "corrupt segments in release, {} cases (half corrupted before attaching, half while attached)",
                cases[0].1
            ),
            args: release_test("segments"),
            env: cases,
            fix: "a corrupt segment made a process panic, crash, hang or hold one buffer twice: each failing case is printed above with its writes; rerun one with BUFPOOL_CORRUPT_REPLAY=KIND:SEED",
            then: Then::Done,
        },
    ]
}

/// The torture tests at full length: about 90 s for the kills on two cores (2,000 take 17 s),
/// about 3 minutes for the corrupt segments, plus the release build.
fn stress_plan() -> Vec<Step> {
    torture_steps(
        &[("BUFPOOL_KILL_ROUNDS", "10000")],
        &[("BUFPOOL_CORRUPT_CASES", "2000")],
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => run("ci", plan()),
        Some("stress") => run("stress", stress_plan()),
        Some("vm-test") => run("vm-test", vec![vm_step()]),
        // Alone it needs none of the tools `run` installs.
        Some("layers") => {
            if layers::run(&workspace_root()) {
                println!("xtask layers: every module imports only from its own layer or below");
                ExitCode::SUCCESS
            } else {
                eprintln!("\nxtask layers: {}", layers::FIX);
                ExitCode::FAILURE
            }
        }
        Some("gpu-bundle") => match gpu::bundle() {
            Ok(files) => {
                println!(
                    "xtask gpu-bundle: {} binaries and run.sh in device-bin/; on a GPU machine run `sh device-bin/run.sh`",
                    files.len()
                );
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("xtask gpu-bundle: {message}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask ci|stress|vm-test|layers|gpu-bundle\n\n  ci        formatting, layering, clippy on every feature set, tests, doc tests, loom, VM tests, docs, packaging\n  stress    the multi-process torture tests at full length\n  vm-test   the display backend's tests against real kernel drivers in a QEMU VM\n  layers    each module of buffer-core imports only from its own layer or below\n  gpu-bundle  the CUDA backend's test and bench binaries in device-bin/, for a GPU machine"
            );
            ExitCode::from(2)
        }
    }
}

/// Runs `steps` from the workspace root, stopping at the first failure.
fn run(name: &str, steps: Vec<Step>) -> ExitCode {
    let started = Instant::now();
    // Every step runs from the workspace root, wherever it was started.
    let root = workspace_root();
    if let Err(error) = std::env::set_current_dir(&root) {
        eprintln!(
            "xtask {name}: cannot enter the workspace root {}: {error}",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    if let Err(message) = ensure_rust_components()
        .and_then(|()| ensure_musl_target())
        .and_then(|()| ensure_system_packages())
    {
        eprintln!("xtask {name}: {message}");
        return ExitCode::FAILURE;
    }
    for step in steps {
        if step.args.first() == Some(&"package")
            && let Err(message) = forget_packaged_sources()
        {
            eprintln!("xtask {name}: {message}");
            return ExitCode::FAILURE;
        }
        if step.args.is_empty() {
            println!("\n==> {}", step.title);
        } else {
            let files = if step.then == Then::EveryRustFile {
                " -- <every .rs file git tracks>"
            } else {
                ""
            };
            println!("\n==> {}: cargo {}{files}", step.title, step.args.join(" "));
        }
        let step_started = Instant::now();
        let outcome = match step.then {
            Then::Done => Command::new(cargo())
                .args(&step.args)
                .envs(step.env.iter().copied())
                .status(),
            Then::Valgrind => run_under_valgrind(&step),
            Then::Vm => run_in_vm(&step),
            Then::EveryRustFile => tracked_rust_files().and_then(|files| {
                Command::new(cargo())
                    .args(&step.args)
                    .arg("--")
                    .args(files)
                    .envs(step.env.iter().copied())
                    .status()
            }),
            Then::Layers => {
                let code = if layers::run(Path::new(".")) { 0 } else { 1 };
                Ok(std::os::unix::process::ExitStatusExt::from_raw(code << 8))
            }
        };
        match outcome {
            Ok(status) if status.success() => {
                println!("==> {}: ok ({:.0?})", step.title, step_started.elapsed());
            }
            Ok(status) => {
                eprintln!(
                    "\nxtask {name}: {} failed ({status}): {}",
                    step.title, step.fix
                );
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!(
                    "\nxtask {name}: could not run cargo for {}: {error}",
                    step.title
                );
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "\nxtask {name}: all checks passed in {:.0?}",
        started.elapsed()
    );
    ExitCode::SUCCESS
}

/// The workspace root: the parent of this crate.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the test binaries `step` names: their paths, or the failed build's status.
fn build_tests(step: &Step) -> std::io::Result<Result<Vec<PathBuf>, std::process::ExitStatus>> {
    build_executables(&step.args, step.env, true)
}

/// Runs the cargo build command `args` (with `--message-format=json`) and returns the
/// executables it built (only test binaries when `tests`), or the failed build's status.
fn build_executables(
    args: &[&str],
    env: &[(&str, &str)],
    tests: bool,
) -> std::io::Result<Result<Vec<PathBuf>, std::process::ExitStatus>> {
    let built = Command::new(cargo())
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !built.status.success() {
        return Ok(Err(built.status));
    }
    // One JSON message per line; binaries are the artifacts with an "executable".
    Ok(Ok(String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter(|line| {
            line.contains("\"reason\":\"compiler-artifact\"")
                && (!tests || line.contains("\"test\":true"))
        })
        .filter_map(|line| {
            let rest = &line[line.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .collect()))
}

/// Builds the test binaries `step` names and runs them in the VM; the status says whether all
/// passed.
fn run_in_vm(step: &Step) -> std::io::Result<std::process::ExitStatus> {
    let executables = match build_tests(step)? {
        Ok(executables) => executables,
        Err(status) => return Ok(status),
    };
    // The CLI too, for `bufpool demo --display` on the VM's display.
    let cli = [
        "build",
        "-p",
        "bufpool",
        "--target",
        vm::MUSL_TARGET,
        "--locked",
        "--message-format=json",
    ];
    let bufpool = match build_executables(&cli, &[], false)? {
        Ok(built) => built.into_iter().find(|path| path.ends_with("bufpool")),
        Err(status) => return Ok(status),
    };
    let Some(bufpool) = bufpool else {
        eprintln!("==> VM: cargo built no bufpool binary");
        return Ok(std::os::unix::process::ExitStatusExt::from_raw(1 << 8));
    };
    let code = match vm::run(&executables, &bufpool) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("==> VM: {message}");
            1
        }
    };
    Ok(std::os::unix::process::ExitStatusExt::from_raw(code << 8))
}

/// Builds the test binaries `step` names, then runs each under valgrind's memcheck: any invalid
/// read or write, and any definite or indirect leak, fails the step. Returns the first failing
/// status (or the last one).
fn run_under_valgrind(step: &Step) -> std::io::Result<std::process::ExitStatus> {
    let executables = match build_tests(step)? {
        Ok(executables) => executables,
        Err(status) => return Ok(status),
    };
    let mut last = std::os::unix::process::ExitStatusExt::from_raw(0);
    for executable in executables {
        println!("==> valgrind {}", executable.display());
        last = Command::new("valgrind")
            .args([
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect",
                "--error-exitcode=3",
                "-q",
            ])
            .arg(&executable)
            .arg("--test-threads=1")
            .status()?;
        if !last.success() {
            return Ok(last);
        }
    }
    Ok(last)
}

/// `cargo package --workspace` verifies each crate against its siblings published to a temporary
/// local registry, and cargo unpacks those into `$CARGO_HOME/registry/{src,cache}/-<hash>/`
/// (local registries have no host name, hence the leading `-`). The hash depends only on the
/// registry's path and our versions do not change between runs, so a later run would verify
/// against the sources unpacked by an earlier one. Cargo also fingerprints the verification builds
/// of registry crates by name and version only, so a later run would link against an earlier
/// run's build of a sibling; they go to [`PACKAGE_TARGET_DIR`]. Those are only caches; clearing
/// them makes every run verify the crates as they are now.
fn forget_packaged_sources() -> Result<(), String> {
    let builds = std::path::Path::new(PACKAGE_TARGET_DIR);
    if builds.exists() {
        std::fs::remove_dir_all(builds).map_err(|error| {
            format!(
                "cannot clear the stale packaging builds {}: {error}",
                builds.display()
            )
        })?;
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set, so the cargo cache cannot be found")?;
    for cache in ["src", "cache"] {
        let dir = cargo_home.join("registry").join(cache);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // no cache yet
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('-') {
                std::fs::remove_dir_all(entry.path()).map_err(|error| {
                    format!(
                        "cannot clear the stale packaging cache {}: {error}",
                        entry.path().display()
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// Every Rust file git tracks in the workspace, relative to its root.
fn tracked_rust_files() -> std::io::Result<Vec<String>> {
    let output = Command::new("git").args(["ls-files", "*.rs"]).output()?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "`git ls-files` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Debian packages the build needs and cargo cannot install: FFmpeg's development libraries
/// (for `allocator-avframe`), libclang and pkg-config to generate and find its bindings,
/// valgrind to check it, and QEMU with a static busybox for the VM tests of `allocator-fb`.
const SYSTEM_PACKAGES: &[&str] = &[
    "libavcodec-dev",
    "libavformat-dev",
    "libavutil-dev",
    "libswscale-dev",
    "libclang-dev",
    "pkg-config",
    "valgrind",
    "qemu-system-x86",
    "busybox-static",
];

/// Whether this process runs as root (and so may install packages).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Installs the missing [`SYSTEM_PACKAGES`] with apt-get when running as root; otherwise fails
/// with the exact command to run.
fn ensure_system_packages() -> Result<(), String> {
    let missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .is_ok_and(|out| {
                    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
                })
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "the system packages {} are missing; install them with `sudo sh -c '{install}'`",
            missing.join(", ")
        ));
    }
    let mut command = Command::new("sh");
    command
        .args(["-c", &install])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_installer("system packages", &missing, command, &install)
}

/// Runs `command`, which installs `missing` (`what`: "system packages", ...); when it fails, the
/// error names them and the command to run by hand, `manual`.
fn run_installer(
    what: &str,
    missing: &[&str],
    mut command: Command,
    manual: &str,
) -> Result<(), String> {
    println!("==> installing {what}: {}", missing.join(" "));
    if command.status().is_ok_and(|status| status.success()) {
        Ok(())
    } else {
        Err(format!(
            "the {what} {} are missing and could not be installed; run `{manual}` and look at its output",
            missing.join(", ")
        ))
    }
}

/// rustfmt and clippy are rustup components, which cargo cannot install: add them if missing.
fn ensure_rust_components() -> Result<(), String> {
    let missing: Vec<&str> = [("fmt", "rustfmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(subcommand, _)| {
            !Command::new(cargo())
                .args([subcommand, "--version"])
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut command = Command::new("rustup");
    command.args(["component", "add"]).args(&missing);
    let manual = format!("rustup component add {}", missing.join(" "));
    run_installer("rust components", &missing, command, &manual)
}

/// The VM tests' static binaries need the musl target's standard library, a rustup target that
/// cargo cannot install: add it if missing.
fn ensure_musl_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|t| t == vm::MUSL_TARGET)
        });
    if installed {
        return Ok(());
    }
    let mut command = Command::new("rustup");
    command.args(["target", "add", vm::MUSL_TARGET]);
    let manual = format!("rustup target add {}", vm::MUSL_TARGET);
    run_installer("rust targets", &[vm::MUSL_TARGET], command, &manual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layering_runs_right_after_formatting_without_cargo() {
        let plan = plan();
        assert_eq!(plan[0].title, "formatting");
        assert!(plan[0].then == Then::EveryRustFile);
        assert!(plan[1].then == Then::Layers && plan[1].args.is_empty());
        assert_eq!(plan[1].fix, layers::FIX);
    }
}
