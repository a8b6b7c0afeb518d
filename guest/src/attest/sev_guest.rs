//! Reports through /dev/sev-guest (the SNP_GET_EXT_REPORT ioctl), for
//! kernels without configfs-tsm.

use anyhow::{Result, anyhow};
use sev::firmware::guest::Firmware;
use sev::firmware::host::CertType;

use super::SignedReport;

pub const DEVICE: &str = "/dev/sev-guest";

pub fn report(report_data: [u8; 64]) -> Result<SignedReport> {
    let mut fw = Firmware::open().map_err(|e| anyhow!("opening {DEVICE}: {e}"))?;
    // The extended request also returns the host's certificates, if any.
    match fw.get_ext_report(None, Some(report_data), Some(0)) {
        Ok((report, certs)) => {
            let vcek = certs
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.cert_type == CertType::VCEK)
                .map(|c| c.data);
            Ok(SignedReport { report, vcek })
        }
        Err(ext) => {
            let report = fw
                .get_report(None, Some(report_data), Some(0))
                .map_err(|e| anyhow!("SNP_GET_REPORT: {e} (extended request: {ext})"))?;
            Ok(SignedReport { report, vcek: None })
        }
    }
}
