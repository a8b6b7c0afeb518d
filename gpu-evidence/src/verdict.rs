//! The outcome of verifying GPU evidence: each check with its result, in
//! the order they run, and what the evidence says once it has held.

use std::collections::BTreeMap;

use serde::Serialize;

use super::opaque::OpaqueValue;
use super::verify::VerifyError;

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The request and response parse strictly.
    Report,
    /// The certificate chain verifies up to the pinned NVIDIA root.
    CertificateChain,
    /// The report's ECDSA P-384 signature verifies with the leaf's key.
    Signature,
    /// The request carries the nonce the caller chose.
    Nonce,
    /// The driver is not older than the minimum.
    DriverVersion,
    /// The measurement blocks match the reference values.
    Measurements,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not checked: nothing to check against (no reference values), or an
    /// earlier check it depends on failed. Never counts as a pass.
    NotChecked,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub status: Status,
    pub detail: String,
    /// The typed failure, for callers and tests; the JSON carries `detail`.
    #[serde(skip)]
    pub error: Option<VerifyError>,
}

/// What the evidence says about the GPU (filled once the report parsed).
#[derive(Debug, Clone, Serialize, Default)]
pub struct EvidenceSummary {
    pub request_nonce: String,
    pub driver_version: String,
    pub vbios_version: String,
    pub measurement_blocks: usize,
    pub certificate_chain: Vec<String>,
    pub opaque: BTreeMap<String, OpaqueValue>,
    pub measurements: BTreeMap<u8, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Every check that ran passed (a check that could not run because an
    /// earlier one failed makes this false; "no reference values" does not).
    pub holds: bool,
    /// Whether the measurement blocks were compared with reference values.
    pub measurements_compared: bool,
    pub checks: Vec<Check>,
    pub evidence: Option<EvidenceSummary>,
}

impl Verdict {
    /// The first failure, if any.
    pub fn error(&self) -> Option<&VerifyError> {
        self.checks.iter().find_map(|c| c.error.as_ref())
    }

    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// `Ok` only if everything checked holds *and* the measurements were
    /// compared: for callers that must not serve without a full check.
    pub fn require_complete(&self) -> Result<(), VerifyError> {
        if let Some(e) = self.error() {
            return Err(e.clone());
        }
        if !self.measurements_compared {
            return Err(VerifyError::NotCompared);
        }
        Ok(())
    }
}
