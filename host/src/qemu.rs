//! Finding QEMU and writing its command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::accel::Accel;

pub const BINARY: &str = "qemu-system-x86_64";
/// The first QEMU with `sev-snp-guest` and `kernel-hashes`; the dev boot
/// uses the same QEMU the SNP boot will.
pub const MIN_VERSION: (u32, u32) = (9, 1);
pub const INSTALL_HINT: &str = "install QEMU 10 from bookworm-backports: as root, `cargo xtask setup` \
     (or `apt-get install -t bookworm-backports qemu-system-x86` with a bookworm-backports apt source)";

/// `$COCOON_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("COCOON_QEMU") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(BINARY))
        .find(|p| p.is_file())
        .with_context(|| format!("{BINARY} is not installed: {INSTALL_HINT}"))
}

/// Parses `QEMU emulator version 10.0.2 (...)`.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.lines().next()?.split("version ").nth(1)?;
    let v = rest.split_whitespace().next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

pub fn check_version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some((major, minor, patch)) = parse_version(&text) else {
        bail!("cannot read the version of {}: {text:?}", binary.display());
    };
    if (major, minor) < MIN_VERSION {
        bail!(
            "{} is QEMU {major}.{minor}.{patch}; cocoon needs {}.{} or newer: {INSTALL_HINT}",
            binary.display(),
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(format!("{major}.{minor}.{patch}"))
}

/// Parses `512M`, `2G`, `1024` (MiB) into MiB.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'G' | 'g')) => (&t[..i], 1024),
        Some((i, 'M' | 'm')) => (&t[..i], 1),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a memory size (like 512M or 2G)"))?;
    let mib = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if !(128..=1 << 20).contains(&mib) {
        return Err(format!(
            "memory {mib} MiB is out of range (128 MiB to 1 TiB)"
        ));
    }
    Ok(mib)
}

/// A development VM: the image booted without SEV.
pub struct DevVm<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    pub accel: &'a Accel,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub host_port: u16,
    pub guest_port: u16,
    pub serial_log: &'a Path,
    pub qmp_socket: &'a Path,
}

impl DevVm<'_> {
    /// The QEMU arguments, in a fixed order.
    pub fn args(&self) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        let (machine, cpu) = match self.accel {
            Accel::Kvm => ("q35,accel=kvm", "host"),
            Accel::Tcg(_) => ("q35,accel=tcg", "max"),
        };
        vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-machine".into(),
            machine.into(),
            "-cpu".into(),
            cpu.into(),
            "-smp".into(),
            self.vcpus.to_string(),
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-kernel".into(),
            p(self.kernel),
            "-initrd".into(),
            p(self.initrd),
            "-append".into(),
            self.cmdline.to_string(),
            // The guest console: to a file the host tails.
            "-chardev".into(),
            format!("file,id=serial0,path={}", p(self.serial_log)),
            "-serial".into(),
            "chardev:serial0".into(),
            // User networking, serving DHCP, with one forwarded port bound
            // to loopback only.
            "-netdev".into(),
            format!(
                "user,id=net0,hostfwd=tcp:127.0.0.1:{}-:{}",
                self.host_port, self.guest_port
            ),
            // Virtio as SEV needs it (modern only, DMA through the platform),
            // so the dev boot runs the same driver paths. No option ROM:
            // direct kernel boot needs no network boot.
            "-device".into(),
            "virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=true,romfile=".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", p(self.qmp_socket)),
            // A guest reboot is a crash (panic=-1): stop instead of looping.
            "-no-reboot".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright"
            ),
            Some((10, 0, 2))
        );
        assert_eq!(
            parse_version("QEMU emulator version 7.2.15"),
            Some((7, 2, 15))
        );
        assert_eq!(parse_version("QEMU emulator version 9.1"), Some((9, 1, 0)));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn parses_memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512));
        assert_eq!(parse_memory("2G"), Ok(2048));
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert!(parse_memory("12").is_err());
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("99999999999999999999G").is_err());
    }

    #[test]
    fn dev_command_line_is_pinned() {
        let accel = Accel::Tcg("test".into());
        let vm = DevVm {
            kernel: Path::new("/img/vmlinuz"),
            initrd: Path::new("/img/initrd.img"),
            cmdline: "console=ttyS0 quiet",
            accel: &accel,
            vcpus: 2,
            memory_mib: 1024,
            host_port: 8443,
            guest_port: 443,
            serial_log: Path::new("/run/serial.log"),
            qmp_socket: Path::new("/run/qmp.sock"),
        };
        assert_eq!(
            vm.args().join(" "),
            "-nodefaults -no-user-config -display none -machine q35,accel=tcg -cpu max -smp 2 -m 1024M \
             -kernel /img/vmlinuz -initrd /img/initrd.img -append console=ttyS0 quiet \
             -chardev file,id=serial0,path=/run/serial.log -serial chardev:serial0 \
             -netdev user,id=net0,hostfwd=tcp:127.0.0.1:8443-:443 \
             -device virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=true,romfile= \
             -qmp unix:/run/qmp.sock,server=on,wait=off -no-reboot"
        );
    }
}
