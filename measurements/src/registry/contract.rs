//! The compiled registry code recorded in the repository
//! (`measurements/contract/build/registry.compiled.json`, written by
//! `npm run build`), its initial storage, state init and address.

use std::sync::Arc;

use serde::Deserialize;
use tonlib_core::TonAddress;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell, CellBuilder};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;

use super::RegistryError;

const COMPILED_JSON: &str = include_str!("../../contract/build/registry.compiled.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompiledRegistry {
    pub tolk_version: String,
    pub code_hash_hex: String,
    pub code_boc64: String,
}

pub fn compiled() -> Result<CompiledRegistry, RegistryError> {
    serde_json::from_str(COMPILED_JSON).map_err(|e| RegistryError::Code(e.to_string()))
}

/// The registry code; fails unless its hash is the recorded one.
pub fn code() -> Result<ArcCell, RegistryError> {
    let c = compiled()?;
    let boc =
        BagOfCells::parse_base64(&c.code_boc64).map_err(|e| RegistryError::Code(e.to_string()))?;
    let root = boc
        .single_root()
        .map_err(|e| RegistryError::Code(e.to_string()))?;
    let hash = Cell::cell_hash(&root).to_hex();
    if hash != c.code_hash_hex {
        return Err(RegistryError::Code(format!(
            "code hash {hash}, recorded {}",
            c.code_hash_hex
        )));
    }
    Ok(root)
}

/// The storage of a fresh registry: id, owner, and four empty maps
/// (publishers, auditors, records, endorsements).
pub fn initial_data(registry_id: u32, owner: &TonAddress) -> Result<Cell, RegistryError> {
    let mut b = CellBuilder::new();
    b.store_u32(32, registry_id)?.store_address(owner)?;
    for _ in 0..4 {
        b.store_bit(false)?;
    }
    Ok(b.build()?)
}

/// The state init that deploys a registry, and the address it deploys to.
pub fn state_init(
    registry_id: u32,
    owner: &TonAddress,
) -> Result<(Cell, TonAddress), RegistryError> {
    let code = code()?;
    let data = Arc::new(initial_data(registry_id, owner)?);
    let address = TonAddress::derive(0, code.clone(), data.clone())?;
    let init = StateInit::new(code, data).to_cell()?;
    Ok((init, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_code_parses_and_matches_its_hash() {
        let c = compiled().unwrap();
        assert_eq!(c.code_hash_hex.len(), 64);
        assert_eq!(Cell::cell_hash(&code().unwrap()).to_hex(), c.code_hash_hex);
    }

    #[test]
    fn the_address_depends_on_owner_and_id() {
        let a = TonAddress::new(0, [1u8; 32].into());
        let b = TonAddress::new(0, [2u8; 32].into());
        let (_, x) = state_init(1, &a).unwrap();
        assert_ne!(x, state_init(2, &a).unwrap().1);
        assert_ne!(x, state_init(1, &b).unwrap().1);
        assert_eq!(x, state_init(1, &a).unwrap().1);
    }
}
