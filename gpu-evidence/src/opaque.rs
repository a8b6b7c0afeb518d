//! The OpaqueData of an NVIDIA MEASUREMENTS response.
//!
//! SPDM leaves OpaqueData free-form; NVIDIA fills it with type-length-value
//! items (type u16 LE, length u16 LE, value) that name the driver, the
//! VBIOS and the board. The type numbers and names are NVIDIA's, as its
//! nvtrust verifier reads them. The items are covered by the report's
//! signature, so once the signature holds they are the GPU's word.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;

/// The item types NVIDIA defines (nvtrust `OpaqueDataParser`).
const FIELD_NAMES: &[(u16, &str)] = &[
    (1, "cert_issuer_name"),
    (2, "cert_authority_key_identifier"),
    (3, "driver_version"),
    (4, "gpu_info"),
    (5, "id_sku"),
    (6, "vbios_version"),
    (7, "manufacturer_id"),
    (8, "tamper_detection"),
    (9, "smc"),
    (10, "vpr"),
    (11, "nvdec0_status"),
    (12, "measurement_count"),
    (13, "cpr_info"),
    (14, "board_id"),
    (15, "chip_sku"),
    (16, "chip_sku_mod"),
    (17, "project"),
    (18, "project_sku"),
    (19, "project_sku_mod"),
    (20, "fwid"),
    (21, "protected_pcie_status"),
    (22, "switch_pdi"),
    (23, "floorswept_ports"),
    (24, "position_id"),
    (25, "lock_switch_status"),
    (32, "gpu_link_conn"),
    (33, "sys_enable_status"),
    (34, "opaque_data_version"),
    (35, "chip_info"),
    (36, "feature_flag"),
];

