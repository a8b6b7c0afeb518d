//! Attestation verification against real AMD data and a tamper matrix.
//!
//! Real data (`fixtures/snp/`, from the `sev` crate's test data): a Milan
//! report and its VCEK, checked under AMD's built-in roots. Reports that
//! must reach the checks after the signature (policy, measurement, binding,
//! session) are signed by a stand-in chain (`fixtures/snp/test-ca/`, made
//! by its `make.sh`) that only these tests trust.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use cocoon_evidence::{
    EXPORTER_LABEL, EXTENSION_OID, Evidence, key_report_data, session_report_data,
};
use cocoon_measurements::attest::{
    Allowlist, AttestError, MinTcb, Policy, Product, Root, Roots, VcekStore, Verdict, Verifier,
    attest,
};
use sev::certs::snp::Certificate;

#[path = "support/test_ca.rs"]
mod test_ca;
#[path = "support/tls_server.rs"]
mod tls_server;
use test_ca::*;

fn measurement_of(report: &[u8]) -> [u8; 48] {
    report[0x90..0xc0].try_into().unwrap()
}

/// AMD's roots, offline, with the fixture VCEK handed over as a bundle.
fn amd_verifier(bundle: &Path) -> Verifier {
    Verifier {
        roots: Roots::amd().unwrap(),
        vceks: VcekStore {
            cache: None,
            bundles: vec![bundle.to_path_buf()],
            network: false,
        },
        policy: Policy {
            measurements: vec![measurement_of(&real_report())],
            min_tcb: MinTcb::default(),
            allowlist: None,
            gpu: Default::default(),
        },
        allow_unattested: false,
    }
}

fn bundle_with(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

/// A TLS certificate (and its key) whose extension carries `evidence(spki)`.
fn cert_with(evidence: impl FnOnce(&[u8]) -> Option<Evidence>) -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["cocoon.local".into()]).unwrap();
    if let Some(e) = evidence(&rcgen::PublicKeyData::subject_public_key_info(&key)) {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                EXTENSION_OID,
                e.to_der(),
            ));
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key)
}

fn bound_cert(edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    cert_with(|spki| {
        Some(Evidence::SevSnp {
            report: signed_report(key_report_data(spki), edit),
            vcek: Some(test_vcek()),
            gpus: Vec::new(),
        })
    })
    .0
}

// ---- real AMD data ------------------------------------------------------

#[test]
fn the_real_milan_report_verifies_under_amds_roots() {
    let bundle = bundle_with(&[("vcek.der", read("vcek_milan.der"))]);
    let (_, attested) = amd_verifier(bundle.path())
        .verify_report(&real_report(), None)
        .unwrap();
    assert_eq!(attested.product, Product::Milan);
    assert_eq!(attested.vcek_source, "cache or bundle");
    assert_eq!(attested.reported_tcb.snp, 8);
    assert_eq!(attested.reported_tcb.microcode, 0x73);
    // The VCEK can also come with the evidence itself.
    let empty = bundle_with(&[]);
    let (_, a) = amd_verifier(empty.path())
        .verify_report(&real_report(), Some(&read("vcek_milan.der")))
        .unwrap();
    assert_eq!(a.vcek_source, "certificate");
}

#[test]
fn every_signed_byte_of_the_real_report_is_covered() {
    let bundle = bundle_with(&[("vcek.der", read("vcek_milan.der"))]);
    let v = amd_verifier(bundle.path());
    let good = real_report();
    for offset in 0..0x2a0 {
        let mut r = good.clone();
        r[offset] ^= 0x01;
        let err = v
            .verify_report(&r, None)
            .expect_err(&format!("byte {offset:#x} flipped"));
        let expected = match offset {
            0x00..=0x03 => matches!(
                err,
                AttestError::ReportVersion(_) | AttestError::ReportMalformed(_)
            ),
            0x34..=0x37 => matches!(err, AttestError::SignatureAlgorithm(_)),
            // The VCEK is looked up by chip and TCB: a changed one finds a
            // VCEK that certifies something else.
            // (Milan layout: bootloader, tee, 4 reserved, snp, microcode;
            // the reserved bytes are signed like any other.)
            0x180 | 0x181 | 0x186 | 0x187 => matches!(err, AttestError::VcekTcb { .. }),
            0x1a0..=0x1df => matches!(err, AttestError::VcekChip),
            _ => matches!(
                err,
                AttestError::ReportSignature | AttestError::ReportMalformed(_)
            ),
        };
        assert!(expected, "byte {offset:#x}: {err}");
    }
}

