//! The attestation evidence a cocoon guest presents, in one small crate that
//! both sides share: the guest (which encodes it) and the verifier in
//! `cocoon-measurements` (which decodes and checks it).
//!
//! Two bindings tie an AMD SEV-SNP report to TLS (see `docs/attestation.md`):
//!
//! - **key binding** ([`binding::key_report_data`]): the report inside the
//!   guest's certificate carries a hash of that certificate's public key, so
//!   only the holder of the key the measured image made can present it;
//! - **session binding** ([`binding::session_report_data`]): a fresh report,
//!   asked for over an established connection, covers the client's nonce and
//!   that connection's TLS exporter value, so a report relayed from another
//!   connection (another machine that forwards traffic) does not verify;
//! - **GPU binding** ([`binding::gpu_nonce`], [`binding::key_gpu_report_data`]):
//!   each GPU's SPDM report is made for a nonce derived from the TLS key, and
//!   the key binding then covers that evidence too.

pub mod binding;
pub mod extension;

pub use binding::{
    EXPORTER_LABEL, EXPORTER_LEN, GPU_NONCE_LEN, NONCE_LEN, certificate_report_data,
    gpu_evidence_digest, gpu_nonce, key_gpu_report_data, key_report_data, session_report_data,
};
pub use extension::{
    EXTENSION_OID, Evidence, EvidenceError, GpuEvidence, MAX_GPU_CHAIN, MAX_GPU_REPORT, MAX_GPUS,
    REPORT_LEN,
};
