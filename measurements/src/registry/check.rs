//! Is a set of measurements on chain, and for which release: what
//! `cargo xtask verify --chain` reports.

use tonlib_core::TonAddress;

use super::reader::{Reader, Record, Status};
use super::{Measurement, RegistryError};

/// One measurement as the registry sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub measurement: Measurement,
    pub record: Option<Record>,
    /// Current auditors that endorsed it.
    pub endorsements: u32,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub registry: TonAddress,
    pub entries: Vec<Entry>,
}

/// What a measurement must satisfy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The sha256 of the local manifest: the record must name it.
    pub manifest_sha256: Option<[u8; 32]>,
    pub min_endorsements: u32,
}

impl Entry {
    /// Why this measurement fails the policy; None when it passes.
    pub fn problem(&self, policy: &Policy) -> Option<String> {
        let Some(r) = &self.record else {
            return Some("not in the registry".into());
        };
        if r.status == Status::Revoked {
            return Some(format!("revoked (was published for version {})", r.version));
        }
        if let Some(want) = policy.manifest_sha256
            && r.manifest_sha256 != want
        {
            return Some(format!(
                "published for another manifest (sha256 {}, this one is {})",
                hex::encode(r.manifest_sha256),
                hex::encode(want)
            ));
        }
        if self.endorsements < policy.min_endorsements {
            return Some(format!(
                "{} endorsement(s), {} required",
                self.endorsements, policy.min_endorsements
            ));
        }
        None
    }
}

impl Report {
    pub fn problems(&self, policy: &Policy) -> Vec<(Measurement, String)> {
        self.entries
            .iter()
            .filter_map(|e| e.problem(policy).map(|p| (e.measurement, p)))
            .collect()
    }
}

/// Reads the record and endorsement count of every measurement.
pub fn check(reader: &Reader<'_>, measurements: &[Measurement]) -> Result<Report, RegistryError> {
    let mut entries = Vec::with_capacity(measurements.len());
    for m in measurements {
        let record = reader.record(m)?;
        let endorsements = if record.is_some() {
            reader.endorsement_count(m)?
        } else {
            0
        };
        entries.push(Entry {
            measurement: *m,
            record,
            endorsements,
        });
    }
    Ok(Report {
        registry: reader.address().clone(),
        entries,
    })
}
