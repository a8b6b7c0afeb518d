//! GPU evidence bound into the guest's certificate: the SNP report covers
//! it, each GPU signed a nonce derived from the TLS key, and a policy may
//! require it.
//!
//! No CC-mode GPU can sign for our keys here, so positive paths use a
//! stand-in device PKI (rcgen, P-384) built in the test and passed to the
//! verifier as its root; the real H100 report (real NVIDIA chain, pinned
//! root) proves that evidence made for another nonce is refused. SNP
//! reports are signed by the stand-in AMD chain of `support/test_ca.rs`.

use cocoon_evidence::{
    EXTENSION_OID, Evidence, GpuEvidence, gpu_nonce, key_gpu_report_data, key_report_data,
};
use cocoon_measurements::attest::{AttestError, GpuPolicy, Verdict, Verifier};
use cocoon_measurements::gpu::{self, Trailing};
use p384::ecdsa::SigningKey;
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::pkcs8::DecodePrivateKey;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sha2::{Digest, Sha384};
use x509_cert::der::{Decode, EncodePem, pem::LineEnding};

#[path = "support/test_ca.rs"]
mod test_ca;
#[path = "support/test_rims.rs"]
mod test_rims;
use test_ca::*;

fn nvidia(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/nvidia/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The real H100 report (request ‖ response) and its real NVIDIA chain.
fn real_gpu() -> GpuEvidence {
    GpuEvidence {
        report: gpu::decode_hex_report(&nvidia("hopperAttestationReport.txt")).unwrap(),
        cert_chain: nvidia("hopper_cert_chain_case1.txt"),
    }
}

/// A stand-in device PKI: root → leaf, P-384, as NVIDIA's chain is built.
struct StandIn {
    root: x509_cert::Certificate,
    chain_pem: Vec<u8>,
    leaf_key: SigningKey,
}

fn stand_in() -> StandIn {
    let params = |name: &str, ca: IsCa| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("stand-in {name}"));
        p.is_ca = ca;
        p
    };
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let root_params = params("GPU root", IsCa::Ca(BasicConstraints::Unconstrained));
    let root = root_params.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root_params, root_key);
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let leaf = params("GPU leaf", IsCa::NoCa)
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let pem = |der: &[u8]| {
        x509_cert::Certificate::from_der(der)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    };
    StandIn {
        root: x509_cert::Certificate::from_der(root.der()).unwrap(),
        chain_pem: format!("{}{}", pem(leaf.der()), pem(root.der())).into_bytes(),
        leaf_key: SigningKey::from_pkcs8_der(&leaf_key.serialize_der()).unwrap(),
    }
}

impl StandIn {
    /// The real H100 report with our nonce in the request, re-signed by
    /// the stand-in leaf exactly as the GPU signs (SHA-384 over request ‖
    /// response-without-signature, r‖s).
    fn evidence(&self, nonce: [u8; 32], edit: impl FnOnce(&mut Vec<u8>)) -> GpuEvidence {
        let mut report = real_gpu().report;
        report[4..36].copy_from_slice(&nonce);
        edit(&mut report);
        let body = report.len() - 96;
        let sig: p384::ecdsa::Signature = self
            .leaf_key
            .sign_prehash(&Sha384::digest(&report[..body]))
            .unwrap();
        report[body..].copy_from_slice(&sig.to_bytes());
        GpuEvidence {
            report,
            cert_chain: self.chain_pem.clone(),
        }
    }
}

fn verifier(root: Option<&StandIn>, require: bool) -> Verifier {
    let mut v = test_verifier();
    v.policy.gpu = GpuPolicy {
        require,
        root: root.map(|s| s.root.clone()),
        ..GpuPolicy::default()
    };
    v
}

/// A TLS certificate whose extension carries `evidence(spki)`.
fn cert(evidence: impl FnOnce(&[u8]) -> Evidence) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["cocoon.local".into()]).unwrap();
    let e = evidence(&rcgen::PublicKeyData::subject_public_key_info(&key));
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            EXTENSION_OID,
            e.to_der(),
        ));
    params.self_signed(&key).unwrap().der().to_vec()
}

