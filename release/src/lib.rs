//! cocoon release bundles: what `cargo xtask release` writes, what
//! `cocoon-host boot --release` and `cargo xtask verify` check.
//!
//! | module | what it holds |
//! |---|---|
//! | [`bundle`] | the folder layout and the check run before anything is trusted |
//! | [`sums`] | `SHA256SUMS` (the `sha256sum -c` format) |
//! | [`signature`] | the minisign signature over it and its trusted comment |
//! | [`keys`] | trusted keys (compiled in from `release/keys/`), revocations |
//! | [`provenance`] | the SLSA v1 provenance statement |
//! | [`tarball`] | the deterministic `cocoon-VERSION.tar` |
//! | [`diff`] | where a rebuilt artifact differs from the released one |
//!
//! Signing lives in `xtask` (it needs the secret key and the `minisign`
//! crate); everything here only reads and checks.

pub mod bundle;
pub mod diff;
pub mod keys;
pub mod provenance;
pub mod signature;
pub mod sums;
pub mod tarball;
