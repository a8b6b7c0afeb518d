//! The GPU's device certificate chain, checked link by link up to the
//! pinned NVIDIA Device Identity CA.
//!
//! An H100 chain is five certificates, leaf first: GSP FMC LF (the key that
//! signs measurement reports), GSP BROM, GH100 Provisioner ICA 1, GH100
//! Identity, NVIDIA Device Identity CA. Every one is ECDSA P-384 with
//! SHA-384. What is checked, for each link (child, issuer):
//!
//! - the child's issuer name is the issuer's subject name (DER-equal);
//! - the child's signature (ecdsa-with-SHA384) verifies with the issuer's
//!   P-384 key over the child's TBSCertificate;
//! - the issuer is a CA: basicConstraints cA=TRUE, keyUsage keyCertSign
//!   when keyUsage is present, pathLenConstraint respected;
//! - no certificate carries a critical extension we do not understand;
//! - every certificate is within its validity period at the time given.
//!   NVIDIA issues these with notAfter 9999-12-31, so this only ever fails
//!   for a certificate dated in the future or a forged one; it is checked
//!   because it is free and fails closed.
//!
//! The anchor: the chain either ends with the pinned root itself
//! (byte-identical DER, as NVIDIA's drivers deliver it), or its last
//! certificate is issued by the pinned root, which is then appended. A
//! self-issued last certificate that is not the pinned root is a foreign
//! root. Revocation (NVIDIA's OCSP service) is not checked: this verifier
//! is offline.

use std::time::Duration;

use base64::Engine as _;
use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha384};
use thiserror::Error;
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

/// The NVIDIA Device Identity CA, as published by NVIDIA (PEM). Its SHA-256
/// fingerprint (over the DER) is [`NVIDIA_DEVICE_ROOT_SHA256`].
pub const NVIDIA_DEVICE_ROOT_PEM: &[u8] = include_bytes!("nvidia_device_root.pem");
/// `10:2B:F6:59:…:16:7B:48`, the fingerprint NVIDIA publishes for the root.
pub const NVIDIA_DEVICE_ROOT_SHA256: &str =
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48";
/// An H100 sends five; this leaves room without accepting a pile.
pub const MAX_CHAIN_LEN: usize = 8;
/// Five PEM certificates are under 5 KiB.
pub const MAX_CHAIN_PEM_LEN: usize = 64 * 1024;

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChainError {
    #[error("the chain file is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("not a PEM certificate chain: {0}")]
    Pem(String),
    #[error("the chain holds no certificate")]
    Empty,
    #[error("the chain holds {0} certificates, more than the {MAX_CHAIN_LEN} accepted")]
    TooLong(usize),
    #[error("the pinned root does not parse: {0}")]
    PinnedRoot(String),
    #[error(
        "certificate {index} ({subject}): signed with {oid}, only ecdsa-with-SHA384 is accepted"
    )]
    SignatureAlgorithm {
        index: usize,
        subject: String,
        oid: String,
    },
    #[error("certificate {index} ({subject}): the key is not an ECDSA P-384 key: {reason}")]
    Key {
        index: usize,
        subject: String,
        reason: String,
    },
    #[error(
        "certificate {index} ({subject}) names issuer {issuer}, but the next certificate is {next}"
    )]
    IssuerMismatch {
        index: usize,
        subject: String,
        issuer: String,
        next: String,
    },
    #[error("certificate {index} ({subject}): its signature does not verify with its issuer's key")]
    BadSignature { index: usize, subject: String },
    #[error("certificate {index} ({subject}) issues a certificate but is not a CA: {reason}")]
    NotCa {
        index: usize,
        subject: String,
        reason: String,
    },
    #[error(
        "certificate {index} ({subject}) has a critical extension {oid} this verifier does not understand"
    )]
    UnknownCriticalExtension {
        index: usize,
        subject: String,
        oid: String,
    },
    #[error("certificate {index} ({subject}) is not valid at the time of verification: {reason}")]
    Validity {
        index: usize,
        subject: String,
        reason: String,
    },
    #[error("certificate {index} ({subject}): malformed extension {oid}")]
    Extension {
        index: usize,
        subject: String,
        oid: String,
    },
    #[error(
        "the chain ends at {subject}, which is not the pinned NVIDIA Device Identity CA nor issued by it"
    )]
    UntrustedRoot { subject: String },
    #[error("the leaf ({subject}) may not sign: its keyUsage lacks digitalSignature")]
    LeafUsage { subject: String },
}