/// SNP evidence whose report binds `bound` and which presents `shown`.
fn snp(spki: &[u8], bound: &[GpuEvidence], shown: Vec<GpuEvidence>) -> Evidence {
    let report_data = if bound.is_empty() {
        key_report_data(spki)
    } else {
        key_gpu_report_data(spki, bound)
    };
    Evidence::SevSnp {
        report: signed_report(report_data, |_| {}),
        vcek: Some(test_vcek()),
        gpus: shown,
    }
}

#[test]
fn bound_gpu_evidence_for_this_key_is_accepted_and_reported() {
    let s = stand_in();
    let c = cert(|spki| {
        let g = vec![s.evidence(gpu_nonce(spki), |_| {})];
        snp(spki, &g, g.clone())
    });
    let Verdict::SevSnp(a) = verifier(Some(&s), true).verify_certificate(&c).unwrap() else {
        panic!("not attested")
    };
    assert_eq!(a.gpus.len(), 1);
    let g = &a.gpus[0];
    assert_eq!(g.driver_version, "550.90.07");
    assert_eq!(g.vbios_version, "96.00.9f.00.01");
    assert_eq!(g.measurement_blocks, 64);
    assert!(!g.measurements_compared);
    assert_eq!(g.certificate_chain.len(), 2);
    // Two GPUs, both bound, both checked.
    let c = cert(|spki| {
        let n = gpu_nonce(spki);
        let g = vec![s.evidence(n, |_| {}), s.evidence(n, |_| {})];
        snp(spki, &g, g.clone())
    });
    let Verdict::SevSnp(a) = verifier(Some(&s), true).verify_certificate(&c).unwrap() else {
        panic!("not attested")
    };
    assert_eq!(a.gpus.len(), 2);
}

#[test]
fn swapped_or_stripped_gpu_evidence_breaks_the_binding() {
    let s = stand_in();
    let v = verifier(Some(&s), false);
    // The host swaps in other evidence, validly signed for the same key.
    let c = cert(|spki| {
        let n = gpu_nonce(spki);
        let bound = vec![s.evidence(n, |_| {})];
        let other = vec![s.evidence(n, |r| r[40] ^= 1)];
        snp(spki, &bound, other)
    });
    assert!(matches!(
        v.verify_certificate(&c),
        Err(AttestError::KeyBinding)
    ));
    // The host strips the GPU part, leaving the report that covered it.
    let c = cert(|spki| {
        let bound = vec![s.evidence(gpu_nonce(spki), |_| {})];
        snp(spki, &bound, Vec::new())
    });
    assert!(matches!(
        v.verify_certificate(&c),
        Err(AttestError::KeyBinding)
    ));
    // GPU evidence presented with a CPU-only binding.
    let c = cert(|spki| snp(spki, &[], vec![s.evidence(gpu_nonce(spki), |_| {})]));
    assert!(matches!(
        v.verify_certificate(&c),
        Err(AttestError::KeyBinding)
    ));
}

#[test]
fn evidence_made_for_another_key_is_refused() {
    let s = stand_in();
    let c = cert(|spki| {
        let _ = spki;
        let g = vec![s.evidence(gpu_nonce(b"another key"), |_| {})];
        snp(spki, &g, g.clone())
    });
    let err = verifier(Some(&s), false)
        .verify_certificate(&c)
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::GpuEvidence { index: 0, reason } if reason.contains("nonce")),
        "{err}"
    );
}

#[test]
fn real_h100_evidence_for_another_nonce_is_refused_under_the_nvidia_root() {
    // The real report verifies under the pinned root for its own nonce...
    let real = real_gpu();
    let own = gpu::parse_report(&real.report, Trailing::Reject)
        .unwrap()
        .request
        .nonce;
    let policy = GpuPolicy::default();
    assert_eq!(
        policy
            .check(std::slice::from_ref(&real), own)
            .unwrap()
            .len(),
        1
    );
    // ...but bound into our certificate, it was not made for our key.
    let c = cert(|spki| {
        let g = vec![real_gpu()];
        snp(spki, &g, g.clone())
    });
    let err = verifier(None, true).verify_certificate(&c).unwrap_err();
    assert!(
        matches!(&err, AttestError::GpuEvidence { index: 0, reason } if reason.contains("nonce")),
        "{err}"
    );
}

