//! A whole guest certificate through the verifier (X.509, the extension,
//! the report, AMD's chain), offline, under AMD's roots: never a panic, and
//! never a pass for anything but an unattested guest (no report can bind a
//! fuzzer's key).

#![no_main]

use cocoon_measurements::attest::{MinTcb, Policy, Roots, VcekStore, Verdict, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier {
        roots: Roots::amd().expect("AMD's roots"),
        vceks: VcekStore { cache: None, bundles: vec![], network: false },
        policy: Policy {
            measurements: vec![[0u8; 48]],
            allowlist: None,
            gpu: Default::default(),
            min_tcb: MinTcb::default(),
        },
        allow_unattested: true,
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(verdict) = verifier().verify_certificate(data) {
        assert!(matches!(verdict, Verdict::Unattested { .. }), "{verdict:?}");
    }
});
