//! The TLS 1.3 server configuration the client tests talk to: one
//! certificate and its key, ring's provider, as the guest's server has it.

use std::sync::Arc;

pub fn config(cert_der: Vec<u8>, key: &rcgen::KeyPair) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert_der.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Arc::new(config)
}
