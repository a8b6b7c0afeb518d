//! `cargo xtask lock`: pin (or re-pin) `image/inputs.lock` from the mirror.
//!
//! It downloads the kernel package and the firmware's source package,
//! hashes them, finds the files every profile needs (the kernel, and each
//! profile's modules with their dependencies) and writes their hashes; the
//! packages images take files from and the CUDA compiler likewise, and the
//! PyPI wheels of the CUDA headers by the sha256 of each wheel.
//! Review the diff before committing: the image is built from exactly these
//! bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::apt::{self, PrivateApt};
use cocoon_image::cache::Cache;
use cocoon_image::deb;
use cocoon_image::digest::Sha256;
use cocoon_image::kmod;
use cocoon_image::lock::{
    InputsLock, LOCK_SCHEMA, PinnedFile, PinnedPackage, PinnedSource, PinnedWheel,
};
use cocoon_image::profile::{self, DebInput};
use xshell::Shell;

use crate::build::LOCK_PATH;
use crate::progress::Step;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The kernel package, `PACKAGE` (newest version the mirror serves) or
    /// `PACKAGE=VERSION`. Default: the one pinned now.
    #[arg(long)]
    kernel: Option<String>,
    /// The suite that serves the kernel package.
    #[arg(long, default_value = "bookworm-backports")]
    kernel_suite: String,
    /// The firmware's source package, `PACKAGE` or `PACKAGE=VERSION`.
    /// Default: the one pinned now, else `edk2`.
    #[arg(long)]
    firmware: Option<String>,
    /// The suite that serves the firmware's source.
    #[arg(long, default_value = "trixie")]
    firmware_suite: String,
    /// The Debian version of the NVIDIA driver packages (modules, firmware,
    /// libraries: all of one version). Default: the one pinned now, else
    /// the newest the GPU profile's suite serves.
    #[arg(long)]
    nvidia: Option<String>,
}

/// `(package, Some(version))` from `PKG[=VER]`, else what `current` pins.
fn spec(
    arg: &Option<String>,
    current: Option<(&str, &str)>,
    default: Option<&str>,
) -> Result<(String, Option<String>)> {
    Ok(match (arg, current, default) {
        (Some(s), _, _) => match s.split_once('=') {
            Some((p, v)) => (p.to_string(), Some(v.to_string())),
            None => (s.clone(), None),
        },
        (None, Some((p, v)), _) => (p.to_string(), Some(v.to_string())),
        (None, None, Some(d)) => (d.to_string(), None),
        (None, None, None) => bail!("{LOCK_PATH} does not pin it yet: name it on the command line"),
    })
}

/// The version to pin: the one asked for, or the newest the suite serves.
fn resolve(
    apt: &mut PrivateApt,
    package: &str,
    version: Option<String>,
    suite: &str,
) -> Result<String> {
    let served: Vec<(String, String)> = apt
        .versions(package)?
        .into_iter()
        .filter(|(_, s)| s.split('/').next() == Some(suite))
        .collect();
    match version {
        Some(v) if served.iter().any(|(sv, _)| *sv == v) => Ok(v),
        Some(v) => bail!("{} ({suite}) does not serve {package}={v}", apt.mirror()),
        None => served
            .first()
            .map(|(v, _)| v.clone())
            .with_context(|| format!("{} ({suite}) does not serve {package}", apt.mirror())),
    }
}