#[test]
fn the_stand_in_chain_never_passes_under_the_nvidia_root() {
    let s = stand_in();
    let c = cert(|spki| {
        let g = vec![s.evidence(gpu_nonce(spki), |_| {})];
        snp(spki, &g, g.clone())
    });
    let err = verifier(None, false).verify_certificate(&c).unwrap_err();
    assert!(
        matches!(&err, AttestError::GpuEvidence { index: 0, reason } if reason.contains("root")),
        "{err}"
    );
}

#[test]
fn a_required_gpu_must_be_there() {
    let s = stand_in();
    // A CPU-only certificate: fine by default, refused with --require-gpu.
    let cpu = cert(|spki| snp(spki, &[], Vec::new()));
    let Verdict::SevSnp(a) = verifier(Some(&s), false).verify_certificate(&cpu).unwrap() else {
        panic!("not attested")
    };
    assert!(a.gpus.is_empty());
    assert!(matches!(
        verifier(Some(&s), true).verify_certificate(&cpu),
        Err(AttestError::GpuRequired)
    ));
    // An unattested guest has no GPU binding either, even when allowed.
    let dev = cert(|_| Evidence::Unattested {
        reason: "development boot".into(),
    });
    let mut v = verifier(Some(&s), true);
    v.allow_unattested = true;
    assert!(matches!(
        v.verify_certificate(&dev),
        Err(AttestError::GpuRequired)
    ));
}

#[test]
fn the_driver_minimum_and_the_gpu_signature_are_enforced() {
    let s = stand_in();
    let mut v = verifier(Some(&s), true);
    v.policy.gpu.min_driver = "560".parse().unwrap();
    let c = cert(|spki| {
        let g = vec![s.evidence(gpu_nonce(spki), |_| {})];
        snp(spki, &g, g.clone())
    });
    let err = v.verify_certificate(&c).unwrap_err();
    assert!(
        matches!(&err, AttestError::GpuEvidence { reason, .. } if reason.contains("550.90.07")),
        "{err}"
    );
    // A report edited after signing (bound as edited: only the GPU's
    // signature can catch it).
    let c = cert(|spki| {
        let mut g = s.evidence(gpu_nonce(spki), |_| {});
        g.report[60] ^= 1;
        let g = vec![g];
        snp(spki, &g, g.clone())
    });
    let err = verifier(Some(&s), true).verify_certificate(&c).unwrap_err();
    assert!(
        matches!(&err, AttestError::GpuEvidence { reason, .. } if reason.contains("ignature")),
        "{err}"
    );
}

/// Reference values from the test RIMs (tests/data/rim/: the real
/// report's blocks, which the stand-in evidence carries): compared and
/// matched; one block accepted only under another value: refused.
#[test]
fn gpu_measurements_are_compared_with_reference_values() {
    let (driver, vbios) = test_rims::test_rims();
    let refs = test_rims::reference(&driver, &vbios);

    let s = stand_in();
    let c = cert(|spki| {
        let g = vec![s.evidence(gpu_nonce(spki), |_| {})];
        snp(spki, &g, g.clone())
    });
    let mut v = verifier(Some(&s), true);
    v.policy.gpu.reference = Some(refs);
    let Verdict::SevSnp(a) = v.verify_certificate(&c).unwrap() else {
        panic!("not attested")
    };
    assert!(a.gpus[0].measurements_compared);

    let other = test_rims::with_block_26_changed(&driver);
    v.policy.gpu.reference = Some(test_rims::reference(&other, &vbios));
    let err = v.verify_certificate(&c).unwrap_err();
    assert!(
        matches!(&err, AttestError::GpuEvidence { index: 0, reason } if reason.contains("block 26")),
        "{err}"
    );
}
