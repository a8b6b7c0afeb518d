//! The X.509 extension in the guest's certificate.
//!
//! ```text
//! CocoonEvidence ::= SEQUENCE {
//!   version   INTEGER (1),
//!   platform  UTF8String,                          -- "sev-snp" | "none"
//!   report    [0] EXPLICIT OCTET STRING OPTIONAL,  -- the raw 1184-byte SNP report
//!   vcek      [1] EXPLICIT OCTET STRING OPTIONAL,  -- DER, when the host supplied one
//!   reason    [2] EXPLICIT UTF8String OPTIONAL }   -- why there is no report
//! ```
//!
//! A guest without SEV-SNP says so with `platform = "none"` and a reason: it
//! never makes up a report, and a verifier knows what it is looking at.
//! Decoding is strict: one version, the fields each platform needs and no
//! others, bounded sizes, no trailing bytes.

use der::asn1::OctetString;
use der::{Decode, Encode, Sequence};
use thiserror::Error;

/// The extension's OID, under a private enterprise arc.
///
/// The arc is not registered with IANA yet (a registration is on the list
/// before a 1.0); 2.25 UUID arcs would need no registration, but neither
/// rcgen nor x509-cert accepts arcs above 32 bits.
pub const EXTENSION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 61_043, 1, 1];

/// An SNP attestation report is exactly this long (AMD SEV-SNP ABI, table 23).
pub const REPORT_LEN: usize = 0x4a0;

const VERSION: u8 = 1;
const PLATFORM_SNP: &str = "sev-snp";
const PLATFORM_NONE: &str = "none";
/// Bounds that keep a hostile certificate from costing memory: a VCEK is
/// about 1.4 KiB, a reason one line.
const MAX_VCEK: usize = 8 * 1024;
const MAX_REASON: usize = 512;
const MAX_EXTENSION: usize = 16 * 1024;

/// What a guest's certificate says about the platform it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// An SEV-SNP report whose `report_data` binds the certificate's key.
    SevSnp {
        report: Vec<u8>,
        /// The VCEK (DER) the host handed to the guest, when it did.
        vcek: Option<Vec<u8>>,
    },
    /// No SEV-SNP: the guest says why (a development boot, no device).
    Unattested { reason: String },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EvidenceError {
    #[error("the attestation extension is {0} bytes, over the {MAX_EXTENSION}-byte limit")]
    TooLarge(usize),
    #[error("the attestation extension is not valid DER: {0}")]
    Der(String),
    #[error("the attestation extension has version {0}; this verifier reads version {VERSION}")]
    Version(u8),
    #[error("the attestation extension names an unknown platform {0:?}")]
    Platform(String),
    #[error("the SEV-SNP report is {0} bytes, not {REPORT_LEN}")]
    ReportLength(usize),
    #[error("the VCEK in the attestation extension is {0} bytes, over the {MAX_VCEK}-byte limit")]
    VcekLength(usize),
    #[error("the unattested reason is missing or over {MAX_REASON} bytes")]
    Reason,
    #[error("the attestation extension carries fields its platform {0:?} does not have")]
    ExtraFields(String),
}

#[derive(Sequence)]
struct Wire {
    version: u8,
    platform: String,
    #[asn1(context_specific = "0", optional = "true")]
    report: Option<OctetString>,
    #[asn1(context_specific = "1", optional = "true")]
    vcek: Option<OctetString>,
    #[asn1(context_specific = "2", optional = "true")]
    reason: Option<String>,
}

fn octets(bytes: &[u8]) -> OctetString {
    // Cannot fail: OctetString only refuses lengths over 256 MiB.
    OctetString::new(bytes).expect("octet string within DER's length limit")
}

impl Evidence {
    /// The DER the guest puts in its certificate's extension.
    pub fn to_der(&self) -> Vec<u8> {
        let wire = match self {
            Evidence::SevSnp { report, vcek } => Wire {
                version: VERSION,
                platform: PLATFORM_SNP.into(),
                report: Some(octets(report)),
                vcek: vcek.as_deref().map(octets),
                reason: None,
            },
            Evidence::Unattested { reason } => Wire {
                version: VERSION,
                platform: PLATFORM_NONE.into(),
                report: None,
                vcek: None,
                reason: Some(reason.clone()),
            },
        };
        wire.to_der().expect("encoding a bounded structure")
    }