fn pin_kernel(
    apt: &mut PrivateApt,
    cache: &Cache,
    apt_dir: &Path,
    package: &str,
    version: &str,
    suite: &str,
) -> Result<PinnedPackage> {
    let to_pin = unpinned("kernel", package, version, suite, "main");
    let (pin, deb_path) = download(apt, cache, apt_dir, to_pin)?;

    let step = Step::start("reading the kernel and its modules");
    let mut files = BTreeMap::new();
    deb::for_each_file(&deb_path, |path, reader| {
        if path.starts_with("boot/vmlinuz-") || kmod::name_from_path(path).is_some() {
            let mut buf = Vec::new();
            reader.read_to_end(&mut buf)?;
            files.insert(path.to_string(), buf);
        }
        Ok(())
    })?;
    let vmlinuz = files
        .keys()
        .find(|p| p.starts_with("boot/vmlinuz-"))
        .cloned()
        .with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
    let release = vmlinuz.trim_start_matches("boot/vmlinuz-").to_string();
    let by_name: BTreeMap<String, String> = files
        .keys()
        .filter(|p| p.starts_with(&format!("lib/modules/{release}/")))
        .filter_map(|p| Some((kmod::name_from_path(p)?, p.clone())))
        .collect();
    // The closure of every profile's modules.
    let mut needed: Vec<String> = profile::ALL
        .iter()
        .flat_map(|p| p.modules.iter().map(|m| kmod::canonical_name(m)))
        .collect();
    let mut pinned = BTreeSet::from([vmlinuz]);
    while let Some(name) = needed.pop() {
        let path = by_name
            .get(&name)
            .with_context(|| format!("{package} has no module `{name}`"))?;
        if !pinned.insert(path.clone()) {
            continue;
        }
        let info = kmod::modinfo(path, &files[path])?;
        kmod::check_vermagic(path, &info, &release)?;
        needed.extend(info.depends);
    }
    step.done(&format!("{} files pinned", pinned.len()));
    Ok(PinnedPackage {
        files: pinned
            .iter()
            .map(|p| PinnedFile {
                path: p.clone(),
                sha256: Sha256::of(&files[p]),
                size: files[p].len() as u64,
            })
            .collect(),
        ..pin
    })
}

