//! `cargo xtask lock`: pin (or re-pin) `image/inputs.lock` from the mirror.
//!
//! It downloads the named package, hashes it, finds the files every
//! profile needs (the kernel, and each profile's modules with their
//! dependencies) and writes their hashes. Review the diff before committing:
//! the image is built from exactly these bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use cocoon_image::apt::{self, PrivateApt};
use cocoon_image::cache::Cache;
use cocoon_image::deb;
use cocoon_image::digest::Sha256;
use cocoon_image::kmod;
use cocoon_image::lock::{InputsLock, LOCK_SCHEMA, PinnedFile, PinnedPackage};
use cocoon_image::profile;
use xshell::Shell;

use crate::build::LOCK_PATH;
use crate::progress::Step;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The kernel package to pin, `PACKAGE` (newest version the mirror
    /// serves) or `PACKAGE=VERSION`. Default: the one pinned now.
    #[arg(long)]
    kernel: Option<String>,
    /// The suite that serves the kernel package.
    #[arg(long, default_value = "bookworm-backports")]
    suite: String,
}

pub fn run(_sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let lock_path = root.join(LOCK_PATH);
    let current = InputsLock::load(&lock_path).ok();
    let (package, version) = match (&args.kernel, &current) {
        (Some(spec), _) => match spec.split_once('=') {
            Some((p, v)) => (p.to_string(), Some(v.to_string())),
            None => (spec.clone(), None),
        },
        (None, Some(lock)) => {
            let k = lock.package("kernel")?;
            (k.package.clone(), Some(k.version.clone()))
        }
        (None, None) => {
            bail!("{LOCK_PATH} does not exist yet: name the kernel with --kernel PACKAGE")
        }
    };

    let mirror = apt::system_mirror()?;
    let apt_dir = root.join("target/cocoon/apt-lock");
    let mut apt = PrivateApt::create(&apt_dir, &mirror, &[(args.suite.clone(), "main".into())])?;
    let served = apt.versions(&package)?;
    let (version, suite) = match version {
        Some(v) => served
            .iter()
            .find(|(sv, _)| *sv == v)
            .cloned()
            .with_context(|| format!("{mirror} ({}) does not serve {package}={v}", args.suite))?,
        None => served
            .first()
            .cloned()
            .with_context(|| format!("{mirror} ({}) does not serve {package}", args.suite))?,
    };
    let suite = suite.split('/').next().unwrap_or(&suite).to_string();

    let step = Step::start(format!("downloading {package}={version}"));
    let tmp = tempfile::tempdir_in(&apt_dir)?;
    let pin = PinnedPackage {
        name: "kernel".into(),
        package: package.clone(),
        version: version.clone(),
        suite,
        component: "main".into(),
        sha256: Sha256::of(b""),
        size: 0,
        files: vec![],
    };
    let deb_path = apt.download(&pin, tmp.path(), Path::new("(not pinned yet)"))?;
    let (sha256, size) = Sha256::of_file(&deb_path)?;
    let cache = Cache::open_default()?;
    cache.put_file(&deb_path, &sha256, &format!("{package}={version}"))?;
    step.done(&format!("sha256 {sha256}"));

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
    let mut pinned = BTreeSet::from([vmlinuz.clone()]);
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
    let lock = InputsLock {
        schema: LOCK_SCHEMA,
        packages: vec![PinnedPackage {
            sha256,
            size,
            files: pinned
                .iter()
                .map(|p| PinnedFile {
                    path: p.clone(),
                    sha256: Sha256::of(&files[p]),
                    size: files[p].len() as u64,
                })
                .collect(),
            ..pin
        }],
    };
    step.done(&format!("{} files pinned", pinned.len()));
    std::fs::write(&lock_path, lock.to_toml())
        .with_context(|| format!("writing {}", lock_path.display()))?;
    if current.as_ref() == Some(&lock) {
        eprintln!("xtask: {LOCK_PATH} unchanged");
    } else {
        eprintln!("xtask: wrote {LOCK_PATH}: review `git diff {LOCK_PATH}` before committing");
    }
    Ok(())
}
