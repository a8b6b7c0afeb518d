//! Assembling the initramfs: a set of paths, written sorted, compressed with
//! fixed parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::lock::check_relative_path;
use crate::newc;

/// The highest zstd level a profile may use: 19 is the highest that needs
/// no `--ultra` window, which the kernel's decompressor takes with its
/// default limits.
pub const MAX_ZSTD_LEVEL: i32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("initramfs path `{path}`: {message}")]
    Path { path: String, message: String },
    #[error("compressing the initramfs: {0}")]
    Compress(std::io::Error),
    #[error("zstd level {0} is outside 1..={MAX_ZSTD_LEVEL}")]
    Level(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File { perm: u32, data: Vec<u8> },
    CharDev { perm: u32, major: u32, minor: u32 },
}

/// One line of the image's file listing (in the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    pub path: String,
    /// `dir`, `file` or `char`.
    pub kind: String,
    /// Permission bits, octal (`0755`).
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<Sha256>,
}

/// The initramfs tree. Parents are created as `0755` directories; every
/// path is added once.
#[derive(Debug, Default, Clone)]
pub struct Initramfs {
    nodes: BTreeMap<String, Node>,
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<(), InitramfsError> {
        let err = |message: &str| InitramfsError::Path {
            path: path.to_string(),
            message: message.to_string(),
        };
        check_relative_path(path).map_err(|m| err(&m))?;
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.nodes.get(&parent) {
                None => {
                    self.nodes.insert(parent.clone(), Node::Dir);
                }
                Some(Node::Dir) => {}
                Some(_) => return Err(err(&format!("parent `{parent}` is not a directory"))),
            }
        }
        if self.nodes.contains_key(path) {
            return Err(err("added twice"));
        }
        self.nodes.insert(path.to_string(), node);
        Ok(())
    }

    pub fn add_file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), InitramfsError> {
        self.insert(path, Node::File { perm, data })
    }

    pub fn add_char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), InitramfsError> {
        self.insert(path, Node::CharDev { perm, major, minor })
    }

    /// The uncompressed newc archive: entries in byte order of their paths
    /// (a parent always sorts before its children), every mtime `mtime`.
    pub fn cpio(&self, mtime: u32) -> Vec<u8> {
        let mut w = newc::Writer::new(Vec::new(), mtime);
        for (path, node) in &self.nodes {
            let r = match node {
                Node::Dir => w.dir(path, 0o755),
                Node::File { perm, data } => w.file(path, *perm, data),
                Node::CharDev { perm, major, minor } => w.char_dev(path, *perm, *major, *minor),
            };
            r.expect("writing to memory cannot fail and paths were checked");
        }
        w.finish().expect("writing to memory cannot fail")
    }

    /// Every path with its kind, mode and (for files) size and sha256.
    pub fn listing(&self) -> Vec<FileRecord> {
        self.nodes
            .iter()
            .map(|(path, node)| {
                let (kind, perm, data) = match node {
                    Node::Dir => ("dir", 0o755, None),
                    Node::File { perm, data } => ("file", *perm, Some(data)),
                    Node::CharDev { perm, .. } => ("char", *perm, None),
                };
                FileRecord {
                    path: path.clone(),
                    kind: kind.to_string(),
                    mode: format!("{perm:04o}"),
                    size: data.map(|d| d.len() as u64),
                    sha256: data.map(|d| Sha256::of(d)),
                }
            })
            .collect()
    }
}

/// Compresses an archive with fixed parameters: zstd `level` (at most
/// [`MAX_ZSTD_LEVEL`]), one thread, content size and checksum in the frame
/// header.
pub fn compress(cpio: &[u8], level: i32) -> Result<Vec<u8>, InitramfsError> {
    use zstd::zstd_safe::CParameter;
    if !(1..=MAX_ZSTD_LEVEL).contains(&level) {
        return Err(InitramfsError::Level(level));
    }
    let mut c = zstd::bulk::Compressor::new(level).map_err(InitramfsError::Compress)?;
    c.set_parameter(CParameter::ChecksumFlag(true))
        .and_then(|_| c.set_parameter(CParameter::ContentSizeFlag(true)))
        .and_then(|_| c.set_parameter(CParameter::NbWorkers(0)))
        .map_err(InitramfsError::Compress)?;
    c.compress(cpio).map_err(InitramfsError::Compress)
}

/// Decompresses what [`compress`] wrote (for tests and inspection).
pub fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::stream::decode_all(bytes)
}

/// The zstd library version that compressed the image (for the manifest).
pub fn zstd_version() -> String {
    let v = zstd::zstd_safe::version_number();
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Initramfs {
        let mut i = Initramfs::new();
        i.add_file("lib/modules/6.12/kernel/a.ko.xz", 0o644, vec![1; 10])
            .unwrap();
        i.add_file("init", 0o755, b"\x7fELF".to_vec()).unwrap();
        i.add_char_dev("dev/console", 0o600, 5, 1).unwrap();
        i
    }

    #[test]
    fn sorted_with_parents_first_and_fixed_metadata() {
        let entries = newc::parse(&sample().cpio(1234)).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.12",
                "lib/modules/6.12/kernel",
                "lib/modules/6.12/kernel/a.ko.xz"
            ]
        );
        assert!(
            entries
                .iter()
                .all(|e| e.mtime == 1234 && e.uid == 0 && e.gid == 0)
        );
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        let mut other = Initramfs::new();
        other.add_char_dev("dev/console", 0o600, 5, 1).unwrap();
        other.add_file("init", 0o755, b"\x7fELF".to_vec()).unwrap();
        other
            .add_file("lib/modules/6.12/kernel/a.ko.xz", 0o644, vec![1; 10])
            .unwrap();
        assert_eq!(other.cpio(1), sample().cpio(1));
        assert_eq!(
            compress(&other.cpio(1), MAX_ZSTD_LEVEL).unwrap(),
            compress(&sample().cpio(1), MAX_ZSTD_LEVEL).unwrap()
        );
    }

    #[test]
    fn refuses_duplicates_and_conflicts() {
        let mut i = sample();
        assert!(i.add_file("init", 0o755, vec![]).is_err());
        assert!(i.add_file("init/x", 0o755, vec![]).is_err());
        assert!(i.add_file("../etc/passwd", 0o644, vec![]).is_err());
        assert!(i.add_file("/init2", 0o644, vec![]).is_err());
    }

    #[test]
    fn compression_round_trips() {
        let cpio = sample().cpio(0);
        for level in [1, 9, MAX_ZSTD_LEVEL] {
            assert_eq!(decompress(&compress(&cpio, level).unwrap()).unwrap(), cpio);
        }
        for level in [0, 22] {
            assert!(compress(&cpio, level).is_err(), "level {level}");
        }
    }

    #[test]
    fn listing_has_sizes_and_hashes_of_files() {
        let l = sample().listing();
        let init = l.iter().find(|r| r.path == "init").unwrap();
        assert_eq!(
            (init.kind.as_str(), init.mode.as_str(), init.size),
            ("file", "0755", Some(4))
        );
        assert_eq!(init.sha256, Some(Sha256::of(b"\x7fELF")));
        let console = l.iter().find(|r| r.path == "dev/console").unwrap();
        assert_eq!((console.kind.as_str(), console.size), ("char", None));
    }
}
