//! NVIDIA's reference integrity manifests (RIMs), verified and turned into
//! reference values for the measurement blocks.
//!
//! A RIM is a SWID tag (ISO/IEC 19770-2 XML): `Meta@colloquialVersion`
//! names the driver or VBIOS version it is for, and `Payload` holds one
//! `Resource` per measurement: a 0-based `index`, `active`, and the
//! accepted SHA-384 digests as `Hash0`, `Hash1`, … attributes. It carries
//! an enveloped XML signature (XMLDSig) by a key whose certificate chain,
//! in `KeyInfo`, leads to NVIDIA's RIM root.
//!
//! [`verify`] accepts exactly the profile NVIDIA signs with and nothing
//! else (every algorithm other than these is refused, not skipped):
//! - `SignedInfo` canonicalized with Canonical XML 1.1 ([`c14n`]);
//! - ECDSA P-384 over SHA-384, the signature value r ‖ s;
//! - one `Reference` to the whole document (`URI=""`), transforms
//!   enveloped-signature then Canonical XML 1.1, digest SHA-384;
//! - the certificates in `KeyInfo`, leaf first, checked up to a root the
//!   caller pins ([`crate::chain::verify_chain`]: the same link checks as
//!   the GPU's device chain), valid at the time given.
//!
//! Exactly one `Signature` element, a child of the root, so that what is
//! signed is the document that is read. Nothing here ships in the guest:
//! the `rim` feature is for the host-side tools.

pub mod c14n;
pub mod xml;

use std::time::Duration;

use base64::Engine as _;
use p384::ecdsa::Signature;
use p384::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384};
use thiserror::Error;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

use crate::chain::{self, ChainError};
use crate::reference::ReferenceValues;
use xml::{Element, Node};

pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const SWID_NS: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
pub const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
pub const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
/// The namespace of the `Hash0`, `Hash1`, … attributes: SHA-384 digests.
pub const HASH_NS: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
/// A RIM is about 20 KiB.
pub const MAX_RIM_LEN: usize = 1 << 20;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RimError {
    #[error("the RIM is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("not a RIM: {0}")]
    Malformed(String),
    #[error("not the signature profile NVIDIA signs RIMs with: {0}")]
    Unsupported(String),
    #[error("the RIM's digest does not match its contents: it was changed after signing")]
    Digest,
    #[error("the RIM's signature does not verify with its signing certificate")]
    Signature,
    #[error("the RIM's certificate chain: {0}")]
    Chain(#[from] ChainError),
    #[error(
        "the {expected} RIM is for {found} (its colloquialVersion), not for {expected} {wanted}"
    )]
    Version {
        expected: &'static str,
        wanted: String,
        found: String,
    },
    #[error("measurement {index} is active in both the driver and the VBIOS RIM")]
    Conflict { index: u8 },
}

fn malformed(what: impl Into<String>) -> RimError {
    RimError::Malformed(what.into())
}

/// One `Resource` of a RIM's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimMeasurement {
    /// The RIM's 0-based index (the SPDM block index is one more).
    pub index: u8,
    pub active: bool,
    /// The accepted digests, `Hash0` first.
    pub values: Vec<Vec<u8>>,
}

/// A RIM whose signature and chain held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rim {
    pub tag_id: String,
    /// `SoftwareIdentity@name` (the chip: `GH100`).
    pub name: String,
    /// `Meta@colloquialVersion`: the driver or VBIOS version.
    pub version: String,
    pub measurements: Vec<RimMeasurement>,
    /// The signing chain's subjects, leaf first, ending with the root.
    pub signers: Vec<String>,
}

/// SHA-256 over a certificate's DER, hex: how a pinned root is named.
pub fn fingerprint(cert: &Certificate) -> String {
    cert.to_der()
        .map(|der| hex::encode(Sha256::digest(der)))
        .unwrap_or_default()
}

