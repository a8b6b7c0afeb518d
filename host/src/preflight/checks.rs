//! The checks, one function each: what they read, what passes, what to do.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{Check, Host, fail, pass, unknown};

/// Compares dotted versions numerically (`6.12.0` ≥ `6.11`).
pub(super) fn version_at_least(found: &str, wanted: &[u32]) -> bool {
    let parts: Vec<u32> = found
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(wanted.len())
        .filter_map(|s| s.parse().ok())
        .collect();
    parts.as_slice() >= wanted
}

/// The oldest host kernel with upstream SEV-SNP host support.
const MIN_KERNEL: &[u32] = &[6, 11];
/// The oldest SEV firmware API that runs SNP guests.
const MIN_SEV_API: (u32, u32) = (1, 51);

pub fn host_kernel(h: &Host) -> Check {
    const N: &str = "host kernel";
    match h.read("/proc/sys/kernel/osrelease") {
        Some(v) if version_at_least(&v, MIN_KERNEL) => pass(N, v),
        Some(v) => fail(
            N,
            format!("{v} has no SNP host support"),
            "boot a 6.11 or newer kernel (Debian: linux-image-amd64 from bookworm-backports)",
        ),
        None => unknown(
            N,
            "cannot read /proc/sys/kernel/osrelease",
            "run on the host itself, not in a container",
        ),
    }
}

pub fn cpu_snp(h: &Host) -> Check {
    const N: &str = "CPU SEV-SNP";
    let Some(info) = h.read("/proc/cpuinfo") else {
        return unknown(N, "cannot read /proc/cpuinfo", "run on the host itself");
    };
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    if flags.split_whitespace().any(|f| f == "sev_snp") {
        pass(N, "the CPU reports sev_snp")
    } else {
        fail(
            N,
            "the CPU does not report sev_snp",
            "an AMD EPYC 7003 (Milan) or newer with SNP enabled in the BIOS (SEV-SNP, SMEE, IOMMU, RMP table)",
        )
    }
}

pub fn kvm_snp(h: &Host) -> Check {
    const N: &str = "kvm_amd sev_snp";
    match h.read("/sys/module/kvm_amd/parameters/sev_snp").as_deref() {
        Some("Y" | "1") => pass(N, "sev_snp=Y"),
        Some(v) => fail(
            N,
            format!("sev_snp={v}"),
            "load kvm_amd with sev_snp=1 (`options kvm_amd sev_snp=1` in /etc/modprobe.d) and check the BIOS enables SNP",
        ),
        None => fail(
            N,
            "kvm_amd is not loaded",
            "`modprobe kvm_amd sev_snp=1` (an AMD host with virtualisation enabled)",
        ),
    }
}

/// `SEV-SNP API:1.55 build:21` in the kernel log.
pub(super) fn api_from_log(log: &str) -> Option<(u32, u32)> {
    let rest = log
        .rsplit("SEV-SNP API:")
        .next()
        .filter(|_| log.contains("SEV-SNP API:"))?;
    let v = rest.split_whitespace().next()?;
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

pub fn sev_firmware(h: &Host) -> Check {
    const N: &str = "SEV firmware API";
    let found = super::sev_ioctl::platform_status(&h.path("/dev/sev"))
        .ok()
        .or_else(|| {
            read_kmsg(&h.path("/dev/kmsg"))
                .as_deref()
                .and_then(api_from_log)
        })
        .or_else(|| {
            h.read("/var/log/kern.log")
                .as_deref()
                .and_then(api_from_log)
        });
    match found {
        Some((maj, min)) if (maj, min) >= MIN_SEV_API => pass(N, format!("{maj}.{min}")),
        Some((maj, min)) => fail(
            N,
            format!("{maj}.{min}, SNP needs {}.{}", MIN_SEV_API.0, MIN_SEV_API.1),
            "update the SEV firmware (a BIOS update, or /lib/firmware/amd/amd_sev_fam19h_model*.sbin)",
        ),
        None => unknown(
            N,
            "neither /dev/sev nor the kernel log tells",
            "run as root with the ccp module loaded",
        ),
    }
}

pub fn iommu(h: &Host) -> Check {
    const N: &str = "IOMMU";
    let units = fs::read_dir(h.path("/sys/class/iommu"))
        .map(|d| d.count())
        .unwrap_or(0);
    let groups = fs::read_dir(h.path("/sys/kernel/iommu_groups"))
        .map(|d| d.count())
        .unwrap_or(0);
    if units > 0 && groups > 0 {
        pass(N, format!("{units} IOMMU units, {groups} groups"))
    } else {
        fail(
            N,
            "no IOMMU groups",
            "enable the IOMMU in the BIOS (and `amd_iommu=on iommu=pt` on the kernel command line if it is off)",
        )
    }
}

pub fn qemu(h: &Host) -> Check {
    const N: &str = "QEMU";
    let Some(bin) = &h.qemu else {
        return fail(
            N,
            "qemu-system-x86_64 is not installed",
            crate::qemu::INSTALL_HINT,
        );
    };
    let version = match crate::qemu::check_version(bin) {
        Ok(v) => v,
        Err(e) => return fail(N, format!("{e:#}"), crate::qemu::INSTALL_HINT),
    };
    let objects = Command::new(bin).args(["-object", "help"]).output();
    match objects {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("sev-snp-guest") => {
            pass(N, format!("{version} with sev-snp-guest"))
        }
        Ok(_) => fail(
            N,
            format!("{version} lacks the sev-snp-guest object"),
            crate::qemu::INSTALL_HINT,
        ),
        Err(e) => unknown(
            N,
            format!("cannot run {}: {e}", bin.display()),
            crate::qemu::INSTALL_HINT,
        ),
    }
}

pub fn memory(h: &Host, wanted_mib: u64) -> Check {
    const N: &str = "memory";
    let avail = h.read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
    });
    match avail {
        Some(kb) if kb / 1024 >= wanted_mib => pass(
            N,
            format!("{} MiB available, {wanted_mib} MiB wanted", kb / 1024),
        ),
        Some(kb) => fail(
            N,
            format!("{} MiB available, {wanted_mib} MiB wanted", kb / 1024),
            "free memory or boot with a smaller --memory",
        ),
        None => unknown(N, "cannot read /proc/meminfo", "run on the host itself"),
    }
}

