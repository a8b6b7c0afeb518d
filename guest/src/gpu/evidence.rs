//! Each GPU's evidence for our TLS key, checked here before anything is
//! bound to it or the GPUs are released for work.
//!
//! The nonce is `cocoon_evidence::gpu_nonce(spki)`. The guest runs the same
//! verifier a client runs (`cocoon-gpu-evidence`): chain to the pinned
//! NVIDIA root, the signature, the nonce, the minimum driver. It has no
//! reference values for the measurement blocks (clients compare them), so
//! the blocks are not judged here.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use cocoon_evidence::GpuEvidence;
use cocoon_gpu_evidence as gpu;

use super::nvml::{Device, Nvml};

/// Reports and chains of every GPU, for `nonce`.
pub fn collect(nvml: &Nvml, devices: &[Device], nonce: [u8; 32]) -> Result<Vec<GpuEvidence>> {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let report = nvml
                .attestation_report(*d, nonce)
                .with_context(|| format!("GPU {i}'s attestation report"))?;
            let cert_chain = nvml
                .attestation_chain(*d)
                .with_context(|| format!("GPU {i}'s certificate chain"))?;
            Ok(GpuEvidence { report, cert_chain })
        })
        .collect()
}

/// The same checks a client makes, against the pinned NVIDIA root.
pub fn verify(evidence: &GpuEvidence, nonce: [u8; 32]) -> gpu::Verdict {
    let policy = policy(nonce);
    gpu::verify(
        gpu::Evidence {
            report: &evidence.report,
            chain_pem: &evidence.cert_chain,
        },
        &policy,
    )
}

fn policy(nonce: [u8; 32]) -> gpu::Policy {
    gpu::Policy {
        nonce,
        min_driver: gpu::DEFAULT_MIN_DRIVER.parse().ok(),
        reference: None,
        trailing: gpu::Trailing::Reject,
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    }
}

/// Every GPU's evidence must hold; the first failure is the reason.
pub fn require_all(evidence: &[GpuEvidence], nonce: [u8; 32]) -> Result<()> {
    for (i, e) in evidence.iter().enumerate() {
        let verdict = verify(e, nonce);
        if !verdict.holds {
            let why = verdict
                .error()
                .map(ToString::to_string)
                .unwrap_or_else(|| "a check failed".into());
            bail!("GPU {i}'s attestation evidence does not verify: {why}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> (GpuEvidence, [u8; 32]) {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../measurements/tests/data/nvidia/"
        );
        let hex = std::fs::read(format!("{dir}hopperAttestationReport.txt")).unwrap();
        let report = gpu::decode_hex_report(&hex).unwrap();
        let cert_chain = std::fs::read(format!("{dir}hopper_cert_chain_case1.txt")).unwrap();
        let nonce = gpu::parse_report(&report, gpu::Trailing::Reject)
            .unwrap()
            .request
            .nonce;
        (GpuEvidence { report, cert_chain }, nonce)
    }

    #[test]
    fn real_h100_evidence_holds_for_its_own_nonce_only() {
        let (e, nonce) = real();
        require_all(std::slice::from_ref(&e), nonce).unwrap();
        // Made for another nonce than our key's: refused, naming the nonce.
        let ours = cocoon_evidence::gpu_nonce(b"our key");
        let err = require_all(std::slice::from_ref(&e), ours)
            .unwrap_err()
            .to_string();
        assert!(err.contains("GPU 0") && err.contains("nonce"), "{err}");
        // A second GPU whose chain is not NVIDIA's.
        let mut foreign = e.clone();
        foreign.cert_chain = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec();
        let err = require_all(&[e, foreign], nonce).unwrap_err().to_string();
        assert!(err.contains("GPU 1"), "{err}");
    }
}
