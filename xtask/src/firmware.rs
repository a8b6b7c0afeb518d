//! The SEV-SNP firmware: edk2's `OvmfPkg/AmdSev/AmdSevX64.dsc`, built from
//! Debian's pinned edk2 source (Debian ships no SNP-capable OVMF).
//!
//! Reproducible by construction: Debian's patches applied in series order;
//! the embedded GRUB image made with `mkfs.msdos --invariant` and
//! `mcopy -m` (no random volume id, no build-time timestamps); a fixed
//! build path (the length of the path in debug entries shifts the layout of
//! every module); `LC_ALL=C`, `TZ=UTC`. The result is cached by a key over
//! the source hashes, this recipe and the versions of every build tool, so
//! it is built once per machine and toolchain.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cocoon_image::cache::Cache;
use cocoon_image::digest::Sha256;
use cocoon_image::lock::PinnedSource;
use xshell::{Shell, cmd};

use crate::inputs::Fetcher;
use crate::progress::Step;

/// Where edk2 is built. Fixed: the firmware's bytes depend on it.
pub const BUILD_DIR: &str = "/tmp/cocoon-edk2-build";
pub const PLATFORM: &str = "OvmfPkg/AmdSev/AmdSevX64.dsc";
/// Bump when the recipe below changes in a way that changes the output.
const RECIPE: &str = "cocoon-amdsev-ovmf-1";
/// The fixed mtime of the files that go into GRUB's memdisk.
const GRUB_FILES_MTIME: &str = "@1700000000";

/// Edits to `OvmfPkg/AmdSev/Grub/grub.sh`: Debian's GRUB has no
/// `sevsecret` module (and the direct boot with kernel hashes does not use
/// it); the FAT image must not carry a random serial or the build time.
const GRUB_SH_EDITS: &[(&str, &str)] = &[
    ("            sevsecret\n", ""),
    ("mkfs.msdos -C", "mkfs.msdos --invariant -C"),
    ("mcopy -i", "mcopy -m -i"),
];

pub struct Firmware {
    /// The verified `OVMF.fd` in the cache.
    pub path: PathBuf,
    /// The build tools, as recorded in the manifest.
    pub tools: Vec<String>,
}

/// The versions of everything that shapes the firmware's bytes.
fn tool_versions(sh: &Shell) -> Result<Vec<String>> {
    let mut tools = vec![crate::env::cc_version(sh)?];
    let format = "-f=${Package} ${Version}\\n";
    let debs = [
        "nasm",
        "acpica-tools",
        "uuid-dev",
        "grub-common",
        "grub-efi-amd64-bin",
        "dosfstools",
        "mtools",
    ];
    let out = cmd!(sh, "dpkg-query -W {format} {debs...}")
        .quiet()
        .ignore_stderr()
        .read()
        .context("the firmware build needs nasm, acpica-tools, uuid-dev, grub-efi-amd64-bin, dosfstools and mtools: run `cargo xtask setup` as root")?;
    tools.extend(out.lines().map(str::to_string));
    tools.push(
        cmd!(sh, "python3 --version")
            .quiet()
            .read()?
            .trim()
            .to_string(),
    );
    Ok(tools)
}

fn cache_key(src: &PinnedSource, tools: &[String]) -> Sha256 {
    let mut text = format!("{RECIPE}\n{PLATFORM}\n{BUILD_DIR}\n");
    for f in &src.files {
        text.push_str(&format!("{} {}\n", f.path, f.sha256));
    }
    for (from, to) in GRUB_SH_EDITS {
        text.push_str(&format!("{from:?} -> {to:?}\n"));
    }
    for t in tools {
        text.push_str(t);
        text.push('\n');
    }
    Sha256::of(text.as_bytes())
}