/// The GPU's IOMMU group must be wholly usable by VFIO: every device bound
/// to vfio-pci, unbound, or a PCIe bridge left to pcieport.
pub fn gpu_vfio(h: &Host, bdf: &str) -> Check {
    const N: &str = "GPU bound to vfio-pci";
    let dev = format!("/sys/bus/pci/devices/{bdf}");
    if !h.path(&dev).exists() {
        return fail(
            N,
            format!("no PCI device {bdf}"),
            "give the GPU's address as shown by `lspci -D` (e.g. 0000:41:00.0)",
        );
    }
    let vendor = h.read(&format!("{dev}/vendor")).unwrap_or_default();
    let Some(group) = h.link_name(&format!("{dev}/iommu_group")) else {
        return fail(
            N,
            format!("{bdf} is in no IOMMU group"),
            "enable the IOMMU (see the IOMMU check)",
        );
    };
    let members_dir = format!("/sys/kernel/iommu_groups/{group}/devices");
    let mut members: Vec<String> = fs::read_dir(h.path(&members_dir))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    members.sort();
    let mut wrong = Vec::new();
    for m in &members {
        let driver = h.link_name(&format!("/sys/bus/pci/devices/{m}/driver"));
        let class = h
            .read(&format!("/sys/bus/pci/devices/{m}/class"))
            .unwrap_or_default();
        let ok = match driver.as_deref() {
            Some("vfio-pci") | None => true,
            Some("pcieport") => class.starts_with("0x0604"),
            Some(_) => false,
        };
        if !ok {
            wrong.push(format!("{m} ({})", driver.unwrap_or_default()));
        }
    }
    let bound = h.link_name(&format!("{dev}/driver"));
    if bound.as_deref() != Some("vfio-pci") || !wrong.is_empty() {
        let mut detail = format!(
            "{bdf} is bound to {}",
            bound.as_deref().unwrap_or("nothing")
        );
        if !wrong.is_empty() {
            detail.push_str(&format!(
                "; IOMMU group {group} also holds {}",
                wrong.join(", ")
            ));
        }
        return fail(
            N,
            detail,
            format!(
                "bind every device of IOMMU group {group} to vfio-pci: `echo vfio-pci > /sys/bus/pci/devices/<dev>/driver_override`, unbind, then `echo <dev> > /sys/bus/pci/drivers_probe`"
            ),
        );
    }
    let note = if vendor == "0x10de" {
        ""
    } else {
        " (not an NVIDIA device)"
    };
    pass(
        N,
        format!(
            "{bdf} and IOMMU group {group} ({} devices) on vfio-pci{note}",
            members.len()
        ),
    )
}

pub fn gpu_cc_mode(h: &Host, bdf: &str) -> Check {
    const N: &str = "GPU confidential-computing mode";
    let Some(tool) = &h.gpu_admin_tools else {
        return unknown(
            N,
            "NVIDIA gpu-admin-tools (nvidia_gpu_tools.py) is not installed, so CC mode could not be checked",
            "install NVIDIA's gpu-admin-tools and run `nvidia_gpu_tools.py --gpu-bdf=<bdf> --set-cc-mode=on --reset-after-cc-mode-switch`",
        );
    };
    let out = Command::new(tool)
        .args([format!("--gpu-bdf={bdf}"), "--query-cc-mode".into()])
        .output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            let line = text
                .lines()
                .find(|l| l.contains("CC mode is"))
                .unwrap_or("")
                .trim()
                .to_string();
            if line.contains("CC mode is on") {
                pass(N, line)
            } else if line.is_empty() {
                unknown(
                    N,
                    format!("{} did not say: {}", tool.display(), text.trim()),
                    "check the tool's output by hand",
                )
            } else {
                fail(
                    N,
                    line,
                    format!(
                        "`{} --gpu-bdf={bdf} --set-cc-mode=on --reset-after-cc-mode-switch`",
                        tool.display()
                    ),
                )
            }
        }
        Err(e) => unknown(
            N,
            format!("cannot run {}: {e}", tool.display()),
            "check the gpu-admin-tools installation",
        ),
    }
}

/// The kernel log as `/dev/kmsg` holds it now. The device blocks at its
/// end, so it is read without blocking until it has no more records.
fn read_kmsg(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A record overwritten while reading: go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if out.len() > 64 << 20 {
            break;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
