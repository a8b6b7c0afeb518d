//! Building `/init` (the `cocoon-guest` binary) so that its bytes depend on
//! the source and the pinned toolchain only.
//!
//! - `--locked`, the `guest` cargo profile (fat LTO, one codegen unit, no
//!   debug info, symbols stripped);
//! - glibc linked statically (`+crt-static`): the initramfs holds no loader
//!   and no shared library;
//! - every machine-specific path (the checkout, cargo's home, the target
//!   directory) remapped to a fixed name, in Rust (`--remap-path-prefix`)
//!   and in C (`-ffile-prefix-map`, for crates that compile C);
//! - no build id, `SOURCE_DATE_EPOCH` from the commit, `TZ=UTC`, `LC_ALL=C`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use crate::progress::Step;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";
pub const CARGO_PROFILE: &str = "guest";

pub struct GuestBinary {
    pub path: PathBuf,
    /// The flags as recorded in the manifest: paths replaced by their
    /// placeholders, so two checkouts record the same thing.
    pub recorded_rustflags: Vec<String>,
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// `(real path, fixed name)` pairs: every place source files can come from.
fn path_maps(root: &Path, target_dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    // rustc and gcc both use the last matching map: general before specific.
    let home = cargo_home()?;
    let mut maps = vec![
        (home.clone(), "/cargo".to_string()),
        (root.to_path_buf(), "/cocoon".into()),
        (target_dir.to_path_buf(), "/target".into()),
    ];
    // Registry sources live in a directory named after the registry's URL:
    // map each to one name so a machine with another mirror builds the same.
    for (dir, name) in [("registry/src", "/registry"), ("git/checkouts", "/git")] {
        if let Ok(entries) = std::fs::read_dir(home.join(dir)) {
            for e in entries.flatten() {
                maps.push((e.path(), name.to_string()));
            }
        }
    }
    Ok(maps)
}

/// Where [`build`] leaves the binary.
pub fn built_binary(root: &Path) -> PathBuf {
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => root.join("target"),
    };
    target_dir
        .join(TARGET)
        .join(CARGO_PROFILE)
        .join("cocoon-guest")
}

pub fn build(sh: &Shell, root: &Path, source_date_epoch: u64) -> Result<GuestBinary> {
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => root.join("target"),
    };
    let maps = path_maps(root, &target_dir)?;
    let mut rustflags: Vec<String> = vec![
        "-Ctarget-feature=+crt-static".into(),
        // The engine picks its SIMD kernels at compile time: x86-64-v3
        // (AVX2, FMA, F16C) is what every measured EPYC model has.
        "-Ctarget-cpu=x86-64-v3".into(),
        "-Clink-arg=-Wl,--build-id=none".into(),
    ];
    let recorded_rustflags = rustflags
        .iter()
        .cloned()
        .chain([
            "--remap-path-prefix=<source, cargo home, registries, target>=<fixed names>"
                .to_string(),
        ])
        .collect();
    let mut cflags = vec!["-ffile-prefix-map=/proc/self/cwd=.".to_string()];
    for (from, to) in &maps {
        rustflags.push(format!("--remap-path-prefix={}={to}", from.display()));
        cflags.push(format!("-ffile-prefix-map={}={to}", from.display()));
    }
    let epoch = source_date_epoch.to_string();
    let step = Step::start("building /init (cocoon-guest)");
    let _env = [
        sh.push_env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f")),
        sh.push_env("RUSTFLAGS", ""),
        sh.push_env("CFLAGS_x86_64_unknown_linux_gnu", cflags.join(" ")),
        sh.push_env("SOURCE_DATE_EPOCH", &epoch),
        sh.push_env("TZ", "UTC"),
        sh.push_env("LC_ALL", "C"),
    ];
    cmd!(
        sh,
        "cargo build --quiet --locked -p cocoon-guest --profile {CARGO_PROFILE} --target {TARGET}"
    )
    .run()
    .context("building cocoon-guest")?;
    let path = target_dir
        .join(TARGET)
        .join(CARGO_PROFILE)
        .join("cocoon-guest");
    let size = std::fs::metadata(&path)
        .with_context(|| format!("{} was not built", path.display()))?
        .len();
    step.done(&format!("{:.1} MiB", size as f64 / (1 << 20) as f64));
    Ok(GuestBinary {
        path,
        recorded_rustflags,
    })
}
