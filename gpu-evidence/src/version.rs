//! NVIDIA driver versions (`550.90.07`) and the minimum-version policy.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The default minimum: R550 is the first driver branch in which H100
/// confidential computing is generally available; anything older is an
/// early-access driver that should not be trusted with confidential work.
pub const DEFAULT_MIN_DRIVER: &str = "550";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0:?} is not a driver version (dot-separated numbers, at most 4, like 550.90.07)")]
pub struct VersionError(pub String);

/// A dotted numeric version; missing components compare as zero, so `550`
/// equals `550.0.0` and is below `550.90.07`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverVersion {
    parts: Vec<u32>,
    text: String,
}

impl FromStr for DriverVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError(s.chars().take(64).collect());
        let parts = s
            .split('.')
            .map(|p| {
                if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                p.parse::<u32>().map_err(|_| err())
            })
            .collect::<Result<Vec<u32>, _>>()?;
        if parts.len() > 4 {
            return Err(err());
        }
        Ok(Self {
            parts,
            text: s.to_string(),
        })
    }
}

impl DriverVersion {
    fn part(&self, i: usize) -> u32 {
        self.parts.get(i).copied().unwrap_or(0)
    }
}

impl Ord for DriverVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (0..4)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for DriverVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DriverVersion {
        s.parse().unwrap()
    }

    #[test]
    fn orders_numerically() {
        assert!(v("550.90.07") > v("550"));
        assert!(v("550.90.07") < v("550.163.01"));
        assert!(v("580.95.05") > v("550.163.01"));
        assert!(v("535.104.05") < v(DEFAULT_MIN_DRIVER));
        assert_eq!(v("550").cmp(&v("550.0.0")), Ordering::Equal);
    }

    #[test]
    fn rejects_non_versions() {
        for bad in ["", "550.", ".1", "550.9a", "1.2.3.4.5", "-1", "9999999999"] {
            assert!(bad.parse::<DriverVersion>().is_err(), "{bad}");
        }
    }
}
