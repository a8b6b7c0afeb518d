//! Verifying one piece of GPU evidence: report, chain, signature, nonce,
//! driver version, measurements, in that order.

use std::time::Duration;

use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha384};
use thiserror::Error;

use super::chain::{self, ChainError};
use super::reference::{MeasurementError, ReferenceValues};
use super::spdm::{self, NONCE_LEN, Report, SpdmError, Trailing};
use super::verdict::{Check, CheckName, EvidenceSummary, Status, Verdict};
use super::version::DriverVersion;
use x509_cert::Certificate;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("report: {0}")]
    Report(#[from] SpdmError),
    #[error("certificate chain: {0}")]
    Chain(#[from] ChainError),
    #[error("signature: the signature is not a valid P-384 r‖s pair")]
    SignatureMalformed,
    #[error("signature: the report's signature does not verify with the leaf certificate's key")]
    SignatureInvalid,
    #[error("nonce: the request carries {found}, expected {expected}")]
    NonceMismatch { expected: String, found: String },
    #[error("driver version: {found} is older than the minimum {minimum}")]
    DriverTooOld { found: String, minimum: String },
    #[error("driver version: the report's {0:?} is not a version number")]
    DriverUnreadable(String),
    #[error("measurements: {0}")]
    Measurement(#[from] MeasurementError),
    #[error("measurements: not compared (no reference values given)")]
    NotCompared,
    #[error("{0}: not checked because an earlier check failed")]
    Skipped(&'static str),
}

/// What the evidence must satisfy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The nonce we put in the request (bound to our session).
    pub nonce: [u8; NONCE_LEN],
    /// The oldest acceptable driver; `None` skips the check (reported as
    /// not checked).
    pub min_driver: Option<DriverVersion>,
    /// Reference values; `None` leaves the blocks "not compared".
    pub reference: Option<ReferenceValues>,
    pub trailing: Trailing,
    /// The time certificate validity is checked at (since the Unix epoch).
    pub now: Duration,
}

/// The evidence as it arrives: the report bytes and the PEM chain.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub report: &'a [u8],
    pub chain_pem: &'a [u8],
}

/// Parse hex text (whitespace allowed, as in captured report files).
pub fn decode_hex_report(text: &[u8]) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if digits.len() > 2 * spdm::MAX_REPORT_LEN {
        return Err(format!(
            "the report is larger than {} bytes",
            spdm::MAX_REPORT_LEN
        ));
    }
    hex::decode(&digits).map_err(|e| format!("the report is not hex: {e}"))
}

struct Recorder {
    checks: Vec<Check>,
}

impl Recorder {
    fn pass(&mut self, name: CheckName, detail: String) {
        self.checks.push(Check {
            name,
            status: Status::Pass,
            detail,
            error: None,
        });
    }

    fn fail(&mut self, name: CheckName, error: VerifyError) {
        self.checks.push(Check {
            name,
            status: Status::Fail,
            detail: error.to_string(),
            error: Some(error),
        });
    }

    /// A check that could not run because an earlier one failed (`what`
    /// says which): recorded as not checked; the earlier failure already
    /// makes the verdict fail.
    fn skip(&mut self, name: CheckName, what: &'static str) {
        let error = VerifyError::Skipped(what);
        self.checks.push(Check {
            name,
            status: Status::NotChecked,
            detail: error.to_string(),
            error: None,
        });
    }

    fn not_checked(&mut self, name: CheckName, detail: &str) {
        self.checks.push(Check {
            name,
            status: Status::NotChecked,
            detail: detail.into(),
            error: None,
        });
    }
}

/// Verify the evidence against the policy and the pinned NVIDIA root.
pub fn verify(evidence: Evidence<'_>, policy: &Policy) -> Verdict {
    verify_inner(
        evidence,
        policy,
        chain::pinned_root(),
        "the pinned NVIDIA Device Identity CA",
    )
}

/// Verify against `root` instead of NVIDIA's: only for a stand-in device
/// PKI in tests (no CC-mode GPU can sign for our nonces here). The verdict
/// names the root as "an injected root", never as NVIDIA's.
pub fn verify_with_root(evidence: Evidence<'_>, policy: &Policy, root: &Certificate) -> Verdict {
    verify_inner(
        evidence,
        policy,
        Ok(root.clone()),
        "an injected (non-NVIDIA) root",
    )
}