#[test]
fn the_signature_and_its_padding_are_covered() {
    let bundle = bundle_with(&[("vcek.der", read("vcek_milan.der"))]);
    let v = amd_verifier(bundle.path());
    for (offset, want_encoding) in [
        (0x2a0, false),
        (0x2a0 + 47, false),
        (0x2a0 + 72, false),
        (0x2a0 + 48, true),
        (0x2a0 + 72 + 60, true),
        (0x4a0 - 1, true),
    ] {
        let mut r = real_report();
        r[offset] ^= 0x80;
        let err = v.verify_report(&r, None).unwrap_err();
        if want_encoding {
            assert!(
                matches!(err, AttestError::SignatureEncoding),
                "{offset:#x}: {err}"
            );
        } else {
            assert!(
                matches!(
                    err,
                    AttestError::ReportSignature | AttestError::SignatureEncoding
                ),
                "{offset:#x}: {err}"
            );
        }
    }
}

#[test]
fn each_certificate_of_the_chain_is_checked() {
    let report = real_report();
    // A VCEK whose signature was altered.
    let mut vcek = read("vcek_milan.der");
    let n = vcek.len();
    vcek[n - 10] ^= 0x01;
    let b = bundle_with(&[("vcek.der", vcek)]);
    assert!(matches!(
        amd_verifier(b.path()).verify_report(&report, None),
        Err(AttestError::VcekSignature(_))
    ));
    // A genuine VCEK of another product (Turin) does not chain to Milan's ASK.
    let b = bundle_with(&[("vcek.der", read("vcek_turin.der"))]);
    assert!(matches!(
        amd_verifier(b.path()).verify_report(&report, None),
        Err(AttestError::VcekSignature(_))
    ));
    // Not valid DER at all.
    let b = bundle_with(&[("vcek.der", b"not a certificate".to_vec())]);
    assert!(matches!(
        amd_verifier(b.path()).verify_report(&report, None),
        Err(AttestError::VcekMalformed(_))
    ));
    // An ASK that its ARK did not sign, and an ARK that is not self-signed.
    let ark = sev::certs::snp::builtin::milan::ark().unwrap();
    let ask = sev::certs::snp::builtin::milan::ask().unwrap();
    let flip_sig = |c: &Certificate| {
        let mut der = c.to_der().unwrap();
        let n = der.len();
        der[n - 5] ^= 0x01;
        Certificate::from_der(&der).unwrap()
    };
    let r = Roots::new(vec![Root {
        product: Product::Milan,
        ark: ark.clone(),
        ask: flip_sig(&ask),
    }]);
    assert!(matches!(r, Err(AttestError::AskSignature(Product::Milan))));
    let r = Roots::new(vec![Root {
        product: Product::Milan,
        ark: flip_sig(&ark),
        ask,
    }]);
    assert!(matches!(r, Err(AttestError::Roots(_))));
    // A chain AMD never issued: the tests' own, under AMD's roots.
    let b = bundle_with(&[("vcek.der", test_vcek())]);
    let forged = signed_report([0; 64], |_| {});
    assert!(matches!(
        amd_verifier(b.path()).verify_report(&forged, None),
        Err(AttestError::VcekSignature(_))
    ));
}

#[test]
fn without_a_vcek_offline_it_is_an_error_never_a_pass() {
    let empty = bundle_with(&[]);
    let err = amd_verifier(empty.path())
        .verify_report(&real_report(), None)
        .unwrap_err();
    assert!(matches!(err, AttestError::VcekUnavailable(_)), "{err}");
    assert!(
        err.to_string().contains("kdsintf"),
        "names the URL to fetch: {err}"
    );
}

#[test]
fn a_fetched_vcek_is_cached_for_offline_use() {
    let cache = tempfile::tempdir().unwrap();
    let mut v = amd_verifier(&bundle_with(&[]).keep());
    v.vceks.cache = Some(cache.path().to_path_buf());
    v.verify_report(&real_report(), Some(&read("vcek_milan.der")))
        .unwrap();
    // Now without the hint and without network: the cache answers.
    let (_, a) = v.verify_report(&real_report(), None).unwrap();
    assert_eq!(a.vcek_source, "cache or bundle");
}

// ---- the stand-in chain: the checks after the signature -----------------

