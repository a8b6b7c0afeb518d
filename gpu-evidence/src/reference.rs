//! Reference values for the measurement blocks, from an offline file.
//!
//! NVIDIA publishes the expected measurements of each driver and each VBIOS
//! as a RIM (a signed SWID-tag XML document): one `Resource` element per
//! measurement with a 0-based `index`, an `active` flag and one or more
//! accepted digests (`Hash0`, `Hash1`, ...). With the `rim` feature,
//! `crate::rim` verifies RIMs (XML signature up to NVIDIA's RIM root) and
//! `ReferenceValues::from_rims` turns a driver's and a VBIOS's into these
//! values (docs/gpu-attestation.md). The file is JSON:
//!
//! ```json
//! {
//!   "format": "cocoon-gpu-reference-values/1",
//!   "source": "NV_GPU_DRIVER_GH100_550.90.07 + NV_GPU_VBIOS_1010_0200_882_96009F0001",
//!   "driver_version": "550.90.07",
//!   "vbios_version": "96.00.9f.00.01",
//!   "measurements": [
//!     { "index": 2, "component": "vbios", "values": ["8048dfd1…"] }
//!   ]
//! }
//! ```
//!
//! `index` is the SPDM block index (RIM index + 1). A block matches if its
//! value equals any of `values`. `driver_version` and `vbios_version` are
//! optional; when given, the report must carry exactly those versions
//! (reference values for another firmware say nothing about this one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::spdm::Report;

pub const FORMAT: &str = "cocoon-gpu-reference-values/1";
/// A driver plus a VBIOS RIM are a few KiB of digests.
pub const MAX_REFERENCE_LEN: usize = 1 << 20;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("the reference file is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("not a reference-values file: {0}")]
    Json(String),
    #[error("format is {0:?}, expected \"{FORMAT}\"")]
    Format(String),
    #[error("the file lists no measurements, so it would compare nothing")]
    Empty,
    #[error("index {0} is not an SPDM measurement block index (1-254)")]
    Index(u8),
    #[error("index {0} is listed twice")]
    Duplicate(u8),
    #[error("index {0} lists no accepted values")]
    NoValues(u8),
    #[error("index {index}: {value:?} is not hex")]
    Hex { index: u8, value: String },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MeasurementError {
    #[error("the report is from driver {found}, the reference values are for {expected}")]
    DriverVersion { expected: String, found: String },
    #[error("the report is from VBIOS {found}, the reference values are for {expected}")]
    VbiosVersion { expected: String, found: String },
    #[error("measurement block {index} ({component}) is not in the report")]
    Missing { index: u8, component: String },
    #[error(
        "measurement block {index} ({component}) is {found}, not one of the {} accepted value(s)",
        expected.len()
    )]
    Mismatch {
        index: u8,
        component: String,
        found: String,
        expected: Vec<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    driver_version: Option<String>,
    #[serde(default)]
    vbios_version: Option<String>,
    measurements: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    index: u8,
    #[serde(default)]
    component: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    component: String,
    values: Vec<Vec<u8>>,
}

/// Parsed reference values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValues {
    pub source: String,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
    entries: BTreeMap<u8, Entry>,
}

/// What a comparison covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// Blocks that matched a reference value.
    pub matched: Vec<u8>,
    /// Blocks in the report the reference values say nothing about (NVIDIA's
    /// RIMs leave some indices inactive); listed, not judged.
    pub not_covered: Vec<u8>,
}

impl ReferenceValues {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ReferenceError> {
        if bytes.len() > MAX_REFERENCE_LEN {
            return Err(ReferenceError::TooLarge {
                len: bytes.len(),
                max: MAX_REFERENCE_LEN,
            });
        }
        let file: File =
            serde_json::from_slice(bytes).map_err(|e| ReferenceError::Json(e.to_string()))?;
        if file.format != FORMAT {
            return Err(ReferenceError::Format(file.format));
        }
        if file.measurements.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let mut entries = BTreeMap::new();
        for e in file.measurements {
            if e.index == 0 || e.index == 0xFF {
                return Err(ReferenceError::Index(e.index));
            }
            if e.values.is_empty() {
                return Err(ReferenceError::NoValues(e.index));
            }
            let values = e
                .values
                .iter()
                .map(|v| {
                    hex::decode(v).map_err(|_| ReferenceError::Hex {
                        index: e.index,
                        value: v.chars().take(128).collect(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let entry = Entry {
                component: e.component,
                values,
            };
            if entries.insert(e.index, entry).is_some() {
                return Err(ReferenceError::Duplicate(e.index));
            }
        }
        Ok(Self {
            source: file.source,
            driver_version: file.driver_version,
            vbios_version: file.vbios_version,
            entries,
        })
    }

    /// Write reference values in the file format (used by tests and by
    /// whoever converts verified RIMs).
    pub fn to_json(&self) -> String {
        let file = File {
            format: FORMAT.into(),
            source: self.source.clone(),
            driver_version: self.driver_version.clone(),
            vbios_version: self.vbios_version.clone(),
            measurements: self
                .entries
                .iter()
                .map(|(index, e)| FileEntry {
                    index: *index,
                    component: e.component.clone(),
                    values: e.values.iter().map(hex::encode).collect(),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Build reference values in memory: (index, component, accepted values).
    pub fn new(
        source: &str,
        driver_version: Option<&str>,
        vbios_version: Option<&str>,
        entries: impl IntoIterator<Item = (u8, String, Vec<Vec<u8>>)>,
    ) -> Self {
        Self {
            source: source.into(),
            driver_version: driver_version.map(Into::into),
            vbios_version: vbios_version.map(Into::into),
            entries: entries
                .into_iter()
                .map(|(i, component, values)| (i, Entry { component, values }))
                .collect(),
        }
    }

    /// Compare a report's blocks with these values. Fails on the first
    /// block (by index) that is missing or matches none of its values.
    pub fn compare(&self, report: &Report) -> Result<Comparison, MeasurementError> {
        let opaque = &report.response.opaque;
        if let Some(expected) = &self.driver_version
            && expected != opaque.driver_version()
        {
            return Err(MeasurementError::DriverVersion {
                expected: expected.clone(),
                found: opaque.driver_version().into(),
            });
        }
        if let Some(expected) = &self.vbios_version
            && expected != opaque.vbios_version()
        {
            return Err(MeasurementError::VbiosVersion {
                expected: expected.clone(),
                found: opaque.vbios_version().into(),
            });
        }
        let mut matched = Vec::new();
        for (&index, entry) in &self.entries {
            let block = report
                .block(index)
                .ok_or_else(|| MeasurementError::Missing {
                    index,
                    component: entry.component.clone(),
                })?;
            if !entry.values.contains(&block.value) {
                return Err(MeasurementError::Mismatch {
                    index,
                    component: entry.component.clone(),
                    found: hex::encode(&block.value),
                    expected: entry.values.iter().map(hex::encode).collect(),
                });
            }
            matched.push(index);
        }
        let not_covered = report
            .response
            .blocks
            .iter()
            .map(|b| b.index)
            .filter(|i| !self.entries.contains_key(i))
            .collect();
        Ok(Comparison {
            matched,
            not_covered,
        })
    }
}
