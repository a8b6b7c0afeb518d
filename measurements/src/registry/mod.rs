//! The measurement registry on TON: the Rust side of
//! `measurements/contract/registry.tolk`.
//!
//! - [`messages`]: the message bodies the contract accepts (publish,
//!   revoke, endorse, roles), bit for bit as the contract reads them.
//! - [`contract`]: the compiled contract code recorded in the repository,
//!   its initial storage and address.
//! - [`keys`]: the wallet's secret key, from a file or the environment.
//! - [`wallet`]: wallet v4r2 external messages, signed.
//! - [`api`]: a client of the TON HTTP API v2 (`sendBoc`, `runGetMethod`,
//!   `getAddressInformation`).
//! - [`reader`]: the registry's get methods, typed.
//! - [`check`]: every measurement of an image against the registry.
//! - [`sender`]: sends internal messages through the wallet and waits
//!   until the chain took them.
//!
//! docs/registry.md describes the design, the layouts and the exit codes.

pub mod api;
pub mod check;
pub mod contract;
pub mod keys;
pub mod messages;
pub mod reader;
pub mod sender;
pub mod wallet;

use std::fmt;
use std::str::FromStr;

pub use tonlib_core::TonAddress;
pub use tonlib_core::cell::Cell;

/// A SEV-SNP launch measurement (SHA-384 sized), as the registry keys it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Measurement(pub [u8; 48]);

impl Measurement {
    /// The get-method arguments: the first 16 bytes and the last 32 bytes
    /// as unsigned integers (a TVM integer holds at most 257 bits).
    pub fn halves(&self) -> (num_bigint::BigInt, num_bigint::BigInt) {
        use num_bigint::{BigInt, Sign};
        (
            BigInt::from_bytes_be(Sign::Plus, &self.0[..16]),
            BigInt::from_bytes_be(Sign::Plus, &self.0[16..]),
        )
    }
}

impl FromStr for Measurement {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|_| RegistryError::BadMeasurement(s.into()))?;
        let array: [u8; 48] = bytes
            .try_into()
            .map_err(|_| RegistryError::BadMeasurement(s.into()))?;
        Ok(Self(array))
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({self})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{0}` is not a measurement: expected 96 hex digits (48 bytes)")]
    BadMeasurement(String),
    #[error("`{0}` is not a TON address (raw `0:<64 hex>` or user-friendly base64)")]
    BadAddress(String),
    #[error("building a TON cell: {0}")]
    Cell(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the secret key {origin}: {message}")]
    Key { origin: String, message: String },
    #[error("TON API {endpoint} {method}: {message}")]
    Api {
        endpoint: String,
        method: String,
        message: String,
    },
    #[error("get method `{method}` on {address} failed with exit code {exit_code}{hint}")]
    GetMethod {
        address: String,
        method: String,
        exit_code: i64,
        hint: &'static str,
    },
    #[error("get method `{method}` answered an unexpected stack: {message}")]
    Stack { method: String, message: String },
    #[error("{0}")]
    Timeout(String),
    #[error("the recorded registry code is corrupt: {0}")]
    Code(String),
}

impl From<tonlib_core::cell::TonCellError> for RegistryError {
    fn from(e: tonlib_core::cell::TonCellError) -> Self {
        Self::Cell(e.to_string())
    }
}

impl From<tonlib_core::message::TonMessageError> for RegistryError {
    fn from(e: tonlib_core::message::TonMessageError) -> Self {
        Self::Cell(e.to_string())
    }
}

/// Parses a TON address in raw (`0:ab..`) or user-friendly form.
pub fn parse_address(text: &str) -> Result<TonAddress, RegistryError> {
    TonAddress::from_str(text.trim()).map_err(|_| RegistryError::BadAddress(text.into()))
}
