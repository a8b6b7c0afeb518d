//! NVIDIA H100 evidence verification on real reports (tests/data/nvidia/),
//! and a tamper matrix: every kind of change must fail with its own error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_measurements::gpu::chain::{self, ChainError, NVIDIA_DEVICE_ROOT_SHA256};
use cocoon_measurements::gpu::reference::{MeasurementError, ReferenceError};
use cocoon_measurements::gpu::spdm::{REQUEST_LEN, SIGNATURE_LEN, SpdmError};
use cocoon_measurements::gpu::{
    CheckName, DriverVersion, Evidence, Policy, ReferenceValues, Status, Trailing, Verdict,
    VerifyError, decode_hex_report, parse_report, verify,
};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode, EncodePem, pem::LineEnding};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nvidia");

struct Case {
    report: Vec<u8>,
    certs: Vec<u8>,
    nonce: [u8; 32],
    trailing: Trailing,
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).unwrap()
}

fn nonce(hex_text: &str) -> [u8; 32] {
    hex::decode(hex_text).unwrap().try_into().unwrap()
}

/// The first report: driver 550.90.07, no trailing byte.
fn hopper() -> Case {
    Case {
        report: decode_hex_report(&read("hopperAttestationReport.txt")).unwrap(),
        certs: read("hopper_cert_chain_case1.txt"),
        nonce: nonce("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"),
        trailing: Trailing::Reject,
    }
}

