//! Remote attestation of a cocoon guest: is this TLS peer the measured
//! image, on a genuine AMD SEV-SNP machine, in this very session?
//!
//! - [`report`]: the raw report and AMD's signature over it;
//! - [`amd`]: the ARK → ASK → VCEK chain and the VCEK's claims;
//! - [`vcek`]: where VCEKs come from (certificate, cache, bundle, KDS);
//! - [`policy`]: debug, migration agent, VMPL, minimum TCB, measurements;
//! - [`gpu`]: the NVIDIA GPUs' evidence bound into the certificate;
//! - [`allowlist`]: the TON registry as the set of allowed measurements;
//! - [`verify`]: the verifier that runs them in order, to a verdict;
//! - [`tls`]: a `rustls` certificate verifier, and the session check.
//!
//! `docs/attestation.md` has the protocol and what it does not cover.

pub mod allowlist;
pub mod amd;
pub mod error;
pub mod gpu;
pub mod policy;
pub mod report;
pub mod tls;
pub mod vcek;
pub mod verify;

pub use allowlist::RegistryAllowlist;
pub use amd::{Product, Root, Roots, Tcb};
pub use error::AttestError;
pub use gpu::{GpuAttested, GpuPolicy};
pub use policy::{Allowlist, MinTcb, Policy};
pub use tls::{Attestation, AttestingVerifier, attest};
pub use vcek::VcekStore;
pub use verify::{Attested, Verdict, Verifier};