/// The firmware for `src`: from the cache, or built (1.5 to 8 minutes).
pub fn firmware(sh: &Shell, fetcher: &mut Fetcher, src: &PinnedSource) -> Result<Firmware> {
    let tools = tool_versions(sh)?;
    let key = cache_key(src, &tools);
    let index = fetcher.cache.root().join("firmware").join(key.to_hex());
    if let Some(path) = cached(&fetcher.cache, &index)? {
        return Ok(Firmware { path, tools });
    }
    // One build at a time on a machine (its path is fixed); a build that
    // waited here finds the other's result (tests build concurrently).
    let lock = std::fs::File::create(format!("{BUILD_DIR}.lock"))?;
    lock.lock().context("waiting for another firmware build")?;
    if let Some(path) = cached(&fetcher.cache, &index)? {
        return Ok(Firmware { path, tools });
    }
    let files = fetcher.source_files(src)?;
    let step = Step::start(format!(
        "building the SNP firmware ({PLATFORM}, edk2 {})",
        src.version
    ));
    let started = Instant::now();
    let ovmf = build(sh, src, &files)?;
    let sha = Sha256::of(&ovmf);
    let path = fetcher.cache.put_bytes(&ovmf, &sha, "OVMF.fd", BUILD_DIR)?;
    std::fs::create_dir_all(index.parent().expect("has a parent"))?;
    std::fs::write(&index, format!("{sha}\n"))?;
    step.done(&format!(
        "sha256 {sha}, built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Firmware { path, tools })
}

fn cached(cache: &Cache, index: &Path) -> Result<Option<PathBuf>> {
    let Ok(text) = std::fs::read_to_string(index) else {
        return Ok(None);
    };
    let sha: Sha256 = text
        .trim()
        .parse()
        .with_context(|| format!("corrupted firmware index {}", index.display()))?;
    Ok(cache.get(&sha, "the cached SNP firmware (OVMF.fd)")?)
}

fn build(
    sh: &Shell,
    src: &PinnedSource,
    files: &std::collections::BTreeMap<String, PathBuf>,
) -> Result<Vec<u8>> {
    // The caller holds the build lock.
    let dir = Path::new(BUILD_DIR);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let orig = src
        .files
        .iter()
        .find(|f| f.path.contains(".orig.tar."))
        .context("the firmware source pins no .orig tarball")?;
    let debian = src.files.iter().find(|f| f.path.contains(".debian.tar."));
    let tree = dir.join("src");
    std::fs::create_dir_all(&tree)?;
    let orig_path = &files[&orig.path];
    cmd!(
        sh,
        "tar -xJf {orig_path} -C {tree} --strip-components=1 --no-same-owner"
    )
    .quiet()
    .run()?;
    if let Some(d) = debian {
        let debian_path = &files[&d.path];
        cmd!(sh, "tar -xJf {debian_path} -C {tree} --no-same-owner")
            .quiet()
            .run()?;
        let series =
            std::fs::read_to_string(tree.join("debian/patches/series")).unwrap_or_default();
        for patch in series
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
        {
            let p = tree.join("debian/patches").join(patch);
            let _dir = sh.push_dir(&tree);
            cmd!(sh, "patch -p1 -s --no-backup-if-mismatch -i {p}")
                .quiet()
                .run()
                .with_context(|| format!("applying Debian's {patch}"))?;
        }
    }
    let grub_sh = tree.join("OvmfPkg/AmdSev/Grub/grub.sh");
    let mut text = std::fs::read_to_string(&grub_sh)?;
    for (from, to) in GRUB_SH_EDITS {
        if !text.contains(from) {
            bail!(
                "{} no longer contains {from:?}: the edk2 source changed, update xtask/src/firmware.rs",
                grub_sh.display()
            );
        }
        text = text.replacen(from, to, 1);
    }
    std::fs::write(&grub_sh, text)?;
    let grub_cfg = tree.join("OvmfPkg/AmdSev/Grub/grub.cfg");
    cmd!(sh, "touch -d {GRUB_FILES_MTIME} {grub_sh} {grub_cfg}")
        .quiet()
        .run()?;

    let log = dir.join("build.log");
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string();
    let script = format!(
        "set -e; make -C BaseTools -j{jobs}; set --; . ./edksetup.sh; \
         build -a X64 -t GCC5 -b RELEASE -p {PLATFORM} -n {jobs}"
    );
    let _dir = sh.push_dir(&tree);
    let _env = [sh.push_env("LC_ALL", "C"), sh.push_env("TZ", "UTC")];
    // The build's output goes to a log (thousands of lines); its tail is
    // shown if it fails.
    let full = format!("exec > {} 2>&1; {script}", log.display());
    if cmd!(sh, "bash -c {full}").quiet().run().is_err() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .take(25)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "the firmware build failed (full log: {}):\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    let fd = tree.join("Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd");
    let bytes = std::fs::read(&fd)
        .with_context(|| format!("the firmware build produced no {}", fd.display()))?;
    drop(_dir);
    let _ = std::fs::remove_dir_all(dir);
    Ok(bytes)
}