/// A chain that held: the leaf's key, and who is in the chain.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    pub leaf_key: VerifyingKey,
    /// Subjects, leaf first, ending with the pinned root.
    pub subjects: Vec<String>,
    /// Whether the root was in the file (else it was appended).
    pub root_included: bool,
}

/// The pinned root, parsed.
pub fn pinned_root() -> Result<Certificate, ChainError> {
    match parse_pem_chain(NVIDIA_DEVICE_ROOT_PEM) {
        Ok(mut certs) if certs.len() == 1 => Ok(certs.remove(0)),
        Ok(certs) => Err(ChainError::PinnedRoot(format!(
            "{} certificates",
            certs.len()
        ))),
        Err(e) => Err(ChainError::PinnedRoot(e.to_string())),
    }
}

/// Parse a PEM chain (leaf first), bounded in size and count.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, ChainError> {
    if pem.len() > MAX_CHAIN_PEM_LEN {
        return Err(ChainError::TooLarge {
            len: pem.len(),
            max: MAX_CHAIN_PEM_LEN,
        });
    }
    // x509-cert's own `load_pem_chain` panics on empty input, and der's
    // PEM reader loops forever on some malformed blocks (found by the
    // `gpu_cert_chain` fuzz target, 2026-11-27): so the blocks are split
    // and their base64 decoded here, and only DER reaches x509-cert. Only
    // whitespace may lie between blocks.
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut certs = Vec::new();
    let mut rest = pem;
    loop {
        let Some(begin) = find(rest, BEGIN) else {
            if !rest.iter().all(u8::is_ascii_whitespace) {
                return Err(ChainError::Pem("text outside a CERTIFICATE block".into()));
            }
            break;
        };
        if !rest[..begin].iter().all(u8::is_ascii_whitespace) {
            return Err(ChainError::Pem("text outside a CERTIFICATE block".into()));
        }
        // The END line is looked for after the whole BEGIN line: the two
        // may not share their dashes (a fuzzed input did, 2026-11-27).
        let body = begin + BEGIN.len();
        let end = find(&rest[body..], END)
            .ok_or_else(|| ChainError::Pem("a CERTIFICATE block has no END line".into()))?
            + body
            + END.len();
        if certs.len() == MAX_CHAIN_LEN {
            return Err(ChainError::TooLong(certs.len() + 1));
        }
        let der = pem_body(&rest[body..end - END.len()])
            .map_err(|e| ChainError::Pem(format!("certificate {}: {e}", certs.len())))?;
        let cert = Certificate::from_der(&der)
            .map_err(|e| ChainError::Pem(format!("certificate {}: {e}", certs.len())))?;
        certs.push(cert);
        rest = &rest[end..];
    }
    if certs.is_empty() {
        return Err(ChainError::Empty);
    }
    Ok(certs)
}

/// The DER inside one PEM block (between its BEGIN and END lines):
/// base64 with line breaks, nothing else (no RFC 1421 headers).
fn pem_body(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut text = Vec::with_capacity(body.len());
    for &c in body {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => text.push(c),
            c if c.is_ascii_whitespace() => {}
            _ => return Err("a character outside base64 in the block".into()),
        }
    }
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|e| format!("not base64: {e}"))
}

