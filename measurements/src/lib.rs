//! How a client decides to trust a cocoon guest.
//!
//! Today: [`pinned::PinnedCertVerifier`], the development-mode check that
//! the server holds the key whose certificate the guest announced. The SEV-SNP
//! launch digest, report verification against AMD's roots and the TON
//! registry client come with the SNP work (issue 3 onward) and plug in as
//! further `rustls` verifiers beside it.

pub mod pinned;
