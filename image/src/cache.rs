//! The content-addressed store of fetched inputs.
//!
//! Every blob lives at `<root>/sha256/<first two hex digits>/<hex>` and is
//! re-hashed whenever it is used: a blob that no longer matches its name is
//! reported, never used. The store is shared by every clone of the
//! repository on a machine (`$XDG_CACHE_HOME/cocoon` by default), so a second
//! clone builds without touching the network.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "the cache directory is unknown: set XDG_CACHE_HOME, HOME or COCOON_CACHE_DIR to a writable directory"
    )]
    NoHome,
    #[error(
        "cached {what} is corrupted: {path}\n  expected sha256 {expected}\n  found    sha256 {actual}\n  \
         remove that file and rerun: it is fetched again and checked against image/inputs.lock"
    )]
    Corrupt {
        what: String,
        path: PathBuf,
        expected: Sha256,
        actual: Sha256,
    },
    #[error(
        "{what} from {origin} does not match image/inputs.lock:\n  expected sha256 {expected}\n  found    sha256 {actual}\n  \
         the mirror serves different bytes under the pinned version; if the change is legitimate, \
         re-pin with `cargo xtask lock` and review the diff"
    )]
    Mismatch {
        what: String,
        origin: String,
        expected: Sha256,
        actual: Sha256,
    },
    #[error("cache I/O on {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |error| CacheError::Io {
        path: path.to_path_buf(),
        error,
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$COCOON_CACHE_DIR`, else `$XDG_CACHE_HOME/cocoon`, else `~/.cache/cocoon`.
    pub fn default_root() -> Result<PathBuf, CacheError> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(dir) = env("COCOON_CACHE_DIR") {
            return Ok(dir);
        }
        if let Some(dir) = env("XDG_CACHE_HOME") {
            return Ok(dir.join("cocoon"));
        }
        env("HOME")
            .map(|h| h.join(".cache").join("cocoon"))
            .ok_or(CacheError::NoHome)
    }

    pub fn open_default() -> Result<Self, CacheError> {
        Ok(Self::at(Self::default_root()?))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob with this digest lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Sha256) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// The verified path of a cached blob, `None` when it is not cached.
    pub fn get(&self, digest: &Sha256, what: &str) -> Result<Option<PathBuf>, CacheError> {
        let path = self.blob_path(digest);
        let (actual, _) = match Sha256::of_file(&path) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if actual != *digest {
            return Err(CacheError::Corrupt {
                what: what.to_string(),
                path,
                expected: *digest,
                actual,
            });
        }
        Ok(Some(path))
    }

    /// Copies `src` into the store if it hashes to `expected`.
    pub fn put_file(
        &self,
        src: &Path,
        expected: &Sha256,
        what: &str,
    ) -> Result<PathBuf, CacheError> {
        let bytes = fs::read(src).map_err(io_err(src))?;
        self.put_bytes(&bytes, expected, what, &src.display().to_string())
    }

    /// Stores `bytes` if they hash to `expected`; `origin` says where they
    /// came from, for the error.
    pub fn put_bytes(
        &self,
        bytes: &[u8],
        expected: &Sha256,
        what: &str,
        origin: &str,
    ) -> Result<PathBuf, CacheError> {
        let actual = Sha256::of(bytes);
        if actual != *expected {
            return Err(CacheError::Mismatch {
                what: what.to_string(),
                origin: origin.to_string(),
                expected: *expected,
                actual,
            });
        }
        let dest = self.blob_path(expected);
        let dir = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Write beside the destination, then rename: a reader never sees a
        // half-written blob, and two writers of the same blob both succeed.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o444))
            .map_err(io_err(tmp.path()))?;
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let h = Sha256::of(b"blob");
        assert!(cache.get(&h, "x").unwrap().is_none());
        let p = cache.put_bytes(b"blob", &h, "x", "test").unwrap();
        assert_eq!(cache.get(&h, "x").unwrap(), Some(p.clone()));
        assert_eq!(fs::read(&p).unwrap(), b"blob");
    }

    #[test]
    fn refuses_wrong_bytes_on_insert() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let err = cache
            .put_bytes(
                b"evil",
                &Sha256::of(b"good"),
                "kernel: boot/vmlinuz",
                "the mirror",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kernel: boot/vmlinuz") && err.contains(&Sha256::of(b"good").to_hex())
        );
        assert!(err.contains(&Sha256::of(b"evil").to_hex()), "{err}");
        assert!(!cache.blob_path(&Sha256::of(b"good")).exists());
    }

    #[test]
    fn reports_a_corrupted_blob_with_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let h = Sha256::of(b"blob");
        let p = cache.put_bytes(b"blob", &h, "x", "test").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"blub").unwrap();
        let err = cache.get(&h, "kernel: vmlinuz").unwrap_err().to_string();
        assert!(
            err.contains("corrupted") && err.contains(&p.display().to_string()),
            "{err}"
        );
        assert!(err.contains(&h.to_hex()) && err.contains(&Sha256::of(b"blub").to_hex()));
    }
}
