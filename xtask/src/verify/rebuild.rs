//! Step 3 of a verify: the recorded commit's own `cargo xtask build` of
//! every profile, in its worktree, with a target folder of its own (kept:
//! a second verify is incremental) and fresh output folders (nothing of an
//! earlier result is reused).
//!
//! The profiles build at once. Each has its own `/init` (the GPU one is
//! linked dynamically, in its own cargo profile), and much of each build
//! runs on one thread: the fat-LTO link of `/init`, the kernel modules'
//! final link, compressing the initramfs. Side by side, a second core does
//! the other profile's work meanwhile. Each line of a build's output is
//! prefixed with its profile's name.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};

/// What the caller's environment could slip into the build: the commit's
/// toolchain file and its commit time decide instead.
const SCRUBBED: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "SOURCE_DATE_EPOCH",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
];

struct Running {
    profile: String,
    out: PathBuf,
    child: Child,
    pipes: [JoinHandle<()>; 2],
}

/// Each profile's output folder, in `profiles`' order, once all are built.
pub fn all(root: &Path, src: &Path, profiles: &[&str]) -> Result<Vec<PathBuf>> {
    let base = root.join("target/cocoon/verify");
    let target = base.join("target");
    let mut running = Vec::new();
    for profile in profiles {
        let out = base.join("out").join(profile);
        let _ = std::fs::remove_dir_all(&out);
        eprintln!("xtask: rebuilding profile {profile} in {}", src.display());
        let mut build = Command::new("cargo");
        build
            .args(["xtask", "build", "--profile", profile, "--out"])
            .arg(&out)
            .current_dir(src)
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in SCRUBBED {
            build.env_remove(var);
        }
        let mut child = build
            .spawn()
            .with_context(|| format!("starting the rebuild of profile {profile}"))?;
        let tag = format!("[{profile}] ");
        let pipes = [
            forward(child.stdout.take(), tag.clone(), std::io::stdout),
            forward(child.stderr.take(), tag, std::io::stderr),
        ];
        running.push(Running {
            profile: profile.to_string(),
            out,
            child,
            pipes,
        });
    }
    // Wait for every build, even after one failed: none is left running.
    let mut outs = Vec::new();
    let mut failed = Vec::new();
    for mut r in running {
        let status = r.child.wait();
        for p in r.pipes {
            let _ = p.join();
        }
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => failed.push(format!("{} ({s})", r.profile)),
            Err(e) => failed.push(format!("{} (waiting for it: {e})", r.profile)),
        }
        outs.push(r.out);
    }
    if !failed.is_empty() {
        bail!(
            "rebuilding from the recorded commit failed for profile {} (its output is above, prefixed with its name)",
            failed.join(", ")
        );
    }
    Ok(outs)
}

/// Copies `stream` line by line to `sink`, each line after `tag`. Bytes,
/// not text: a build's output need not be UTF-8, and a reader that stopped
/// early would leave the child blocked on a full pipe.
fn forward<R, W>(stream: Option<R>, tag: String, sink: fn() -> W) -> JoinHandle<()>
where
    R: Read + Send + 'static,
    W: Write + 'static,
{
    std::thread::spawn(move || {
        let Some(stream) = stream else { return };
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    // One write per line: the other build's lines do not
                    // cut into it.
                    let _ = sink().write_all(&[tag.as_bytes(), &line].concat());
                }
                Err(_) => {
                    let _ = std::io::copy(&mut reader, &mut std::io::sink());
                    return;
                }
            }
        }
    })
}