fn verify_inner(
    evidence: Evidence<'_>,
    policy: &Policy,
    root: Result<Certificate, ChainError>,
    root_name: &str,
) -> Verdict {
    let mut rec = Recorder { checks: Vec::new() };

    let report = match spdm::parse_report(evidence.report, policy.trailing) {
        Ok(r) => {
            let extra = if r.ignored_trailing > 0 {
                ", 1 trailing zero byte ignored as allowed"
            } else {
                ""
            };
            rec.pass(
                CheckName::Report,
                format!(
                    "SPDM 1.1 GET_MEASUREMENTS + MEASUREMENTS, {} blocks{extra}",
                    r.response.blocks.len()
                ),
            );
            Some(r)
        }
        Err(e) => {
            rec.fail(CheckName::Report, e.into());
            None
        }
    };

    let chain = root
        .and_then(|root| {
            let certs = chain::parse_pem_chain(evidence.chain_pem)?;
            chain::verify_chain(&certs, &root, policy.now)
        })
        .map_err(VerifyError::from);
    let leaf_key = match chain {
        Ok(c) => {
            rec.pass(
                CheckName::CertificateChain,
                format!(
                    "{} certificates up to {root_name}{}",
                    c.subjects.len(),
                    if c.root_included {
                        ""
                    } else {
                        " (root appended)"
                    }
                ),
            );
            Some((c.leaf_key, c.subjects))
        }
        Err(e) => {
            rec.fail(CheckName::CertificateChain, e);
            None
        }
    };

    let mut signed = false;
    match (&report, &leaf_key) {
        (Some(r), Some((key, _))) => match check_signature(r, key) {
            Ok(()) => {
                signed = true;
                rec.pass(
                    CheckName::Signature,
                    "ECDSA P-384 / SHA-384 over request ‖ response".into(),
                );
            }
            Err(e) => rec.fail(CheckName::Signature, e),
        },
        (None, _) => rec.skip(CheckName::Signature, "the report did not parse"),
        (_, None) => rec.skip(CheckName::Signature, "no trusted leaf key"),
    }

    match &report {
        Some(r) if r.request.nonce == policy.nonce => {
            rec.pass(CheckName::Nonce, hex::encode(policy.nonce));
        }
        Some(r) => rec.fail(
            CheckName::Nonce,
            VerifyError::NonceMismatch {
                expected: hex::encode(policy.nonce),
                found: hex::encode(r.request.nonce),
            },
        ),
        None => rec.skip(CheckName::Nonce, "the report did not parse"),
    }

    match (&report, &policy.min_driver) {
        (None, _) => rec.skip(CheckName::DriverVersion, "the report did not parse"),
        (Some(_), None) => rec.not_checked(CheckName::DriverVersion, "no minimum given"),
        (Some(r), Some(min)) => {
            let text = r.response.opaque.driver_version();
            match text.parse::<DriverVersion>() {
                Ok(found) if found >= *min => {
                    rec.pass(CheckName::DriverVersion, format!("{found} >= {min}"))
                }
                Ok(found) => rec.fail(
                    CheckName::DriverVersion,
                    VerifyError::DriverTooOld {
                        found: found.to_string(),
                        minimum: min.to_string(),
                    },
                ),
                Err(_) => rec.fail(
                    CheckName::DriverVersion,
                    VerifyError::DriverUnreadable(text.into()),
                ),
            }
        }
    }

    // Comparing blocks whose signature did not hold would judge bytes
    // anyone could have written.
    let mut compared = false;
    match (&report, &policy.reference) {
        (_, None) => rec.not_checked(
            CheckName::Measurements,
            "NOT COMPARED: no reference values given; the measurement blocks were not checked",
        ),
        (Some(r), Some(reference)) if signed => match reference.compare(r) {
            Ok(c) => {
                compared = true;
                rec.pass(
                    CheckName::Measurements,
                    format!(
                        "{} block(s) match the reference values ({}); {} block(s) not covered by them",
                        c.matched.len(),
                        reference.source,
                        c.not_covered.len()
                    ),
                );
            }
            Err(e) => rec.fail(CheckName::Measurements, e.into()),
        },
        (_, Some(_)) => rec.skip(CheckName::Measurements, "the signature did not hold"),
    }

    let evidence_summary = report.as_ref().map(|r| summary(r, leaf_key.as_ref()));
    // A skipped check means something before it failed, so `holds` only
    // needs to look for failures.
    let holds = rec.checks.iter().all(|c| c.status != Status::Fail);
    Verdict {
        holds,
        measurements_compared: compared,
        checks: rec.checks,
        evidence: evidence_summary,
    }
}

/// SPDM 1.1 signs L1/L2 = request ‖ response-without-signature, hashed with
/// the negotiated hash (SHA-384 on H100); r‖s, 48 bytes each.
fn check_signature(report: &Report, key: &VerifyingKey) -> Result<(), VerifyError> {
    let sig = Signature::from_slice(&report.response.signature)
        .map_err(|_| VerifyError::SignatureMalformed)?;
    key.verify_prehash(&Sha384::digest(report.signed_bytes()), &sig)
        .map_err(|_| VerifyError::SignatureInvalid)
}

fn summary(r: &Report, chain: Option<&(VerifyingKey, Vec<String>)>) -> EvidenceSummary {
    let opaque = &r.response.opaque;
    EvidenceSummary {
        request_nonce: hex::encode(r.request.nonce),
        driver_version: opaque.driver_version().into(),
        vbios_version: opaque.vbios_version().into(),
        measurement_blocks: r.response.blocks.len(),
        certificate_chain: chain.map(|(_, s)| s.clone()).unwrap_or_default(),
        opaque: opaque.summary(),
        measurements: r
            .response
            .blocks
            .iter()
            .map(|b| (b.index, hex::encode(&b.value)))
            .collect(),
    }
}
