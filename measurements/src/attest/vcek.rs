//! Where a VCEK comes from: the guest's own certificate (when the host
//! handed one to the guest), the local cache, an offline bundle, or AMD's
//! Key Distribution Service. None of them is trusted: every VCEK found is
//! checked against AMD's chain and the report before it is used (see
//! [`super::amd`]), so a wrong file costs a lookup, never a false pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::amd::{Product, Tcb};
use super::error::AttestError;

/// AMD's Key Distribution Service.
const KDS: &str = "https://kdsintf.amd.com/vcek/v1";
/// A VCEK is about 1.4 KiB; anything far larger is not one.
const MAX_VCEK: u64 = 16 * 1024;

/// Where to look for VCEKs, in order.
#[derive(Debug, Clone, Default)]
pub struct VcekStore {
    /// Read first; fetched VCEKs are written here.
    pub cache: Option<PathBuf>,
    /// Offline bundles: folders of VCEKs (DER, any file name) fetched
    /// elsewhere, for machines that cannot reach AMD.
    pub bundles: Vec<PathBuf>,
    /// Whether AMD's KDS may be asked.
    pub network: bool,
}

impl VcekStore {
    /// The default cache, `$XDG_CACHE_HOME/cocoon/vcek` (or `~/.cache/...`).
    pub fn default_cache() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("cocoon").join("vcek"))
    }

    /// Every candidate VCEK (DER) for this chip and TCB: the cache entry, the
    /// bundles' files, then (if allowed) KDS. The caller checks each.
    pub fn candidates(
        &self,
        product: Product,
        chip_id: &[u8; 64],
        tcb: &Tcb,
    ) -> Result<Vec<Vec<u8>>, AttestError> {
        let mut out = Vec::new();
        let name = cache_name(product, chip_id, tcb);
        if let Some(cache) = &self.cache
            && let Some(der) = read_bounded(&cache.join(&name))
        {
            out.push(der);
        }
        for dir in &self.bundles {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                AttestError::VcekUnavailable(format!("reading the bundle {}: {e}", dir.display()))
            })?;
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            out.extend(paths.iter().filter_map(|p| read_bounded(p)));
        }
        Ok(out)
    }

    /// Fetches the VCEK from AMD's KDS (and caches it). Only called once the
    /// local candidates failed.
    pub fn fetch(
        &self,
        product: Product,
        chip_id: &[u8; 64],
        tcb: &Tcb,
    ) -> Result<Vec<u8>, AttestError> {
        if !self.network {
            return Err(AttestError::VcekUnavailable(format!(
                "none cached or in a bundle, and fetching from AMD is off ({} {})",
                product,
                kds_url(product, chip_id, tcb)
            )));
        }
        let url = kds_url(product, chip_id, tcb);
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent();
        let mut resp = agent
            .get(&url)
            .call()
            .map_err(|e| AttestError::VcekUnavailable(format!("fetching {url}: {e}")))?;
        let der = resp
            .body_mut()
            .with_config()
            .limit(MAX_VCEK)
            .read_to_vec()
            .map_err(|e| AttestError::VcekUnavailable(format!("reading {url}: {e}")))?;
        if let Some(cache) = &self.cache {
            // A cache that cannot be written only costs the next fetch.
            let _ = std::fs::create_dir_all(cache)
                .and_then(|()| std::fs::write(cache.join(cache_name(product, chip_id, tcb)), &der));
        }
        Ok(der)
    }

    /// Stores a VCEK that verified, so the next check needs no network.
    pub fn remember(&self, product: Product, chip_id: &[u8; 64], tcb: &Tcb, der: &[u8]) {
        if let Some(cache) = &self.cache {
            let path = cache.join(cache_name(product, chip_id, tcb));
            if !path.exists() {
                let _ = std::fs::create_dir_all(cache).and_then(|()| std::fs::write(path, der));
            }
        }
    }
}

fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_VCEK {
        return None;
    }
    std::fs::read(path).ok()
}

/// The hwID KDS wants: the whole chip id, or its first 8 bytes on Turin.
fn hwid(product: Product, chip_id: &[u8; 64]) -> String {
    match product {
        Product::Turin => hex::encode(&chip_id[..8]),
        _ => hex::encode(chip_id),
    }
}

fn cache_name(product: Product, chip_id: &[u8; 64], tcb: &Tcb) -> String {
    let parts: Vec<String> = tcb
        .components()
        .iter()
        .map(|(_, v)| format!("{v:02x}"))
        .collect();
    format!(
        "{product}-{}-{}.der",
        hwid(product, chip_id),
        parts.join("")
    )
}

/// KDS spec (57230), section 4.1: the VCEK for a chip at a reported TCB.
pub fn kds_url(product: Product, chip_id: &[u8; 64], tcb: &Tcb) -> String {
    let mut url = format!(
        "{KDS}/{}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        product.kds_name(),
        hwid(product, chip_id),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    );
    if let Some(fmc) = tcb.fmc {
        url.push_str(&format!("&fmcSPL={fmc}"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kds_urls_follow_the_spec() {
        let chip = [0xab; 64];
        let tcb = Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        };
        let milan = kds_url(Product::Milan, &chip, &tcb);
        assert!(milan.ends_with(&format!(
            "/Milan/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
            "ab".repeat(64)
        )));
        let turin = kds_url(
            Product::Turin,
            &chip,
            &Tcb {
                fmc: Some(1),
                ..tcb
            },
        );
        assert!(turin.ends_with(&format!(
            "/Turin/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115&fmcSPL=1",
            "ab".repeat(8)
        )));
    }

    #[test]
    fn offline_without_a_vcek_is_an_error_not_a_pass() {
        let store = VcekStore::default();
        let tcb = Tcb {
            bootloader: 0,
            tee: 0,
            snp: 0,
            microcode: 0,
            fmc: None,
        };
        assert!(
            store
                .candidates(Product::Milan, &[1; 64], &tcb)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            store.fetch(Product::Milan, &[1; 64], &tcb),
            Err(AttestError::VcekUnavailable(_))
        ));
    }
}
