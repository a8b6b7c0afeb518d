//! Reports through configfs-tsm (Linux ≥ 6.7): make a report directory,
//! write `inblob`, read `outblob` (and `auxblob`, the host's certificates).
//!
//! The kernel's protocol for concurrent writers: `generation` counts writes
//! to the directory; if it moved by more than our one write between writing
//! `inblob` and reading `outblob`, someone else's request raced ours, and
//! the report is not trusted to carry our data (we also check that, above).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::{SignedReport, cert_table};

pub const REPORTS: &str = "/sys/kernel/config/tsm/report";

/// Whether configfs-tsm is backed by the SEV guest driver. The provider is
/// only visible in a report directory, so one is made and removed.
pub fn provider_is_sev() -> bool {
    let Ok(dir) = ReportDir::create("probe") else {
        return false;
    };
    std::fs::read_to_string(dir.0.join("provider")).is_ok_and(|p| p.trim() == "sev_guest")
}

struct ReportDir(PathBuf);

impl ReportDir {
    fn create(name: &str) -> Result<Self> {
        let path = Path::new(REPORTS).join(format!("cocoon-{name}-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ReportDir(path))
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn generation(dir: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(dir.join("generation")).context("reading generation")?;
    text.trim().parse().context("parsing generation")
}

pub fn report(report_data: &[u8; 64]) -> Result<SignedReport> {
    let dir = ReportDir::create("report")?;
    let p = &dir.0;
    // VMPL 0: the guest kernel runs there; anything else means a layer below.
    std::fs::write(p.join("privlevel"), "0").context("writing privlevel")?;
    let before = generation(p)?;
    std::fs::write(p.join("inblob"), report_data).context("writing inblob")?;
    let report = std::fs::read(p.join("outblob")).context("reading outblob")?;
    // Absent or empty when the host supplied no certificates.
    let aux = std::fs::read(p.join("auxblob")).unwrap_or_default();
    let after = generation(p)?;
    ensure!(
        after == before + 1,
        "another writer raced this report (generation {before} → {after})"
    );
    Ok(SignedReport {
        report,
        vcek: cert_table::vcek(&aux),
    })
}
