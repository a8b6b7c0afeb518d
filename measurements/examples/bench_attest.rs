//! The attestation figures in BENCHMARKS.md (`cargo xtask bench-attest`
//! runs this in release mode):
//!
//! - verifying the real Milan report with its VCEK cached: chain, signature,
//!   policy;
//! - verifying a guest certificate (report + key binding);
//! - a whole in-memory TLS 1.3 handshake: a plain certificate, the same with
//!   the attestation extension (the size cost alone), and with attestation
//!   checked in the handshake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_evidence::{EXTENSION_OID, Evidence, key_report_data};
use cocoon_measurements::attest::{AttestingVerifier, MinTcb, Policy, Roots, VcekStore, Verifier};
use cocoon_measurements::pinned::PinnedCertVerifier;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use sha2::{Digest, Sha256};

#[path = "../tests/support/test_ca.rs"]
mod test_ca;

const REPS: usize = 300;

fn time(reps: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..10 {
        f();
    }
    let mut t: Vec<Duration> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    (t[reps / 2], t[reps * 95 / 100])
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn certificate(evidence: bool) -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["cocoon.local".into()]).unwrap();
    if evidence {
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let e = Evidence::SevSnp {
            report: test_ca::signed_report(key_report_data(&spki), |_| {}),
            vcek: Some(test_ca::test_vcek()),
            gpus: Vec::new(),
        };
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                EXTENSION_OID,
                e.to_der(),
            ));
    }
    (params.self_signed(&key).unwrap().der().to_vec(), key)
}

fn server_config(cert: &[u8], key: &rcgen::KeyPair) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.to_vec().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
    )
}

/// One handshake through memory buffers, no sockets.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let mut c = ClientConnection::new(client.clone(), "cocoon.local".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        buf.clear();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()
            .expect("the client accepts the handshake");
    }
}

fn main() {
    // 1. The real report, VCEK from a bundle (as after the first fetch).
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("vcek.der"),
        test_ca::read("vcek_milan.der"),
    )
    .unwrap();
    let report = test_ca::real_report();
    let amd = Verifier {
        roots: Roots::amd().unwrap(),
        vceks: VcekStore {
            cache: None,
            bundles: vec![bundle.path().to_path_buf()],
            network: false,
        },
        policy: Policy {
            measurements: vec![report[0x90..0xc0].try_into().unwrap()],
            min_tcb: MinTcb::default(),
            allowlist: None,
            gpu: Default::default(),
        },
        allow_unattested: false,
    };
    let (p50, p95) = time(REPS, || {
        amd.verify_report(&report, None).unwrap();
    });
    println!(
        "verify real Milan report, cached VCEK (chain + signature + policy): median {} p95 {}",
        ms(p50),
        ms(p95)
    );
    let (p50, p95) = time(REPS, || {
        amd.verify_report(&report, Some(&test_ca::read("vcek_milan.der")))
            .unwrap();
    });
    println!(
        "verify real Milan report, VCEK in the evidence: median {} p95 {}",
        ms(p50),
        ms(p95)
    );

    // 2. A bound certificate under the stand-in chain (same algorithms).
    let (attested_cert, attested_key) = certificate(true);
    let verifier = test_ca::test_verifier();
    let (p50, p95) = time(REPS, || {
        verifier.verify_certificate(&attested_cert).unwrap();
    });
    println!(
        "verify a guest certificate (report + key binding): median {} p95 {}",
        ms(p50),
        ms(p95)
    );

    // 3. Handshakes.
    let (plain_cert, plain_key) = certificate(false);
    // Configurations are made once, as a client would; resumption is off
    // everywhere so that every handshake checks the certificate.
    let pinned = |cert: &[u8]| {
        let mut c = PinnedCertVerifier::client_config(&hex::encode(Sha256::digest(cert))).unwrap();
        c.resumption = rustls::client::Resumption::disabled();
        Arc::new(c)
    };
    let (plain_client, plain_server) =
        (pinned(&plain_cert), server_config(&plain_cert, &plain_key));
    let (sized_client, attested_server) = (
        pinned(&attested_cert),
        server_config(&attested_cert, &attested_key),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let checker = Arc::new(AttestingVerifier::new(test_ca::test_verifier(), &provider));
    let attesting = Arc::new(checker.client_config(provider).unwrap());
    let plain = time(REPS, || handshake(&plain_client, &plain_server));
    let sized = time(REPS, || handshake(&sized_client, &attested_server));
    let checked = time(REPS, || handshake(&attesting, &attested_server));
    println!(
        "certificate sizes: plain {} B, with attestation {} B",
        plain_cert.len(),
        attested_cert.len()
    );
    println!(
        "TLS 1.3 handshake, plain certificate, pinned: median {} p95 {}",
        ms(plain.0),
        ms(plain.1)
    );
    println!(
        "TLS 1.3 handshake, attested certificate, pinned (size only): median {} p95 {}",
        ms(sized.0),
        ms(sized.1)
    );
    println!(
        "TLS 1.3 handshake, attested certificate, verified in the handshake: median {} p95 {}",
        ms(checked.0),
        ms(checked.1)
    );
    println!(
        "extra handshake time from attestation: {} (size) + {} (verification)",
        ms(sized.0.saturating_sub(plain.0)),
        ms(checked.0.saturating_sub(sized.0))
    );
}
