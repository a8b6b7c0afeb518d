//! A `rustls` verifier that trusts exactly one certificate, by its SHA-256.
//!
//! For development boots without SEV: the guest prints the fingerprint of
//! its fresh certificate on the serial console and the host pins it. That
//! proves the host talks to the process that printed the line, not that it
//! runs the measured image; only attestation proves that, and this verifier
//! says nothing more than it checks. The handshake signature is still
//! verified, so holding the certificate without its key is not enough.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};
use sha2::{Digest, Sha256};

#[derive(Debug)]
pub struct PinnedCertVerifier {
    sha256: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    /// `fingerprint`: 64 hex digits, the SHA-256 of the certificate's DER.
    pub fn new(fingerprint: &str, provider: &CryptoProvider) -> Result<Self, String> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(fingerprint.trim(), &mut sha256)
            .map_err(|_| format!("`{fingerprint}` is not a SHA-256 fingerprint (64 hex digits)"))?;
        Ok(PinnedCertVerifier {
            sha256,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    /// A client configuration (TLS 1.3, ring) that trusts only this certificate.
    pub fn client_config(fingerprint: &str) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(Self::new(fingerprint, &provider)?);
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(config)
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(format!(
                "the server's certificate has sha256 {}, not the pinned {}",
                hex::encode(got),
                hex::encode(self.sha256)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn check(
        verifier: &PinnedCertVerifier,
        cert: &CertificateDer<'_>,
    ) -> Result<ServerCertVerified, Error> {
        let name = ServerName::try_from("cocoon.local").unwrap();
        verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn accepts_only_the_pinned_certificate() {
        let provider = rustls::crypto::ring::default_provider();
        let (a, b) = (cert(), cert());
        let v = PinnedCertVerifier::new(&hex::encode(Sha256::digest(&a)), &provider).unwrap();
        assert!(check(&v, &a).is_ok());
        let err = check(&v, &b).unwrap_err().to_string();
        assert!(err.contains("not the pinned"), "{err}");
    }

    #[test]
    fn rejects_malformed_fingerprints() {
        let provider = rustls::crypto::ring::default_provider();
        for bad in ["", "abc", &"g".repeat(64), &"0".repeat(66)] {
            assert!(PinnedCertVerifier::new(bad, &provider).is_err(), "{bad}");
        }
    }
}
