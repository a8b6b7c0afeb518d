//! `cocoon-host preflight`: can this machine boot cocoon under SEV-SNP?
//!
//! Every check reads the host through [`Host`], rooted at `/` in real use
//! and at a fake sysfs/procfs tree in the tests, and reports pass, fail or
//! unknown with the fix. Nothing here changes the host.

mod checks;
mod sev_ioctl;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use checks::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do when it is not a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

pub(super) fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Pass,
        detail: detail.into(),
        fix: None,
    }
}

pub(super) fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

pub(super) fn unknown(
    name: &'static str,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        status: Status::Unknown,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// The host as seen from a root directory, plus the tools it runs.
pub struct Host {
    pub root: PathBuf,
    /// The QEMU binary to ask for its version and objects.
    pub qemu: Option<PathBuf>,
    /// NVIDIA's `nvidia_gpu_tools.py` (gpu-admin-tools), when installed.
    pub gpu_admin_tools: Option<PathBuf>,
}

impl Host {
    pub(super) fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub(super) fn read(&self, p: &str) -> Option<String> {
        fs::read_to_string(self.path(p))
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub(super) fn link_name(&self, p: &str) -> Option<String> {
        let target = fs::read_link(self.path(p)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }
}

/// Every check, in the order a provider fixes them.
pub fn run_all(h: &Host, gpu: Option<&str>, memory_mib: u64) -> Vec<Check> {
    let mut checks = vec![
        host_kernel(h),
        cpu_snp(h),
        kvm_snp(h),
        sev_firmware(h),
        iommu(h),
        qemu(h),
        memory(h, memory_mib),
    ];
    if let Some(bdf) = gpu {
        checks.push(gpu_vfio(h, bdf));
        checks.push(gpu_cc_mode(h, bdf));
    }
    checks
}

/// Finds NVIDIA's tool: `$COCOON_GPU_ADMIN_TOOLS`, `PATH`, or its usual checkout.
pub fn find_gpu_admin_tools() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COCOON_GPU_ADMIN_TOOLS") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nvidia_gpu_tools.py"))
        .chain([PathBuf::from("/opt/gpu-admin-tools/nvidia_gpu_tools.py")])
        .find(|p| Path::new(p).is_file())
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GPU to pass through, by PCI address (`0000:41:00.0`).
    #[arg(long)]
    gpu: Option<String>,
    /// Guest memory the check should find available (e.g. 16G).
    #[arg(long, default_value = "8G")]
    memory: String,
    /// Read the host's /proc, /sys and /dev under this directory instead of
    /// `/` (a collected snapshot, or the tests' fake trees).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let memory_mib = crate::qemu::parse_memory(&args.memory).map_err(anyhow::Error::msg)?;
    let host = Host {
        root: args.root.clone(),
        qemu: crate::qemu::find().ok(),
        gpu_admin_tools: find_gpu_admin_tools(),
    };
    let checks = run_all(&host, args.gpu.as_deref(), memory_mib);
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if args.json {
        let v = serde_json::json!({ "ready": failed == 0, "checks": checks });
        println!("{v}");
    } else {
        for c in &checks {
            let tag = match c.status {
                Status::Pass => "PASS   ",
                Status::Fail => "FAIL   ",
                Status::Unknown => "UNKNOWN",
            };
            println!("{tag} {:<32} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("        {:<32} fix: {fix}", "");
            }
        }
        println!(
            "{}",
            if failed == 0 {
                "cocoon-host: this host can boot cocoon under SEV-SNP (check any UNKNOWN by hand)"
                    .to_string()
            } else {
                format!(
                    "cocoon-host: {failed} check(s) failed: fix them before booting under SEV-SNP"
                )
            }
        );
    }
    if failed > 0 {
        anyhow::bail!("preflight failed");
    }
    Ok(())
}
