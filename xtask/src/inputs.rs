//! Getting pinned inputs into the cache: from the cache when they are there
//! (re-verified), from the mirror through the private apt configuration
//! when they are not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cocoon_image::apt::{self, PrivateApt};
use cocoon_image::cache::Cache;
use cocoon_image::deb;
use cocoon_image::lock::{InputsLock, PinnedPackage};

use crate::progress::Step;

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
            let suites: BTreeSet<(String, String)> = self
                .lock
                .packages
                .iter()
                .map(|p| (p.suite.clone(), p.component.clone()))
                .collect();
            let suites: Vec<_> = suites.into_iter().collect();
            self.apt = Some(PrivateApt::create(&self.apt_dir, &mirror, &suites)?);
        }
        Ok(self.apt.as_mut().expect("just created"))
    }

    /// The verified `.deb` of `pkg` in the cache, downloading it if needed.
    pub fn deb(&mut self, pkg: &PinnedPackage) -> Result<PathBuf> {
        let what = format!("input `{}` ({})", pkg.name, pkg.apt_spec());
        if let Some(p) = self.cache.get(&pkg.sha256, &what)? {
            return Ok(p);
        }
        let step = Step::start(format!("downloading {}", pkg.apt_spec()));
        let blob = self.cache.blob_path(&pkg.sha256);
        std::fs::create_dir_all(&self.apt_dir)
            .with_context(|| format!("creating {}", self.apt_dir.display()))?;
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
}
