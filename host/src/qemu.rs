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
    /// The model pack, attached read-only.
    pub model: Option<&'a Path>,
}

impl DevVm<'_> {
    /// The QEMU arguments, in a fixed order.
    pub fn args(&self) -> Vec<String> {
        let (machine, cpu) = match self.accel {
            Accel::Kvm => ("q35,accel=kvm", "host"),
            Accel::Tcg(_) => ("q35,accel=tcg", "max"),
        };
        let mut a = machine_args(machine, cpu, self.vcpus, self.memory_mib);
        a.extend(kernel_args(self.kernel, self.initrd, self.cmdline));
        a.extend(network_args(self.host_port, self.guest_port));
        a.extend(self.model.map(model_disk_args).unwrap_or_default());
        a.extend(control_args(self.serial_log, self.qmp_socket));
        a
    }
}

/// The virtio serial the guest finds its model disk by (see the guest's
/// `model_disk` module).
pub const MODEL_DISK_SERIAL: &str = "cocoon-model";

/// The model pack as a read-only virtio disk. Its bytes are not measured
/// at launch: the guest hashes them against the measured command line.
fn model_disk_args(pack: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        // QEMU option syntax doubles commas inside values.
        format!(
            "file={},if=none,id=model0,format=raw,readonly=on",
            pack.display().to_string().replace(',', ",,")
        ),
        "-device".into(),
        format!(
            "virtio-blk-pci,drive=model0,serial={MODEL_DISK_SERIAL},disable-legacy=on,iommu_platform=true,romfile="
        ),
    ]
}

/// No default devices, no user config, no display; the machine, CPU model,
/// vCPUs and memory.
fn machine_args(machine: &str, cpu: &str, vcpus: u32, memory_mib: u64) -> Vec<String> {
    [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        machine,
        "-cpu",
        cpu,
        "-smp",
        &vcpus.to_string(),
        "-m",
        &format!("{memory_mib}M"),
    ]
    .map(String::from)
    .to_vec()
}

/// Direct kernel boot: what the measurement's kernel-hashes cover.
fn kernel_args(kernel: &Path, initrd: &Path, cmdline: &str) -> Vec<String> {
    vec![
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        cmdline.into(),
    ]
}

/// How the guest reaches the network and the host reaches the guest:
/// QEMU user networking with one port forwarded from loopback.
fn network_args(host_port: u16, guest_port: u16) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("user,id=net0,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"),
        // Modern-only virtio with DMA through the platform, as SEV needs;
        // no option ROM (direct kernel boot needs no network boot).
        "-device".into(),
        "virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=true,romfile=".into(),
    ]
}

/// The console to a file the host follows, QMP on a unix socket, and no
/// reboot (a guest reboot is a crash: `panic=-1`).
fn control_args(serial_log: &Path, qmp_socket: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!("file,id=serial0,path={}", serial_log.display()),
        "-serial".into(),
        "chardev:serial0".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp_socket.display()),
        "-no-reboot".into(),
    ]
}

/// Where the host CPU puts the SEV C-bit, and how many physical address
/// bits encryption takes away (CPUID 0x8000_001F EBX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CBit {
    pub position: u32,
    pub reduced_phys_bits: u32,
}

