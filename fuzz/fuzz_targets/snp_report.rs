//! The SEV-SNP report parser and the VCEK reader on hostile bytes: never a
//! panic; a report that parses is checked against a real VCEK's key and
//! (being random) must not verify.

#![no_main]

use cocoon_measurements::attest::amd::parse_vcek;
use cocoon_measurements::attest::report::Report;
use libfuzzer_sys::fuzz_target;

const VCEK: &[u8] = include_bytes!("../../measurements/tests/fixtures/snp/vcek_milan.der");
const GENUINE: &[u8] = include_bytes!("../seeds/snp_report/report_milan.bin");

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = Report::parse(data) {
        let (vcek, _) = parse_vcek(VCEK).expect("the fixture VCEK parses");
        let verified = report.verify_signature(vcek.public_key_sec1()).is_ok();
        // Only AMD's own bytes verify under AMD's key.
        assert!(!verified || data == GENUINE, "a report other than the genuine one verified");
    }
    let _ = parse_vcek(data);
});
