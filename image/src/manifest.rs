//! `manifest.json`: what a built image is made of.
//!
//! Written by `cargo xtask build` beside the artifacts, read by
//! `cocoon-host` before it boots anything and by auditors comparing builds.
//! It holds no path and no time except `SOURCE_DATE_EPOCH`, so two builds
//! of the same commit write the same bytes.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::initramfs::FileRecord;
use crate::lock::{PinnedPackage, PinnedSource, PinnedWheel};

/// 2: a model is named by its pack hash (`model.pack_hash`), not its sha256.
pub const MANIFEST_SCHEMA: u32 = 2;
pub const MANIFEST_FILE: &str = "manifest.json";

/// The artifact names every image has.
pub const KERNEL: &str = "vmlinuz";
pub const INITRD: &str = "initrd.img";
pub const CMDLINE: &str = "cmdline";
pub const FIRMWARE: &str = "OVMF.fd";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub name: String,
    pub version: String,
    pub profile: String,
    pub git: GitInfo,
    pub source_date_epoch: u64,
    pub build: BuildInfo,
    pub cmdline: String,
    pub inputs: Vec<PinnedPackage>,
    pub sources: Vec<PinnedSource>,
    /// PyPI wheels the build took files from (the CUDA headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wheels: Vec<PinnedWheel>,
    pub artifacts: Vec<Artifact>,
    pub initramfs: InitramfsInfo,
    /// The model the measured command line requires (`cocoon.model=`),
    /// if the image was built with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// The SEV-SNP launch measurement of every launch shape this image
    /// may be booted with.
    pub measurements: Vec<MeasurementRecord>,
}

/// The model pack an image serves: its pack hash is on the measured
/// command line; the rest says what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// The model id clients pass.
    pub name: String,
    pub architecture: String,
    /// The pack hash ([`crate::packhash`]: the sha256tree root, not the
    /// file's plain sha256).
    pub pack_hash: Sha256,
    pub size: u64,
    /// sha256 of the GGUF inside it (to match it with its upstream file).
    pub gguf_sha256: String,
}

/// The command-line word that binds a model pack to the measurement.
pub fn model_cmdline_arg(pack_hash: &Sha256) -> String {
    format!("cocoon.model={}", crate::packhash::display(pack_hash))
}

/// One launch shape and its expected SNP measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementRecord {
    pub vcpus: u32,
    /// The QEMU CPU model (`EPYC-v4`, `EPYC-Milan`, ...).
    pub cpu_type: String,
    /// Hex, `0x1`.
    pub guest_features: String,
    /// 96 hex digits.
    pub measurement: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitInfo {
    pub commit: String,
    /// The working tree had uncommitted changes: the commit alone does not
    /// reproduce this build.
    pub dirty: bool,
}

/// The build environment: everything besides the inputs that shapes the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    /// `rustc -vV` release, commit and LLVM version.
    pub rustc: String,
    pub cargo: String,
    pub target: String,
    /// The C compiler used by crates with C parts (ring, zstd).
    pub cc: String,
    /// The build machine's C library `/init` was linked against (it runs
    /// on the image's pinned copy of the same release).
    pub libc: String,
    pub cargo_profile: String,
    /// The cargo features `/init` was built with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cargo_features: Vec<String>,
    pub rustflags: Vec<String>,
    /// Everything that shapes the firmware's bytes besides its source.
    pub firmware_tools: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    pub sha256: Sha256,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitramfsInfo {
    pub compression: String,
    pub uncompressed_size: u64,
    pub uncompressed_sha256: Sha256,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path} is not a valid image manifest: {message}")]
    Parse { path: String, message: String },
    #[error("{path} has schema {found}; this tool reads schema {MANIFEST_SCHEMA}")]
    Schema { path: String, found: u32 },
    #[error("{path}: the manifest lists no `{name}` artifact")]
    NoArtifact { path: String, name: String },
    #[error(
        "{file}: missing from the image ({error}); the image is incomplete, rebuild it with `cargo xtask build`"
    )]
    MissingFile { file: String, error: std::io::Error },
    #[error(
        "{file}: does not match the manifest (expected {expected_size} bytes, sha256 {expected}; \
         found {actual_size} bytes, sha256 {actual}); refusing to boot a modified image"
    )]
    Mismatch {
        file: String,
        expected: Sha256,
        expected_size: u64,
        actual: Sha256,
        actual_size: u64,
    },
    #[error("{file}: differs from the command line recorded in the manifest")]
    CmdlineMismatch { file: String },
}