pub const DRIVER_VERSION: u16 = 3;
pub const VBIOS_VERSION: u16 = 6;
pub const NVDEC0_STATUS: u16 = 11;
pub const MEASUREMENT_COUNT: u16 = 12;
pub const PROTECTED_PCIE_STATUS: u16 = 21;
/// Items NVIDIA writes as NUL-padded ASCII.
const TEXT_FIELDS: &[u16] = &[DRIVER_VERSION, 15, 16, 17, 18, 35];

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OpaqueError {
    #[error("item header at offset {offset} is cut short ({available} byte(s) left)")]
    HeaderTruncated { offset: usize, available: usize },
    #[error("item type {kind} at offset {offset} declares {declared} bytes, only {available} left")]
    ValueTruncated {
        kind: u16,
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("item type {0} appears twice")]
    Duplicate(u16),
    #[error("{0} is missing: without it the device's firmware cannot be judged")]
    Missing(&'static str),
    #[error("driver_version is not printable ASCII")]
    DriverVersionText,
    #[error("vbios_version is {0} bytes, expected 8")]
    VbiosVersionLength(usize),
    #[error("measurement_count is {0} bytes, not a whole number of u32")]
    MeasurementCountLength(usize),
}

/// One opaque item, kept raw: unknown types from newer firmware are kept,
/// not rejected (they are signed data; we simply do not interpret them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueField {
    pub kind: u16,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueData {
    fields: Vec<OpaqueField>,
    driver_version: String,
    vbios_version: String,
}

impl OpaqueData {
    /// Parse the items; the driver and VBIOS versions must be there.
    pub fn parse(bytes: &[u8]) -> Result<Self, OpaqueError> {
        let mut fields: Vec<OpaqueField> = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let available = bytes.len() - offset;
            if available < 4 {
                return Err(OpaqueError::HeaderTruncated { offset, available });
            }
            let kind = u16::from_le_bytes([bytes[offset], bytes[offset + 1]]);
            let len = usize::from(u16::from_le_bytes([bytes[offset + 2], bytes[offset + 3]]));
            if len > available - 4 {
                return Err(OpaqueError::ValueTruncated {
                    kind,
                    offset,
                    declared: len,
                    available: available - 4,
                });
            }
            if fields.iter().any(|f| f.kind == kind) {
                return Err(OpaqueError::Duplicate(kind));
            }
            fields.push(OpaqueField {
                kind,
                value: bytes[offset + 4..offset + 4 + len].to_vec(),
            });
            offset += 4 + len;
        }
        let get = |kind: u16, name: &'static str| {
            fields
                .iter()
                .find(|f| f.kind == kind)
                .map(|f| f.value.as_slice())
                .ok_or(OpaqueError::Missing(name))
        };
        let driver_version = decode_text(get(DRIVER_VERSION, "driver_version")?)
            .ok_or(OpaqueError::DriverVersionText)?;
        let vbios_version = format_vbios(get(VBIOS_VERSION, "vbios_version")?)?;
        if let Some(f) = fields.iter().find(|f| f.kind == MEASUREMENT_COUNT)
            && f.value.len() % 4 != 0
        {
            return Err(OpaqueError::MeasurementCountLength(f.value.len()));
        }
        Ok(Self {
            fields,
            driver_version,
            vbios_version,
        })
    }

    /// The driver version the GPU reports, e.g. `550.90.07`.
    pub fn driver_version(&self) -> &str {
        &self.driver_version
    }

    /// The VBIOS version in NVIDIA's notation, e.g. `96.00.9f.00.01`.
    pub fn vbios_version(&self) -> &str {
        &self.vbios_version
    }

    pub fn fields(&self) -> &[OpaqueField] {
        &self.fields
    }

    pub fn get(&self, kind: u16) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.value.as_slice())
    }

    /// Per-block measurement counts (how often each block was extended),
    /// in block order, when the GPU reports them.
    pub fn measurement_counts(&self) -> Option<Vec<u32>> {
        self.get(MEASUREMENT_COUNT).map(|v| {
            v.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// Every item by name, decoded for people: text items as text, status
    /// bytes as enabled/disabled, versions formatted, the rest as hex.
    pub fn summary(&self) -> BTreeMap<String, OpaqueValue> {
        self.fields
            .iter()
            .map(|f| (field_name(f.kind), self.display(f)))
            .collect()
    }

    fn display(&self, f: &OpaqueField) -> OpaqueValue {
        match f.kind {
            DRIVER_VERSION => OpaqueValue::Text(self.driver_version.clone()),
            VBIOS_VERSION => OpaqueValue::Text(self.vbios_version.clone()),
            MEASUREMENT_COUNT => OpaqueValue::Counts(self.measurement_counts().unwrap_or_default()),
            NVDEC0_STATUS | PROTECTED_PCIE_STATUS => OpaqueValue::Text(status(&f.value)),
            k if TEXT_FIELDS.contains(&k) => match decode_text(&f.value) {
                Some(t) => OpaqueValue::Text(t),
                None => OpaqueValue::Text(hex::encode(&f.value)),
            },
            _ => OpaqueValue::Text(hex::encode(&f.value)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OpaqueValue {
    Text(String),
    Counts(Vec<u32>),
}

pub fn field_name(kind: u16) -> String {
    FIELD_NAMES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("unknown_{kind}"))
}

/// NUL-padded printable ASCII; `None` if anything else is in it.
fn decode_text(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (text, padding) = bytes.split_at(end);
    if padding.iter().any(|&b| b != 0) || !text.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(String::from_utf8_lossy(text).into_owned())
}

/// NVIDIA writes the VBIOS version as 8 bytes: the first four reversed,
/// then the fifth, as hex joined by dots (`00 9f 00 96 01 ..` →
/// `96.00.9f.00.01`), the way nvtrust and trustee print it.
fn format_vbios(bytes: &[u8]) -> Result<String, OpaqueError> {
    if bytes.len() != 8 {
        return Err(OpaqueError::VbiosVersionLength(bytes.len()));
    }
    Ok(format!(
        "{:02x}.{:02x}.{:02x}.{:02x}.{:02x}",
        bytes[3], bytes[2], bytes[1], bytes[0], bytes[4]
    ))
}

/// NVIDIA's status bytes: 0xaa enabled, 0x55 disabled.
fn status(bytes: &[u8]) -> String {
    match bytes {
        [0xaa] => "enabled".into(),
        [0x55] => "disabled".into(),
        other => hex::encode(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = kind.to_le_bytes().to_vec();
        v.extend((value.len() as u16).to_le_bytes());
        v.extend(value);
        v
    }

    fn required() -> Vec<u8> {
        let mut v = item(DRIVER_VERSION, b"550.90.07\0");
        v.extend(item(
            VBIOS_VERSION,
            &[0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0],
        ));
        v
    }

    #[test]
    fn decodes_versions() {
        let o = OpaqueData::parse(&required()).unwrap();
        assert_eq!(o.driver_version(), "550.90.07");
        assert_eq!(o.vbios_version(), "96.00.9f.00.01");
    }

    #[test]
    fn rejects_duplicates_missing_and_cut_items() {
        let mut dup = required();
        dup.extend(item(DRIVER_VERSION, b"1\0"));
        assert_eq!(
            OpaqueData::parse(&dup),
            Err(OpaqueError::Duplicate(DRIVER_VERSION))
        );
        assert_eq!(
            OpaqueData::parse(&item(VBIOS_VERSION, &[0; 8])),
            Err(OpaqueError::Missing("driver_version"))
        );
        let mut cut = required();
        cut.extend([1, 0, 5]);
        assert!(matches!(
            OpaqueData::parse(&cut),
            Err(OpaqueError::HeaderTruncated { available: 3, .. })
        ));
        let mut long = required();
        long.extend([1, 0, 5, 0, 1]);
        assert!(matches!(
            OpaqueData::parse(&long),
            Err(OpaqueError::ValueTruncated { declared: 5, .. })
        ));
    }

    #[test]
    fn driver_version_must_be_text() {
        let mut v = item(DRIVER_VERSION, b"550\x0190\0");
        v.extend(item(VBIOS_VERSION, &[0; 8]));
        assert_eq!(OpaqueData::parse(&v), Err(OpaqueError::DriverVersionText));
    }
}