fn pin_source(
    apt: &mut PrivateApt,
    cache: &Cache,
    apt_dir: &Path,
    package: &str,
    version: &str,
    suite: &str,
) -> Result<PinnedSource> {
    let spec = format!("{package}={version}");
    let step = Step::start(format!("downloading the source of {spec}"));
    let tmp = tempfile::tempdir_in(apt_dir)?;
    let complaints = apt.download_source(&spec, tmp.path())?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(tmp.path())? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // The tarballs are what the build unpacks; the .dsc (when the mirror
        // serves it) only lists them.
        if name.ends_with(".dsc") || !name.contains(".tar.") {
            continue;
        }
        let (sha256, size) = Sha256::of_file(&path)?;
        cache.put_file(&path, &sha256, &name)?;
        files.push(PinnedFile {
            path: name,
            sha256,
            size,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if !files.iter().any(|f| f.path.contains(".orig.tar.")) {
        bail!("the mirror served no .orig tarball of {spec}:\n{complaints}");
    }
    step.done(&format!("{} files pinned", files.len()));
    Ok(PinnedSource {
        name: "firmware".into(),
        package: package.to_string(),
        version: version.to_string(),
        suite: suite.to_string(),
        component: "main".into(),
        files,
    })
}

/// A package to pin, before its hashes are known.
fn unpinned(
    name: &str,
    package: &str,
    version: &str,
    suite: &str,
    component: &str,
) -> PinnedPackage {
    PinnedPackage {
        name: name.into(),
        package: package.into(),
        version: version.into(),
        suite: suite.into(),
        component: component.into(),
        sha256: Sha256::of(b""),
        size: 0,
        files: vec![],
    }
}

/// Downloads `pin`'s `.deb` into the cache; returns `pin` with the `.deb`'s
/// hash and size, and the cached file.
fn download(
    apt: &mut PrivateApt,
    cache: &Cache,
    apt_dir: &Path,
    pin: PinnedPackage,
) -> Result<(PinnedPackage, PathBuf)> {
    let step = Step::start(format!("downloading {}", pin.apt_spec()));
    let tmp = tempfile::tempdir_in(apt_dir)?;
    let deb_path = apt.download(&pin, tmp.path(), Path::new("(not pinned yet)"))?;
    let (sha256, size) = Sha256::of_file(&deb_path)?;
    let cached = cache.put_file(&deb_path, &sha256, &pin.apt_spec())?;
    step.done(&format!("sha256 {sha256}"));
    Ok((
        PinnedPackage {
            sha256,
            size,
            ..pin
        },
        cached,
    ))
}

/// Downloads a package and pins it with the files the image takes from it
/// (`(path in the package, path in the image)`; the first is pinned).
fn pin_deb(
    apt: &mut PrivateApt,
    cache: &Cache,
    apt_dir: &Path,
    to_pin: PinnedPackage,
    files: &[(String, String)],
) -> Result<PinnedPackage> {
    let (pin, deb_path) = download(apt, cache, apt_dir, to_pin)?;
    let wanted: BTreeSet<String> = files.iter().map(|(from, _)| from.clone()).collect();
    let found = deb::extract(&deb_path, &wanted)?;
    Ok(PinnedPackage {
        files: found
            .iter()
            .map(|(path, bytes)| PinnedFile {
                path: path.clone(),
                sha256: Sha256::of(bytes),
                size: bytes.len() as u64,
            })
            .collect(),
        ..pin
    })
}

/// The packages images take files from: the NVIDIA packages of the GPU
/// profiles (all at `nvidia`), what every profile's `/init` loads (glibc,
/// libgcc_s), and the kernel headers the NVIDIA modules build against.
fn pin_runtime(
    apt: &mut PrivateApt,
    cache: &Cache,
    apt_dir: &Path,
    current: Option<&InputsLock>,
    nvidia: &Option<String>,
    kernel: &PinnedPackage,
) -> Result<Vec<PinnedPackage>> {
    let current_version = |name: &str| {
        current
            .and_then(|l| l.package(name).ok())
            .map(|p| p.version.clone())
    };
    // A package not of the NVIDIA release stays at its pinned version
    // until it is removed from the lock; a new one gets the newest.
    let version_of = |apt: &mut PrivateApt, input: &DebInput| match current_version(input.name) {
        Some(v) => Ok(v),
        None => resolve(apt, input.package, None, input.suite),
    };
    let mut pinned = Vec::new();
    for stack in profile::ALL.iter().filter_map(|p| p.gpu) {
        let src = &stack.module_source;
        let nvidia_version = match nvidia {
            Some(v) => resolve(apt, src.package, Some(v.clone()), src.suite)?,
            None => version_of(apt, src)?,
        };
        for input in std::iter::once(src).chain(stack.runtime) {
            let version = if input.nvidia {
                nvidia_version.clone()
            } else {
                version_of(apt, input)?
            };
            pinned.push(pin_input(apt, cache, apt_dir, input, &version)?);
        }
    }
    // Every profile's `/init` and the CUDA compiler of its kernels (one pin
    // per package, however many profiles share it).
    let mut seen = BTreeSet::new();
    let init_inputs = profile::ALL
        .iter()
        .flat_map(|p| p.init.runtime.iter().chain([&p.init.cuda.compiler]));
    for input in init_inputs {
        if seen.insert(input.name) {
            let version = version_of(apt, input)?;
            pinned.push(pin_input(apt, cache, apt_dir, input, &version)?);
        }
    }
    if profile::ALL.iter().any(|p| p.gpu.is_some()) {
        let (_, release) = crate::build::kernel_release(kernel)?;
        let packages = profile::kernel_header_packages(&release).map_err(anyhow::Error::msg)?;
        for (name, package) in profile::KERNEL_HEADER_INPUTS.iter().zip(packages) {
            let to_pin = unpinned(
                name,
                &package,
                &kernel.version,
                &kernel.suite,
                &kernel.component,
            );
            pinned.push(pin_deb(apt, cache, apt_dir, to_pin, &[])?);
        }
    }
    Ok(pinned)
}

fn pin_input(
    apt: &mut PrivateApt,
    cache: &Cache,
    apt_dir: &Path,
    input: &DebInput,
    version: &str,
) -> Result<PinnedPackage> {
    let to_pin = unpinned(
        input.name,
        input.package,
        version,
        input.suite,
        input.component,
    );
    pin_deb(apt, cache, apt_dir, to_pin, &input.resolved_files(version))
}

/// The wheels the build takes headers from, at the versions the profiles
/// name: downloaded, hashed and cached.
fn pin_wheels(sh: &Shell, cache: &Cache) -> Result<Vec<PinnedWheel>> {
    let mut pinned: Vec<PinnedWheel> = Vec::new();
    for w in profile::ALL.iter().flat_map(|p| p.init.cuda.headers) {
        if pinned.iter().any(|p| p.name == w.name) {
            continue;
        }
        let step = Step::start(format!("downloading {}=={}", w.project, w.version));
        let tmp = tempfile::tempdir()?;
        let path = crate::pypi::download(sh, w.project, w.version, tmp.path())?;
        let (sha256, size) = Sha256::of_file(&path)?;
        let file = path
            .file_name()
            .context("a wheel has a file name")?
            .to_string_lossy()
            .into_owned();
        cache.put_file(&path, &sha256, &file)?;
        step.done(&format!("sha256 {sha256}"));
        pinned.push(PinnedWheel {
            name: w.name.into(),
            project: w.project.into(),
            version: w.version.into(),
            file,
            sha256,
            size,
        });
    }
    Ok(pinned)
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let lock_path = root.join(LOCK_PATH);
    let current = InputsLock::load(&lock_path).ok();
    let cur_kernel = current.as_ref().and_then(|l| l.package("kernel").ok());
    let cur_firmware = current.as_ref().and_then(|l| l.source("firmware").ok());
    let (kernel_pkg, kernel_ver) = spec(
        &args.kernel,
        cur_kernel.map(|k| (k.package.as_str(), k.version.as_str())),
        None,
    )?;
    let (fw_pkg, fw_ver) = spec(
        &args.firmware,
        cur_firmware.map(|f| (f.package.as_str(), f.version.as_str())),
        Some("edk2"),
    )?;

    let mirror = apt::system_mirror()?;
    let apt_dir = root.join("target/cocoon/apt-lock");
    let mut suites = vec![(args.kernel_suite.clone(), "main".to_string())];
    for p in profile::ALL {
        let sources = p.gpu.map(|stack| &stack.module_source);
        let cuda = [&p.init.cuda.compiler];
        for input in sources.into_iter().chain(p.runtime()).chain(cuda) {
            suites.push((input.suite.into(), input.component.into()));
        }
    }
    let mut apt = PrivateApt::create(
        &apt_dir,
        &mirror,
        &suites,
        &[(args.firmware_suite.clone(), "main".into())],
    )?;
    let kernel_ver = resolve(&mut apt, &kernel_pkg, kernel_ver, &args.kernel_suite)?;
    let fw_ver = resolve(&mut apt, &fw_pkg, fw_ver, &args.firmware_suite)?;
    let cache = Cache::open_default()?;
    let kernel = pin_kernel(
        &mut apt,
        &cache,
        &apt_dir,
        &kernel_pkg,
        &kernel_ver,
        &args.kernel_suite,
    )?;
    let runtime = pin_runtime(
        &mut apt,
        &cache,
        &apt_dir,
        current.as_ref(),
        &args.nvidia,
        &kernel,
    )?;
    let lock = InputsLock {
        schema: LOCK_SCHEMA,
        packages: std::iter::once(kernel).chain(runtime).collect(),
        sources: vec![pin_source(
            &mut apt,
            &cache,
            &apt_dir,
            &fw_pkg,
            &fw_ver,
            &args.firmware_suite,
        )?],
        wheels: pin_wheels(sh, &cache)?,
    };
    std::fs::write(&lock_path, lock.to_toml())
        .with_context(|| format!("writing {}", lock_path.display()))?;
    if current.as_ref() == Some(&lock) {
        eprintln!("xtask: {LOCK_PATH} unchanged");
    } else {
        eprintln!("xtask: wrote {LOCK_PATH}: review `git diff {LOCK_PATH}` before committing");
    }
    Ok(())
}
