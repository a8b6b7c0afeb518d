//! The tests' stand-in for AMD's chain (`fixtures/snp/test-ca/`, made by
//! its `make.sh`) and a signer that writes reports exactly as the secure
//! processor does. Shared by the attestation tests and the benchmark; the
//! product trusts none of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cocoon_measurements::attest::{MinTcb, Policy, Product, Root, Roots, VcekStore, Verifier};
use p384::ecdsa::SigningKey;
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::pkcs8::DecodePrivateKey;
use sev::certs::snp::Certificate;
use sha2::{Digest, Sha384};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snp")
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

pub fn real_report() -> Vec<u8> {
    hex::decode(String::from_utf8(read("report_milan.hex")).unwrap().trim()).unwrap()
}

pub fn no_vceks() -> VcekStore {
    VcekStore {
        cache: None,
        bundles: vec![],
        network: false,
    }
}

pub const CHIP: [u8; 64] = [0x5a; 64];
pub const MEASUREMENT: [u8; 48] = [0x42; 48];

pub fn test_roots() -> Roots {
    let pem = |n: &str| Certificate::from_pem(&read(&format!("test-ca/{n}"))).unwrap();
    Roots::new(vec![Root {
        product: Product::Milan,
        ark: pem("ark.pem"),
        ask: pem("ask.pem"),
    }])
    .unwrap()
}

pub fn test_verifier() -> Verifier {
    Verifier {
        roots: test_roots(),
        vceks: no_vceks(),
        policy: Policy {
            measurements: vec![MEASUREMENT],
            min_tcb: MinTcb::default(),
            allowlist: None,
            gpu: Default::default(),
        },
        allow_unattested: false,
    }
}

pub fn test_vcek() -> Vec<u8> {
    read("test-ca/vcek.der")
}

/// A version-2 Milan report for `CHIP` at TCB (3, 0, 8, 115), edited, then
/// signed by the stand-in VCEK exactly as the secure processor signs.
pub fn signed_report(report_data: [u8; 64], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut r = real_report();
    r[0x50..0x90].copy_from_slice(&report_data);
    r[0x90..0xc0].copy_from_slice(&MEASUREMENT);
    r[0x180..0x188].copy_from_slice(&[3, 0, 0, 0, 0, 0, 8, 115]);
    r[0x1a0..0x1e0].copy_from_slice(&CHIP);
    edit(&mut r);
    sign(&mut r);
    r
}

pub fn sign(r: &mut [u8]) {
    let pem = String::from_utf8(read("test-ca/vcek.key")).unwrap();
    let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
    let sig: p384::ecdsa::Signature = key.sign_prehash(&Sha384::digest(&r[..0x2a0])).unwrap();
    let (rr, ss) = sig.split_bytes();
    r[0x2a0..].fill(0);
    for (i, b) in rr.iter().rev().enumerate() {
        r[0x2a0 + i] = *b;
    }
    for (i, b) in ss.iter().rev().enumerate() {
        r[0x2a0 + 72 + i] = *b;
    }
}
