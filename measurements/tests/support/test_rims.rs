//! The test RIMs (`tests/data/rim/`, made by its `make.py`: signed by
//! xmlsec1 with a test PKI, their digests the real H100 report's blocks),
//! verified, and the reference values they give for that report's
//! versions. Shared by the RIM tests and the attestation tests.

#![allow(dead_code)]

use std::time::Duration;

use cocoon_measurements::gpu::ReferenceValues;
use cocoon_measurements::gpu::chain;
use cocoon_measurements::gpu::rim::{self, Rim};
use x509_cert::Certificate;

pub const RIM_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rim");
/// Within the test PKI's validity (made 2026-11-27: the signer for ten
/// years, the CAs for twenty).
pub const RIM_TIME: Duration = Duration::from_secs(1_811_808_000); // 2027-06-01
/// The versions the real report (and so the test RIMs) carries.
pub const DRIVER: &str = "550.90.07";
pub const VBIOS: &str = "96.00.9f.00.01";

pub fn rim_text(name: &str) -> String {
    std::fs::read_to_string(format!("{RIM_DIR}/{name}")).unwrap()
}

pub fn rim_root() -> Certificate {
    chain::parse_pem_chain(rim_text("root.pem").as_bytes())
        .unwrap()
        .remove(0)
}

/// The driver and the VBIOS RIM, verified.
pub fn test_rims() -> (Rim, Rim) {
    let verify = |n: &str| rim::verify(rim_text(n).as_bytes(), &rim_root(), RIM_TIME).unwrap();
    (verify("driver.swidtag"), verify("vbios.swidtag"))
}

/// Reference values from `driver` and `vbios` for the real report.
pub fn reference(driver: &Rim, vbios: &Rim) -> ReferenceValues {
    ReferenceValues::from_rims(driver, vbios, DRIVER, VBIOS, &rim_root()).unwrap()
}

/// `driver` with RIM measurement 25 (SPDM block 26) accepting only a value
/// the real report does not have: reference values from it must fail.
pub fn with_block_26_changed(driver: &Rim) -> Rim {
    let mut other = driver.clone();
    let m = other
        .measurements
        .iter_mut()
        .find(|m| m.index == 25)
        .unwrap();
    m.values = vec![vec![0xcd; 48]];
    other
}