/// Check `xml`'s signature and chain up to `root` at `now` (since the
/// Unix epoch), then read its payload.
pub fn verify(xml: &[u8], root: &Certificate, now: Duration) -> Result<Rim, RimError> {
    if xml.len() > MAX_RIM_LEN {
        return Err(RimError::TooLarge {
            len: xml.len(),
            max: MAX_RIM_LEN,
        });
    }
    let text = std::str::from_utf8(xml).map_err(|_| malformed("not UTF-8"))?;
    let doc = xml::parse(text).map_err(RimError::Malformed)?;
    let is = |ns: &'static str, local: &'static str| {
        move |e: &Element, scope: &xml::Scope| {
            e.local_name() == local && xml::resolve(scope, &e.name, false).as_deref() == Some(ns)
        }
    };
    if !is(SWID_NS, "SoftwareIdentity")(&doc, &xml::scope_of(&Default::default(), &doc)) {
        return Err(malformed("the root is not a SWID SoftwareIdentity"));
    }
    let signatures = c14n::find(&doc, &is(DSIG_NS, "Signature"));
    let path = match signatures.as_slice() {
        [p] if p.len() == 1 => p.clone(),
        [_] => return Err(malformed("the Signature is not a child of the root")),
        [] => return Err(malformed("no Signature")),
        _ => return Err(malformed("more than one Signature")),
    };
    let sig = c14n::at(&doc, &path).map_err(RimError::Malformed)?;
    // Below, elements are told apart by local name: so every one of them
    // must be XMLDSig's.
    if !all_in(sig, &xml::scope_of(&Default::default(), &doc), DSIG_NS) {
        return Err(RimError::Unsupported(
            "an element inside the Signature is not in the XMLDSig namespace".into(),
        ));
    }
    let parts = children(sig, &["SignedInfo", "SignatureValue", "KeyInfo"])?;
    let [signed_info, value, key_info] = [parts[0], parts[1], parts[2]];

    let si = children(
        signed_info,
        &["CanonicalizationMethod", "SignatureMethod", "Reference"],
    )?;
    algorithm(si[0], C14N11)?;
    algorithm(si[1], ECDSA_SHA384)?;
    let reference = si[2];
    if reference.attributes != [("URI".to_string(), String::new())] {
        return Err(RimError::Unsupported(
            "the Reference must be to the whole document (URI=\"\" and nothing else)".into(),
        ));
    }
    let r = children(reference, &["Transforms", "DigestMethod", "DigestValue"])?;
    let transforms: Vec<&Element> = r[0].elements().collect();
    if r[0]
        .children
        .iter()
        .any(|c| matches!(c, Node::Text(t) if !t.trim().is_empty()))
        || transforms.len() != 2
    {
        return Err(RimError::Unsupported(
            "the transforms must be enveloped-signature then Canonical XML 1.1".into(),
        ));
    }
    for (t, want) in transforms.iter().zip([ENVELOPED, C14N11]) {
        if t.local_name() != "Transform" {
            return Err(malformed("Transforms holds something other than Transform"));
        }
        algorithm(t, want)?;
    }
    algorithm(r[1], SHA384)?;
    let digest = base64_text(r[2], "DigestValue")?;

    // What the Reference covers: the document without the signature.
    let body = c14n::document_without(&doc, Some(&path)).map_err(RimError::Malformed)?;
    if Sha384::digest(body.as_bytes()).as_slice() != digest.as_slice() {
        return Err(RimError::Digest);
    }

    let certs = key_info_chain(key_info)?;
    let verified = chain::verify_chain(&certs, root, now)?;
    let signature = base64_text(value, "SignatureValue")?;
    let signature = Signature::from_slice(&signature)
        .map_err(|_| malformed("the SignatureValue is not an ECDSA P-384 r ‖ s"))?;
    let si_path: Vec<usize> = path
        .iter()
        .copied()
        .chain(std::iter::once(child_index(sig, signed_info)))
        .collect();
    let canonical = c14n::subtree(&doc, &si_path).map_err(RimError::Malformed)?;
    verified
        .leaf_key
        .verify_prehash(&Sha384::digest(canonical.as_bytes()), &signature)
        .map_err(|_| RimError::Signature)?;

    payload(&doc, verified.subjects)
}

/// Whether `e` and every element below it are in namespace `ns` (`scope`:
/// what is in scope at `e`'s parent).
fn all_in(e: &Element, scope: &xml::Scope, ns: &str) -> bool {
    let scope = xml::scope_of(scope, e);
    xml::resolve(&scope, &e.name, false).as_deref() == Some(ns)
        && e.elements().all(|c| all_in(c, &scope, ns))
}

