//! The TON registry as the source of allowed measurements: a measurement
//! is allowed if it was published and not revoked (and, if asked, endorsed
//! by at least K current auditors who rebuilt it). See docs/registry.md.

use tonlib_core::TonAddress;

use super::policy::Allowlist;
use crate::registry::Measurement;
use crate::registry::api::TonApi;
use crate::registry::reader::Reader;

#[derive(Debug)]
pub struct RegistryAllowlist {
    pub api: TonApi,
    pub address: TonAddress,
    /// 0: published and not revoked is enough.
    pub min_endorsements: u32,
}

impl Allowlist for RegistryAllowlist {
    fn allows(&self, measurement: &[u8; 48]) -> Result<bool, String> {
        let reader = Reader::new(&self.api, self.address.clone());
        // The contract at the address must be our registry's code: any
        // other contract could answer "allowed" to everything.
        reader.check_code().map_err(|e| e.to_string())?;
        let m = Measurement(*measurement);
        let allowed = if self.min_endorsements == 0 {
            reader.is_allowed(&m)
        } else {
            reader.is_allowed_k(&m, self.min_endorsements)
        };
        allowed.map_err(|e| format!("registry {}: {e}", self.address))
    }
}
