//! NVIDIA's open kernel modules, compiled by the build against the pinned
//! kernel's headers (Debian ships them as DKMS source only).
//!
//! Reproducible like the rest of the image: the pinned source and headers
//! are unpacked into a scratch tree whose path is mapped to `/` in every
//! recorded file name (`-ffile-prefix-map`), the kbuild clock and identity
//! are fixed, and debug sections are stripped (they are most of the 240 MB
//! `nvidia.ko`, and the image has no debugger). What stays is a function of
//! the pinned inputs and the C compiler, which the manifest records.
//!
//! The result is kept under `target/cocoon/gpu/modules/<key>`, the key
//! being a hash of everything above, so that a second image build (or a
//! test) does not compile for minutes again.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::digest::Sha256;
use cocoon_image::lock::InputsLock;
use cocoon_image::profile::{self, GpuStack};
use xshell::{Shell, cmd};

use crate::env;
use crate::inputs::Fetcher;
use crate::progress::Step;

/// Changes whenever the recipe below changes what it produces.
const RECIPE: &str = "nvidia-modules v1: dpkg-deb -x; make modules; strip --strip-debug";

/// `(file name, path)` of each of `stack.modules`, in load order.
pub fn build(
    sh: &Shell,
    root: &Path,
    fetcher: &mut Fetcher,
    lock: &InputsLock,
    stack: &GpuStack,
    release: &str,
) -> Result<Vec<(String, PathBuf)>> {
    let source = lock.package(stack.module_source.name)?;
    let mut inputs = vec![source];
    for name in profile::KERNEL_HEADER_INPUTS {
        inputs.push(lock.package(name)?);
    }
    let compiler = env::cc_version(sh)?;
    let mut key = format!("{RECIPE}\n{release}\n{compiler}\n");
    for pkg in &inputs {
        key.push_str(&format!("{} {}\n", pkg.apt_spec(), pkg.sha256));
    }
    for m in stack.modules {
        key.push_str(&format!("module {m}\n"));
    }
    let key = Sha256::of(key.as_bytes()).to_string();
    let out = root.join("target/cocoon/gpu/modules").join(&key[..16]);
    let names: Vec<String> = stack.modules.iter().map(|m| format!("{m}.ko")).collect();
    if out.join("complete").exists() {
        return Ok(names.iter().map(|n| (n.clone(), out.join(n))).collect());
    }

    let debs = inputs
        .iter()
        .map(|pkg| fetcher.deb(pkg))
        .collect::<Result<Vec<PathBuf>>>()?;
    let work = root.join("target/cocoon/gpu/build");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let step = Step::start(format!(
        "compiling {} against {release} (a few minutes)",
        source.apt_spec()
    ));
    for deb in &debs {
        cmd!(sh, "dpkg-deb -x {deb} {work}").quiet().run()?;
    }
    let usr_src = work.join("usr/src");
    // The flavour's Makefile includes the common tree by its installed
    // path; point it at ours.
    let flavour = usr_src.join(format!("linux-headers-{release}"));
    let makefile = flavour.join("Makefile");
    let text =
        fs::read_to_string(&makefile).with_context(|| format!("reading {}", makefile.display()))?;
    let repointed = text.replace(
        "include /usr/src/",
        &format!("include {}/", usr_src.display()),
    );
    if repointed == text {
        bail!(
            "{} includes no /usr/src tree: unknown header layout",
            makefile.display()
        );
    }
    fs::write(&makefile, repointed)?;
    let [_, common, _] = profile::kernel_header_packages(release).map_err(anyhow::Error::msg)?;
    let common = usr_src.join(common);
    let src = single_dir(&usr_src, "nvidia-current-open-")?;

    let jobs = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string();
    let modules = stack.modules.join(" ");
    let prefix_map = format!("-ffile-prefix-map={}/=/", work.display());
    let log = work.join("make.log");
    let _cwd = sh.push_dir(&src);
    let _env = [
        sh.push_env("LC_ALL", "C"),
        sh.push_env("KBUILD_BUILD_TIMESTAMP", "@0"),
        sh.push_env("KBUILD_BUILD_USER", "cocoon"),
        sh.push_env("KBUILD_BUILD_HOST", "cocoon"),
        sh.push_env("SOURCE_DATE_EPOCH", "0"),
    ];
    let made = cmd!(
        sh,
        "make -j{jobs} modules SYSSRC={common} SYSOUT={flavour} NV_KERNEL_MODULES={modules} KCFLAGS={prefix_map}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    fs::write(
        &log,
        [made.stdout.as_slice(), made.stderr.as_slice()].concat(),
    )?;
    if !made.status.success() {
        let stderr = String::from_utf8_lossy(&made.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        bail!(
            "compiling the NVIDIA modules failed (full log: {}):\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    let staging = out.with_extension("partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    let mut sizes = Vec::new();
    for name in &names {
        let (from, to) = (src.join(name), staging.join(name));
        cmd!(sh, "strip --strip-debug -o {to} {from}")
            .quiet()
            .run()?;
        let size = fs::metadata(&to)?.len();
        sizes.push(format!("{name} {:.1} MiB", size as f64 / (1 << 20) as f64));
    }
    fs::write(staging.join("complete"), &key)?;
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    fs::rename(&staging, &out)?;
    drop(_cwd);
    // A gigabyte of objects: nothing reads them again.
    fs::remove_dir_all(&work)?;
    step.done(&sizes.join(", "));
    Ok(names.iter().map(|n| (n.clone(), out.join(n))).collect())
}

/// The one directory in `dir` whose name starts with `prefix`.
fn single_dir(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) && entry.path().is_dir() {
            found.push(entry.path());
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one {prefix}* directory in {}, found {}",
            dir.display(),
            found.len()
        ),
    }
}