impl CBit {
    /// Reads the host CPU; fails on a CPU without SEV-SNP.
    pub fn from_host() -> Result<CBit> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::__cpuid;
            let vendor = __cpuid(0);
            let name: Vec<u8> = [vendor.ebx, vendor.edx, vendor.ecx]
                .iter()
                .flat_map(|r| r.to_le_bytes())
                .collect();
            let max_ext = __cpuid(0x8000_0000).eax;
            if name != b"AuthenticAMD" || max_ext < 0x8000_001f {
                bail!(
                    "this is not an AMD CPU with SEV ({}): SEV-SNP needs an AMD EPYC host; pass --cbitpos and --reduced-phys-bits to print the arguments for one",
                    String::from_utf8_lossy(&name)
                );
            }
            let leaf = __cpuid(0x8000_001f);
            if leaf.eax & (1 << 4) == 0 {
                bail!(
                    "the CPU does not report SEV-SNP (CPUID 0x8000001F EAX bit 4): enable it in the BIOS"
                );
            }
            Ok(CBit {
                position: leaf.ebx & 0x3f,
                reduced_phys_bits: (leaf.ebx >> 6) & 0x3f,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        bail!("SEV-SNP needs an x86_64 AMD host")
    }
}

/// A GPU handed to the guest with VFIO.
#[derive(Debug, Clone)]
pub struct GpuPassthrough {
    /// PCI address, `0000:41:00.0`.
    pub bdf: String,
    /// Use the iommufd backend (QEMU ≥ 9 with `/dev/iommu`) instead of the
    /// legacy VFIO container.
    pub iommufd: bool,
}

/// SEV-SNP guest policy: bit 16 is reserved and must be set, bit 17 allows
/// SMT; bit 18 (migration agent) and bit 19 (debug) stay clear.
pub const SNP_POLICY: u64 = 0x30000;
/// MMIO space above 4 GiB for the GPU's BARs (an H100's are 128 GiB+).
pub const GPU_MMIO64_MB: u64 = 262_144;

/// A VM under SEV-SNP: the measured firmware, kernel, initrd and command
/// line, the measured CPU model and vCPU count.
pub struct SnpVm<'a> {
    pub firmware: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    /// The QEMU CPU model that was measured (never `host`).
    pub cpu_model: &'a str,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub cbit: CBit,
    pub gpu: Option<GpuPassthrough>,
    pub host_port: u16,
    pub guest_port: u16,
    pub serial_log: &'a Path,
    pub qmp_socket: &'a Path,
    /// The model pack, attached read-only.
    pub model: Option<&'a Path>,
}

