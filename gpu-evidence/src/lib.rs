//! NVIDIA H100 GPU attestation evidence, verified offline.
//!
//! A GPU in confidential-computing mode answers an SPDM 1.1
//! GET_MEASUREMENTS request (with a nonce we choose) with its measurement
//! blocks, some NVIDIA data (driver and VBIOS versions, ...) and an ECDSA
//! P-384 signature by a key certified by NVIDIA's device PKI.
//!
//! - [`spdm`]: the request/response parser (strict, bounded).
//! - [`opaque`]: NVIDIA's opaque-data items in the response.
//! - [`chain`]: the certificate chain up to the pinned NVIDIA root.
//! - [`reference`]: reference values for the measurement blocks.
//! - `rim` (feature `rim`, host side): NVIDIA's signed RIMs verified
//!   (XML signature, Canonical XML 1.1, chain to a pinned root) and turned
//!   into reference values.
//! - [`version`]: driver versions and the minimum-version policy.
//! - [`verify`] and [`verdict`]: the checks in order, and their outcome.
//!
//! See docs/gpu-attestation.md for what is and is not checked. This crate
//! has no network client: the guest checks its own GPU with it before
//! serving, and `cocoon-measurements` re-exports it as `gpu`.

pub mod chain;
pub mod opaque;
pub mod reference;
#[cfg(feature = "rim")]
pub mod rim;
pub mod spdm;
pub mod verdict;
pub mod verify;
pub mod version;

pub use reference::ReferenceValues;
pub use spdm::{Report, Trailing, parse_report};
pub use verdict::{Check, CheckName, Status, Verdict};
pub use verify::{Evidence, Policy, VerifyError, decode_hex_report, verify, verify_with_root};
pub use version::{DEFAULT_MIN_DRIVER, DriverVersion};
