//! How a client decides to trust a cocoon guest, and what it compares.
//!
//! - [`snp`]: the SEV-SNP launch digest of an image, for every launch shape,
//!   computed offline.
//! - [`pinned`]: the development-mode check that a server holds the key
//!   whose certificate the guest announced (no attestation).
//! - [`client`]: a small HTTPS client on loopback that uses that check.
//!
//! - [`registry`]: the measurement registry contract on TON: its message
//!   layouts, wallet signing and a TON HTTP API client.
//!
//! - [`attest`]: SEV-SNP attestation of a guest's TLS key and session.
//! - [`gpu`]: NVIDIA H100 attestation evidence (SPDM measurements, the
//!   device certificate chain, reference values), verified offline.

pub mod attest;
pub mod client;
pub mod pinned;
pub mod registry;
pub mod snp;

/// The GPU verifier lives in its own crate so that the guest can run it
/// without this crate's network clients; re-exported under its old path.
pub use cocoon_gpu_evidence as gpu;
