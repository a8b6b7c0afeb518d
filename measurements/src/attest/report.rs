//! An SEV-SNP attestation report: the raw bytes, the fields a verifier
//! reads, and the check of AMD's signature over exactly those bytes.
//!
//! The signature is checked over the raw bytes as received, never over a
//! re-encoding: the `sev` crate's own check re-encodes its parse, which
//! drops reserved bytes and the unused high half of each signature scalar,
//! so bytes it never looked at would go unchecked. Fields are read with the
//! `sev` crate's decoder (it knows each generation's TCB layout) from the
//! same bytes the signature covers.

use p384::ecdsa::signature::hazmat::PrehashVerifier;
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use sha2::{Digest, Sha384};

use super::error::AttestError;
use cocoon_evidence::REPORT_LEN;

/// The signed part of the report (AMD SEV-SNP ABI, table 23: 0x0–0x29F).
const SIGNED_LEN: usize = 0x2a0;
/// ECDSA P-384 with SHA-384, the only algorithm the ABI defines.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Each scalar is 72 bytes little-endian, of which P-384 uses 48.
const SCALAR_FIELD: usize = 72;
const SCALAR: usize = 48;

/// The report versions this verifier reads: 2 (Milan/Genoa firmware before
/// 1.55), 3 (CPUID fields), 5 (mitigation vectors).
const VERSIONS: [u32; 3] = [2, 3, 5];

#[derive(Debug, Clone)]
pub struct Report {
    raw: Vec<u8>,
    pub fields: AttestationReport,
}

impl Report {
    /// Parses a report, checking its length, version and signature algorithm.
    pub fn parse(raw: &[u8]) -> Result<Self, AttestError> {
        if raw.len() != REPORT_LEN {
            return Err(AttestError::ReportMalformed(format!(
                "{} bytes, not {REPORT_LEN}",
                raw.len()
            )));
        }
        let version = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes"));
        if !VERSIONS.contains(&version) {
            return Err(AttestError::ReportVersion(version));
        }
        let sig_algo = u32::from_le_bytes(raw[0x34..0x38].try_into().expect("4 bytes"));
        if sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(AttestError::SignatureAlgorithm(sig_algo));
        }
        let fields = AttestationReport::from_bytes(raw)
            .map_err(|e| AttestError::ReportMalformed(e.to_string()))?;
        Ok(Report {
            raw: raw.to_vec(),
            fields,
        })
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Checks AMD's signature with the VCEK's public key (SEC1 bytes).
    pub fn verify_signature(&self, vcek_sec1: &[u8]) -> Result<(), AttestError> {
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(vcek_sec1)
            .map_err(|_| AttestError::VcekMalformed("its key is not a P-384 point".into()))?;
        let signature = signature(&self.raw)?;
        let digest = Sha384::digest(&self.raw[..SIGNED_LEN]);
        key.verify_prehash(&digest, &signature)
            .map_err(|_| AttestError::ReportSignature)
    }
}

/// The ABI's r‖s, each 72 bytes little-endian, as a P-384 signature; the
/// 24 bytes above each 48-byte scalar and the reserved tail must be zero so
/// that no byte of the report escapes both the hash and the signature.
fn signature(raw: &[u8]) -> Result<p384::ecdsa::Signature, AttestError> {
    let sig = &raw[SIGNED_LEN..];
    let (r, rest) = sig.split_at(SCALAR_FIELD);
    let (s, reserved) = rest.split_at(SCALAR_FIELD);
    let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    if !zero(&r[SCALAR..]) || !zero(&s[SCALAR..]) || !zero(reserved) {
        return Err(AttestError::SignatureEncoding);
    }
    let be = |le: &[u8]| {
        let mut out = [0u8; SCALAR];
        for (o, b) in out.iter_mut().zip(le[..SCALAR].iter().rev()) {
            *o = *b;
        }
        out
    };
    p384::ecdsa::Signature::from_scalars(be(r), be(s)).map_err(|_| AttestError::SignatureEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_versions_and_algorithms_are_checked_first() {
        assert!(matches!(
            Report::parse(&[0; 100]),
            Err(AttestError::ReportMalformed(_))
        ));
        let mut raw = vec![0u8; REPORT_LEN];
        raw[0] = 9;
        assert!(matches!(
            Report::parse(&raw),
            Err(AttestError::ReportVersion(9))
        ));
        raw[0] = 2;
        raw[0x34] = 2;
        assert!(matches!(
            Report::parse(&raw),
            Err(AttestError::SignatureAlgorithm(2))
        ));
    }
}
