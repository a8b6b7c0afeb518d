//! The message bodies of the registry contract, written bit for bit as
//! `registry.tolk` reads them (docs/registry.md has the TL-B).

use std::collections::HashMap;
use std::sync::Arc;

use num_bigint::BigUint;
use tonlib_core::TonAddress;
use tonlib_core::cell::{Cell, CellBuilder, TonCellError};

use super::{Measurement, RegistryError};

pub const OP_PUBLISH: u32 = 0xc0c0_0001;
pub const OP_REVOKE: u32 = 0xc0c0_0002;
pub const OP_ENDORSE: u32 = 0xc0c0_0003;
pub const OP_ADD_PUBLISHER: u32 = 0xc0c0_0010;
pub const OP_REMOVE_PUBLISHER: u32 = 0xc0c0_0011;
pub const OP_ADD_AUDITOR: u32 = 0xc0c0_0012;
pub const OP_REMOVE_AUDITOR: u32 = 0xc0c0_0013;
pub const OP_TRANSFER_OWNERSHIP: u32 = 0xc0c0_0020;

/// Measurements per publish, revoke or endorse message. A record insert
/// costs 6,000 to 11,000 gas, growing with the registry's size (the
/// dictionary deepens); a 64-batch already took 694,000 of the 1,000,000
/// gas a basechain transaction may use once the registry held 4,000
/// records (BENCHMARKS.md). 32 keep a wide margin for years of releases; a
/// 256-shape manifest is eight messages, two wallet transfers.
pub const MAX_BATCH: usize = 32;

/// The contract's limit on the version string (bytes of UTF-8).
pub const MAX_VERSION_BYTES: usize = 64;

/// The exit codes of `registry.tolk` and what they mean.
pub const EXIT_CODES: &[(i64, &str)] = &[
    (9, "malformed message (cell underflow)"),
    (100, "sender is not the owner"),
    (101, "sender is not a publisher"),
    (102, "sender is not an auditor"),
    (103, "sender is neither the owner nor a publisher"),
    (
        104,
        "measurement already published with another manifest, model or version",
    ),
    (105, "unknown measurement"),
    (106, "measurement is revoked"),
    (107, "empty batch"),
    (108, "version is not 1..=64 bytes"),
    (109, "account does not hold that role"),
    (
        -14,
        "out of gas: the batch is too large or the attached value too small",
    ),
    (65535, "unknown operation"),
];

/// What a publish message says about every measurement it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// sha256 of the image's `manifest.json` bytes.
    pub manifest_sha256: [u8; 32],
    /// sha256 of the model the image serves (zero while images carry none).
    pub model_sha256: [u8; 32],
    /// The manifest's `version`.
    pub version: String,
}

impl Release {
    pub fn validate(&self) -> Result<(), RegistryError> {
        let n = self.version.len();
        if n == 0 || n > MAX_VERSION_BYTES {
            return Err(RegistryError::Invalid(format!(
                "version `{}` has {n} bytes; the registry takes 1 to {MAX_VERSION_BYTES}",
                self.version
            )));
        }
        Ok(())
    }
}

/// The owner's role operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleOp {
    AddPublisher,
    RemovePublisher,
    AddAuditor,
    RemoveAuditor,
    TransferOwnership,
}

impl RoleOp {
    fn op(self) -> u32 {
        match self {
            Self::AddPublisher => OP_ADD_PUBLISHER,
            Self::RemovePublisher => OP_REMOVE_PUBLISHER,
            Self::AddAuditor => OP_ADD_AUDITOR,
            Self::RemoveAuditor => OP_REMOVE_AUDITOR,
            Self::TransferOwnership => OP_TRANSFER_OWNERSHIP,
        }
    }
}

/// Measurements sorted and without repeats, split into batches of at most
/// [`MAX_BATCH`].
pub fn batches(measurements: &[Measurement]) -> Vec<Vec<Measurement>> {
    let mut sorted = measurements.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.chunks(MAX_BATCH).map(<[_]>::to_vec).collect()
}

fn write_true(b: &mut CellBuilder, _: bool) -> Result<(), TonCellError> {
    b.store_bit(true)?;
    Ok(())
}

