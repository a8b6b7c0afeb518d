//! SEV-SNP launch measurements, attestation-report verification and the TON
//! registry client. Empty until the SNP launch work lands (issue 3): the
//! vertical slice boots without SEV and measures nothing yet.
