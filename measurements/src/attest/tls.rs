//! Attestation inside the TLS handshake, and the session check after it.
//!
//! [`AttestingVerifier`] is a `rustls` `ServerCertVerifier`: any Rust client
//! that builds its `ClientConfig` with it talks only to a guest whose
//! certificate carries a genuine, accepted report binding the key that
//! signs the handshake. [`attest`] then asks that same connection for a
//! fresh report over a nonce and the connection's exporter value, which a
//! relay (a second machine forwarding to a real guest) cannot produce.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;

use cocoon_evidence::{EXPORTER_LABEL, EXPORTER_LEN, NONCE_LEN};

use super::error::AttestError;
use super::verify::{Attested, Verdict, Verifier};

/// Checks the guest's certificate during the handshake; keeps the verdict
/// (or the refusal) for the caller to read afterwards.
#[derive(Debug)]
pub struct AttestingVerifier {
    verifier: Verifier,
    algorithms: WebPkiSupportedAlgorithms,
    outcome: Mutex<Option<Result<Verdict, String>>>,
}

impl AttestingVerifier {
    pub fn new(verifier: Verifier, provider: &CryptoProvider) -> Self {
        AttestingVerifier {
            verifier,
            algorithms: provider.signature_verification_algorithms,
            outcome: Mutex::new(None),
        }
    }

    /// The verdict of the last handshake.
    pub fn verdict(&self) -> Option<Result<Verdict, String>> {
        self.outcome.lock().expect("not poisoned").clone()
    }

    /// A TLS 1.3 client configuration that trusts only attested guests.
    /// Session resumption is off: every connection is attested anew (a
    /// resumed session would skip the certificate, and its verdict).
    pub fn client_config(
        self: &Arc<Self>,
        provider: Arc<CryptoProvider>,
    ) -> Result<rustls::ClientConfig, AttestError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| AttestError::Session(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

impl ServerCertVerifier for AttestingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name and CA fields mean nothing here: trust comes from the
        // report, which binds this exact key.
        let result = self.verifier.verify_certificate(end_entity.as_ref());
        let mut outcome = self.outcome.lock().expect("not poisoned");
        *outcome = Some(result.as_ref().map(Clone::clone).map_err(|e| e.to_string()));
        match result {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(rustls::Error::General(format!("attestation failed: {e}"))),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is not used with cocoon guests".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The handshake must be signed by the key the report binds.
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Everything `attest` established.
#[derive(Debug, Clone, Serialize)]
pub struct Attestation {
    pub verdict: Verdict,
    /// The session report's result, for an attested guest.
    pub session: Option<Attested>,
}

/// What the guest's `/v1/attestation` answers.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "platform", rename_all = "kebab-case")]
enum SessionAnswer {
    SevSnp {
        report: String,
        vcek: Option<String>,
    },
    None {
        reason: String,
    },
}

/// Connects to `addr` (host:port), verifies the certificate in the
/// handshake, then asks for and verifies a session report.
pub fn attest(
    addr: &str,
    verifier: Verifier,
    timeout: Duration,
) -> Result<Attestation, AttestError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let checker = Arc::new(AttestingVerifier::new(verifier.clone(), &provider));
    let config = checker.client_config(provider)?;
    let name = ServerName::try_from("cocoon.local").expect("a valid DNS name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| AttestError::Session(e.to_string()))?;
    let sockaddr = addr
        .to_socket_addrs()
        .map_err(|e| AttestError::Session(format!("resolving {addr}: {e}")))?
        .next()
        .ok_or_else(|| AttestError::Session(format!("{addr} resolves to nothing")))?;
    let mut tcp = TcpStream::connect_timeout(&sockaddr, timeout)
        .map_err(|e| AttestError::Session(format!("connecting to {addr}: {e}")))?;
    tcp.set_read_timeout(Some(timeout)).ok();
    tcp.set_write_timeout(Some(timeout)).ok();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            // A refusal by the verifier surfaces here as an I/O error; the
            // verdict holds the precise reason.
            return Err(match checker.verdict() {
                Some(Err(reason)) => AttestError::Session(reason),
                _ => AttestError::Session(format!("TLS handshake: {e}")),
            });
        }
    }
    let verdict = match checker.verdict() {
        Some(Ok(v)) => v,
        Some(Err(reason)) => return Err(AttestError::Session(reason)),
        None => {
            return Err(AttestError::Session(
                "the handshake checked no certificate".into(),
            ));
        }
    };
    let Verdict::SevSnp(certificate) = &verdict else {
        return Ok(Attestation {
            verdict,
            session: None,
        });
    };

    let mut nonce = [0u8; NONCE_LEN];
    getrandom(&mut nonce)?;
    let exporter: [u8; EXPORTER_LEN] = conn
        .export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
        .map_err(|e| AttestError::Session(format!("TLS exporter: {e}")))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let request = format!(
        "GET /v1/attestation?nonce={} HTTP/1.1\r\nHost: cocoon.local\r\nConnection: close\r\n\r\n",
        hex::encode(nonce)
    );
    tls.write_all(request.as_bytes())
        .map_err(|e| AttestError::Session(format!("sending the request: {e}")))?;
    let mut raw = Vec::new();
    match tls.take(1 << 20).read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(AttestError::Session(format!("reading the answer: {e}"))),
    }
    let (status, body) =
        crate::client::parse_response(&raw).map_err(|e| AttestError::Session(e.to_string()))?;
    if status != 200 {
        return Err(AttestError::Session(format!(
            "the guest answered {status}: {body}"
        )));
    }
    let answer: SessionAnswer = serde_json::from_str(&body)
        .map_err(|e| AttestError::Session(format!("the answer: {e}")))?;
    match answer {
        SessionAnswer::None { reason } => Err(AttestError::Session(format!(
            "the certificate carries a report but the session says there is none: {reason}"
        ))),
        SessionAnswer::SevSnp { report, vcek } => {
            let report = hex::decode(report)
                .map_err(|_| AttestError::Session("the report is not hex".into()))?;
            let vcek = vcek
                .map(hex::decode)
                .transpose()
                .map_err(|_| AttestError::Session("the VCEK is not hex".into()))?;
            let session = verifier.verify_session(
                certificate,
                &report,
                vcek.as_deref(),
                &nonce,
                &exporter,
            )?;
            Ok(Attestation {
                verdict,
                session: Some(session),
            })
        }
    }
}

/// A nonce from the kernel: ring's SystemRandom, which the TLS stack already
/// trusts for its own keys.
fn getrandom(buf: &mut [u8]) -> Result<(), AttestError> {
    use rustls::crypto::ring::default_provider;
    default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| AttestError::Session("no randomness for the nonce".into()))
}
