//! Getting pinned inputs into the cache: from the cache when they are there
//! (re-verified), from the mirror through the private apt configuration
//! when they are not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::apt::{self, PrivateApt};
use cocoon_image::cache::Cache;
use cocoon_image::deb;
use cocoon_image::lock::{InputsLock, PinnedPackage, PinnedSource};
use cocoon_image::profile::DebInput;

use crate::progress::Step;

/// Files an image carries as a package ships them.
pub struct ImageFiles {
    /// `(path in the image, verified cache path)`.
    pub files: Vec<(String, PathBuf)>,
    /// The packages they come from, as the manifest records them.
    pub packages: Vec<PinnedPackage>,
}

pub struct Fetcher<'a> {
    pub cache: Cache,
    lock: &'a InputsLock,
    apt_dir: PathBuf,
    apt: Option<PrivateApt>,
}

impl<'a> Fetcher<'a> {
    /// `apt_dir` holds the private apt configuration (under `target/`).
    pub fn new(cache: Cache, lock: &'a InputsLock, apt_dir: &Path) -> Self {
        Fetcher {
            cache,
            lock,
            apt_dir: apt_dir.to_path_buf(),
            apt: None,
        }
    }

    /// The private apt configuration, created on first use: a fully cached
    /// build never reads the system's sources.
    pub fn apt(&mut self) -> Result<&mut PrivateApt> {
        if self.apt.is_none() {
            let mirror = apt::system_mirror()?;
            // PrivateApt::create groups and de-duplicates the suites.
            let pair = |suite: &String, component: &String| (suite.clone(), component.clone());
            let suites: Vec<_> = self
                .lock
                .packages
                .iter()
                .map(|p| pair(&p.suite, &p.component))
                .collect();
            let source_suites: Vec<_> = self
                .lock
                .sources
                .iter()
                .map(|s| pair(&s.suite, &s.component))
                .collect();
            self.apt = Some(PrivateApt::create(
                &self.apt_dir,
                &mirror,
                &suites,
                &source_suites,
            )?);
        }
        Ok(self.apt.as_mut().expect("just created"))
    }

    /// Held while downloading: builds that share this apt folder (tests
    /// build concurrently) take turns, since apt fails at once on a lists
    /// folder another apt holds; the one that waited finds what the other
    /// fetched in the cache.
    fn download_lock(&self) -> Result<std::fs::File> {
        std::fs::create_dir_all(&self.apt_dir)
            .with_context(|| format!("creating {}", self.apt_dir.display()))?;
        let file = std::fs::File::create(self.apt_dir.join(".download.lock"))?;
        file.lock()
            .context("waiting for another build's download")?;
        Ok(file)
    }

    /// The verified `.deb` of `pkg` in the cache, downloading it if needed.
    pub fn deb(&mut self, pkg: &PinnedPackage) -> Result<PathBuf> {
        let what = format!("input `{}` ({})", pkg.name, pkg.apt_spec());
        if let Some(p) = self.cache.get(&pkg.sha256, &what)? {
            return Ok(p);
        }
        let _lock = self.download_lock()?;
        if let Some(p) = self.cache.get(&pkg.sha256, &what)? {
            return Ok(p);
        }
        let step = Step::start(format!("downloading {}", pkg.apt_spec()));
        let blob = self.cache.blob_path(&pkg.sha256);
        let downloads =
            tempfile::tempdir_in(&self.apt_dir).context("creating a download directory")?;
        let file = self.apt()?.download(pkg, downloads.path(), &blob)?;
        let stored = self.cache.put_file(&file, &pkg.sha256, &what)?;
        step.done(&format!("{} bytes, sha256 verified", pkg.size));
        Ok(stored)
    }