/// Parses guest features written in hex, with or without `0x` (`0x1`, `21`).
pub fn parse_guest_features(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

impl Manifest {
    /// The recorded measurement of one launch shape, if the image was
    /// measured for it.
    pub fn measurement(
        &self,
        vcpus: u32,
        cpu_type: &str,
        guest_features: u64,
    ) -> Option<&MeasurementRecord> {
        self.measurements.iter().find(|r| {
            r.vcpus == vcpus
                && r.cpu_type == cpu_type
                && parse_guest_features(&r.guest_features) == Some(guest_features)
        })
    }

    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let display = path.display().to_string();
        let text = fs::read_to_string(&path).map_err(|error| ManifestError::Read {
            path: display.clone(),
            error,
        })?;
        Self::parse(&text, &display)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| ManifestError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        if m.schema != MANIFEST_SCHEMA {
            return Err(ManifestError::Schema {
                path: origin.to_string(),
                found: m.schema,
            });
        }
        for a in &m.artifacts {
            let plain =
                !a.name.is_empty() && !a.name.contains('/') && a.name != "." && a.name != "..";
            if !plain {
                return Err(ManifestError::Parse {
                    path: origin.to_string(),
                    message: format!("artifact name `{}` is not a plain file name", a.name),
                });
            }
        }
        for name in [KERNEL, INITRD, CMDLINE, FIRMWARE] {
            if m.artifact(name).is_none() {
                return Err(ManifestError::NoArtifact {
                    path: origin.to_string(),
                    name: name.to_string(),
                });
            }
        }
        Ok(m)
    }

    /// The manifest as written to disk: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a manifest always serializes");
        s.push('\n');
        s
    }

    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }

    /// Checks every artifact in `dir` against its size and sha256, and the
    /// `cmdline` file against the recorded command line. The first
    /// difference is the error, naming the file.
    pub fn verify_artifacts(&self, dir: &Path) -> Result<(), ManifestError> {
        for a in &self.artifacts {
            let path = dir.join(&a.name);
            let file = path.display().to_string();
            let (actual, actual_size) =
                Sha256::of_file(&path).map_err(|error| ManifestError::MissingFile {
                    file: file.clone(),
                    error,
                })?;
            if actual != a.sha256 || actual_size != a.size {
                return Err(ManifestError::Mismatch {
                    file,
                    expected: a.sha256,
                    expected_size: a.size,
                    actual,
                    actual_size,
                });
            }
        }
        let cmdline_path = dir.join(CMDLINE);
        let on_disk = fs::read(&cmdline_path).map_err(|error| ManifestError::MissingFile {
            file: cmdline_path.display().to_string(),
            error,
        })?;
        if on_disk != self.cmdline.as_bytes() {
            return Err(ManifestError::CmdlineMismatch {
                file: cmdline_path.display().to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_image(dir: &Path) -> Manifest {
        let files = [
            (KERNEL, &b"kernel"[..]),
            (INITRD, b"initrd"),
            (CMDLINE, b"console=ttyS0"),
            (FIRMWARE, b"firmware"),
        ];
        let mut artifacts = Vec::new();
        for (name, bytes) in files {
            fs::write(dir.join(name), bytes).unwrap();
            artifacts.push(Artifact {
                name: name.into(),
                sha256: Sha256::of(bytes),
                size: bytes.len() as u64,
            });
        }
        Manifest {
            schema: MANIFEST_SCHEMA,
            name: "cocoon".into(),
            version: "0.1.0".into(),
            profile: "cpu".into(),
            git: GitInfo {
                commit: "0".repeat(40),
                dirty: false,
            },
            source_date_epoch: 1,
            build: BuildInfo {
                rustc: "rustc".into(),
                cargo: "cargo".into(),
                target: "x86_64-unknown-linux-gnu".into(),
                cc: "gcc".into(),
                libc: "glibc".into(),
                cargo_profile: "guest".into(),
                cargo_features: vec!["cuda".into()],
                rustflags: vec![],
                firmware_tools: vec![],
            },
            cmdline: "console=ttyS0".into(),
            inputs: vec![],
            wheels: vec![],
            sources: vec![],
            artifacts,
            initramfs: InitramfsInfo {
                compression: "zstd".into(),
                uncompressed_size: 6,
                uncompressed_sha256: Sha256::of(b"cpio"),
                files: vec![],
            },
            model: None,
            measurements: vec![],
        }
    }

    #[test]
    fn verifies_an_intact_image_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let m = write_image(dir.path());
        m.verify_artifacts(dir.path()).unwrap();
        assert_eq!(Manifest::parse(&m.to_json(), "t").unwrap(), m);
    }

    #[test]
    fn names_the_tampered_file() {
        for name in [KERNEL, INITRD, CMDLINE, FIRMWARE] {
            let dir = tempfile::tempdir().unwrap();
            let m = write_image(dir.path());
            let p = dir.path().join(name);
            let mut bytes = fs::read(&p).unwrap();
            bytes[0] ^= 1;
            fs::write(&p, bytes).unwrap();
            let err = m.verify_artifacts(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains(&p.display().to_string()) && err.contains("does not match"),
                "{err}"
            );
        }
    }

    #[test]
    fn names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = write_image(dir.path());
        fs::remove_file(dir.path().join(INITRD)).unwrap();
        let err = m.verify_artifacts(dir.path()).unwrap_err().to_string();
        assert!(err.contains(INITRD) && err.contains("missing"), "{err}");
    }

    #[test]
    fn rejects_path_artifacts_and_other_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let m = write_image(dir.path());
        let evil = m.to_json().replace("\"initrd.img\"", "\"../initrd.img\"");
        assert!(Manifest::parse(&evil, "t").is_err());
        let future = m.to_json().replace("\"schema\": 2", "\"schema\": 9");
        assert!(matches!(
            Manifest::parse(&future, "t"),
            Err(ManifestError::Schema { .. })
        ));
    }
}