/// Verify `chain` (leaf first) up to `root`, at `now` (since the Unix epoch).
pub fn verify_chain(
    chain: &[Certificate],
    root: &Certificate,
    now: Duration,
) -> Result<VerifiedChain, ChainError> {
    if chain.is_empty() {
        return Err(ChainError::Empty);
    }
    if chain.len() > MAX_CHAIN_LEN {
        return Err(ChainError::TooLong(chain.len()));
    }
    let der = |c: &Certificate| c.to_der().map_err(|e| ChainError::Pem(e.to_string()));
    let root_der = der(root)?;
    let mut path: Vec<Certificate> = chain.to_vec();
    let last = &chain[chain.len() - 1];
    let root_included = der(last)? == root_der;
    if !root_included {
        let self_issued = last.tbs_certificate.issuer == last.tbs_certificate.subject;
        if self_issued || last.tbs_certificate.issuer != root.tbs_certificate.subject {
            return Err(ChainError::UntrustedRoot {
                subject: subject(last),
            });
        }
        path.push(root.clone());
    }

    for (index, cert) in path.iter().enumerate() {
        check_critical_extensions(index, cert)?;
        check_validity(index, cert, now)?;
    }
    // Each link: path[i] is issued and signed by path[i + 1]. The root
    // (pinned, so trusted by its bytes) signs itself; its self-signature
    // adds nothing and is not checked.
    for index in 0..path.len() - 1 {
        let (child, issuer) = (&path[index], &path[index + 1]);
        if child.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(ChainError::IssuerMismatch {
                index,
                subject: subject(child),
                issuer: child.tbs_certificate.issuer.to_string(),
                next: subject(issuer),
            });
        }
        // Intermediates below this issuer, not counting the leaf.
        check_ca(index + 1, issuer, index)?;
        let key = p384_key(index + 1, issuer)?;
        check_signature(index, child, &key)?;
    }
    let leaf = &path[0];
    check_leaf_usage(leaf)?;
    Ok(VerifiedChain {
        leaf_key: p384_key(0, leaf)?,
        subjects: path.iter().map(subject).collect(),
        root_included,
    })
}

pub fn subject(c: &Certificate) -> String {
    c.tbs_certificate.subject.to_string()
}

fn p384_key(index: usize, c: &Certificate) -> Result<VerifyingKey, ChainError> {
    let spki = &c.tbs_certificate.subject_public_key_info;
    let fail = |reason: String| ChainError::Key {
        index,
        subject: subject(c),
        reason,
    };
    if spki.algorithm.oid != EC_PUBLIC_KEY {
        return Err(fail(format!("algorithm {}", spki.algorithm.oid)));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(SECP384R1) {
        return Err(fail("the curve is not secp384r1".into()));
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| fail("the key bit string has unused bits".into()))?;
    VerifyingKey::from_sec1_bytes(point).map_err(|_| fail("not a point on P-384".into()))
}

fn check_signature(
    index: usize,
    child: &Certificate,
    key: &VerifyingKey,
) -> Result<(), ChainError> {
    // Both the outer and the signed (TBS) algorithm must say the same.
    for oid in [
        child.signature_algorithm.oid,
        child.tbs_certificate.signature.oid,
    ] {
        if oid != ECDSA_WITH_SHA384 {
            return Err(ChainError::SignatureAlgorithm {
                index,
                subject: subject(child),
                oid: oid.to_string(),
            });
        }
    }
    let bad = || ChainError::BadSignature {
        index,
        subject: subject(child),
    };
    // der decodes strictly (DER only), so re-encoding the TBS gives back the
    // exact bytes that were signed.
    let tbs = child.tbs_certificate.to_der().map_err(|_| bad())?;
    let sig_bytes = child.signature.as_bytes().ok_or_else(bad)?;
    let sig = Signature::from_der(sig_bytes).map_err(|_| bad())?;
    key.verify_prehash(&Sha384::digest(&tbs), &sig)
        .map_err(|_| bad())
}

fn extension<'a, T: Decode<'a>>(
    index: usize,
    c: &'a Certificate,
    oid: ObjectIdentifier,
) -> Result<Option<T>, ChainError> {
    let Some(ext) = c
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == oid)
    else {
        return Ok(None);
    };
    T::from_der(ext.extn_value.as_bytes())
        .map(Some)
        .map_err(|_| ChainError::Extension {
            index,
            subject: subject(c),
            oid: oid.to_string(),
        })
}

