//! The SPDM GET_MEASUREMENTS/MEASUREMENTS parser on hostile bytes: it must
//! never panic, and whatever it accepts must account for every input byte.

#![no_main]

use cocoon_measurements::gpu::spdm::{SIGNATURE_LEN, Trailing, parse_report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for trailing in [Trailing::Reject, Trailing::AllowOneZeroByte] {
        if let Ok(report) = parse_report(data, trailing) {
            assert_eq!(
                report.signed_bytes().len() + SIGNATURE_LEN + report.ignored_trailing,
                data.len()
            );
            assert_eq!(report.signed_bytes(), &data[..report.signed_bytes().len()]);
            assert!(!report.response.blocks.is_empty());
            let _ = report.response.opaque.summary();
        }
    }
});
