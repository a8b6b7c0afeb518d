//! `cocoon-host preflight`: can this machine boot cocoon under SEV-SNP?
//!
//! Every check reads the host through [`Host`], rooted at `/` in real use
//! and at a fake sysfs/procfs tree in the tests, and reports pass, fail or
//! unknown with the fix. Nothing here changes the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

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

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Pass,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn unknown(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
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
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn read(&self, p: &str) -> Option<String> {
        fs::read_to_string(self.path(p))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn link_name(&self, p: &str) -> Option<String> {
        let target = fs::read_link(self.path(p)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }
}

/// Compares dotted versions numerically (`6.12.0` ≥ `6.11`).
fn version_at_least(found: &str, wanted: &[u32]) -> bool {
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
fn api_from_log(log: &str) -> Option<(u32, u32)> {
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
    let found = sev_ioctl::platform_status(&h.path("/dev/sev"))
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

/// `SEV_PLATFORM_STATUS` through `/dev/sev` (the PSP driver's ioctl).
mod sev_ioctl {
    use std::os::fd::AsRawFd;
    use std::path::Path;

    #[repr(C, packed)]
    #[derive(Default)]
    struct Status {
        api_major: u8,
        api_minor: u8,
        state: u8,
        flags: u32,
        build: u8,
        guest_count: u32,
    }

    #[repr(C)]
    struct IssueCmd {
        cmd: u32,
        data: u64,
        error: u32,
    }

    const SEV_PLATFORM_STATUS: u32 = 1;
    // _IOWR('S', 0x0, struct sev_issue_cmd)
    const SEV_ISSUE_CMD: libc::c_ulong = 0xc018_5300;

    pub fn platform_status(dev: &Path) -> std::io::Result<(u32, u32)> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev)?;
        let mut status = Status::default();
        let mut cmd = IssueCmd {
            cmd: SEV_PLATFORM_STATUS,
            data: &mut status as *mut Status as u64,
            error: 0,
        };
        // SAFETY: the kernel writes a `Status` through `data`, which lives
        // until the call returns.
        if unsafe { libc::ioctl(f.as_raw_fd(), SEV_ISSUE_CMD as _, &mut cmd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((status.api_major as u32, status.api_minor as u32))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    const GPU: &str = "0000:41:00.0";
    const AUDIO: &str = "0000:41:00.1";

    /// A fake root of a host that passes every check.
    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn good() -> Fake {
            let f = Fake {
                dir: tempfile::tempdir().unwrap(),
            };
            f.write("proc/sys/kernel/osrelease", "6.12.48+deb13-amd64\n");
            f.write(
                "proc/cpuinfo",
                "processor\t: 0\nflags\t\t: fpu sse2 sev sev_es sev_snp\n",
            );
            f.write(
                "proc/meminfo",
                "MemTotal: 264000000 kB\nMemAvailable: 200000000 kB\n",
            );
            f.write("sys/module/kvm_amd/parameters/sev_snp", "Y\n");
            f.write(
                "dev/kmsg",
                "6,1,2,-;ccp 0000:02:00.1: SEV-SNP API:1.55 build:21\n",
            );
            f.write("sys/class/iommu/ivhd0/x", "");
            for (dev, class, driver) in [
                (GPU, "0x030200", "vfio-pci"),
                (AUDIO, "0x040300", "vfio-pci"),
            ] {
                f.write(&format!("sys/bus/pci/devices/{dev}/vendor"), "0x10de\n");
                f.write(
                    &format!("sys/bus/pci/devices/{dev}/class"),
                    &format!("{class}\n"),
                );
                f.bind(dev, driver);
                f.mkdir(&format!("sys/kernel/iommu_groups/40/devices/{dev}"));
                f.link(
                    &format!("sys/bus/pci/devices/{dev}/iommu_group"),
                    "../../../../kernel/iommu_groups/40",
                );
            }
            f
        }

        fn write(&self, p: &str, text: &str) {
            let path = self.dir.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn mkdir(&self, p: &str) {
            fs::create_dir_all(self.dir.path().join(p)).unwrap();
        }

        fn link(&self, p: &str, target: &str) {
            let path = self.dir.path().join(p);
            let _ = fs::remove_file(&path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(target, path).unwrap();
        }

        fn bind(&self, dev: &str, driver: &str) {
            self.link(
                &format!("sys/bus/pci/devices/{dev}/driver"),
                &format!("../../../../bus/pci/drivers/{driver}"),
            );
        }

        fn script(&self, name: &str, body: &str) -> PathBuf {
            let p = self.dir.path().join("bin").join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            p
        }

        fn host(&self) -> Host {
            Host {
                root: self.dir.path().to_path_buf(),
                qemu: Some(self.script(
                    "qemu-system-x86_64",
                    "case \"$1\" in --version) echo 'QEMU emulator version 10.0.2 (Debian)';; \
                     -object) echo 'sev-guest'; echo 'sev-snp-guest';; esac",
                )),
                gpu_admin_tools: Some(
                    self.script("nvidia_gpu_tools.py", "echo '2026-11-25 ... CC mode is on'"),
                ),
            }
        }

        fn status(&self, name: &str) -> (Status, String) {
            let checks = run_all(&self.host(), Some(GPU), 16 * 1024);
            let c = checks.into_iter().find(|c| c.name == name).unwrap();
            (c.status, format!("{} / {:?}", c.detail, c.fix))
        }
    }

    #[test]
    fn a_good_host_passes_everything() {
        let f = Fake::good();
        for c in run_all(&f.host(), Some(GPU), 16 * 1024) {
            assert_eq!(c.status, Status::Pass, "{c:?}");
        }
    }

    #[test]
    fn each_broken_host_fails_its_check_with_a_fix() {
        type Break = fn(&Fake);
        let cases: &[(&str, Break)] = &[
            ("host kernel", |f| {
                f.write("proc/sys/kernel/osrelease", "6.1.0-28-amd64")
            }),
            ("CPU SEV-SNP", |f| {
                f.write("proc/cpuinfo", "flags\t: fpu sse2 sev sev_es\n")
            }),
            ("kvm_amd sev_snp", |f| {
                f.write("sys/module/kvm_amd/parameters/sev_snp", "N")
            }),
            ("kvm_amd sev_snp", |f| {
                fs::remove_dir_all(f.dir.path().join("sys/module/kvm_amd")).unwrap();
            }),
            ("SEV firmware API", |f| {
                f.write("dev/kmsg", "ccp: SEV-SNP API:1.49 build:3\n")
            }),
            ("IOMMU", |f| {
                fs::remove_dir_all(f.dir.path().join("sys/class/iommu")).unwrap();
            }),
            ("memory", |f| {
                f.write("proc/meminfo", "MemAvailable: 1000000 kB\n")
            }),
            ("GPU bound to vfio-pci", |f| f.bind(GPU, "nvidia")),
            ("GPU bound to vfio-pci", |f| f.bind(AUDIO, "snd_hda_intel")),
            ("GPU bound to vfio-pci", |f| {
                fs::remove_file(
                    f.dir
                        .path()
                        .join(format!("sys/bus/pci/devices/{GPU}/iommu_group")),
                )
                .unwrap();
            }),
        ];
        for (check, break_it) in cases {
            let f = Fake::good();
            break_it(&f);
            let (status, said) = f.status(check);
            assert_eq!(status, Status::Fail, "{check}: {said}");
            assert!(said.contains("Some("), "{check} gives no fix: {said}");
        }
    }

    #[test]
    fn a_bridge_on_pcieport_may_share_the_group() {
        let f = Fake::good();
        let bridge = "0000:40:01.1";
        f.write(&format!("sys/bus/pci/devices/{bridge}/class"), "0x060400\n");
        f.bind(bridge, "pcieport");
        f.mkdir(&format!("sys/kernel/iommu_groups/40/devices/{bridge}"));
        assert_eq!(f.status("GPU bound to vfio-pci").0, Status::Pass);
    }

    #[test]
    fn tools_that_are_missing_or_old_are_reported() {
        let f = Fake::good();
        let mut h = f.host();
        h.gpu_admin_tools = None;
        let c = gpu_cc_mode(&h, GPU);
        assert_eq!(c.status, Status::Unknown);
        assert!(c.detail.contains("could not be checked"));
        h.gpu_admin_tools = Some(f.script("cc-off", "echo 'CC mode is off'"));
        assert_eq!(gpu_cc_mode(&h, GPU).status, Status::Fail);
        h.qemu = Some(f.script("old-qemu", "echo 'QEMU emulator version 7.2.15'"));
        assert_eq!(qemu(&h).status, Status::Fail);
        h.qemu = Some(f.script(
            "no-snp-qemu",
            "case \"$1\" in --version) echo 'QEMU emulator version 9.2.0';; esac",
        ));
        let c = qemu(&h);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("sev-snp-guest"), "{c:?}");
        h.qemu = None;
        assert_eq!(qemu(&h).status, Status::Fail);
    }

    #[test]
    fn unreadable_sources_are_unknown_not_pass() {
        let f = Fake::good();
        fs::remove_file(f.dir.path().join("dev/kmsg")).unwrap();
        assert_eq!(sev_firmware(&f.host()).status, Status::Unknown);
        fs::remove_file(f.dir.path().join("proc/meminfo")).unwrap();
        assert_eq!(memory(&f.host(), 1).status, Status::Unknown);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("6.12.48+deb13-amd64", &[6, 11]));
        assert!(version_at_least("6.11", &[6, 11]));
        assert!(!version_at_least("6.9.12", &[6, 11]));
        assert!(!version_at_least("5.19.0", &[6, 11]));
        assert_eq!(
            api_from_log("x\nccp: SEV API:1.55 build:21\nccp: SEV-SNP API:1.55 build:21\n"),
            Some((1, 55))
        );
        assert_eq!(api_from_log("nothing"), None);
    }
}
