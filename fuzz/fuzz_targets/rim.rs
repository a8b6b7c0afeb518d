//! NVIDIA RIMs on hostile bytes: the XML reader, Canonical XML 1.1 and
//! the signature, chain and payload checks must fail cleanly, never panic.
//! Seeded with the test RIMs (measurements/tests/data/rim/), which verify
//! under the test root used here.

#![no_main]

use std::time::Duration;

use cocoon_measurements::gpu::chain::parse_pem_chain;
use cocoon_measurements::gpu::rim;
use libfuzzer_sys::fuzz_target;

const ROOT: &[u8] = include_bytes!("../../measurements/tests/data/rim/root.pem");

fuzz_target!(|data: &[u8]| {
    let Ok(mut root) = parse_pem_chain(ROOT) else {
        panic!("the test root must parse");
    };
    let root = root.remove(0);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(doc) = rim::xml::parse(text)
    {
        let _ = rim::c14n::document_without(&doc, None);
    }
    // 2027-06-01: inside the test PKI's validity.
    let _ = rim::verify(data, &root, Duration::from_secs(1_811_808_000));
});