/// The element children of `e`, which must be exactly `names` (local
/// names, in order) with nothing but whitespace between them.
fn children<'a>(e: &'a Element, names: &[&str]) -> Result<Vec<&'a Element>, RimError> {
    let mut found = Vec::new();
    for c in &e.children {
        match c {
            Node::Element(c) => found.push(c),
            Node::Text(t) if t.trim().is_empty() => {}
            Node::Text(_) => return Err(malformed(format!("text inside <{}>", e.name))),
        }
    }
    let got: Vec<&str> = found.iter().map(|c| c.local_name()).collect();
    if got != names {
        return Err(RimError::Unsupported(format!(
            "<{}> holds {got:?}, expected {names:?}",
            e.name
        )));
    }
    Ok(found)
}

fn child_index(parent: &Element, child: &Element) -> usize {
    parent
        .children
        .iter()
        .position(|c| matches!(c, Node::Element(e) if std::ptr::eq(e, child)))
        .expect("a child of its parent")
}

/// `e` has exactly `Algorithm="want"` and no content.
fn algorithm(e: &Element, want: &str) -> Result<(), RimError> {
    let got = e.attribute("Algorithm").unwrap_or("(none)");
    if got != want || e.attributes.len() != 1 || !e.children.is_empty() {
        return Err(RimError::Unsupported(format!(
            "<{}> Algorithm {got}, expected {want} (and nothing inside)",
            e.name
        )));
    }
    Ok(())
}

/// The base64 text of an element (whitespace allowed, as XMLDSig does).
fn base64_text(e: &Element, what: &str) -> Result<Vec<u8>, RimError> {
    let mut text = String::new();
    for c in &e.children {
        match c {
            Node::Text(t) => text.push_str(t),
            Node::Element(_) => return Err(malformed(format!("an element inside {what}"))),
        }
    }
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| malformed(format!("{what} is not base64: {e}")))
}

fn key_info_chain(key_info: &Element) -> Result<Vec<Certificate>, RimError> {
    let data = children(key_info, &["X509Data"])?;
    let mut certs = Vec::new();
    for c in data[0].elements() {
        if c.local_name() != "X509Certificate" {
            return Err(RimError::Unsupported(format!(
                "<{}> in X509Data: only certificates are read",
                c.name
            )));
        }
        if certs.len() == chain::MAX_CHAIN_LEN {
            return Err(ChainError::TooLong(certs.len() + 1).into());
        }
        let der = base64_text(c, "X509Certificate")?;
        certs.push(
            Certificate::from_der(&der)
                .map_err(|e| malformed(format!("an X509Certificate does not parse: {e}")))?,
        );
    }
    Ok(certs)
}

