//! The chain rules that NVIDIA's real certificates never break, on a small
//! PKI of our own (rcgen) passed in as the root: a CA flag, pathLen, an
//! unknown critical extension, the leaf's key type and key usage, validity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_measurements::gpu::chain::{ChainError, verify_chain};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, date_time_ymd,
};
use x509_cert::Certificate;
use x509_cert::der::Decode;

fn params(name: &str, ca: IsCa) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = ca;
    p
}

fn p384() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap()
}

fn x509(der: &[u8]) -> Certificate {
    Certificate::from_der(der).unwrap()
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// root → intermediate → leaf, with hooks to spoil each part.
struct Pki {
    root: Certificate,
    intermediate: Certificate,
    leaf: Certificate,
}

fn pki(
    root_ca: IsCa,
    intermediate_ca: IsCa,
    leaf: impl FnOnce(&mut CertificateParams),
    leaf_key: KeyPair,
) -> Pki {
    let root_key = p384();
    let root_params = params("Test Root", root_ca);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = p384();
    let int_params = params("Test Intermediate", intermediate_ca);
    let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let mut leaf_params = params("Test Leaf", IsCa::NoCa);
    leaf(&mut leaf_params);
    let leaf = leaf_params.signed_by(&leaf_key, &int_issuer).unwrap();
    Pki {
        root: x509(root.der()),
        intermediate: x509(intermediate.der()),
        leaf: x509(leaf.der()),
    }
}

fn ca() -> IsCa {
    IsCa::Ca(BasicConstraints::Unconstrained)
}

fn check(p: &Pki) -> Result<(), ChainError> {
    verify_chain(&[p.leaf.clone(), p.intermediate.clone()], &p.root, now()).map(|_| ())
}

#[test]
fn a_well_formed_chain_holds() {
    let p = pki(ca(), ca(), |_| {}, p384());
    check(&p).unwrap();
    // With the root included as well.
    verify_chain(
        &[p.leaf.clone(), p.intermediate.clone(), p.root.clone()],
        &p.root,
        now(),
    )
    .unwrap();
}

#[test]
fn an_issuer_must_be_a_ca() {
    let p = pki(ca(), IsCa::ExplicitNoCa, |_| {}, p384());
    assert!(matches!(check(&p), Err(ChainError::NotCa { index: 1, .. })));
    let p = pki(ca(), IsCa::NoCa, |_| {}, p384());
    assert!(matches!(check(&p), Err(ChainError::NotCa { index: 1, .. })));
}

#[test]
fn path_length_is_enforced() {
    // The root allows no intermediate below it, and there is one.
    let p = pki(
        IsCa::Ca(BasicConstraints::Constrained(0)),
        ca(),
        |_| {},
        p384(),
    );
    assert!(matches!(check(&p), Err(ChainError::NotCa { index: 2, .. })));
    let p = pki(
        IsCa::Ca(BasicConstraints::Constrained(1)),
        ca(),
        |_| {},
        p384(),
    );
    check(&p).unwrap();
}

#[test]
fn unknown_critical_extensions_are_refused() {
    let p = pki(
        ca(),
        ca(),
        |l| {
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0x00]);
            ext.set_criticality(true);
            l.custom_extensions.push(ext);
        },
        p384(),
    );
    assert!(matches!(
        check(&p),
        Err(ChainError::UnknownCriticalExtension { index: 0, .. })
    ));
}

#[test]
fn the_leaf_must_be_a_p384_signing_key() {
    let p = pki(
        ca(),
        ca(),
        |_| {},
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
    );
    assert!(matches!(check(&p), Err(ChainError::Key { index: 0, .. })));
    let p = pki(
        ca(),
        ca(),
        |l| l.key_usages = vec![KeyUsagePurpose::KeyAgreement],
        p384(),
    );
    assert!(matches!(check(&p), Err(ChainError::LeafUsage { .. })));
}

#[test]
fn expired_certificates_are_refused() {
    let p = pki(
        ca(),
        ca(),
        |l| {
            l.not_before = date_time_ymd(2001, 1, 1);
            l.not_after = date_time_ymd(2002, 1, 1);
        },
        p384(),
    );
    assert!(matches!(
        check(&p),
        Err(ChainError::Validity { index: 0, .. })
    ));
}

#[test]
fn another_roots_chain_is_untrusted() {
    let ours = pki(ca(), ca(), |_| {}, p384());
    let theirs = pki(ca(), ca(), |_| {}, p384());
    // Same names, other keys: the intermediate's issuer name matches our
    // root, so the signature is what tells them apart.
    assert!(matches!(
        verify_chain(
            &[theirs.leaf.clone(), theirs.intermediate.clone()],
            &ours.root,
            now()
        ),
        Err(ChainError::BadSignature { index: 1, .. })
    ));
    // Their root, included: self-issued and not ours.
    assert!(matches!(
        verify_chain(
            &[theirs.leaf, theirs.intermediate, theirs.root],
            &ours.root,
            now()
        ),
        Err(ChainError::UntrustedRoot { .. })
    ));
}