/// `HashmapE 384 Bool`: the set of measurements (the value bit is 1).
fn store_measurement_set(
    b: &mut CellBuilder,
    measurements: &[Measurement],
) -> Result<(), RegistryError> {
    if measurements.is_empty() {
        return Err(RegistryError::Invalid(
            "a batch needs at least one measurement".into(),
        ));
    }
    if measurements.len() > MAX_BATCH {
        return Err(RegistryError::Invalid(format!(
            "{} measurements in one message; at most {MAX_BATCH} fit the gas limit",
            measurements.len()
        )));
    }
    let set: HashMap<BigUint, bool> = measurements
        .iter()
        .map(|m| (BigUint::from_bytes_be(&m.0), true))
        .collect();
    b.store_dict(384, write_true, set)?;
    Ok(())
}

/// The UTF-8 bytes of a version in one cell.
pub fn version_cell(version: &str) -> Result<Cell, RegistryError> {
    Ok(CellBuilder::new()
        .store_slice(version.as_bytes())?
        .build()?)
}

pub fn publish_body(
    query_id: u64,
    release: &Release,
    measurements: &[Measurement],
) -> Result<Cell, RegistryError> {
    release.validate()?;
    let mut b = CellBuilder::new();
    b.store_u32(32, OP_PUBLISH)?
        .store_u64(64, query_id)?
        .store_slice(&release.manifest_sha256)?
        .store_slice(&release.model_sha256)?
        .store_reference(&Arc::new(version_cell(&release.version)?))?;
    store_measurement_set(&mut b, measurements)?;
    Ok(b.build()?)
}

fn set_body(op: u32, query_id: u64, measurements: &[Measurement]) -> Result<Cell, RegistryError> {
    let mut b = CellBuilder::new();
    b.store_u32(32, op)?.store_u64(64, query_id)?;
    store_measurement_set(&mut b, measurements)?;
    Ok(b.build()?)
}

pub fn revoke_body(query_id: u64, measurements: &[Measurement]) -> Result<Cell, RegistryError> {
    set_body(OP_REVOKE, query_id, measurements)
}

pub fn endorse_body(query_id: u64, measurements: &[Measurement]) -> Result<Cell, RegistryError> {
    set_body(OP_ENDORSE, query_id, measurements)
}

pub fn role_body(op: RoleOp, query_id: u64, account: &TonAddress) -> Result<Cell, RegistryError> {
    Ok(CellBuilder::new()
        .store_u32(32, op.op())?
        .store_u64(64, query_id)?
        .store_address(account)?
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(byte: u8) -> Measurement {
        Measurement([byte; 48])
    }

    fn release() -> Release {
        Release {
            manifest_sha256: [0x11; 32],
            model_sha256: [0x22; 32],
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn publish_body_has_the_contract_layout() {
        let body = publish_body(7, &release(), &[m(1), m(2)]).unwrap();
        let mut p = body.parser();
        assert_eq!(p.load_u32(32).unwrap(), OP_PUBLISH);
        assert_eq!(p.load_u64(64).unwrap(), 7);
        assert_eq!(p.load_bytes(32).unwrap(), vec![0x11; 32]);
        assert_eq!(p.load_bytes(32).unwrap(), vec![0x22; 32]);
        assert!(p.load_bit().unwrap(), "the measurement set is present");
        assert_eq!(body.references().len(), 2);
        assert_eq!(body.references()[0].data(), b"0.1.0");
    }

    #[test]
    fn empty_oversized_and_bad_versions_are_refused() {
        assert!(publish_body(0, &release(), &[]).is_err());
        let many: Vec<_> = (0..=MAX_BATCH as u8).map(m).collect();
        assert!(publish_body(0, &release(), &many).is_err());
        for version in ["", &"v".repeat(MAX_VERSION_BYTES + 1)] {
            let r = Release {
                version: version.to_string(),
                ..release()
            };
            assert!(publish_body(0, &r, &[m(1)]).is_err(), "{version:?}");
        }
    }

    #[test]
    fn batches_sort_dedup_and_split() {
        let mut all: Vec<_> = (0..150u8).rev().map(m).collect();
        all.push(m(3));
        let b = batches(&all);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![32, 32, 32, 32, 22]
        );
        assert_eq!(b[0][0], m(0));
        assert_eq!(b[4].last(), Some(&m(149)));
    }
}