/// `below` is the number of intermediate certificates under this issuer
/// (its pathLenConstraint must allow them).
fn check_ca(index: usize, c: &Certificate, below: usize) -> Result<(), ChainError> {
    let not_ca = |reason: String| ChainError::NotCa {
        index,
        subject: subject(c),
        reason,
    };
    let bc: BasicConstraints = extension(index, c, BASIC_CONSTRAINTS)?
        .ok_or_else(|| not_ca("no basicConstraints".into()))?;
    if !bc.ca {
        return Err(not_ca("basicConstraints cA is FALSE".into()));
    }
    if let Some(max) = bc.path_len_constraint
        && below > usize::from(max)
    {
        return Err(not_ca(format!(
            "pathLenConstraint {max}, but {below} intermediate(s) below it"
        )));
    }
    if let Some(KeyUsage(usage)) = extension::<KeyUsage>(index, c, KEY_USAGE)?
        && !usage.contains(KeyUsages::KeyCertSign)
    {
        return Err(not_ca("keyUsage lacks keyCertSign".into()));
    }
    Ok(())
}

fn check_leaf_usage(leaf: &Certificate) -> Result<(), ChainError> {
    if let Some(KeyUsage(usage)) = extension::<KeyUsage>(0, leaf, KEY_USAGE)?
        && !usage.contains(KeyUsages::DigitalSignature)
    {
        return Err(ChainError::LeafUsage {
            subject: subject(leaf),
        });
    }
    Ok(())
}

/// basicConstraints and keyUsage are the only extensions NVIDIA marks
/// critical, and the only ones whose meaning we enforce.
fn check_critical_extensions(index: usize, c: &Certificate) -> Result<(), ChainError> {
    for ext in c.tbs_certificate.extensions.iter().flatten() {
        if ext.critical && ext.extn_id != BASIC_CONSTRAINTS && ext.extn_id != KEY_USAGE {
            return Err(ChainError::UnknownCriticalExtension {
                index,
                subject: subject(c),
                oid: ext.extn_id.to_string(),
            });
        }
    }
    Ok(())
}

fn check_validity(index: usize, c: &Certificate, now: Duration) -> Result<(), ChainError> {
    let v = &c.tbs_certificate.validity;
    let fail = |reason: String| ChainError::Validity {
        index,
        subject: subject(c),
        reason,
    };
    if now < v.not_before.to_unix_duration() {
        return Err(fail(format!("not before {}", v.not_before)));
    }
    if now > v.not_after.to_unix_duration() {
        return Err(fail(format!("expired {}", v.not_after)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_decoded_here_and_refused_when_not_plain_base64() {
        let root = parse_pem_chain(NVIDIA_DEVICE_ROOT_PEM).unwrap();
        assert_eq!(root.len(), 1);
        let text = std::str::from_utf8(NVIDIA_DEVICE_ROOT_PEM).unwrap();
        let with = |from: &str, to: &str| parse_pem_chain(text.replacen(from, to, 1).as_bytes());
        // An RFC 1421 header, a stray character, a cut-short body.
        let header = "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n";
        assert!(matches!(
            with("-----BEGIN CERTIFICATE-----\n", header),
            Err(ChainError::Pem(_))
        ));
        assert!(matches!(
            with("\n-----END", "!\n-----END"),
            Err(ChainError::Pem(_))
        ));
        let body_start = text.find('\n').unwrap() + 1;
        let cut = format!(
            "{}{}",
            &text[..body_start + 10],
            &text[text.find("-----END").unwrap()..]
        );
        assert!(matches!(
            parse_pem_chain(cut.as_bytes()),
            Err(ChainError::Pem(_))
        ));
        // Empty, and a BEGIN line inside a block.
        assert!(matches!(parse_pem_chain(b""), Err(ChainError::Empty)));
        let nested = format!("-----BEGIN CERTIFICATE-----\n{text}");
        assert!(matches!(
            parse_pem_chain(nested.as_bytes()),
            Err(ChainError::Pem(_))
        ));
        // BEGIN and END sharing their dashes (the fuzzer's find).
        let shared = format!("{text}-----BEGIN CERTIFICATE--------END CERTIFICATE-----\n");
        assert!(matches!(
            parse_pem_chain(shared.as_bytes()),
            Err(ChainError::Pem(_))
        ));
    }
}
