//! The X.509 extension in the guest's certificate.
//!
//! ```text
//! CocoonEvidence ::= SEQUENCE {
//!   version   INTEGER (1),
//!   platform  UTF8String,                          -- "sev-snp" | "none"
//!   report    [0] EXPLICIT OCTET STRING OPTIONAL,  -- the raw 1184-byte SNP report
//!   vcek      [1] EXPLICIT OCTET STRING OPTIONAL,  -- DER, when the host supplied one
//!   reason    [2] EXPLICIT UTF8String OPTIONAL,  -- why there is no report
//!   gpus      [3] EXPLICIT SEQUENCE SIZE (1..8) OF GpuEvidence OPTIONAL }
//!
//! GpuEvidence ::= SEQUENCE {
//!   report     OCTET STRING,   -- SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response
//!   certChain  OCTET STRING }  -- the GPU's attestation chain, PEM, leaf first
//! ```
//!
//! Version 1 has no `gpus`; version 2 has them, only with `sev-snp` (the
//! report's `report_data` then covers them, see `binding`). The encoder
//! writes version 1 whenever there is no GPU evidence, so a CPU image's
//! certificate is exactly what it was before GPUs existed.
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
/// The version that carries GPU evidence.
const VERSION_GPU: u8 = 2;
const PLATFORM_SNP: &str = "sev-snp";
const PLATFORM_NONE: &str = "none";
/// Bounds that keep a hostile certificate from costing memory: a VCEK is
/// about 1.4 KiB, a reason one line.
const MAX_VCEK: usize = 8 * 1024;
const MAX_REASON: usize = 512;
/// NVML hands out at most 8 KiB of report and 5 KiB of chain per GPU
/// (NVML_CC_GPU_ATTESTATION_REPORT_SIZE, NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE).
pub const MAX_GPU_REPORT: usize = 0x2000;
pub const MAX_GPU_CHAIN: usize = 0x1400;
/// An HGX board has 8 GPUs.
pub const MAX_GPUS: usize = 8;
const MAX_EXTENSION: usize = 16 * 1024 + MAX_GPUS * (MAX_GPU_REPORT + MAX_GPU_CHAIN + 64);

/// One GPU's evidence, as NVML returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuEvidence {
    /// SPDM 1.1 GET_MEASUREMENTS request ‖ MEASUREMENTS response.
    pub report: Vec<u8>,
    /// The GPU's attestation certificate chain, PEM, leaf first.
    pub cert_chain: Vec<u8>,
}

/// What a guest's certificate says about the platform it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// An SEV-SNP report whose `report_data` binds the certificate's key.
    SevSnp {
        report: Vec<u8>,
        /// The VCEK (DER) the host handed to the guest, when it did.
        vcek: Option<Vec<u8>>,
        /// Each GPU's evidence, made for this key; empty in a CPU image.
        /// When present, `report_data` covers it
        /// ([`crate::binding::key_gpu_report_data`]).
        gpus: Vec<GpuEvidence>,
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
    #[error(
        "the attestation extension has version {0}; this verifier reads versions {VERSION} and {VERSION_GPU}"
    )]
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
    #[error(
        "the attestation extension's version and its GPU evidence disagree (version 2 carries 1 to {MAX_GPUS} GPUs, version 1 none)"
    )]
    GpuCount,
    #[error(
        "GPU {index}'s evidence is out of bounds: a {report}-byte report (1..={MAX_GPU_REPORT}) and a {chain}-byte chain (1..={MAX_GPU_CHAIN})"
    )]
    GpuLength {
        index: usize,
        report: usize,
        chain: usize,
    },
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
    #[asn1(context_specific = "3", optional = "true")]
    gpus: Option<Vec<WireGpu>>,
}

#[derive(Sequence)]
struct WireGpu {
    report: OctetString,
    cert_chain: OctetString,
}

fn octets(bytes: &[u8]) -> OctetString {
    // Cannot fail: OctetString only refuses lengths over 256 MiB.
    OctetString::new(bytes).expect("octet string within DER's length limit")
}

