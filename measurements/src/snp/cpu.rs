//! The CPU models a cocoon image is measured for.
//!
//! Under SNP the VMSA carries the CPU signature QEMU's named model reports,
//! so the digest depends on the model: the host must launch exactly the
//! model that was measured (never `-cpu host`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CpuType {
    EpycV4,
    EpycMilan,
    EpycGenoa,
    EpycTurin,
}

impl CpuType {
    pub const ALL: [CpuType; 4] = [
        CpuType::EpycV4,
        CpuType::EpycMilan,
        CpuType::EpycGenoa,
        CpuType::EpycTurin,
    ];

    /// The QEMU `-cpu` model name.
    pub fn qemu_name(self) -> &'static str {
        match self {
            CpuType::EpycV4 => "EPYC-v4",
            CpuType::EpycMilan => "EPYC-Milan",
            CpuType::EpycGenoa => "EPYC-Genoa",
            CpuType::EpycTurin => "EPYC-Turin",
        }
    }

    pub(crate) fn to_sev(self) -> sev::measurement::vcpu_types::CpuType {
        use sev::measurement::vcpu_types::CpuType as S;
        match self {
            CpuType::EpycV4 => S::EpycV4,
            CpuType::EpycMilan => S::EpycMilan,
            CpuType::EpycGenoa => S::EpycGenoa,
            CpuType::EpycTurin => S::EpycTurin,
        }
    }
}

impl fmt::Display for CpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

impl FromStr for CpuType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CpuType::ALL
            .into_iter()
            .find(|c| c.qemu_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = CpuType::ALL.iter().map(|c| c.qemu_name()).collect();
                format!("unknown CPU type `{s}`: choose one of {}", names.join(", "))
            })
    }
}

impl serde::Serialize for CpuType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.qemu_name())
    }
}

impl<'de> serde::Deserialize<'de> for CpuType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for c in CpuType::ALL {
            assert_eq!(c.qemu_name().parse::<CpuType>().unwrap(), c);
        }
        assert_eq!("epyc-genoa".parse::<CpuType>().unwrap(), CpuType::EpycGenoa);
        let err = "EPYC-Rome".parse::<CpuType>().unwrap_err();
        assert!(
            err.contains("EPYC-Rome") && err.contains("EPYC-Turin"),
            "{err}"
        );
    }
}
