//! The GPU certificate-chain reader on hostile bytes: PEM splitting, DER
//! decoding (x509-cert) and the link checks must fail cleanly, never panic
//! (x509-cert's own `load_pem_chain` panics on empty input, which is why
//! the chain module splits PEM itself).

#![no_main]

use std::time::Duration;

use cocoon_measurements::gpu::chain::{parse_pem_chain, pinned_root, verify_chain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(root) = pinned_root() else {
        panic!("the pinned root must parse");
    };
    if let Ok(certs) = parse_pem_chain(data) {
        // 2026-01-01: inside every genuine certificate's validity.
        let _ = verify_chain(&certs, &root, Duration::from_secs(1_767_225_600));
    }
});