#[test]
fn a_bound_certificate_passes() {
    match test_verifier()
        .verify_certificate(&bound_cert(|_| {}))
        .unwrap()
    {
        Verdict::SevSnp(a) => {
            assert_eq!(a.measurement, hex::encode(MEASUREMENT));
            assert_eq!(a.vcek_source, "certificate");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tamper_matrix_each_case_has_its_own_error() {
    let v = test_verifier();
    let policy = |f: &mut [u8], bit: u32| {
        let p = u64::from_le_bytes(f[8..16].try_into().unwrap()) | (1 << bit);
        f[8..16].copy_from_slice(&p.to_le_bytes());
    };
    let check = |cert: Vec<u8>, v: &Verifier| v.verify_certificate(&cert).unwrap_err();

    assert!(matches!(
        check(bound_cert(|f| policy(f, 19)), &v),
        AttestError::Debug(_)
    ));
    assert!(matches!(
        check(bound_cert(|f| policy(f, 18)), &v),
        AttestError::MigrationAgent(_)
    ));
    assert!(matches!(
        check(bound_cert(|f| f[0x30] = 1), &v),
        AttestError::Vmpl(1)
    ));
    assert!(matches!(
        check(bound_cert(|f| f[0x90] ^= 1), &v),
        AttestError::Measurement(_)
    ));
    let mut strict = test_verifier();
    strict.policy.min_tcb = MinTcb::parse("snp=9").unwrap();
    assert!(matches!(
        check(bound_cert(|_| {}), &strict),
        AttestError::TcbTooLow {
            component: "snp",
            got: 8,
            min: 9
        }
    ));
    let mut empty = test_verifier();
    empty.policy.measurements.clear();
    assert!(matches!(
        check(bound_cert(|_| {}), &empty),
        AttestError::NoAllowedMeasurements
    ));

    // A genuine report for another key (a stolen report in a new certificate).
    let stolen = signed_report(key_report_data(b"another key"), |_| {});
    let (cert, _) = cert_with(|_| {
        Some(Evidence::SevSnp {
            report: stolen,
            vcek: Some(test_vcek()),
            gpus: Vec::new(),
        })
    });
    assert!(matches!(check(cert, &v), AttestError::KeyBinding));

    // The report altered after signing.
    let (cert, _) = cert_with(|spki| {
        let mut r = signed_report(key_report_data(spki), |_| {});
        r[0xc0] ^= 1;
        Some(Evidence::SevSnp {
            report: r,
            vcek: Some(test_vcek()),
            gpus: Vec::new(),
        })
    });
    assert!(matches!(check(cert, &v), AttestError::ReportSignature));

    // VCEKs that chain but certify another chip, or another TCB.
    for (file, chip) in [("vcek_other_chip.der", true), ("vcek_old_tcb.der", false)] {
        let (cert, _) = cert_with(|spki| {
            Some(Evidence::SevSnp {
                report: signed_report(key_report_data(spki), |_| {}),
                vcek: Some(read(&format!("test-ca/{file}"))),
                gpus: Vec::new(),
            })
        });
        let err = check(cert, &v);
        if chip {
            assert!(matches!(err, AttestError::VcekChip), "{err}");
        } else {
            assert!(matches!(err, AttestError::VcekTcb { .. }), "{err}");
        }
    }

    // No extension, a malformed one, an unattested guest.
    let (plain, _) = cert_with(|_| None);
    assert!(matches!(check(plain, &v), AttestError::NoEvidence));
    let (unattested, _) = cert_with(|_| {
        Some(Evidence::Unattested {
            reason: "development boot".into(),
        })
    });
    assert!(
        matches!(check(unattested.clone(), &v), AttestError::Unattested(r) if r == "development boot")
    );
    let mut lenient = test_verifier();
    lenient.allow_unattested = true;
    assert_eq!(
        lenient.verify_certificate(&unattested).unwrap(),
        Verdict::Unattested {
            reason: "development boot".into()
        }
    );
    assert!(matches!(
        check(b"garbage".to_vec(), &v),
        AttestError::Certificate(_)
    ));
}

/// An allowlist that answers from a fixed set, or fails like a registry
/// that cannot be reached.
#[derive(Debug)]
struct Fixed(Result<Vec<[u8; 48]>, String>);

impl Allowlist for Fixed {
    fn allows(&self, m: &[u8; 48]) -> Result<bool, String> {
        self.0.clone().map(|set| set.contains(m))
    }
}

#[test]
fn a_live_allowlist_is_asked_and_its_failure_refuses() {
    let with = |list: Fixed| {
        let mut v = test_verifier();
        v.policy.measurements.clear();
        v.policy.allowlist = Some(std::sync::Arc::new(list));
        v.verify_certificate(&bound_cert(|_| {}))
    };
    assert!(matches!(
        with(Fixed(Ok(vec![MEASUREMENT]))),
        Ok(Verdict::SevSnp(_))
    ));
    assert!(matches!(
        with(Fixed(Ok(vec![]))),
        Err(AttestError::Measurement(_))
    ));
    assert!(matches!(
        with(Fixed(Err("no network".into()))),
        Err(AttestError::Allowlist(e)) if e == "no network"
    ));
}

#[test]
fn session_reports_must_cover_this_nonce_and_this_session() {
    let v = test_verifier();
    let Verdict::SevSnp(cert) = v.verify_certificate(&bound_cert(|_| {})).unwrap() else {
        panic!()
    };
    let (nonce, exporter) = ([1u8; 32], [2u8; 32]);
    let session = signed_report(session_report_data(&nonce, &exporter), |_| {});
    v.verify_session(&cert, &session, Some(&test_vcek()), &nonce, &exporter)
        .unwrap();

    let err = |r: &[u8], n: &[u8; 32], e: &[u8; 32]| {
        v.verify_session(&cert, r, Some(&test_vcek()), n, e)
            .unwrap_err()
    };
    // Replayed: the right nonce, another connection's exporter.
    assert!(matches!(
        err(&session, &nonce, &[3; 32]),
        AttestError::SessionBinding
    ));
    // An old report for another nonce.
    assert!(matches!(
        err(&session, &[9; 32], &exporter),
        AttestError::SessionBinding
    ));
    // The certificate's key-binding report offered as a session report.
    let key_report = signed_report(key_report_data(b"k"), |_| {});
    assert!(matches!(
        err(&key_report, &nonce, &exporter),
        AttestError::SessionBinding
    ));
    // A fresh, bound report from another (allowed) image.
    let mut two = test_verifier();
    two.policy.measurements.push([0x43; 48]);
    let other = signed_report(session_report_data(&nonce, &exporter), |f| {
        f[0x90..0xc0].fill(0x43)
    });
    assert!(matches!(
        two.verify_session(&cert, &other, Some(&test_vcek()), &nonce, &exporter),
        Err(AttestError::SessionMismatch)
    ));
}

// ---- over a real TLS connection -----------------------------------------

/// A one-connection TLS server standing in for the guest: it presents
/// `cert`, and answers `/v1/attestation` with a report over the nonce and
/// its own exporter value (or, with `relay`, over another exporter, as a
/// machine forwarding to a real guest would have to).
fn serve_once(cert: Vec<u8>, key: rcgen::KeyPair, relay: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let config = tls_server::config(cert, &key);
        let (mut tcp, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                return;
            }
        }
        let mut exporter = conn
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
            .unwrap();
        if relay {
            exporter[0] ^= 1;
        }
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut buf = [0u8; 4096];
        let n = tls.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        let nonce_hex = head
            .split("nonce=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let nonce: [u8; 32] = hex::decode(nonce_hex).unwrap().try_into().unwrap();
        let report = signed_report(session_report_data(&nonce, &exporter), |_| {});
        let body = format!(
            r#"{{"platform":"sev-snp","report":"{}","vcek":"{}"}}"#,
            hex::encode(report),
            hex::encode(test_vcek())
        );
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(answer.as_bytes()).unwrap();
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    port
}

#[test]
fn attest_over_tls_checks_the_handshake_key_and_the_session() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let evidence = Evidence::SevSnp {
        report: signed_report(
            key_report_data(&rcgen::PublicKeyData::subject_public_key_info(&key)),
            |_| {},
        ),
        vcek: Some(test_vcek()),
        gpus: Vec::new(),
    };
    let mut params = rcgen::CertificateParams::new(vec!["cocoon.local".into()]).unwrap();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            EXTENSION_OID,
            evidence.to_der(),
        ));
    let cert = params.self_signed(&key).unwrap().der().to_vec();
    let key_again = rcgen::KeyPair::try_from(key.serialize_der().as_slice()).unwrap();

    let port = serve_once(cert.clone(), key, false);
    let done = attest(
        &format!("127.0.0.1:{port}"),
        test_verifier(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(matches!(done.verdict, Verdict::SevSnp(_)));
    assert!(done.session.is_some());

    let port = serve_once(cert.clone(), key_again, true);
    let err = attest(
        &format!("127.0.0.1:{port}"),
        test_verifier(),
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(matches!(err, AttestError::SessionBinding), "{err}");

    // The certificate of an attested guest, presented by a server that
    // does not hold its key: the handshake signature fails.
    let thief = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let port = serve_once(cert, thief, false);
    let err = attest(
        &format!("127.0.0.1:{port}"),
        test_verifier(),
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(matches!(err, AttestError::Session(_)), "{err}");
}
