//! The `report_data` a guest asks the AMD secure processor to sign.
//!
//! Each is SHA-512 (the field is 64 bytes) over a domain-separation label
//! and the bound values, so a value made for one purpose can never be read
//! as the other: a key-binding report cannot pass as a session report.

use sha2::{Digest, Sha512};

use crate::extension::GpuEvidence;

/// The RFC 8446 §7.5 exporter label the session binding uses.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-cocoon-attestation-v1";
/// Bytes taken from the TLS exporter.
pub const EXPORTER_LEN: usize = 32;
/// Bytes of the client's nonce.
pub const NONCE_LEN: usize = 32;

/// Bytes of the nonce in a GPU's SPDM GET_MEASUREMENTS request.
pub const GPU_NONCE_LEN: usize = 32;

const KEY_DOMAIN: &[u8] = b"cocoon attestation v1: tls key\0";
const SESSION_DOMAIN: &[u8] = b"cocoon attestation v1: tls session\0";
const GPU_NONCE_DOMAIN: &[u8] = b"cocoon attestation v1: gpu nonce\0";
const GPU_EVIDENCE_DOMAIN: &[u8] = b"cocoon attestation v1: gpu evidence\0";
const KEY_GPU_DOMAIN: &[u8] = b"cocoon attestation v1: tls key + gpu\0";

/// `report_data` binding a TLS key: SHA-512(label ‖ SubjectPublicKeyInfo DER).
pub fn key_report_data(spki_der: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(KEY_DOMAIN);
    h.update(spki_der);
    h.finalize().into()
}

/// `report_data` binding one TLS session: SHA-512(label ‖ nonce ‖ exporter).
pub fn session_report_data(nonce: &[u8; NONCE_LEN], exporter: &[u8; EXPORTER_LEN]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(SESSION_DOMAIN);
    h.update(nonce);
    h.update(exporter);
    h.finalize().into()
}

/// The nonce every GPU's SPDM request carries: the first 32 bytes of
/// SHA-512("cocoon attestation v1: gpu nonce\0" ‖ SubjectPublicKeyInfo DER).
///
/// The GPU signs the request, nonce included, so its report can only have
/// been made for this TLS key; the label keeps it apart from the SNP
/// bindings. Truncating SHA-512 to 256 bits keeps collision resistance at
/// 128 bits, as SPDM's 32-byte nonce allows.
pub fn gpu_nonce(spki_der: &[u8]) -> [u8; GPU_NONCE_LEN] {
    let mut h = Sha512::new();
    h.update(GPU_NONCE_DOMAIN);
    h.update(spki_der);
    let full: [u8; 64] = h.finalize().into();
    let mut nonce = [0u8; GPU_NONCE_LEN];
    nonce.copy_from_slice(&full[..GPU_NONCE_LEN]);
    nonce
}

/// SHA-512 over every GPU's evidence, in the certificate's order:
/// label ‖ count ‖ for each GPU (len ‖ report ‖ len ‖ certificate chain),
/// counts and lengths as 4-byte big-endian, so that no two lists of
/// evidence hash the same input.
pub fn gpu_evidence_digest(gpus: &[GpuEvidence]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(GPU_EVIDENCE_DOMAIN);
    h.update(len32(gpus.len()));
    for g in gpus {
        h.update(len32(g.report.len()));
        h.update(&g.report);
        h.update(len32(g.cert_chain.len()));
        h.update(&g.cert_chain);
    }
    h.finalize().into()
}

/// `report_data` binding a TLS key and the GPU evidence made for it:
/// SHA-512("cocoon attestation v1: tls key + gpu\0" ‖ gpu_evidence_digest ‖ SPKI DER).
/// The digest is fixed-length and comes first, so the concatenation is
/// unambiguous; the label differs from the CPU-only key binding, so a
/// report made without GPU evidence never passes for one made with it
/// (and the other way round).
pub fn key_gpu_report_data(spki_der: &[u8], gpus: &[GpuEvidence]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(KEY_GPU_DOMAIN);
    h.update(gpu_evidence_digest(gpus));
    h.update(spki_der);
    h.finalize().into()
}

/// The key binding for a certificate: with GPU evidence, the one that
/// covers it; without, the CPU-only binding.
pub fn certificate_report_data(spki_der: &[u8], gpus: &[GpuEvidence]) -> [u8; 64] {
    if gpus.is_empty() {
        key_report_data(spki_der)
    } else {
        key_gpu_report_data(spki_der, gpus)
    }
}

fn len32(n: usize) -> [u8; 4] {
    // Every length here is bounded by the extension's limits (KiB).
    u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_bindings_never_coincide() {
        // The same 64 input bytes read as a key or as nonce+exporter give
        // different report_data: the domains keep the purposes apart.
        let bytes = [7u8; 64];
        let as_key = key_report_data(&bytes);
        let as_session = session_report_data(&[7; 32], &[7; 32]);
        assert_ne!(as_key, as_session);
    }

    #[test]
    fn each_input_changes_the_session_binding() {
        let base = session_report_data(&[1; 32], &[2; 32]);
        assert_ne!(base, session_report_data(&[0; 32], &[2; 32]));
        assert_ne!(base, session_report_data(&[1; 32], &[0; 32]));
        assert_ne!(key_report_data(b"a"), key_report_data(b"b"));
    }

    fn gpu(report: &[u8], chain: &[u8]) -> GpuEvidence {
        GpuEvidence {
            report: report.to_vec(),
            cert_chain: chain.to_vec(),
        }
    }

    #[test]
    fn the_gpu_nonce_is_its_own_domain_and_follows_the_key() {
        let n = gpu_nonce(b"spki");
        assert_eq!(n.len(), 32);
        assert_ne!(n, gpu_nonce(b"spkj"));
        // Not a prefix of either SNP binding of the same key.
        assert_ne!(n[..], key_report_data(b"spki")[..32]);
        assert_ne!(
            n[..],
            key_gpu_report_data(b"spki", &[gpu(b"r", b"c")])[..32]
        );
    }

    #[test]
    fn the_gpu_binding_covers_every_byte_and_the_boundaries() {
        let spki = b"spki";
        let base = key_gpu_report_data(spki, &[gpu(b"report", b"chain")]);
        // Moving a byte across the report/chain boundary changes the digest.
        assert_ne!(base, key_gpu_report_data(spki, &[gpu(b"repor", b"tchain")]));
        // Two GPUs are not one GPU with the bytes concatenated.
        assert_ne!(
            key_gpu_report_data(spki, &[gpu(b"ab", b"cd"), gpu(b"ef", b"gh")]),
            key_gpu_report_data(spki, &[gpu(b"ab", b"cd"), gpu(b"", b"efgh")])
        );
        // Order matters.
        assert_ne!(
            key_gpu_report_data(spki, &[gpu(b"1", b"1"), gpu(b"2", b"2")]),
            key_gpu_report_data(spki, &[gpu(b"2", b"2"), gpu(b"1", b"1")])
        );
        assert_ne!(
            base,
            key_gpu_report_data(b"spkj", &[gpu(b"report", b"chain")])
        );
        // Stripping the GPU part gives the CPU-only binding, which differs.
        assert_ne!(base, certificate_report_data(spki, &[]));
        assert_eq!(certificate_report_data(spki, &[]), key_report_data(spki));
        assert_eq!(
            certificate_report_data(spki, &[gpu(b"report", b"chain")]),
            base
        );
    }
}
