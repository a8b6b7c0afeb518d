//! The guest certificate's attestation extension (DER) on hostile bytes:
//! never a panic, and whatever decodes re-encodes to the same evidence.

#![no_main]

use cocoon_evidence::Evidence;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = Evidence::from_der(data) {
        assert_eq!(Evidence::from_der(&evidence.to_der()), Ok(evidence));
    }
});
