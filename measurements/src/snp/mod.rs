//! The AMD SEV-SNP launch digest of a cocoon image, computed offline.
//!
//! A launch digest commits to every page the host hands the PSP before the
//! guest runs: the firmware, the pages its SEV metadata declares (secrets,
//! CPUID, the table of kernel/initrd/command-line hashes that QEMU's
//! `kernel-hashes=on` fills), and one VMSA (initial register state) per vCPU.
//! The VMSA depends on the vCPU count, the CPU model and the guest
//! features, so one image has one digest per *launch shape*.

mod cpu;
mod digest;

pub use cpu::CpuType;
pub use digest::{LaunchInputs, MeasureError, Measurer, reference_digest};

/// Guest features QEMU ≥ 9.1 sets for an SNP guest (`SNPActive`).
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// One way to launch an image: what, besides the image, the digest depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaunchShape {
    pub vcpus: u32,
    pub cpu_type: CpuType,
    pub guest_features: u64,
}

/// The 48-byte launch digest, shown as 96 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaunchDigest(pub [u8; 48]);

impl LaunchDigest {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for LaunchDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for LaunchDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LaunchDigest({self})")
    }
}

impl std::str::FromStr for LaunchDigest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 48];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| format!("`{s}` is not a launch digest (96 hex digits)"))?;
        Ok(LaunchDigest(out))
    }
}

impl serde::Serialize for LaunchDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for LaunchDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
