//! The registry's get methods, typed.

use num_bigint::{BigInt, Sign};
use tonlib_core::TonAddress;

use super::api::{StackValue, TonApi};
use super::{Measurement, RegistryError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Allowed,
    Revoked,
}

/// One measurement's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub status: Status,
    pub manifest_sha256: [u8; 32],
    pub model_sha256: [u8; 32],
    /// Unix time of the publish transaction.
    pub published_at: u32,
    pub publisher: TonAddress,
    pub version: String,
}

/// A registry at an address, read through a TON API.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    api: &'a TonApi,
    address: TonAddress,
}

fn stack_error(method: &str, message: impl Into<String>) -> RegistryError {
    RegistryError::Stack {
        method: method.to_string(),
        message: message.into(),
    }
}

fn int_at<'s>(
    stack: &'s [StackValue],
    i: usize,
    method: &str,
) -> Result<&'s BigInt, RegistryError> {
    stack
        .get(i)
        .and_then(StackValue::int)
        .ok_or_else(|| stack_error(method, format!("entry {i} is missing or not an integer")))
}

fn u256(i: &BigInt, method: &str) -> Result<[u8; 32], RegistryError> {
    let (sign, bytes) = i.to_bytes_be();
    if sign == Sign::Minus || bytes.len() > 32 {
        return Err(stack_error(method, format!("{i} is not a 256-bit hash")));
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    Ok(out)
}

fn small<T: TryFrom<i64>>(i: &BigInt, method: &str) -> Result<T, RegistryError> {
    i64::try_from(i)
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| stack_error(method, format!("{i} is out of range")))
}

impl<'a> Reader<'a> {
    pub fn new(api: &'a TonApi, address: TonAddress) -> Self {
        Self { api, address }
    }

    pub fn address(&self) -> &TonAddress {
        &self.address
    }

    /// Fails unless the account runs the registry code recorded in this
    /// repository: an address from a flag or the environment is not
    /// trusted to be a registry just because it answers `is_allowed`.
    pub fn check_code(&self) -> Result<(), RegistryError> {
        let expected = super::contract::compiled()?.code_hash_hex;
        let info = self.api.address_information(&self.address)?;
        match info.code_hash {
            Some(h) if h == expected => Ok(()),
            Some(h) => Err(RegistryError::Invalid(format!(
                "the account {} runs code with hash {h}, not the registry's {expected} \
                 (measurements/contract/build/registry.compiled.json): wrong address, or a \
                 registry of another contract version",
                self.address
            ))),
            None => Err(RegistryError::Invalid(format!(
                "the account {} has no code ({}): no registry is deployed there",
                self.address, info.state
            ))),
        }
    }

    fn run(&self, method: &str, args: &[BigInt]) -> Result<Vec<StackValue>, RegistryError> {
        self.api.run_get_method(&self.address, method, args)
    }

    fn bool(&self, method: &str, args: &[BigInt]) -> Result<bool, RegistryError> {
        let stack = self.run(method, args)?;
        // TVM booleans: -1 true, 0 false.
        match i64::try_from(int_at(&stack, 0, method)?) {
            Ok(-1) => Ok(true),
            Ok(0) => Ok(false),
            _ => Err(stack_error(method, "not a boolean")),
        }
    }

    fn measurement_args(m: &Measurement) -> Vec<BigInt> {
        let (hi, lo) = m.halves();
        vec![hi, lo]
    }

    fn account_args(a: &TonAddress) -> Vec<BigInt> {
        vec![
            BigInt::from(a.workchain),
            BigInt::from_bytes_be(Sign::Plus, a.hash_part.as_slice()),
        ]
    }

    pub fn is_allowed(&self, m: &Measurement) -> Result<bool, RegistryError> {
        self.bool("is_allowed", &Self::measurement_args(m))
    }

    /// Allowed, and endorsed by at least `k` current auditors.
    pub fn is_allowed_k(&self, m: &Measurement, k: u32) -> Result<bool, RegistryError> {
        let mut args = Self::measurement_args(m);
        args.push(BigInt::from(k));
        self.bool("is_allowed_k", &args)
    }

    pub fn endorsement_count(&self, m: &Measurement) -> Result<u32, RegistryError> {
        let method = "endorsement_count";
        let stack = self.run(method, &Self::measurement_args(m))?;
        small(int_at(&stack, 0, method)?, method)
    }

    pub fn record(&self, m: &Measurement) -> Result<Option<Record>, RegistryError> {
        let method = "get_record";
        let s = self.run(method, &Self::measurement_args(m))?;
        let status = match small::<u8>(int_at(&s, 0, method)?, method)? {
            0 => return Ok(None),
            1 => Status::Allowed,
            2 => Status::Revoked,
            other => return Err(stack_error(method, format!("unknown status {other}"))),
        };
        let version = match s.get(6) {
            Some(StackValue::Cell(c)) => String::from_utf8(c.data().to_vec())
                .map_err(|_| stack_error(method, "version is not UTF-8"))?,
            _ => return Err(stack_error(method, "entry 6 is not the version cell")),
        };
        let workchain: i32 = small(int_at(&s, 4, method)?, method)?;
        Ok(Some(Record {
            status,
            manifest_sha256: u256(int_at(&s, 1, method)?, method)?,
            model_sha256: u256(int_at(&s, 2, method)?, method)?,
            published_at: small(int_at(&s, 3, method)?, method)?,
            publisher: TonAddress::new(workchain, u256(int_at(&s, 5, method)?, method)?.into()),
            version,
        }))
    }

    /// (registry id, owner).
    pub fn info(&self) -> Result<(u32, TonAddress), RegistryError> {
        let method = "get_registry";
        let s = self.run(method, &[])?;
        let owner = TonAddress::new(
            small(int_at(&s, 1, method)?, method)?,
            u256(int_at(&s, 2, method)?, method)?.into(),
        );
        Ok((small(int_at(&s, 0, method)?, method)?, owner))
    }

    pub fn is_publisher(&self, a: &TonAddress) -> Result<bool, RegistryError> {
        self.bool("is_publisher", &Self::account_args(a))
    }

    pub fn is_auditor(&self, a: &TonAddress) -> Result<bool, RegistryError> {
        self.bool("is_auditor", &Self::account_args(a))
    }
}
