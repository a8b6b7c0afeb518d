//! Attestation in the guest: asking the AMD secure processor for reports
//! whose `report_data` binds our TLS key (at boot) or a client's session
//! (on request), through configfs-tsm or, on older kernels, /dev/sev-guest.
//!
//! Without SEV-SNP there is no report, and the guest says so in its
//! certificate and on `/v1/attestation`: it never makes one up.

mod cert_table;
mod sev_guest;
mod tsm;

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use cocoon_evidence::{Evidence, GpuEvidence, REPORT_LEN};

/// A report and, when the host supplied certificates, the VCEK.
pub struct SignedReport {
    pub report: Vec<u8>,
    pub vcek: Option<Vec<u8>>,
}

enum Source {
    Tsm,
    SevGuest,
    None(String),
}

/// How this guest obtains reports; one request at a time (the interfaces
/// are per-process state in the kernel, and reports are rare).
pub struct Attester {
    source: Source,
    lock: Mutex<()>,
}

impl Attester {
    /// Finds the attestation interface once the modules are loaded.
    pub fn detect() -> Self {
        let source = if Path::new(tsm::REPORTS).is_dir() && tsm::provider_is_sev() {
            Source::Tsm
        } else if Path::new(sev_guest::DEVICE).exists() {
            Source::SevGuest
        } else {
            Source::None(
                "no SEV-SNP guest device: neither configfs-tsm nor /dev/sev-guest exists \
                 (a boot without SEV-SNP)"
                    .into(),
            )
        };
        Attester {
            source,
            lock: Mutex::new(()),
        }
    }

    /// The guest run as an ordinary program on a host.
    pub fn host_mode() -> Self {
        Attester {
            source: Source::None("host mode: an ordinary process, not a SEV-SNP guest".into()),
            lock: Mutex::new(()),
        }
    }

    /// `None` when reports are available; the reason otherwise.
    pub fn unattested_reason(&self) -> Option<&str> {
        match &self.source {
            Source::None(reason) => Some(reason),
            _ => None,
        }
    }

    pub fn interface(&self) -> &'static str {
        match self.source {
            Source::Tsm => "configfs-tsm",
            Source::SevGuest => "/dev/sev-guest",
            Source::None(_) => "none",
        }
    }

    /// A fresh report over `report_data`, at VMPL 0.
    pub fn report(&self, report_data: [u8; 64]) -> Result<SignedReport> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let signed = match &self.source {
            Source::Tsm => tsm::report(&report_data).context("configfs-tsm")?,
            Source::SevGuest => sev_guest::report(report_data).context("/dev/sev-guest")?,
            Source::None(reason) => anyhow::bail!("no attestation report: {reason}"),
        };
        anyhow::ensure!(
            signed.report.len() == REPORT_LEN,
            "the secure processor returned {} bytes, not a {REPORT_LEN}-byte report",
            signed.report.len()
        );
        anyhow::ensure!(
            signed.report[0x50..0x90] == report_data,
            "the report does not carry the report_data asked for"
        );
        Ok(signed)
    }

    /// The evidence for the certificate of a key with this
    /// SubjectPublicKeyInfo, and the GPUs' evidence made for that key (empty
    /// in the CPU profile), which the report then covers. With SEV-SNP
    /// present, failing to get a report is an error (never a silent fall
    /// back to unattested).
    pub fn evidence(&self, spki_der: &[u8], gpus: Vec<GpuEvidence>) -> Result<Evidence> {
        if let Some(reason) = self.unattested_reason() {
            // Without SNP nothing binds GPU evidence; the certificate says
            // so, and a verifier that requires a GPU refuses it.
            let reason = if gpus.is_empty() {
                reason.to_string()
            } else {
                format!("{reason}; GPU evidence verified in the guest but not bound")
            };
            return Ok(Evidence::Unattested { reason });
        }
        let report_data = cocoon_evidence::certificate_report_data(spki_der, &gpus);
        let signed = self.report(report_data)?;
        Ok(Evidence::SevSnp {
            report: signed.report,
            vcek: signed.vcek,
            gpus,
        })
    }
}
