//! The `report_data` a guest asks the AMD secure processor to sign.
//!
//! Each is SHA-512 (the field is 64 bytes) over a domain-separation label
//! and the bound values, so a value made for one purpose can never be read
//! as the other: a key-binding report cannot pass as a session report.

use sha2::{Digest, Sha512};

/// The RFC 8446 §7.5 exporter label the session binding uses.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-cocoon-attestation-v1";
/// Bytes taken from the TLS exporter.
pub const EXPORTER_LEN: usize = 32;
/// Bytes of the client's nonce.
pub const NONCE_LEN: usize = 32;

const KEY_DOMAIN: &[u8] = b"cocoon attestation v1: tls key\0";
const SESSION_DOMAIN: &[u8] = b"cocoon attestation v1: tls session\0";

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
}