    /// Strictly decodes an extension's value.
    pub fn from_der(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_EXTENSION {
            return Err(EvidenceError::TooLarge(bytes.len()));
        }
        // `from_der` refuses trailing bytes.
        let wire = Wire::from_der(bytes).map_err(|e| EvidenceError::Der(e.to_string()))?;
        if wire.version != VERSION {
            return Err(EvidenceError::Version(wire.version));
        }
        match wire.platform.as_str() {
            PLATFORM_SNP => {
                if wire.reason.is_some() {
                    return Err(EvidenceError::ExtraFields(wire.platform));
                }
                let report = wire
                    .report
                    .ok_or(EvidenceError::ReportLength(0))?
                    .into_bytes();
                if report.len() != REPORT_LEN {
                    return Err(EvidenceError::ReportLength(report.len()));
                }
                let vcek = wire.vcek.map(OctetString::into_bytes);
                if let Some(v) = &vcek
                    && v.len() > MAX_VCEK
                {
                    return Err(EvidenceError::VcekLength(v.len()));
                }
                Ok(Evidence::SevSnp { report, vcek })
            }
            PLATFORM_NONE => {
                if wire.report.is_some() || wire.vcek.is_some() {
                    return Err(EvidenceError::ExtraFields(wire.platform));
                }
                match wire.reason {
                    Some(reason) if !reason.is_empty() && reason.len() <= MAX_REASON => {
                        Ok(Evidence::Unattested { reason })
                    }
                    _ => Err(EvidenceError::Reason),
                }
            }
            _ => Err(EvidenceError::Platform(wire.platform)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snp() -> Evidence {
        Evidence::SevSnp {
            report: vec![0xab; REPORT_LEN],
            vcek: Some(vec![1, 2, 3]),
        }
    }

    #[test]
    fn both_platforms_round_trip() {
        for e in [
            snp(),
            Evidence::SevSnp {
                report: vec![0; REPORT_LEN],
                vcek: None,
            },
            Evidence::Unattested {
                reason: "no SEV-SNP: development boot".into(),
            },
        ] {
            assert_eq!(Evidence::from_der(&e.to_der()).unwrap(), e);
        }
    }

    #[test]
    fn trailing_bytes_and_truncations_are_refused() {
        let der = snp().to_der();
        let mut longer = der.clone();
        longer.push(0);
        assert!(matches!(
            Evidence::from_der(&longer),
            Err(EvidenceError::Der(_))
        ));
        for n in 0..der.len() {
            assert!(
                Evidence::from_der(&der[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn each_rule_has_its_error() {
        let wire = |version, platform: &str, report: Option<usize>, reason: Option<&str>| {
            Wire {
                version,
                platform: platform.into(),
                report: report.map(|n| octets(&vec![0; n])),
                vcek: None,
                reason: reason.map(Into::into),
            }
            .to_der()
            .unwrap()
        };
        let e = |d: Vec<u8>| Evidence::from_der(&d).unwrap_err();
        assert_eq!(
            e(wire(2, "sev-snp", Some(REPORT_LEN), None)),
            EvidenceError::Version(2)
        );
        assert_eq!(
            e(wire(1, "tdx", Some(REPORT_LEN), None)),
            EvidenceError::Platform("tdx".into())
        );
        assert_eq!(
            e(wire(1, "sev-snp", Some(100), None)),
            EvidenceError::ReportLength(100)
        );
        assert_eq!(
            e(wire(1, "sev-snp", None, None)),
            EvidenceError::ReportLength(0)
        );
        assert_eq!(
            e(wire(1, "sev-snp", Some(REPORT_LEN), Some("x"))),
            EvidenceError::ExtraFields("sev-snp".into())
        );
        assert_eq!(
            e(wire(1, "none", Some(REPORT_LEN), Some("x"))),
            EvidenceError::ExtraFields("none".into())
        );
        assert_eq!(e(wire(1, "none", None, None)), EvidenceError::Reason);
        assert_eq!(e(wire(1, "none", None, Some(""))), EvidenceError::Reason);
        assert_eq!(
            e(vec![0; MAX_EXTENSION + 1]),
            EvidenceError::TooLarge(MAX_EXTENSION + 1)
        );
    }
}
