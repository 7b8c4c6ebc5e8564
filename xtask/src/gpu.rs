//! `cargo xtask gpu-bundle`: the CUDA backend's test and bench binaries, built here (release),
//! gathered in `device-bin/` with a `run.sh` that runs them all, for a GPU machine that has no
//! Rust toolchain: copy the folder there and run `sh device-bin/run.sh`.

use std::path::{Path, PathBuf};

/// Where the bundle goes (ignored by git).
const BUNDLE: &str = "device-bin";

/// Builds the binaries and writes the bundle; the paths of what it holds.
pub fn bundle() -> Result<Vec<PathBuf>, String> {
    let dir = Path::new(BUNDLE);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {BUNDLE}: {e}"))?;
    let builds: [&[&str]; 2] = [
        &[
            "test",
            "-p",
            "allocator-cuda",
            "--release",
            "--locked",
            "--no-run",
            "--message-format=json",
        ],
        &[
            "bench",
            "-p",
            "allocator-cuda",
            "--locked",
            "--no-run",
            "--message-format=json",
        ],
    ];
    let mut names = Vec::new();
    for args in builds {
        let built = crate::build_executables(args, &[], true)
            .map_err(|e| format!("cannot run cargo: {e}"))?
            .map_err(|status| format!("cargo {} failed ({status})", args.join(" ")))?;
        for executable in built {
            let file = executable
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or("bad path")?;
            // Cargo names them `<target>-<hash>`.
            let name = file
                .rsplit_once('-')
                .map_or(file, |(name, _)| name)
                .to_owned();
            if names.contains(&name) {
                continue; // the library's unit tests, built by both commands
            }
            std::fs::copy(&executable, dir.join(&name))
                .map_err(|e| format!("cannot copy {}: {e}", executable.display()))?;
            names.push(name);
        }
    }
    let mut script = String::from(
        "#!/bin/sh\n# The CUDA backend's tests and benchmark; made by `cargo xtask gpu-bundle`.\ncd \"$(dirname \"$0\")\"\n# On the GPU machine a test that cannot find the GPU fails instead of skipping.\nexport BUFPOOL_REQUIRE_GPU=1\nfailed=0\nnvidia-smi -L || true\n",
    );
    for name in &names {
        let args = if name == "cuda" {
            "--bench"
        } else {
            "--test-threads=1"
        };
        script.push_str(&format!(
            "echo \"== {name}\"; ./{name} {args} || {{ echo \"== {name} FAILED\"; failed=1; }}\n"
        ));
    }
    script.push_str("exit $failed\n");
    std::fs::write(dir.join("run.sh"), script).map_err(|e| format!("cannot write run.sh: {e}"))?;
    Ok(names.iter().map(|name| dir.join(name)).collect())
}
