//! Every way attestation can fail, each with its own variant so that a
//! client (and the tamper tests) can tell which check refused.

use cocoon_evidence::EvidenceError;
use thiserror::Error;

use super::amd::{Product, Tcb};

#[derive(Debug, Error)]
pub enum AttestError {
    #[error("the server's certificate cannot be read: {0}")]
    Certificate(String),
    #[error("the server's certificate carries no cocoon attestation extension")]
    NoEvidence,
    #[error("{0}")]
    Evidence(#[from] EvidenceError),
    #[error("the guest runs without SEV-SNP and says so: {0}")]
    Unattested(String),
    #[error("the attestation report is malformed: {0}")]
    ReportMalformed(String),
    #[error("the attestation report has version {0}; this verifier reads 2, 3 and 5")]
    ReportVersion(u32),
    #[error(
        "the attestation report names signature algorithm {0}, not ECDSA P-384 with SHA-384 (1)"
    )]
    SignatureAlgorithm(u32),
    #[error("the report's signature is not a valid P-384 (r, s) with zeroed padding")]
    SignatureEncoding,
    #[error("the VCEK does not sign this attestation report")]
    ReportSignature,
    #[error("AMD's built-in roots are unusable: {0}")]
    Roots(String),
    #[error("the {0} ASK is not signed by AMD's {0} ARK")]
    AskSignature(Product),
    #[error("the VCEK is not signed by the ASK of any trusted product ({0})")]
    VcekSignature(String),
    #[error("the VCEK is malformed: {0}")]
    VcekMalformed(String),
    #[error("the VCEK belongs to another chip than the one that made the report")]
    VcekChip,
    #[error("the VCEK certifies TCB {vcek:?}, the report claims {report:?}")]
    VcekTcb { vcek: Tcb, report: Tcb },
    #[error("no VCEK for this chip and TCB: {0}")]
    VcekUnavailable(String),
    #[error(
        "the guest policy allows debugging (policy {0:#x}): its memory is readable by the host"
    )]
    Debug(u64),
    #[error("the guest policy allows a migration agent (policy {0:#x})")]
    MigrationAgent(u64),
    #[error("the report was made at VMPL {0}, not 0: another layer sits under the guest")]
    Vmpl(u32),
    #[error("the platform's {component} TCB is {got}, below the minimum {min}")]
    TcbTooLow {
        component: &'static str,
        got: u8,
        min: u8,
    },
    #[error("launch measurement {0} is not one the verifier allows")]
    Measurement(String),
    #[error("could not ask the allowlist about this measurement: {0}")]
    Allowlist(String),
    #[error("the verifier has no allowed measurements: refusing everything")]
    NoAllowedMeasurements,
    #[error("the report's report_data does not bind this certificate's key")]
    KeyBinding,
    #[error(
        "the session report's report_data does not cover this nonce and this TLS session (a replayed or relayed report)"
    )]
    SessionBinding,
    #[error(
        "the session report comes from another chip or another measurement than the certificate's"
    )]
    SessionMismatch,
    #[error("asking the guest for a session report: {0}")]
    Session(String),
    #[error(
        "the policy requires a GPU, but the guest's certificate carries no GPU evidence (a CPU image, a GPU outside CC mode, or evidence stripped)"
    )]
    GpuRequired,
    #[error("GPU {index}'s evidence does not verify: {reason}")]
    GpuEvidence { index: usize, reason: String },
}
