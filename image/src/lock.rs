//! `image/inputs.lock`: every input from outside the repository, pinned.
//!
//! Each input is a Debian package fetched from the mirror the system already
//! uses, pinned by version and by the sha256 of the `.deb`, and each file the
//! image takes from it is pinned again by its own sha256. The second pin is
//! what the build checks every time: the cache may hold the extracted file
//! without the package, and a file is trusted only if it matches the lock.
//!
//! The file is written by `cargo xtask lock` and read by everything else.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;

/// The lock format this code reads and writes.
pub const LOCK_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsLock {
    pub schema: u32,
    #[serde(rename = "package", default)]
    pub packages: Vec<PinnedPackage>,
    #[serde(rename = "source", default)]
    pub sources: Vec<PinnedSource>,
    #[serde(rename = "wheel", default)]
    pub wheels: Vec<PinnedWheel>,
}

/// A PyPI wheel, pinned by its file name and the sha256 of the file (the
/// same pin `pip download --require-hashes` checks). Files are taken from
/// the verified wheel each time, so they are not pinned one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedWheel {
    /// What the build calls this input (`cuda-runtime-headers`, ...).
    pub name: String,
    pub project: String,
    pub version: String,
    /// The wheel's file name (it names the platform too).
    pub file: String,
    pub sha256: Sha256,
    pub size: u64,
}

/// A Debian source package, pinned by the files the build unpacks (its
/// `.orig` and `.debian` tarballs). The `.dsc` is not pinned: some mirrors
/// do not serve it, and apt checks the tarballs against the signed index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedSource {
    /// What the image calls this input (`firmware`, ...).
    pub name: String,
    /// The Debian source package name.
    pub package: String,
    pub version: String,
    pub suite: String,
    pub component: String,
    #[serde(rename = "file", default)]
    pub files: Vec<PinnedFile>,
}

impl PinnedSource {
    /// `package=version`, as `apt-get source` takes it.
    pub fn apt_spec(&self) -> String {
        format!("{}={}", self.package, self.version)
    }
}

/// One Debian binary package and the files the image takes from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedPackage {
    /// What the image calls this input (`kernel`, ...).
    pub name: String,
    /// The Debian package name.
    pub package: String,
    /// The exact Debian version.
    pub version: String,
    /// The suite that serves it (`bookworm-backports`, ...).
    pub suite: String,
    /// The archive component (`main`, `contrib`, ...).
    pub component: String,
    /// sha256 and size of the `.deb` itself.
    pub sha256: Sha256,
    pub size: u64,
    #[serde(rename = "file", default)]
    pub files: Vec<PinnedFile>,
}

/// A file inside a pinned package, by its path in the package's data tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    pub path: String,
    pub sha256: Sha256,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path} is not a valid inputs lock: {message}")]
    Parse { path: String, message: String },
    #[error(
        "{path} has schema {found}, this build reads schema {LOCK_SCHEMA}: update the checkout or rerun `cargo xtask lock`"
    )]
    Schema { path: String, found: u32 },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("inputs.lock pins no input named `{0}`: run `cargo xtask lock` to pin it")]
    MissingInput(String),
}

impl InputsLock {
    pub fn load(path: &Path) -> Result<Self, LockError> {
        let display = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|error| LockError::Read {
            path: display.clone(),
            error,
        })?;
        Self::parse(&text, &display)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, LockError> {
        let lock: InputsLock = toml::from_str(text).map_err(|e| LockError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        if lock.schema != LOCK_SCHEMA {
            return Err(LockError::Schema {
                path: origin.to_string(),
                found: lock.schema,
            });
        }
        lock.validate().map_err(|message| LockError::Invalid {
            path: origin.to_string(),
            message,
        })?;
        Ok(lock)
    }

    fn validate(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        let entries = self
            .packages
            .iter()
            .map(|p| {
                (
                    &p.name,
                    [&p.package, &p.version, &p.suite, &p.component],
                    &p.files,
                )
            })
            .chain(self.sources.iter().map(|s| {
                (
                    &s.name,
                    [&s.package, &s.version, &s.suite, &s.component],
                    &s.files,
                )
            }))
            .chain(self.wheels.iter().map(|w| {
                (
                    &w.name,
                    [&w.project, &w.version, &w.file, &w.name],
                    const { &Vec::new() },
                )
            }));
        for (name, fields, files) in entries {
            if !names.insert(name) {
                return Err(format!("input `{name}` is pinned twice"));
            }
            for field in fields {
                if field.is_empty() || field.chars().any(|c| c.is_whitespace() || c == '=') {
                    return Err(format!(
                        "input `{name}` has an empty or malformed field `{field}`"
                    ));
                }
            }
            let mut paths = BTreeSet::new();
            for f in files {
                check_relative_path(&f.path).map_err(|e| format!("input `{name}`: {e}"))?;
                if !paths.insert(&f.path) {
                    return Err(format!("input `{name}` pins `{}` twice", f.path));
                }
            }
        }
        // The file name is where the wheel lands in a download folder.
        if let Some(w) = self
            .wheels
            .iter()
            .find(|w| w.file.contains('/') || !w.file.ends_with(".whl"))
        {
            return Err(format!(
                "input `{}` names {:?}, not a wheel's file name",
                w.name, w.file
            ));
        }
        Ok(())
    }

    pub fn package(&self, name: &str) -> Result<&PinnedPackage, LockError> {
        self.packages
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| LockError::MissingInput(name.to_string()))
    }

