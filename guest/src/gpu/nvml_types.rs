//! NVML's confidential-computing structures, laid out as in NVIDIA's
//! `nvml.h` (R550 and later), and how their contents are read.
//!
//! The buffers are fixed-size; NVML says how much of each it filled. Those
//! lengths come from the driver, so they are checked against the buffer
//! before any slice is taken.

use std::os::raw::{c_uint, c_void};

use anyhow::{Result, bail};

pub type NvmlReturn = std::os::raw::c_int;
pub type NvmlDevice = *mut c_void;

pub const NVML_SUCCESS: NvmlReturn = 0;

pub const CC_NONCE_SIZE: usize = 0x20;
pub const CC_ATTESTATION_REPORT_SIZE: usize = 0x2000;
pub const CC_CEC_ATTESTATION_REPORT_SIZE: usize = 0x1000;
pub const GPU_CERT_CHAIN_SIZE: usize = 0x1000;
pub const GPU_ATTESTATION_CERT_CHAIN_SIZE: usize = 0x1400;

pub const CC_FEATURE_ENABLED: c_uint = 1;
pub const CC_ENVIRONMENT_PROD: c_uint = 2;
pub const CC_DEVTOOLS_OFF: c_uint = 0;
pub const CC_ACCEPTING_CLIENT_REQUESTS_TRUE: c_uint = 1;

/// `nvmlConfComputeSystemState_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemState {
    pub environment: c_uint,
    pub cc_feature: c_uint,
    pub dev_tools_mode: c_uint,
}

/// `nvmlSystemConfComputeSettings_v1_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemSettings {
    pub version: c_uint,
    pub environment: c_uint,
    pub cc_feature: c_uint,
    pub dev_tools_mode: c_uint,
    pub multi_gpu_mode: c_uint,
}

impl SystemSettings {
    /// `NVML_STRUCT_VERSION(SystemConfComputeSettings, 1)`: size | version << 24.
    pub const VERSION_1: c_uint = (std::mem::size_of::<SystemSettings>() as c_uint) | (1 << 24);
}

/// `nvmlConfComputeGpuAttestationReport_t`: `nonce` is the input.
#[repr(C)]
pub struct AttestationReport {
    pub is_cec_attestation_report_present: c_uint,
    pub attestation_report_size: c_uint,
    pub cec_attestation_report_size: c_uint,
    pub nonce: [u8; CC_NONCE_SIZE],
    pub attestation_report: [u8; CC_ATTESTATION_REPORT_SIZE],
    pub cec_attestation_report: [u8; CC_CEC_ATTESTATION_REPORT_SIZE],
}

/// `nvmlConfComputeGpuCertificate_t`: `cert_chain` is the device's identity
/// chain, `attestation_cert_chain` (PEM) the one that signs reports.
#[repr(C)]
pub struct GpuCertificate {
    pub cert_chain_size: c_uint,
    pub attestation_cert_chain_size: c_uint,
    pub cert_chain: [u8; GPU_CERT_CHAIN_SIZE],
    pub attestation_cert_chain: [u8; GPU_ATTESTATION_CERT_CHAIN_SIZE],
}

impl AttestationReport {
    /// A zeroed request for `nonce`, on the heap (12 KiB).
    pub fn request(nonce: [u8; CC_NONCE_SIZE]) -> Box<Self> {
        let mut r = Box::new(AttestationReport {
            is_cec_attestation_report_present: 0,
            attestation_report_size: 0,
            cec_attestation_report_size: 0,
            nonce: [0; CC_NONCE_SIZE],
            attestation_report: [0; CC_ATTESTATION_REPORT_SIZE],
            cec_attestation_report: [0; CC_CEC_ATTESTATION_REPORT_SIZE],
        });
        r.nonce = nonce;
        r
    }

    /// The SPDM report bytes NVML filled in.
    pub fn report(&self) -> Result<&[u8]> {
        filled(
            "attestation report",
            self.attestation_report_size,
            &self.attestation_report,
        )
    }
}

impl GpuCertificate {
    pub fn zeroed() -> Box<Self> {
        Box::new(GpuCertificate {
            cert_chain_size: 0,
            attestation_cert_chain_size: 0,
            cert_chain: [0; GPU_CERT_CHAIN_SIZE],
            attestation_cert_chain: [0; GPU_ATTESTATION_CERT_CHAIN_SIZE],
        })
    }

    /// The attestation chain (PEM) NVML filled in.
    pub fn attestation_chain(&self) -> Result<&[u8]> {
        filled(
            "attestation certificate chain",
            self.attestation_cert_chain_size,
            &self.attestation_cert_chain,
        )
    }
}

fn filled<'a>(what: &str, size: c_uint, buf: &'a [u8]) -> Result<&'a [u8]> {
    let n = size as usize;
    if n == 0 {
        bail!("NVML returned an empty {what}");
    }
    if n > buf.len() {
        bail!(
            "NVML says its {what} is {n} bytes, over its {}-byte buffer",
            buf.len()
        );
    }
    Ok(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_nvml_h() {
        assert_eq!(size_of::<SystemState>(), 12);
        assert_eq!(size_of::<SystemSettings>(), 20);
        assert_eq!(SystemSettings::VERSION_1, 0x0100_0014);
        assert_eq!(offset_of!(AttestationReport, nonce), 12);
        assert_eq!(offset_of!(AttestationReport, attestation_report), 44);
        assert_eq!(
            offset_of!(AttestationReport, cec_attestation_report),
            44 + 0x2000
        );
        assert_eq!(size_of::<AttestationReport>(), 44 + 0x2000 + 0x1000);
        assert_eq!(offset_of!(GpuCertificate, cert_chain), 8);
        assert_eq!(
            offset_of!(GpuCertificate, attestation_cert_chain),
            8 + 0x1000
        );
        assert_eq!(size_of::<GpuCertificate>(), 8 + 0x1000 + 0x1400);
    }

    #[test]
    fn reads_only_what_nvml_filled_and_refuses_overlong_sizes() {
        let mut r = AttestationReport::request([7; 32]);
        assert_eq!(r.nonce, [7; 32]);
        assert!(r.report().is_err(), "an empty report");
        r.attestation_report[..3].copy_from_slice(&[0x11, 0xe0, 0x01]);
        r.attestation_report_size = 3;
        assert_eq!(r.report().unwrap(), [0x11, 0xe0, 0x01]);
        r.attestation_report_size = CC_ATTESTATION_REPORT_SIZE as c_uint;
        assert_eq!(r.report().unwrap().len(), CC_ATTESTATION_REPORT_SIZE);
        r.attestation_report_size = CC_ATTESTATION_REPORT_SIZE as c_uint + 1;
        assert!(r.report().is_err());

        let mut c = GpuCertificate::zeroed();
        assert!(c.attestation_chain().is_err());
        c.attestation_cert_chain[..5].copy_from_slice(b"-----");
        c.attestation_cert_chain_size = 5;
        assert_eq!(c.attestation_chain().unwrap(), b"-----");
        c.attestation_cert_chain_size = u32::MAX;
        assert!(c.attestation_chain().is_err());
    }
}
