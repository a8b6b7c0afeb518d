//! The guest's TLS identity: a key pair made in memory at every boot.
//!
//! The private key never touches a disk and never leaves this process. The
//! certificate is self-signed; clients do not trust it by a CA but by what
//! is bound to it: an extension carrying an SEV-SNP report whose
//! `report_data` is a hash of this very key (or, without SNP, the guest's
//! plain statement that it has none). See `docs/attestation.md`.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::attest::Attester;

pub struct Identity {
    pub server_config: Arc<ServerConfig>,
    /// SHA-256 of the certificate's DER: what the host pins in dev mode.
    pub cert_sha256: String,
    /// The certificate in PEM (the host-side `serve` writes it for clients).
    pub cert_pem: String,
}

impl Identity {
    /// With `gpus`, each GPU's evidence is made for this key, verified,
    /// and bound into the certificate's report.
    pub fn generate(attester: &Attester, gpus: Option<&crate::gpu::Gpus>) -> Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating a P-256 key")?;
        let mut params = rcgen::CertificateParams::new(vec!["cocoon.local".to_string()])
            .context("certificate parameters")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cocoon guest");
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let gpu_evidence = match gpus {
            Some(g) => g
                .attest_for_key(&spki)
                .context("the GPUs' evidence for the TLS key")?,
            None => Vec::new(),
        };
        let evidence = attester
            .evidence(&spki, gpu_evidence)
            .context("an attestation report for the TLS key")?;
        // Not critical: ordinary TLS clients (curl, Python) that pin the
        // certificate must still accept it; attesting clients read it.
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                cocoon_evidence::EXTENSION_OID,
                evidence.to_der(),
            ));
        let cert = params
            .self_signed(&key)
            .context("self-signing the certificate")?;
        let cert_der: CertificateDer<'static> = cert.der().clone();
        let cert_sha256 = hex::encode(Sha256::digest(&cert_der));
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 with the ring provider")?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)
            .context("installing the certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tracing::info!(cert_sha256 = %cert_sha256, "TLS key created in memory");
        Ok(Identity {
            server_config: Arc::new(config),
            cert_sha256,
            cert_pem: cert.pem(),
        })
    }
}
