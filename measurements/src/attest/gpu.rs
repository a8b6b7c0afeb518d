//! The GPU part of a guest's evidence: each NVIDIA GPU's SPDM report and
//! chain, made for a nonce derived from the TLS key and covered by the SNP
//! report's `report_data` (`cocoon_evidence::key_gpu_report_data`).
//!
//! The binding is checked first (in `verify`, with the rest of the report);
//! here each GPU's evidence is judged: chain to the NVIDIA root, signature,
//! nonce == `gpu_nonce(spki)`, minimum driver. The measurement blocks are
//! not compared with reference values here (the verdict says so).

use std::time::{SystemTime, UNIX_EPOCH};

use cocoon_evidence::GpuEvidence;
use cocoon_gpu_evidence as gpu;
use serde::Serialize;
use x509_cert::Certificate;

use super::error::AttestError;

/// What the GPU part must be.
#[derive(Debug, Clone)]
pub struct GpuPolicy {
    /// Refuse a guest whose certificate carries no GPU evidence (a GPU
    /// image's certificate stripped of its GPU part, or a CPU image).
    pub require: bool,
    /// The oldest acceptable driver (default: 550, the first with H100
    /// CC generally available).
    pub min_driver: gpu::DriverVersion,
    /// `None`: NVIDIA's pinned Device Identity CA. `Some` only for tests
    /// with a stand-in device PKI.
    pub root: Option<Certificate>,
    /// Reference values every GPU's measurement blocks must match (from
    /// NVIDIA's RIMs: `cocoon-host import-rims`); `None` leaves the
    /// blocks uncompared, and the verdict says so.
    pub reference: Option<gpu::ReferenceValues>,
}

impl Default for GpuPolicy {
    fn default() -> Self {
        GpuPolicy {
            require: false,
            min_driver: gpu::DEFAULT_MIN_DRIVER
                .parse()
                .expect("the built-in minimum driver parses"),
            root: None,
            reference: None,
        }
    }
}

/// What was verified about one GPU.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GpuAttested {
    pub index: usize,
    pub driver_version: String,
    pub vbios_version: String,
    pub measurement_blocks: usize,
    /// The nonce the GPU signed (hex): derived from the TLS key.
    pub nonce: String,
    /// Subjects, leaf first, up to the root.
    pub certificate_chain: Vec<String>,
    /// Whether the blocks were compared with the policy's reference values
    /// (and so matched them).
    pub measurements_compared: bool,
}

impl GpuPolicy {
    /// Judges every GPU's evidence for a key whose GPU nonce is `nonce`.
    pub fn check(
        &self,
        gpus: &[GpuEvidence],
        nonce: [u8; 32],
    ) -> Result<Vec<GpuAttested>, AttestError> {
        if gpus.is_empty() {
            return if self.require {
                Err(AttestError::GpuRequired)
            } else {
                Ok(Vec::new())
            };
        }
        let policy = gpu::Policy {
            nonce,
            min_driver: Some(self.min_driver.clone()),
            reference: self.reference.clone(),
            trailing: gpu::Trailing::Reject,
            now: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        };
        gpus.iter()
            .enumerate()
            .map(|(index, g)| {
                let evidence = gpu::Evidence {
                    report: &g.report,
                    chain_pem: &g.cert_chain,
                };
                let verdict = match &self.root {
                    None => gpu::verify(evidence, &policy),
                    Some(root) => gpu::verify_with_root(evidence, &policy, root),
                };
                let failure = |reason: String| AttestError::GpuEvidence { index, reason };
                if !verdict.holds {
                    return Err(failure(
                        verdict
                            .error()
                            .map(ToString::to_string)
                            .unwrap_or_else(|| "a check failed".into()),
                    ));
                }
                let s = verdict
                    .evidence
                    .ok_or_else(|| failure("no evidence summary".into()))?;
                Ok(GpuAttested {
                    index,
                    driver_version: s.driver_version,
                    vbios_version: s.vbios_version,
                    measurement_blocks: s.measurement_blocks,
                    nonce: s.request_nonce,
                    certificate_chain: s.certificate_chain,
                    measurements_compared: verdict.measurements_compared,
                })
            })
            .collect()
    }
}
