//! Reading files out of a Debian package.
//!
//! `dpkg-deb --fsys-tarfile` unpacks the data member whatever its
//! compression; we read the tar stream it prints and keep only what is
//! asked for, so nothing is written to disk and no file outside the wanted
//! set is ever looked at.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("cannot run dpkg-deb on {deb}: {error} (install the `dpkg` package)")]
    Spawn { deb: PathBuf, error: io::Error },
    #[error("{deb} is not a readable Debian package: {message}")]
    Corrupt { deb: PathBuf, message: String },
    #[error(
        "{deb} has no file {path}: the lock and the package disagree; re-pin with `cargo xtask lock`"
    )]
    Missing { deb: PathBuf, path: String },
}

/// Calls `visit(path, reader)` for every regular file in the package's data
/// tree, with `path` relative (`boot/vmlinuz-...`, no leading `./`).
pub fn for_each_file(
    deb: &Path,
    mut visit: impl FnMut(&str, &mut dyn Read) -> io::Result<()>,
) -> Result<(), DebError> {
    let corrupt = |message: String| DebError::Corrupt {
        deb: deb.to_path_buf(),
        message,
    };
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| DebError::Spawn {
            deb: deb.to_path_buf(),
            error,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let walk = (|| -> io::Result<()> {
        let mut archive = tar::Archive::new(stdout);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let raw = entry.path()?.to_string_lossy().into_owned();
            let path = raw.trim_start_matches("./").to_string();
            visit(&path, &mut entry)?;
        }
        Ok(())
    })();
    // Drain and reap dpkg-deb whatever happened, then report the first error.
    let output = child
        .wait_with_output()
        .map_err(|e| corrupt(e.to_string()))?;
    walk.map_err(|e| corrupt(e.to_string()))?;
    if !output.status.success() {
        return Err(corrupt(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Reads the files named in `wanted`; every one must be present.
pub fn extract(
    deb: &Path,
    wanted: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<u8>>, DebError> {
    let mut found = BTreeMap::new();
    for_each_file(deb, |path, reader| {
        if wanted.contains(path) {
            let mut buf = Vec::new();
            reader.read_to_end(&mut buf)?;
            found.insert(path.to_string(), buf);
        }
        Ok(())
    })?;
    if let Some(missing) = wanted.iter().find(|w| !found.contains_key(*w)) {
        return Err(DebError::Missing {
            deb: deb.to_path_buf(),
            path: missing.clone(),
        });
    }
    Ok(found)
}
