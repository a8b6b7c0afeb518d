//! Image profiles: what each kind of image contains.
//!
//! A profile is data, not code paths: the kernel input it boots, the
//! modules its `/init` loads, the measured kernel command line. The GPU
//! profile will add the NVIDIA driver files here.

/// One image profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// The `inputs.lock` input that provides `vmlinuz` and the modules.
    pub kernel_input: &'static str,
    /// The `inputs.lock` source the SNP firmware (`OVMF.fd`) is built from.
    pub firmware_input: &'static str,
    /// Modules the guest needs; their dependencies are added and everything
    /// is loaded in dependency order.
    pub modules: &'static [&'static str],
    /// The kernel command line. It is measured: it carries only what must be
    /// trusted, never host-specific settings.
    pub cmdline: &'static str,
    /// The most `initrd.img` may weigh (compressed), in bytes; the build
    /// fails above it.
    pub initrd_budget: u64,
    /// The launch shapes whose SNP measurement the manifest lists (and
    /// that `cocoon-host` agrees to boot): every vCPU count in the range,
    /// times every CPU model, with these guest features.
    pub measured_vcpus: (u32, u32),
    pub measured_cpu_types: &'static [&'static str],
    pub guest_features: u64,
}

/// Inference on the CPU: the profile every machine can build and boot.
pub const CPU: Profile = Profile {
    name: "cpu",
    kernel_input: "kernel",
    firmware_input: "firmware",
    // virtio_net: the one network interface. button: the ACPI power button,
    // so that the host's QMP `system_powerdown` reaches /init. sev-guest
    // (with tsm): attestation reports under SEV-SNP; without SNP it finds
    // no device and the guest goes on unattested.
    modules: &["virtio_net", "virtio_blk", "button", "sev-guest"],
    // quiet: serial output is slow under emulation; warnings still print.
    // panic=-1: a kernel panic stops the VM at once instead of hanging.
    cmdline: "console=ttyS0 quiet panic=-1",
    initrd_budget: 8 << 20,
    measured_vcpus: (1, 64),
    measured_cpu_types: &["EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"],
    // SNPActive: what QEMU >= 9.1 sets.
    guest_features: 0x1,
};

pub const ALL: &[Profile] = &[CPU];

pub fn by_name(name: &str) -> Option<&'static Profile> {
    ALL.iter().find(|p| p.name == name)
}

/// Checks a command line the way the measurement needs it: printable ASCII,
/// no newline, no leading or trailing whitespace, no doubled spaces (the
/// SEV kernel-hashes table hashes the exact bytes, and tools disagree on
/// trimming).
pub fn check_cmdline(cmdline: &str) -> Result<(), String> {
    if cmdline.trim() != cmdline {
        return Err("the kernel command line has leading or trailing whitespace".into());
    }
    if let Some(c) = cmdline.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "the kernel command line holds {c:?}: only printable ASCII is allowed"
        ));
    }
    if cmdline.contains("  ") {
        return Err("the kernel command line has doubled spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_have_valid_command_lines() {
        for p in ALL {
            check_cmdline(p.cmdline).unwrap();
            assert_eq!(by_name(p.name), Some(p));
        }
        assert_eq!(by_name("tpu"), None);
    }

    #[test]
    fn rejects_whitespace_and_control_characters() {
        for bad in ["a ", " a", "a\nb", "a  b", "a\tb", "é"] {
            assert!(check_cmdline(bad).is_err(), "{bad:?}");
        }
    }
}