impl SnpVm<'_> {
    pub fn args(&self) -> Vec<String> {
        let machine =
            "q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram0,vmport=off";
        let mut a = machine_args(machine, self.cpu_model, self.vcpus, self.memory_mib);
        a.extend([
            // Guest memory the host can hand to the PSP page by page.
            "-object".into(),
            format!("memory-backend-memfd,id=ram0,size={}M,share=true,prealloc=false", self.memory_mib),
            "-object".into(),
            format!(
                "sev-snp-guest,id=sev0,policy={SNP_POLICY:#x},cbitpos={},reduced-phys-bits={},kernel-hashes=on",
                self.cbit.position, self.cbit.reduced_phys_bits
            ),
            "-bios".into(),
            self.firmware.display().to_string(),
        ]);
        a.extend(kernel_args(self.kernel, self.initrd, self.cmdline));
        a.extend(network_args(self.host_port, self.guest_port));
        if let Some(gpu) = &self.gpu {
            if gpu.iommufd {
                a.extend(["-object".into(), "iommufd,id=iommufd0".into()]);
            }
            a.extend([
                "-device".into(),
                "pcie-root-port,id=gpu-port0,bus=pcie.0,chassis=1".into(),
            ]);
            let backend = if gpu.iommufd { ",iommufd=iommufd0" } else { "" };
            a.extend([
                "-device".into(),
                format!("vfio-pci,host={},bus=gpu-port0{backend}", gpu.bdf),
            ]);
            a.extend([
                "-fw_cfg".into(),
                format!("name=opt/ovmf/X-PciMmio64Mb,string={GPU_MMIO64_MB}"),
            ]);
        }
        a.extend(self.model.map(model_disk_args).unwrap_or_default());
        a.extend(control_args(self.serial_log, self.qmp_socket));
        a
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
            model: None,
        };
        assert_eq!(
            vm.args().join(" "),
            "-nodefaults -no-user-config -display none -machine q35,accel=tcg -cpu max -smp 2 -m 1024M \
             -kernel /img/vmlinuz -initrd /img/initrd.img -append console=ttyS0 quiet \
             -netdev user,id=net0,hostfwd=tcp:127.0.0.1:8443-:443 \
             -device virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=true,romfile= \
             -chardev file,id=serial0,path=/run/serial.log -serial chardev:serial0 \
             -qmp unix:/run/qmp.sock,server=on,wait=off -no-reboot"
        );
    }

    fn snp(gpu: Option<GpuPassthrough>) -> Vec<String> {
        SnpVm {
            firmware: Path::new("/img/OVMF.fd"),
            kernel: Path::new("/img/vmlinuz"),
            initrd: Path::new("/img/initrd.img"),
            cmdline: "console=ttyS0 quiet panic=-1",
            cpu_model: "EPYC-Genoa",
            vcpus: 8,
            memory_mib: 65536,
            cbit: CBit {
                position: 51,
                reduced_phys_bits: 1,
            },
            gpu,
            host_port: 8443,
            guest_port: 443,
            serial_log: Path::new("/run/serial.log"),
            qmp_socket: Path::new("/run/qmp.sock"),
            model: None,
        }
        .args()
    }

    /// The exact SNP command line: every option here is part of what the
    /// measurement assumes or what SEV needs; a change must be deliberate.
    #[test]
    fn snp_command_line_is_pinned() {
        assert_eq!(
            snp(None),
            [
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-machine",
                "q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram0,vmport=off",
                "-cpu",
                "EPYC-Genoa",
                "-smp",
                "8",
                "-m",
                "65536M",
                "-object",
                "memory-backend-memfd,id=ram0,size=65536M,share=true,prealloc=false",
                "-object",
                "sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on",
                "-bios",
                "/img/OVMF.fd",
                "-kernel",
                "/img/vmlinuz",
                "-initrd",
                "/img/initrd.img",
                "-append",
                "console=ttyS0 quiet panic=-1",
                "-netdev",
                "user,id=net0,hostfwd=tcp:127.0.0.1:8443-:443",
                "-device",
                "virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=true,romfile=",
                "-chardev",
                "file,id=serial0,path=/run/serial.log",
                "-serial",
                "chardev:serial0",
                "-qmp",
                "unix:/run/qmp.sock,server=on,wait=off",
                "-no-reboot",
            ]
        );
    }

    #[test]
    fn snp_command_line_with_a_gpu_is_pinned() {
        let gpu = |iommufd| {
            Some(GpuPassthrough {
                bdf: "0000:41:00.0".into(),
                iommufd,
            })
        };
        let with = snp(gpu(true));
        let base = snp(None);
        // The GPU goes between the network and the console, nothing else moves.
        let at = base.iter().position(|a| a == "-chardev").unwrap();
        let mut expected = base.clone();
        expected.splice(
            at..at,
            [
                "-object",
                "iommufd,id=iommufd0",
                "-device",
                "pcie-root-port,id=gpu-port0,bus=pcie.0,chassis=1",
                "-device",
                "vfio-pci,host=0000:41:00.0,bus=gpu-port0,iommufd=iommufd0",
                "-fw_cfg",
                "name=opt/ovmf/X-PciMmio64Mb,string=262144",
            ]
            .map(String::from),
        );
        assert_eq!(with, expected);
        let legacy = snp(gpu(false)).join(" ");
        assert!(
            legacy.contains("vfio-pci,host=0000:41:00.0,bus=gpu-port0 ")
                && !legacy.contains("iommufd")
        );
    }

    #[test]
    fn snp_never_uses_the_host_cpu_model_or_debug_policy() {
        let args = snp(None).join(" ");
        assert!(!args.contains("-cpu host"));
        let policy = u64::from_str_radix(
            args.split("policy=0x")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap(),
            16,
        )
        .unwrap();
        assert_eq!(policy & (1 << 19), 0, "debug allowed");
        assert_eq!(policy & (1 << 18), 0, "migration agent allowed");
    }

    #[test]
    fn the_model_disk_is_read_only_and_found_by_serial() {
        let a = model_disk_args(Path::new("/models/a,b.pack")).join(" ");
        assert_eq!(
            a,
            "-drive file=/models/a,,b.pack,if=none,id=model0,format=raw,readonly=on \
             -device virtio-blk-pci,drive=model0,serial=cocoon-model,disable-legacy=on,iommu_platform=true,romfile="
        );
    }
}
