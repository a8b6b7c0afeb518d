//! Time to verify one NVIDIA H100 report and its certificate chain
//! (`cargo bench -p cocoon-measurements --bench gpu_verify`): the whole
//! `gpu::verify`, and its parts; then a RIM (the test driver RIM: XML
//! reading, Canonical XML 1.1, the signature and a 2-certificate chain) and
//! the reference values from two. A plain timing loop (no bench
//! framework): median of the runs, after a warm-up.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p384::ecdsa::Signature;
use p384::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha384};

use cocoon_measurements::gpu::{
    self, Evidence, Policy, Trailing, chain, decode_hex_report, parse_report,
};

#[path = "../tests/support/test_rims.rs"]
mod test_rims;
use test_rims::{RIM_TIME, rim_root, rim_text};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nvidia");
const RUNS: usize = 200;

fn median(mut f: impl FnMut()) -> Duration {
    for _ in 0..50 {
        f();
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let read = |n: &str| std::fs::read(format!("{DATA}/{n}")).unwrap();
    let report = decode_hex_report(&read("hopperAttestationReport.txt")).unwrap();
    let certs = read("hopper_cert_chain_case1.txt");
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .unwrap()
            .try_into()
            .unwrap();
    let policy = Policy {
        nonce,
        min_driver: Some("550".parse().unwrap()),
        reference: None,
        trailing: Trailing::Reject,
        now: SystemTime::now().duration_since(UNIX_EPOCH).unwrap(),
    };
    let evidence = Evidence {
        report: &report,
        chain_pem: &certs,
    };
    assert!(gpu::verify(evidence, &policy).holds);
    let root = chain::pinned_root().unwrap();

    let parse = median(|| {
        black_box(parse_report(black_box(&report), Trailing::Reject).unwrap());
    });
    let chain_only = median(|| {
        let c = chain::parse_pem_chain(black_box(&certs)).unwrap();
        black_box(chain::verify_chain(&c, &root, policy.now).unwrap());
    });
    let whole = median(|| {
        black_box(gpu::verify(black_box(evidence), &policy));
    });
    let parsed = parse_report(&report, Trailing::Reject).unwrap();
    let leaf = chain::verify_chain(&chain::parse_pem_chain(&certs).unwrap(), &root, policy.now)
        .unwrap()
        .leaf_key;
    let signature = median(|| {
        let sig = Signature::from_slice(&parsed.response.signature).unwrap();
        let digest = Sha384::digest(black_box(parsed.signed_bytes()));
        leaf.verify_prehash(&digest, &sig).unwrap();
    });
    let root_parse = median(|| {
        black_box(chain::pinned_root().unwrap());
    });
    let no_chain = median(|| {
        black_box(gpu::verify(
            Evidence {
                report: &report,
                chain_pem: b"",
            },
            &policy,
        ));
    });
    println!("gpu_verify: median of {RUNS} runs");
    println!("  verify (report + 5-certificate chain + signature): {whole:?}");
    println!("  of which: parse the SPDM report: {parse:?}");
    println!(
        "  of which: parse and verify the chain (4 ECDSA P-384 verifications): {chain_only:?}"
    );
    println!("  of which: the report's signature (1 ECDSA P-384 verification): {signature:?}");
    println!("  of which: parse the pinned root: {root_parse:?}");
    println!("  verify with an empty chain (fails at once): {no_chain:?}");

    let (driver, vbios) = (rim_text("driver.swidtag"), rim_text("vbios.swidtag"));
    let (driver, vbios) = (driver.as_bytes(), vbios.as_bytes());
    let (rim_root, at) = (rim_root(), RIM_TIME);
    let text = std::str::from_utf8(driver).unwrap();
    let rim_parse = median(|| {
        black_box(gpu::rim::xml::parse(black_box(text)).unwrap());
    });
    let doc = gpu::rim::xml::parse(text).unwrap();
    let rim_c14n = median(|| {
        black_box(gpu::rim::c14n::document_without(black_box(&doc), None).unwrap());
    });
    let rim_whole = median(|| {
        black_box(gpu::rim::verify(black_box(driver), &rim_root, at).unwrap());
    });
    let import = median(|| {
        let d = gpu::rim::verify(driver, &rim_root, at).unwrap();
        let v = gpu::rim::verify(vbios, &rim_root, at).unwrap();
        black_box(
            gpu::ReferenceValues::from_rims(&d, &v, &d.version, &v.version, &rim_root).unwrap(),
        );
    });
    println!(
        "  verify a RIM ({} bytes, 2-certificate chain): {rim_whole:?}",
        driver.len()
    );
    println!("  of which: read its XML: {rim_parse:?}");
    println!("  of which: its canonical form (whole document): {rim_c14n:?}");
    println!("  import two RIMs into reference values: {import:?}");
}
