//! What a report must say to be accepted, beyond being genuine.

use super::amd::Tcb;
use super::error::AttestError;
use super::report::Report;

/// Guest policy bits (AMD SEV-SNP ABI, table 9).
const POLICY_MIGRATE_MA: u64 = 1 << 18;
const POLICY_DEBUG: u64 = 1 << 19;

/// A live source of allowed measurements: the TON registry
/// ([`crate::attest::RegistryAllowlist`]), or anything else a deployment
/// trusts. An error is a refusal, never a pass.
pub trait Allowlist: Send + Sync + std::fmt::Debug {
    fn allows(&self, measurement: &[u8; 48]) -> Result<bool, String>;
}

/// The acceptance policy. Debug and migration agents are always refused:
/// either lets the host read or move the guest's memory, and no option
/// turns that off.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Launch measurements (48 bytes each) that may serve, e.g. from a
    /// manifest.
    pub measurements: Vec<[u8; 48]>,
    /// Asked for a measurement the list lacks. With neither a list nor an
    /// allowlist, everything is refused.
    pub allowlist: Option<std::sync::Arc<dyn Allowlist>>,
    /// The lowest acceptable reported TCB, component by component (AMD
    /// raises SPLs with security fixes).
    pub min_tcb: MinTcb,
    /// Whether GPU evidence is required, and what it must show.
    pub gpu: super::gpu::GpuPolicy,
}

/// Minimum security patch levels; zero accepts any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    pub fmc: u8,
}

impl MinTcb {
    /// Parses `bootloader=3,tee=0,snp=8,microcode=115[,fmc=N]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut m = MinTcb::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not component=value"))?;
            let v: u8 = v
                .trim()
                .parse()
                .map_err(|_| format!("`{v}` is not a number from 0 to 255"))?;
            match k.trim() {
                "bootloader" => m.bootloader = v,
                "tee" => m.tee = v,
                "snp" => m.snp = v,
                "microcode" => m.microcode = v,
                "fmc" => m.fmc = v,
                other => return Err(format!("unknown TCB component `{other}`")),
            }
        }
        Ok(m)
    }

    fn of(&self, component: &str) -> u8 {
        match component {
            "bootloader" => self.bootloader,
            "tee" => self.tee,
            "snp" => self.snp,
            "microcode" => self.microcode,
            _ => self.fmc,
        }
    }
}

impl Policy {
    /// Checks the report's claims: VMPL, policy bits, TCB, measurement.
    pub fn check(&self, report: &Report) -> Result<(), AttestError> {
        let f = &report.fields;
        let policy = u64::from(f.policy);
        if policy & POLICY_DEBUG != 0 {
            return Err(AttestError::Debug(policy));
        }
        if policy & POLICY_MIGRATE_MA != 0 {
            return Err(AttestError::MigrationAgent(policy));
        }
        if f.vmpl != 0 {
            return Err(AttestError::Vmpl(f.vmpl));
        }
        for (component, got) in Tcb::of(&f.reported_tcb).components() {
            let min = self.min_tcb.of(component);
            if got < min {
                return Err(AttestError::TcbTooLow {
                    component,
                    got,
                    min,
                });
            }
        }
        if self.measurements.contains(&f.measurement) {
            return Ok(());
        }
        match &self.allowlist {
            None if self.measurements.is_empty() => Err(AttestError::NoAllowedMeasurements),
            None => Err(AttestError::Measurement(hex::encode(f.measurement))),
            Some(list) => match list.allows(&f.measurement) {
                Ok(true) => Ok(()),
                Ok(false) => Err(AttestError::Measurement(hex::encode(f.measurement))),
                Err(e) => Err(AttestError::Allowlist(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_tcb_parses_and_refuses_nonsense() {
        let m = MinTcb::parse("bootloader=3,snp=8,microcode=115").unwrap();
        assert_eq!((m.bootloader, m.tee, m.snp, m.microcode), (3, 0, 8, 115));
        assert!(MinTcb::parse("bl=3").is_err());
        assert!(MinTcb::parse("snp=256").is_err());
        assert!(MinTcb::parse("snp").is_err());
        assert_eq!(MinTcb::parse("").unwrap(), MinTcb::default());
    }
}