impl Evidence {
    /// The DER the guest puts in its certificate's extension.
    pub fn to_der(&self) -> Vec<u8> {
        let wire = match self {
            Evidence::SevSnp { report, vcek, gpus } => Wire {
                version: if gpus.is_empty() {
                    VERSION
                } else {
                    VERSION_GPU
                },
                platform: PLATFORM_SNP.into(),
                report: Some(octets(report)),
                vcek: vcek.as_deref().map(octets),
                reason: None,
                gpus: (!gpus.is_empty()).then(|| {
                    gpus.iter()
                        .map(|g| WireGpu {
                            report: octets(&g.report),
                            cert_chain: octets(&g.cert_chain),
                        })
                        .collect()
                }),
            },
            Evidence::Unattested { reason } => Wire {
                version: VERSION,
                platform: PLATFORM_NONE.into(),
                report: None,
                vcek: None,
                reason: Some(reason.clone()),
                gpus: None,
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
        if wire.version != VERSION && wire.version != VERSION_GPU {
            return Err(EvidenceError::Version(wire.version));
        }
        match wire.platform.as_str() {
            PLATFORM_SNP => {
                if wire.reason.is_some() {
                    return Err(EvidenceError::ExtraFields(wire.platform));
                }
                let gpus = decode_gpus(wire.version, wire.gpus)?;
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
                Ok(Evidence::SevSnp { report, vcek, gpus })
            }
            PLATFORM_NONE => {
                // GPU evidence is only ever bound by an SNP report.
                if wire.version != VERSION {
                    return Err(EvidenceError::Version(wire.version));
                }
                if wire.report.is_some() || wire.vcek.is_some() || wire.gpus.is_some() {
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

/// Version 1 carries no GPUs; version 2 carries 1 to [`MAX_GPUS`], each
/// within NVML's buffer sizes and none empty.
fn decode_gpus(version: u8, wire: Option<Vec<WireGpu>>) -> Result<Vec<GpuEvidence>, EvidenceError> {
    let wire = match (version, wire) {
        (VERSION, None) => return Ok(Vec::new()),
        (VERSION_GPU, Some(w)) if (1..=MAX_GPUS).contains(&w.len()) => w,
        _ => return Err(EvidenceError::GpuCount),
    };
    wire.into_iter()
        .enumerate()
        .map(|(index, g)| {
            let (report, chain) = (g.report.into_bytes(), g.cert_chain.into_bytes());
            if report.is_empty()
                || report.len() > MAX_GPU_REPORT
                || chain.is_empty()
                || chain.len() > MAX_GPU_CHAIN
            {
                return Err(EvidenceError::GpuLength {
                    index,
                    report: report.len(),
                    chain: chain.len(),
                });
            }
            Ok(GpuEvidence {
                report,
                cert_chain: chain,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snp() -> Evidence {
        Evidence::SevSnp {
            report: vec![0xab; REPORT_LEN],
            vcek: Some(vec![1, 2, 3]),
            gpus: Vec::new(),
        }
    }

    fn gpu(n: usize) -> GpuEvidence {
        GpuEvidence {
            report: vec![0x11; n],
            cert_chain: b"-----BEGIN CERTIFICATE-----".to_vec(),
        }
    }

    fn snp_gpus(gpus: Vec<GpuEvidence>) -> Evidence {
        Evidence::SevSnp {
            report: vec![0xab; REPORT_LEN],
            vcek: None,
            gpus,
        }
    }

    #[test]
    fn both_platforms_round_trip() {
        for e in [
            snp(),
            Evidence::SevSnp {
                report: vec![0; REPORT_LEN],
                vcek: None,
                gpus: Vec::new(),
            },
            snp_gpus(vec![gpu(4000)]),
            snp_gpus((0..MAX_GPUS).map(|i| gpu(MAX_GPU_REPORT - i)).collect()),
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
                gpus: None,
            }
            .to_der()
            .unwrap()
        };
        let e = |d: Vec<u8>| Evidence::from_der(&d).unwrap_err();
        assert_eq!(
            e(wire(3, "sev-snp", Some(REPORT_LEN), None)),
            EvidenceError::Version(3)
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

    #[test]
    fn the_version_says_whether_gpus_are_there() {
        // No GPU: version 1, byte for byte what a CPU image always wrote.
        let version = |e: Evidence| Wire::from_der(&e.to_der()).unwrap().version;
        assert_eq!(version(snp()), 1);
        assert_eq!(version(snp_gpus(vec![gpu(10)])), 2);

        let wire = |version, platform: &str, gpus: Option<Vec<(usize, usize)>>| {
            Wire {
                version,
                platform: platform.into(),
                report: (platform == "sev-snp").then(|| octets(&[0; REPORT_LEN])),
                vcek: None,
                reason: (platform == "none").then(|| "dev".into()),
                gpus: gpus.map(|v| {
                    v.into_iter()
                        .map(|(r, c)| WireGpu {
                            report: octets(&vec![1; r]),
                            cert_chain: octets(&vec![2; c]),
                        })
                        .collect()
                }),
            }
            .to_der()
            .unwrap()
        };
        let e = |d: Vec<u8>| Evidence::from_der(&d).unwrap_err();
        // Version 2 without GPUs, version 1 with them, an empty list, too many.
        assert_eq!(e(wire(2, "sev-snp", None)), EvidenceError::GpuCount);
        assert_eq!(
            e(wire(1, "sev-snp", Some(vec![(10, 10)]))),
            EvidenceError::GpuCount
        );
        assert_eq!(e(wire(2, "sev-snp", Some(vec![]))), EvidenceError::GpuCount);
        assert_eq!(
            e(wire(2, "sev-snp", Some(vec![(10, 10); MAX_GPUS + 1]))),
            EvidenceError::GpuCount
        );
        // Sizes: empty or over NVML's buffers.
        for (index, (r, c)) in [
            (0, 10),
            (10, 0),
            (MAX_GPU_REPORT + 1, 10),
            (10, MAX_GPU_CHAIN + 1),
        ]
        .into_iter()
        .enumerate()
        {
            let mut gpus = vec![(10, 10); index];
            gpus.push((r, c));
            assert_eq!(
                e(wire(2, "sev-snp", Some(gpus))),
                EvidenceError::GpuLength {
                    index,
                    report: r,
                    chain: c
                }
            );
        }
        // GPU evidence without an SNP report to bind it.
        assert_eq!(
            e(wire(2, "none", Some(vec![(10, 10)]))),
            EvidenceError::Version(2)
        );
        assert_eq!(
            e(wire(1, "none", Some(vec![(10, 10)]))),
            EvidenceError::ExtraFields("none".into())
        );
        assert_eq!(e(wire(3, "sev-snp", None)), EvidenceError::Version(3));
    }

    #[test]
    fn gpu_evidence_truncations_are_refused() {
        let der = snp_gpus(vec![gpu(300), gpu(200)]).to_der();
        for n in 0..der.len() {
            assert!(Evidence::from_der(&der[..n]).is_err(), "prefix of {n}");
        }
    }

    #[test]
    fn the_fuzz_seed_with_real_gpu_evidence_decodes() {
        // fuzz/seeds/attestation_extension/snp_with_gpu.der: the real Milan
        // report and the real H100 report and chain, as version 2.
        let seed = include_bytes!("../../fuzz/seeds/attestation_extension/snp_with_gpu.der");
        let Evidence::SevSnp { gpus, vcek, .. } = Evidence::from_der(seed).unwrap() else {
            panic!("not SEV-SNP")
        };
        assert!(vcek.is_none());
        assert_eq!(gpus.len(), 1);
        assert!(
            gpus[0]
                .cert_chain
                .starts_with(b"-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(snp_gpus(gpus).to_der().len(), seed.len());
    }
}
