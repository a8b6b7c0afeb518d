//! Building `/init` (the `cocoon-guest` binary) so that its bytes depend on
//! the source and the pinned toolchain only.
//!
//! - `--locked`, the `guest` cargo profile (fat LTO, one codegen unit, no
//!   debug info, symbols stripped);
//! - linked dynamically against the image's own, pinned glibc (libcuda does
//!   not run in a static program), with the loader named where the image
//!   has it; every profile carries this one binary;
//! - every machine-specific path (the checkout, cargo's home, the target
//!   directory) remapped to a fixed name, in Rust (`--remap-path-prefix`)
//!   and in C (`-ffile-prefix-map`, for crates that compile C);
//! - no build id, `SOURCE_DATE_EPOCH` from the commit, `TZ=UTC`, `LC_ALL=C`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::elf::Linkage;
use cocoon_image::lock::InputsLock;
use cocoon_image::profile::{self, InitBuild};
use xshell::{Shell, cmd};

use crate::progress::Step;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

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

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => root.join("target"),
    }
}

/// Where [`build`] leaves the binary.
pub fn built_binary(root: &Path, init: &InitBuild) -> PathBuf {
    target_dir(root)
        .join(TARGET)
        .join(init.cargo_profile)
        .join("cocoon-guest")
}

/// `cuda_root`: the pinned CUDA compiler ([`crate::cuda_toolkit`]) that
/// the engine's build script runs for the `cuda` feature.
pub fn build(
    sh: &Shell,
    root: &Path,
    source_date_epoch: u64,
    init: &InitBuild,
    cuda_root: &Path,
) -> Result<GuestBinary> {
    let target_dir = target_dir(root);
    let maps = path_maps(root, &target_dir)?;
    let mut rustflags: Vec<String> = vec![
        "-Ctarget-feature=-crt-static".into(),
        format!("-Clink-arg=-Wl,--dynamic-linker={}", init.interpreter),
    ];
    rustflags.extend([
        // The engine picks its SIMD kernels at compile time: x86-64-v3
        // (AVX2, FMA, F16C) is what every measured EPYC model has.
        "-Ctarget-cpu=x86-64-v3".into(),
        "-Clink-arg=-Wl,--build-id=none".into(),
    ]);
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
    let step = Step::start(format!(
        "building /init (cocoon-guest, cargo profile {})",
        init.cargo_profile
    ));
    let _env = [
        sh.push_env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f")),
        sh.push_env("RUSTFLAGS", ""),
        sh.push_env("CFLAGS_x86_64_unknown_linux_gnu", cflags.join(" ")),
        sh.push_env("SOURCE_DATE_EPOCH", &epoch),
        sh.push_env("TZ", "UTC"),
        sh.push_env("LC_ALL", "C"),
        sh.push_env("CUDA_ROOT", cuda_root),
    ];
    let cargo_profile = init.cargo_profile;
    let features = init.features.join(",");
    cmd!(
        sh,
        "cargo build --quiet --locked -p cocoon-guest --profile {cargo_profile} --target {TARGET} --features {features}"
    )
    .run()
    .context("building cocoon-guest")?;
    let path = built_binary(root, init);
    let size = std::fs::metadata(&path)
        .with_context(|| format!("{} was not built", path.display()))?
        .len();
    step.done(&format!("{:.1} MiB", size as f64 / (1 << 20) as f64));
    Ok(GuestBinary {
        path,
        recorded_rustflags,
    })
}

/// Where the image's libraries are: the one folder of the loader's default
/// search path (Debian's multiarch one) that the image uses.
const LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// Refuses an image that could not start its `/init`: it needs its
/// declared loader (executable) and every library it names, in the image.
/// Without this a missing library shows only at boot, as a kernel panic
/// ("No working init found").
///
/// `image` maps each path in the initramfs (no leading `/`) to its mode.
pub fn check_runs_in(
    linkage: &Linkage,
    init: &InitBuild,
    image: &BTreeMap<String, u32>,
) -> Result<()> {
    let interpreter = init.interpreter;
    if linkage.interpreter.as_deref() != Some(interpreter) {
        bail!(
            "/init's loader is {:?}, not the {interpreter} the profile declares",
            linkage.interpreter
        );
    }
    match image.get(interpreter.trim_start_matches('/')) {
        None => bail!("the image has no {interpreter}, /init's loader"),
        Some(mode) if mode & 0o111 == 0 => {
            bail!("/init's loader {interpreter} is not executable in the image (mode {mode:o})")
        }
        Some(_) => {}
    }
    let missing: Vec<&str> = linkage
        .needed
        .iter()
        .filter(|lib| !image.contains_key(&format!("{LIB_DIR}/{lib}")))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "/init needs {missing:?}, which the image does not hold in /{LIB_DIR}: add the package to the runtime inputs of `profile::INIT`"
        );
    }
    Ok(())
}