    /// Every pinned file of `pkg`, verified, as `path → cache path`.
    /// Files missing from the cache are extracted from the package in one
    /// pass (fetching the package if needed) and checked against the lock.
    pub fn files(&mut self, pkg: &PinnedPackage) -> Result<BTreeMap<String, PathBuf>> {
        let mut found = BTreeMap::new();
        let mut missing = BTreeSet::new();
        for f in &pkg.files {
            let what = format!("input `{}` file {}", pkg.name, f.path);
            match self.cache.get(&f.sha256, &what)? {
                Some(p) => {
                    found.insert(f.path.clone(), p);
                }
                None => {
                    missing.insert(f.path.clone());
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let deb_path = self.deb(pkg)?;
        let step = Step::start(format!(
            "extracting {} files from {}",
            missing.len(),
            pkg.package
        ));
        let extracted = deb::extract(&deb_path, &missing)?;
        for (path, bytes) in extracted {
            let pinned = pkg.file(&path).expect("only pinned paths were asked for");
            let what = format!("input `{}` file {}", pkg.name, path);
            let origin = format!("{} in {}", path, deb_path.display());
            let stored = self
                .cache
                .put_bytes(&bytes, &pinned.sha256, &what, &origin)?;
            found.insert(path, stored);
        }
        step.done("verified against image/inputs.lock");
        Ok(found)
    }

    /// What `inputs` put in an image as they are.
    pub fn image_files<'i>(
        &mut self,
        lock: &InputsLock,
        inputs: impl IntoIterator<Item = &'i DebInput>,
    ) -> Result<ImageFiles> {
        let mut files = Vec::new();
        let mut packages = Vec::new();
        for input in inputs {
            let pkg = lock.package(input.name)?;
            let mut found = self.files(pkg)?;
            for (from, to) in input.resolved_files(&pkg.version) {
                let Some(blob) = found.remove(&from) else {
                    bail!(
                        "inputs.lock pins no {from} in input `{}` ({}): run `cargo xtask lock`",
                        input.name,
                        pkg.apt_spec()
                    );
                };
                files.push((to, blob));
            }
            packages.push(pkg.clone());
        }
        Ok(ImageFiles { files, packages })
    }
}

impl Fetcher<'_> {
    /// The pinned files of a source package that the cache holds, verified.
    fn cached_source_files(&self, src: &PinnedSource) -> Result<BTreeMap<String, PathBuf>> {
        let mut found = BTreeMap::new();
        for f in &src.files {
            let what = format!("input `{}` file {}", src.name, f.path);
            if let Some(p) = self.cache.get(&f.sha256, &what)? {
                found.insert(f.path.clone(), p);
            }
        }
        Ok(found)
    }

    /// Every pinned file of a source package, verified, as `file name →
    /// cache path`, downloading the package's files when one is missing.
    pub fn source_files(&mut self, src: &PinnedSource) -> Result<BTreeMap<String, PathBuf>> {
        let found = self.cached_source_files(src)?;
        if found.len() == src.files.len() {
            return Ok(found);
        }
        let _lock = self.download_lock()?;
        // Another build may have fetched them meanwhile.
        let mut found = self.cached_source_files(src)?;
        if found.len() == src.files.len() {
            return Ok(found);
        }
        let step = Step::start(format!("downloading the source of {}", src.apt_spec()));
        let tmp = tempfile::tempdir_in(&self.apt_dir).context("creating a download directory")?;
        let complaints = self.apt()?.download_source(&src.apt_spec(), tmp.path())?;
        for f in &src.files {
            let what = format!("input `{}` file {}", src.name, f.path);
            let file = tmp.path().join(&f.path);
            if !file.is_file() {
                anyhow::bail!(
                    "the mirror did not serve {} of {} ({}/{}):\n{complaints}\n  \
                     place a copy (sha256 {}) at {}, or pin a version it serves with `cargo xtask lock`",
                    f.path,
                    src.apt_spec(),
                    src.suite,
                    src.component,
                    f.sha256,
                    self.cache.blob_path(&f.sha256).display()
                );
            }
            found.insert(
                f.path.clone(),
                self.cache.put_file(&file, &f.sha256, &what)?,
            );
        }
        step.done("sha256 verified against image/inputs.lock");
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_image::digest::Sha256;
    use cocoon_image::lock::{LOCK_SCHEMA, PinnedFile};
    use std::process::Command;

    /// A real (tiny) Debian package holding `files`.
    fn make_deb(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let root = dir.join("pkg");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: cocoon-test\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n",
        )
        .unwrap();
        for (path, bytes) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let deb = dir.join("test.deb");
        let out = Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        deb
    }

    fn setup(pin: &[u8]) -> (tempfile::TempDir, InputsLock) {
        let tmp = tempfile::tempdir().unwrap();
        let deb = make_deb(tmp.path(), &[("boot/vmlinuz-9.9", b"the kernel")]);
        let (sha256, size) = Sha256::of_file(&deb).unwrap();
        Cache::at(tmp.path().join("cache"))
            .put_file(&deb, &sha256, "deb")
            .unwrap();
        let lock = InputsLock {
            schema: LOCK_SCHEMA,
            packages: vec![PinnedPackage {
                name: "kernel".into(),
                package: "cocoon-test".into(),
                version: "1.0-1".into(),
                suite: "bookworm-backports".into(),
                component: "main".into(),
                sha256,
                size,
                files: vec![PinnedFile {
                    path: "boot/vmlinuz-9.9".into(),
                    sha256: Sha256::of(pin),
                    size: pin.len() as u64,
                }],
            }],
            sources: vec![],
            wheels: vec![],
        };
        (tmp, lock)
    }

    #[test]
    fn extracts_and_caches_files_that_match_the_lock() {
        let (tmp, lock) = setup(b"the kernel");
        let cache = Cache::at(tmp.path().join("cache"));
        // No mirror is consulted: the package is cached.
        let mut f = Fetcher::new(cache.clone(), &lock, &tmp.path().join("apt"));
        let files = f.files(&lock.packages[0]).unwrap();
        assert_eq!(
            std::fs::read(&files["boot/vmlinuz-9.9"]).unwrap(),
            b"the kernel"
        );
        assert!(
            cache
                .get(&Sha256::of(b"the kernel"), "x")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_file_that_differs_from_its_pin_is_refused_with_both_hashes() {
        let (tmp, lock) = setup(b"what the lock claims");
        let mut f = Fetcher::new(
            Cache::at(tmp.path().join("cache")),
            &lock,
            &tmp.path().join("apt"),
        );
        let err = format!("{:#}", f.files(&lock.packages[0]).unwrap_err());
        assert!(
            err.contains("input `kernel` file boot/vmlinuz-9.9"),
            "{err}"
        );
        assert!(
            err.contains(&Sha256::of(b"what the lock claims").to_hex()),
            "{err}"
        );
        assert!(err.contains(&Sha256::of(b"the kernel").to_hex()), "{err}");
        assert!(err.contains("does not match image/inputs.lock"), "{err}");
    }
}