/// The second report: driver 580.95.05, one trailing 00 byte.
fn coco() -> Case {
    Case {
        report: decode_hex_report(&read("hopper_coco_report1.txt")).unwrap(),
        certs: read("hopper_coco_certs1.txt"),
        nonce: nonce("87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec"),
        trailing: Trailing::AllowOneZeroByte,
    }
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn policy(case: &Case) -> Policy {
    Policy {
        nonce: case.nonce,
        min_driver: Some("550".parse().unwrap()),
        reference: None,
        trailing: case.trailing,
        now: now(),
    }
}

fn run(case: &Case, policy: &Policy) -> Verdict {
    verify(
        Evidence {
            report: &case.report,
            chain_pem: &case.certs,
        },
        policy,
    )
}

fn error(case: &Case, policy: &Policy) -> VerifyError {
    let verdict = run(case, policy);
    assert!(!verdict.holds, "{verdict:#?}");
    verdict
        .error()
        .cloned()
        .expect("a failing verdict names its error")
}

/// Reference values equal to what the (genuine) report measured.
fn reference_from(case: &Case) -> ReferenceValues {
    let report = parse_report(&case.report, case.trailing).unwrap();
    let o = &report.response.opaque;
    ReferenceValues::new(
        "test: the report's own blocks",
        Some(o.driver_version()),
        Some(o.vbios_version()),
        report
            .response
            .blocks
            .iter()
            .map(|b| (b.index, "test".to_string(), vec![b.value.clone()])),
    )
}

fn pem_chain(certs: &[Certificate]) -> Vec<u8> {
    certs
        .iter()
        .map(|c| c.to_pem(LineEnding::LF).unwrap())
        .collect::<String>()
        .into_bytes()
}

fn certs(case: &Case) -> Vec<Certificate> {
    Certificate::load_pem_chain(&case.certs).unwrap()
}

#[test]
fn both_real_reports_verify() {
    for case in [hopper(), coco()] {
        let verdict = run(&case, &policy(&case));
        assert!(verdict.holds, "{verdict:#?}");
        for name in [
            CheckName::Report,
            CheckName::CertificateChain,
            CheckName::Signature,
            CheckName::Nonce,
            CheckName::DriverVersion,
        ] {
            assert_eq!(
                verdict.check(name).unwrap().status,
                Status::Pass,
                "{name:?}"
            );
        }
        // Without reference values the blocks are never a pass.
        assert!(!verdict.measurements_compared);
        let m = verdict.check(CheckName::Measurements).unwrap();
        assert_eq!(m.status, Status::NotChecked);
        assert!(m.detail.contains("NOT COMPARED"));
        assert_eq!(verdict.require_complete(), Err(VerifyError::NotCompared));
        let chain = &verdict.evidence.as_ref().unwrap().certificate_chain;
        assert_eq!(chain.len(), 5);
        assert!(chain[0].contains("GH100 A01 GSP FMC LF"));
        assert!(chain[4].contains("NVIDIA Device Identity CA"));
    }
}

#[test]
fn real_reports_match_reference_values() {
    for case in [hopper(), coco()] {
        let mut p = policy(&case);
        p.reference = Some(reference_from(&case));
        let verdict = run(&case, &p);
        assert!(
            verdict.holds && verdict.measurements_compared,
            "{verdict:#?}"
        );
        assert_eq!(verdict.require_complete(), Ok(()));
    }
}

#[test]
fn versions_and_nonces_of_both_reports() {
    let r = parse_report(&hopper().report, Trailing::Reject).unwrap();
    assert_eq!(r.response.opaque.driver_version(), "550.90.07");
    assert_eq!(r.response.opaque.vbios_version(), "96.00.9f.00.01");
    assert_eq!(r.request.nonce, hopper().nonce);
    assert_eq!(r.ignored_trailing, 0);
    let c = parse_report(&coco().report, Trailing::AllowOneZeroByte).unwrap();
    assert_eq!(c.response.opaque.driver_version(), "580.95.05");
    assert_eq!(c.request.nonce, coco().nonce);
    assert_eq!(c.ignored_trailing, 1);
    // The signed bytes end where the signature starts.
    assert_eq!(
        r.signed_bytes().len(),
        hopper().report.len() - SIGNATURE_LEN
    );
}

/// Our parse against the claims trustee's parser extracted from the same report.
#[test]
fn parse_matches_trustee_claims() {
    let claims: serde_json::Value =
        serde_json::from_slice(&read("hopperAttestationReport-claims.txt")).unwrap();
    let report = parse_report(&hopper().report, Trailing::Reject).unwrap();
    let blocks = &report.response.blocks;
    let expected = claims["measurements"].as_object().unwrap();
    assert_eq!(blocks.len(), expected.len());
    assert_eq!(blocks.len(), 64);
    for b in blocks {
        assert_eq!(
            expected[&b.index.to_string()].as_str().unwrap(),
            hex::encode(&b.value),
            "block {}",
            b.index
        );
        assert_eq!(b.value.len(), 48);
        assert!(!b.raw);
    }
    let config = &claims["config"];
    let opaque = &report.response.opaque;
    assert_eq!(config["driver_version"], opaque.driver_version());
    assert_eq!(config["vbios_version"], opaque.vbios_version());
    let summary = serde_json::to_value(opaque.summary()).unwrap();
    for field in [
        "board_id",
        "chip_sku",
        "chip_sku_mod",
        "cpr_info",
        "fwid",
        "gpu_info",
        "project",
        "project_sku",
        "project_sku_mod",
    ] {
        assert_eq!(summary[field], config[field], "{field}");
    }
    // trustee's older parser printed the status bytes as text: 0x55 is "U".
    for field in ["nvdec0_status", "protected_pcie_status"] {
        assert_eq!(config[field], "U");
        assert_eq!(summary[field], "disabled");
    }
    let counts = opaque.measurement_counts().unwrap();
    let expected_counts = config["measurement_count"].as_object().unwrap();
    assert_eq!(counts.len(), expected_counts.len());
    for (i, n) in counts.iter().enumerate() {
        assert_eq!(expected_counts[&(i + 1).to_string()], *n, "count {}", i + 1);
    }
}

#[test]
fn pinned_root_is_nvidias() {
    let root = chain::pinned_root().unwrap();
    let der = root.to_der().unwrap();
    assert_eq!(hex::encode(Sha256::digest(&der)), NVIDIA_DEVICE_ROOT_SHA256);
    // Both real chains end with exactly this certificate.
    for case in [hopper(), coco()] {
        assert_eq!(certs(&case).last(), Some(&root));
    }
    assert!(chain::subject(&root).contains("NVIDIA Device Identity CA"));
}

// ---- tamper matrix: the certificate chain --------------------------------

fn chain_error(case: &Case, chain: &[Certificate]) -> ChainError {
    let tampered = Case {
        certs: pem_chain(chain),
        ..clone(case)
    };
    match error(&tampered, &policy(&tampered)) {
        VerifyError::Chain(e) => e,
        other => panic!("expected a chain error, got {other:?}"),
    }
}

fn clone(c: &Case) -> Case {
    Case {
        report: c.report.clone(),
        certs: c.certs.clone(),
        nonce: c.nonce,
        trailing: c.trailing,
    }
}

/// Flip the last byte of a certificate: the last byte of its signature's s.
fn flip_signature(c: &Certificate) -> Certificate {
    let mut der = c.to_der().unwrap();
    *der.last_mut().unwrap() ^= 0x01;
    Certificate::from_der(&der).unwrap()
}

#[test]
fn each_certificate_signature_flip_is_caught() {
    let case = hopper();
    let genuine = certs(&case);
    for index in 0..4 {
        let mut chain = genuine.clone();
        chain[index] = flip_signature(&chain[index]);
        assert!(
            matches!(chain_error(&case, &chain), ChainError::BadSignature { index: i, .. } if i == index),
            "certificate {index}"
        );
    }
    // The root is trusted by its bytes: a changed root is a foreign root.
    let mut chain = genuine.clone();
    chain[4] = flip_signature(&chain[4]);
    assert!(matches!(
        chain_error(&case, &chain),
        ChainError::UntrustedRoot { .. }
    ));
}

#[test]
fn swapped_and_dropped_certificates_are_caught() {
    let case = hopper();
    let genuine = certs(&case);
    let mut swapped = genuine.clone();
    swapped.swap(1, 2);
    assert!(matches!(
        chain_error(&case, &swapped),
        ChainError::IssuerMismatch { index: 0, .. }
    ));
    for dropped in 0..4 {
        let mut chain = genuine.clone();
        chain.remove(dropped);
        let err = chain_error(&case, &chain);
        if dropped == 0 {
            // Without the leaf, GSP BROM would be the signer: a CA key whose
            // keyUsage does not allow signing reports.
            assert!(matches!(err, ChainError::LeafUsage { .. }), "{err:?}");
            continue;
        }
        assert!(
            matches!(err, ChainError::IssuerMismatch { index, .. } if index == dropped - 1),
            "dropped {dropped}: {err:?}"
        );
    }
    // Reversed: the chain ends at the leaf, which is neither the pinned root
    // nor issued by it.
    let mut reversed = genuine.clone();
    reversed.reverse();
    assert!(matches!(
        chain_error(&case, &reversed),
        ChainError::UntrustedRoot { .. }
    ));
}

/// Chains that leave out the root get it appended and still verify.
#[test]
fn chain_without_root_gets_the_pinned_root() {
    let case = hopper();
    let mut chain = certs(&case);
    chain.pop();
    let without_root = Case {
        certs: pem_chain(&chain),
        ..clone(&case)
    };
    let verdict = run(&without_root, &policy(&without_root));
    assert!(verdict.holds, "{verdict:#?}");
    assert!(
        verdict
            .check(CheckName::CertificateChain)
            .unwrap()
            .detail
            .contains("root appended")
    );
}

#[test]
fn foreign_root_is_caught() {
    let case = hopper();
    // A self-signed P-384 CA that calls itself NVIDIA's.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "NVIDIA");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "NVIDIA Device Identity CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let foreign = params.self_signed(&key).unwrap();
    let foreign = Certificate::from_der(foreign.der()).unwrap();
    let mut chain = certs(&case);
    *chain.last_mut().unwrap() = foreign.clone();
    assert!(matches!(
        chain_error(&case, &chain),
        ChainError::UntrustedRoot { .. }
    ));
    // The other report's chain, whole, is fine on its own but does not
    // sign this report.
    let other = Case {
        certs: coco().certs,
        ..clone(&case)
    };
    assert_eq!(
        error(&other, &policy(&other)),
        VerifyError::SignatureInvalid
    );
}

#[test]
fn certificates_are_checked_for_validity() {
    let case = hopper();
    let mut p = policy(&case);
    p.now = Duration::from_secs(1_500_000_000); // 2017, before notBefore
    assert!(matches!(
        error(&case, &p),
        VerifyError::Chain(ChainError::Validity { .. })
    ));
}

#[test]
fn garbage_chains_are_refused() {
    let case = hopper();
    let root = chain::pinned_root().unwrap();
    let nine = Case {
        certs: pem_chain(&vec![root; 9]),
        ..clone(&case)
    };
    assert_eq!(
        error(&nine, &policy(&nine)),
        VerifyError::Chain(ChainError::TooLong(9))
    );
    let mut prefixed = b"junk\n".to_vec();
    prefixed.extend_from_slice(&case.certs);
    let prefixed = Case {
        certs: prefixed,
        ..clone(&case)
    };
    assert!(matches!(
        error(&prefixed, &policy(&prefixed)),
        VerifyError::Chain(ChainError::Pem(_))
    ));
    for (certs, want) in [
        (b"".to_vec(), "empty"),
        (b"\n\n".to_vec(), "empty"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA".to_vec(), "pem"),
        (
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec(),
            "pem",
        ),
        (b"not pem".to_vec(), "pem"),
        (vec![b'A'; 70_000], "large"),
    ] {
        let tampered = Case {
            certs,
            ..clone(&case)
        };
        let err = error(&tampered, &policy(&tampered));
        let ok = match want {
            "empty" => matches!(err, VerifyError::Chain(ChainError::Empty)),
            "pem" => matches!(err, VerifyError::Chain(ChainError::Pem(_))),
            _ => matches!(err, VerifyError::Chain(ChainError::TooLarge { .. })),
        };
        assert!(ok, "{want}: {err:?}");
    }
}

// ---- tamper matrix: the report -------------------------------------------

#[test]
fn report_signature_flip_is_caught() {
    for case in [hopper(), coco()] {
        let mut tampered = clone(&case);
        let signed = parse_report(&case.report, case.trailing).unwrap();
        let sig_end = signed.signed_bytes().len() + SIGNATURE_LEN;
        tampered.report[sig_end - 1] ^= 0x01;
        assert_eq!(
            error(&tampered, &policy(&tampered)),
            VerifyError::SignatureInvalid
        );
        // r = 0 is not a signature at all.
        let mut zero = clone(&case);
        zero.report[sig_end - SIGNATURE_LEN..sig_end - 48].fill(0);
        assert_eq!(
            error(&zero, &policy(&zero)),
            VerifyError::SignatureMalformed
        );
    }
}

/// Offset of block `index`'s value in the report.
fn block_value_offset(report: &[u8], index: u8) -> usize {
    // Request, 8-byte response header, then 4 + 3 header bytes per block.
    let mut off = REQUEST_LEN + 8;
    loop {
        let size = u16::from_le_bytes([report[off + 2], report[off + 3]]) as usize;
        if report[off] == index {
            return off + 7;
        }
        off += 4 + size;
    }
}

#[test]
fn measurement_block_tamper_is_caught() {
    let case = hopper();
    let mut tampered = clone(&case);
    let off = block_value_offset(&case.report, 2);
    tampered.report[off] ^= 0x80;
    // The changed block parses, but the GPU did not sign it.
    assert_eq!(
        error(&tampered, &policy(&tampered)),
        VerifyError::SignatureInvalid
    );
    // And with reference values the measurement check is not even run on
    // unsigned bytes.
    let mut p = policy(&tampered);
    p.reference = Some(reference_from(&case));
    let verdict = run(&tampered, &p);
    assert_eq!(
        verdict.check(CheckName::Measurements).unwrap().status,
        Status::NotChecked
    );
    assert!(!verdict.holds);
}

#[test]
fn reference_value_mismatch_is_caught() {
    let case = hopper();
    let genuine = reference_from(&case);
    let report = parse_report(&case.report, case.trailing).unwrap();
    // Expect another value for block 2 (as if the VBIOS were a different one).
    let changed = ReferenceValues::new(
        "test",
        None,
        None,
        report.response.blocks.iter().map(|b| {
            let mut v = b.value.clone();
            if b.index == 2 {
                v[0] ^= 1;
            }
            (b.index, "vbios".to_string(), vec![v])
        }),
    );
    let mut p = policy(&case);
    p.reference = Some(changed);
    assert!(matches!(
        error(&case, &p),
        VerifyError::Measurement(MeasurementError::Mismatch { index: 2, .. })
    ));
    // Reference values for another driver.
    let json = genuine.to_json().replace("550.90.07", "550.163.01");
    p.reference = Some(ReferenceValues::from_json(json.as_bytes()).unwrap());
    assert!(matches!(
        error(&case, &p),
        VerifyError::Measurement(MeasurementError::DriverVersion { .. })
    ));
    // A block the report lacks.
    let missing = ReferenceValues::new("test", None, None, [(200, "x".into(), vec![vec![0; 48]])]);
    p.reference = Some(missing);
    assert!(matches!(
        error(&case, &p),
        VerifyError::Measurement(MeasurementError::Missing { index: 200, .. })
    ));
    // A second accepted value is enough.
    let alternatives = ReferenceValues::new(
        "test",
        None,
        None,
        report
            .response
            .blocks
            .iter()
            .map(|b| (b.index, "x".into(), vec![vec![0xee; 48], b.value.clone()])),
    );
    p.reference = Some(alternatives);
    assert!(run(&case, &p).holds);
}

#[test]
fn reference_file_round_trips_and_rejects_bad_files() {
    let genuine = reference_from(&hopper());
    let json = genuine.to_json();
    assert_eq!(
        ReferenceValues::from_json(json.as_bytes()).unwrap(),
        genuine
    );
    type Expect = fn(&ReferenceError) -> bool;
    let cases: [(&str, Expect); 6] = [
        ("{", |e| matches!(e, ReferenceError::Json(_))),
        (r#"{"format":"other/1","measurements":[]}"#, |e| {
            matches!(e, ReferenceError::Format(_))
        }),
        (
            r#"{"format":"cocoon-gpu-reference-values/1","measurements":[]}"#,
            |e| matches!(e, ReferenceError::Empty),
        ),
        (
            r#"{"format":"cocoon-gpu-reference-values/1","measurements":[{"index":0,"values":["00"]}]}"#,
            |e| matches!(e, ReferenceError::Index(0)),
        ),
        (
            r#"{"format":"cocoon-gpu-reference-values/1","measurements":[{"index":3,"values":["zz"]}]}"#,
            |e| matches!(e, ReferenceError::Hex { index: 3, .. }),
        ),
        (
            r#"{"format":"cocoon-gpu-reference-values/1","measurements":[{"index":3,"values":["00"]},{"index":3,"values":["01"]}]}"#,
            |e| matches!(e, ReferenceError::Duplicate(3)),
        ),
    ];
    for (text, want) in cases {
        let err = ReferenceValues::from_json(text.as_bytes()).unwrap_err();
        assert!(want(&err), "{text}: {err:?}");
    }
}

#[test]
fn wrong_expected_nonce_is_caught() {
    let case = hopper();
    let mut p = policy(&case);
    p.nonce = coco().nonce;
    let verdict = run(&case, &p);
    assert_eq!(
        verdict.check(CheckName::Signature).unwrap().status,
        Status::Pass
    );
    assert!(matches!(
        verdict.error(),
        Some(VerifyError::NonceMismatch { .. })
    ));
}

#[test]
fn flipped_request_nonce_is_caught() {
    let case = hopper();
    let mut tampered = clone(&case);
    tampered.report[4] ^= 0x01; // first nonce byte
    // Even if the caller "expects" the flipped nonce, the GPU did not sign it.
    let mut p = policy(&tampered);
    p.nonce[0] ^= 0x01;
    let verdict = run(&tampered, &p);
    assert_eq!(
        verdict.check(CheckName::Nonce).unwrap().status,
        Status::Pass
    );
    assert_eq!(verdict.error(), Some(&VerifyError::SignatureInvalid));
}

#[test]
fn old_driver_is_caught() {
    let case = hopper();
    let mut p = policy(&case);
    p.min_driver = Some("550.163.01".parse::<DriverVersion>().unwrap());
    assert!(matches!(error(&case, &p), VerifyError::DriverTooOld { .. }));
    p.min_driver = None;
    let verdict = run(&case, &p);
    assert!(verdict.holds);
    assert_eq!(
        verdict.check(CheckName::DriverVersion).unwrap().status,
        Status::NotChecked
    );
}

#[test]
fn trailing_bytes_are_errors_unless_one_zero_is_allowed() {
    let strict_coco = Case {
        trailing: Trailing::Reject,
        ..coco()
    };
    assert_eq!(
        error(&strict_coco, &policy(&strict_coco)),
        VerifyError::Report(SpdmError::TrailingBytes { count: 1 })
    );
    for (extra, allowed) in [
        (&[0x00][..], false),
        (&[0x01][..], true),
        (&[0x00, 0x00][..], true),
    ] {
        let mut case = hopper();
        case.report.extend_from_slice(extra);
        if allowed {
            case.trailing = Trailing::AllowOneZeroByte;
        }
        let want = SpdmError::TrailingBytes { count: extra.len() };
        assert_eq!(error(&case, &policy(&case)), VerifyError::Report(want));
    }
}

#[test]
fn truncation_at_every_length_is_an_error() {
    for case in [hopper(), coco()] {
        let full = parse_report(&case.report, case.trailing).unwrap();
        let end = full.signed_bytes().len() + SIGNATURE_LEN;
        for len in 0..end {
            let err = parse_report(&case.report[..len], Trailing::AllowOneZeroByte).unwrap_err();
            assert!(
                matches!(err, SpdmError::Truncated { .. }),
                "length {len}: {err:?}"
            );
        }
    }
}

#[test]
fn header_fields_are_checked() {
    let r = hopper().report;
    let with = |offset: usize, value: u8| {
        let mut t = r.clone();
        t[offset] = value;
        parse_report(&t, Trailing::Reject).unwrap_err()
    };
    let rs = REQUEST_LEN; // response start
    assert_eq!(with(0, 0x12), SpdmError::RequestVersion(0x12));
    assert_eq!(with(1, 0x81), SpdmError::RequestCode(0x81));
    assert_eq!(with(2, 0x00), SpdmError::SignatureNotRequested(0));
    assert_eq!(with(3, 0x01), SpdmError::NotAllMeasurements(1));
    assert_eq!(with(36, 8), SpdmError::RequestSlot(8));
    assert_eq!(with(rs, 0x10), SpdmError::ResponseVersion(0x10));
    assert_eq!(with(rs + 1, 0x7f), SpdmError::ResponseCode(0x7f));
    assert_eq!(
        with(rs + 3, 0x01),
        SpdmError::SlotMismatch {
            request: 0,
            response: 1
        }
    );
    assert_eq!(with(rs + 4, 0), SpdmError::NoBlocks);
    assert!(matches!(
        with(rs + 4, 63),
        SpdmError::RecordLongerThanBlocks { declared: 63, .. }
    ));
    assert!(matches!(with(rs + 4, 65), SpdmError::Truncated { .. }));
    assert_eq!(with(rs + 9, 0x02), SpdmError::NotDmtf { index: 1, spec: 2 });
    assert!(matches!(
        with(rs + 8, 0),
        SpdmError::ReservedIndex { index: 0, .. }
    ));
    assert_eq!(with(rs + 8, 2), SpdmError::DuplicateIndex(2));
    assert!(matches!(
        with(rs + 13, 0x31),
        SpdmError::BlockSize { index: 1, .. }
    ));
}

/// Hostile bytes never panic: every single-byte change and a pseudo-random
/// sweep of multi-byte changes parse or fail cleanly.
#[test]
fn corrupted_reports_never_panic() {
    let r = hopper().report;
    for i in 0..r.len() {
        for v in [0x00, 0xff, r[i] ^ 0x55] {
            let mut t = r.clone();
            t[i] = v;
            let _ = parse_report(&t, Trailing::AllowOneZeroByte);
        }
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let mut t = r.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % t.len();
            t[i] = (x >> 32) as u8;
        }
        let _ = parse_report(&t, Trailing::Reject);
    }
}

#[test]
fn verdict_serializes() {
    let case = hopper();
    let json = serde_json::to_value(run(&case, &policy(&case))).unwrap();
    assert_eq!(json["holds"], true);
    assert_eq!(json["measurements_compared"], false);
    assert_eq!(json["checks"][5]["name"], "measurements");
    assert_eq!(json["checks"][5]["status"], "not_checked");
    assert_eq!(json["evidence"]["driver_version"], "550.90.07");
    assert_eq!(
        json["evidence"]["measurements"]["2"]
            .as_str()
            .unwrap()
            .len(),
        96
    );
}
