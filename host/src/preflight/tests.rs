//! Preflight over fake sysfs/procfs trees: a good host, and each broken one.

use super::checks::*;
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