    pub fn wheel(&self, name: &str) -> Result<&PinnedWheel, LockError> {
        self.wheels
            .iter()
            .find(|w| w.name == name)
            .ok_or_else(|| LockError::MissingInput(name.to_string()))
    }

    pub fn source(&self, name: &str) -> Result<&PinnedSource, LockError> {
        self.sources
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| LockError::MissingInput(name.to_string()))
    }

    /// The lock as it is written to disk: a header, then TOML.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("the lock is always representable in TOML");
        format!(
            "# Pinned inputs of the cocoon guest image.\n\
             # Written by `cargo xtask lock`: review every change, the image is built from these bytes.\n\
             {body}"
        )
    }
}

impl PinnedPackage {
    /// `package=version`, as apt takes it.
    pub fn apt_spec(&self) -> String {
        format!("{}={}", self.package, self.version)
    }

    pub fn file(&self, path: &str) -> Option<&PinnedFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Accepts `a/b/c`; refuses absolute paths, `.`/`..` components, empty
/// components and NUL: a lock path names one file inside a package tree.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(format!("`{path}` is not a plain relative path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InputsLock {
        InputsLock {
            schema: LOCK_SCHEMA,
            packages: vec![PinnedPackage {
                name: "kernel".into(),
                package: "linux-image-x".into(),
                version: "1.0-1".into(),
                suite: "bookworm-backports".into(),
                component: "main".into(),
                sha256: Sha256::of(b"deb"),
                size: 3,
                files: vec![PinnedFile {
                    path: "boot/vmlinuz".into(),
                    sha256: Sha256::of(b"k"),
                    size: 1,
                }],
            }],
            sources: vec![PinnedSource {
                name: "firmware".into(),
                package: "edk2".into(),
                version: "2025.02-8".into(),
                suite: "trixie".into(),
                component: "main".into(),
                files: vec![PinnedFile {
                    path: "edk2_2025.02.orig.tar.xz".into(),
                    sha256: Sha256::of(b"orig"),
                    size: 4,
                }],
            }],
            wheels: vec![PinnedWheel {
                name: "cuda-headers".into(),
                project: "nvidia-cuda-runtime-cu12".into(),
                version: "12.4.127".into(),
                file: "nvidia_cuda_runtime_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl".into(),
                sha256: Sha256::of(b"wheel"),
                size: 5,
            }],
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let lock = sample();
        let text = lock.to_toml();
        assert!(
            text.contains("[[package]]")
                && text.contains("[[package.file]]")
                && text.contains("[[wheel]]"),
            "{text}"
        );
        assert_eq!(InputsLock::parse(&text, "t").unwrap(), lock);
    }

    #[test]
    fn rejects_bad_locks() {
        let good = sample().to_toml();
        let cases = [
            good.replace("schema = 1", "schema = 2"),
            good.replace("boot/vmlinuz", "../vmlinuz"),
            good.replace("boot/vmlinuz", "/boot/vmlinuz"),
            good.replace(&Sha256::of(b"k").to_hex(), "00"),
            good.replace("suite = ", "colour = \"red\"\nsuite = "),
            good.replace("version = \"1.0-1\"", "version = \"1.0 1\""),
            good.replace("name = \"firmware\"", "name = \"kernel\""),
            good.replace("edk2_2025.02.orig.tar.xz", "../edk2.tar.xz"),
            good.replace("name = \"cuda-headers\"", "name = \"kernel\""),
            good.replace("-manylinux2014_x86_64.whl", "-manylinux2014_x86_64.zip"),
            good.replace("file = \"nvidia_cuda", "file = \"../nvidia_cuda"),
            good.replace(&Sha256::of(b"wheel").to_hex(), "00"),
        ];
        for bad in cases {
            assert!(InputsLock::parse(&bad, "t").is_err(), "accepted:\n{bad}");
        }
    }

    #[test]
    fn missing_input_says_what_to_do() {
        let err = sample().package("firmware").unwrap_err().to_string();
        assert!(
            err.contains("firmware") && err.contains("cargo xtask lock"),
            "{err}"
        );
    }
}