/// The tag's identity, version and measurements.
fn payload(doc: &Element, signers: Vec<String>) -> Result<Rim, RimError> {
    let top = xml::scope_of(&Default::default(), doc);
    let attr = |e: &Element, n: &str| -> Result<String, RimError> {
        e.attribute(n)
            .map(str::to_string)
            .ok_or_else(|| malformed(format!("<{}> has no {n}", e.name)))
    };
    let swid = |e: &&Element, local: &str| {
        e.local_name() == local
            && xml::resolve(&xml::scope_of(&top, e), &e.name, false).as_deref() == Some(SWID_NS)
    };
    let one = |local: &str| -> Result<&Element, RimError> {
        let mut it = doc.elements().filter(|e| swid(e, local));
        match (it.next(), it.next()) {
            (Some(e), None) => Ok(e),
            _ => Err(malformed(format!("not exactly one {local}"))),
        }
    };
    let meta = one("Meta")?;
    let payload = one("Payload")?;
    let scope = xml::scope_of(&xml::scope_of(&top, payload), payload);
    let mut measurements: Vec<RimMeasurement> = Vec::new();
    for r in payload.elements() {
        if !swid(&r, "Resource") || r.attribute("type") != Some("Measurement") {
            return Err(malformed(format!(
                "<{}> in the Payload is not a Measurement",
                r.name
            )));
        }
        let index: u8 = attr(r, "index")?
            .parse()
            .ok()
            .filter(|i| *i < 254)
            .ok_or_else(|| malformed("a Resource index is not 0-253"))?;
        let active = match attr(r, "active")?.as_str() {
            "True" | "true" => true,
            "False" | "false" => false,
            other => return Err(malformed(format!("measurement {index}: active={other:?}"))),
        };
        let count: usize = attr(r, "alternatives")?
            .parse()
            .ok()
            .filter(|n| (1..=16).contains(n))
            .ok_or_else(|| malformed(format!("measurement {index}: alternatives not 1-16")))?;
        let rscope = xml::scope_of(&scope, r);
        let mut values = vec![None; count];
        for (qname, value) in &r.attributes {
            let (_, local) = Element::split(qname);
            let Some(k) = local.strip_prefix("Hash") else {
                continue;
            };
            if xml::resolve(&rscope, qname, true).as_deref() != Some(HASH_NS) {
                return Err(RimError::Unsupported(format!(
                    "measurement {index}: {qname} is not a SHA-384 digest"
                )));
            }
            let slot = k
                .parse::<usize>()
                .ok()
                .and_then(|k| values.get_mut(k))
                .ok_or_else(|| {
                    malformed(format!("measurement {index}: {qname} beyond alternatives"))
                })?;
            let digest = hex::decode(value)
                .ok()
                .filter(|d| d.len() == 48)
                .ok_or_else(|| {
                    malformed(format!(
                        "measurement {index}: {qname} is not 48 bytes of hex"
                    ))
                })?;
            *slot = Some(digest);
        }
        let values: Option<Vec<Vec<u8>>> = values.into_iter().collect();
        let values = values.ok_or_else(|| {
            malformed(format!(
                "measurement {index}: fewer Hash attributes than alternatives"
            ))
        })?;
        if measurements.iter().any(|m| m.index == index) {
            return Err(malformed(format!("measurement {index} is listed twice")));
        }
        measurements.push(RimMeasurement {
            index,
            active,
            values,
        });
    }
    Ok(Rim {
        tag_id: attr(doc, "tagId")?,
        name: attr(doc, "name")?,
        version: attr(meta, "colloquialVersion")?,
        measurements,
        signers,
    })
}

impl ReferenceValues {
    /// Reference values from a verified driver RIM and VBIOS RIM for the
    /// driver and VBIOS versions given (as the report's opaque data states
    /// them): the active measurements of both, each at SPDM index RIM
    /// index plus one. A RIM for another version, or a measurement active
    /// in both, is an error.
    pub fn from_rims(
        driver: &Rim,
        vbios: &Rim,
        driver_version: &str,
        vbios_version: &str,
        root: &Certificate,
    ) -> Result<ReferenceValues, RimError> {
        if driver.version != driver_version {
            return Err(RimError::Version {
                expected: "driver",
                wanted: driver_version.into(),
                found: driver.version.clone(),
            });
        }
        if !vbios.version.eq_ignore_ascii_case(vbios_version) {
            return Err(RimError::Version {
                expected: "VBIOS",
                wanted: vbios_version.into(),
                found: vbios.version.clone(),
            });
        }
        let mut entries = std::collections::BTreeMap::new();
        for (rim, component) in [(driver, "driver"), (vbios, "vbios")] {
            for m in rim.measurements.iter().filter(|m| m.active) {
                let index = m.index + 1;
                if entries
                    .insert(index, (component.to_string(), m.values.clone()))
                    .is_some()
                {
                    return Err(RimError::Conflict { index });
                }
            }
        }
        let source = format!(
            "RIMs {} ({} driver {}) + {} ({} VBIOS {}), verified up to the root with SHA-256 {}",
            driver.tag_id,
            driver.name,
            driver.version,
            vbios.tag_id,
            vbios.name,
            vbios.version,
            fingerprint(root)
        );
        Ok(ReferenceValues::new(
            &source,
            Some(driver_version),
            Some(&vbios_version.to_ascii_lowercase()),
            entries.into_iter().map(|(i, (c, v))| (i, c, v)),
        ))
    }
}