/// `/init` is linked against the build machine's glibc and runs on the
/// image's copy: that copy must be the same release (older lacks symbols
/// the binary may use; newer is a different, unaudited program).
/// `linked` is what [`crate::env::libc_version`] reads.
pub fn check_glibc(lock: &InputsLock, init: &InitBuild, linked: &str) -> Result<()> {
    let Some(input) = init.runtime.iter().find(|i| i.package == "libc6") else {
        bail!("the runtime inputs of `/init` name no libc6");
    };
    let pinned = lock.package(input.name)?;
    // `linked` reads "glibc (libc6-dev 2.36-9+deb12u14)".
    let linked_version = linked
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim_end_matches(')');
    let (want, have) = (
        profile::upstream_version(&pinned.version),
        profile::upstream_version(linked_version),
    );
    if want != have {
        bail!(
            "the guest links glibc {have} ({linked}) but inputs.lock pins {} (glibc {want}) for the image: build on a machine with glibc {want}, or re-pin",
            pinned.apt_spec()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use cocoon_image::digest::Sha256;
    use cocoon_image::lock::PinnedPackage;
    use cocoon_image::profile::INIT;

    const LOADER: &str = "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

    fn dynamic(needed: &[&str]) -> Linkage {
        Linkage {
            interpreter: Some(LOADER.into()),
            needed: needed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn image(files: &[(&str, u32)]) -> BTreeMap<String, u32> {
        files.iter().map(|(p, m)| (p.to_string(), *m)).collect()
    }

    #[test]
    fn a_dynamic_init_needs_its_loader_and_libraries_in_the_image() {
        let full = image(&[
            (&LOADER[1..], 0o755),
            ("lib/x86_64-linux-gnu/libc.so.6", 0o644),
            ("lib/x86_64-linux-gnu/libgcc_s.so.1", 0o644),
        ]);
        let init = dynamic(&["libc.so.6", "libgcc_s.so.1"]);
        check_runs_in(&init, &INIT, &full).unwrap();

        let e = check_runs_in(&dynamic(&["libc.so.6", "libstdc++.so.6"]), &INIT, &full);
        assert!(format!("{:#}", e.unwrap_err()).contains("libstdc++.so.6"));

        let mut no_exec = full.clone();
        no_exec.insert(LOADER[1..].into(), 0o644);
        let e = check_runs_in(&init, &INIT, &no_exec).unwrap_err();
        assert!(e.to_string().contains("not executable"), "{e}");

        let mut no_loader = full.clone();
        no_loader.remove(&LOADER[1..]);
        assert!(check_runs_in(&init, &INIT, &no_loader).is_err());

        let other = Linkage {
            interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
            ..init
        };
        assert!(check_runs_in(&other, &INIT, &full).is_err());
    }

    #[test]
    fn a_static_init_is_refused() {
        let st = Linkage {
            interpreter: None,
            needed: vec![],
        };
        let e = check_runs_in(&st, &INIT, &image(&[(&LOADER[1..], 0o755)])).unwrap_err();
        assert!(e.to_string().contains("loader is None"), "{e}");
    }

    fn lock_with_glibc(version: &str) -> InputsLock {
        InputsLock {
            schema: cocoon_image::lock::LOCK_SCHEMA,
            packages: vec![PinnedPackage {
                name: "glibc".into(),
                package: "libc6".into(),
                version: version.into(),
                suite: "bookworm".into(),
                component: "main".into(),
                sha256: Sha256::of(b""),
                size: 0,
                files: vec![],
            }],
            sources: vec![],
            wheels: vec![],
        }
    }

    #[test]
    fn the_image_glibc_must_be_the_linked_release() {
        let lock = lock_with_glibc("2.36-9+deb12u14");
        check_glibc(&lock, &INIT, "glibc (libc6-dev 2.36-9+deb12u9)").unwrap();
        let err = check_glibc(&lock, &INIT, "glibc (libc6-dev 2.41-12)").unwrap_err();
        assert!(err.to_string().contains("glibc 2.41"), "{err}");
        // No glibc pinned at all: refused, not skipped.
        let empty = InputsLock {
            packages: vec![],
            ..lock_with_glibc("")
        };
        assert!(check_glibc(&empty, &INIT, "glibc (libc6-dev 2.36-9)").is_err());
    }
}
