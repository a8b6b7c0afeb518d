//! AMD's certificate chain: ARK (root, pinned in the binary) → ASK → VCEK.
//!
//! The ARK and ASK of Milan, Genoa and Turin are the ones the `sev` crate
//! ships (AMD's KDS publishes the same). A VCEK, wherever it came from (the
//! guest's certificate, the cache, a bundle, AMD's KDS), is only used after
//! it verifies under one of them, and after its AMD extensions name the
//! chip and the TCB the report claims: a genuine VCEK of another chip, or of
//! an older TCB, never signs for this one.

use std::fmt;

use sev::certs::snp::{Certificate, Verifiable, builtin};
use x509_cert::der::{Decode, Encode};

use super::error::AttestError;

/// An AMD EPYC generation with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD's KDS uses in its paths.
    pub fn kds_name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kds_name())
    }
}

/// One trusted ARK and the ASK it signed.
#[derive(Debug, Clone)]
pub struct Root {
    pub product: Product,
    pub ark: Certificate,
    pub ask: Certificate,
}

/// The roots a verifier trusts.
#[derive(Debug, Clone)]
pub struct Roots(Vec<Root>);

impl Roots {
    /// AMD's roots for Milan, Genoa and Turin, each checked (ARK
    /// self-signed, ARK signs ASK) before it is trusted.
    pub fn amd() -> Result<Self, AttestError> {
        let pem = |p: Product, ark: &[u8], ask: &[u8]| -> Result<Root, AttestError> {
            let bad = |e: std::io::Error| AttestError::Roots(format!("{p}: {e}"));
            Ok(Root {
                product: p,
                ark: Certificate::from_pem(ark).map_err(bad)?,
                ask: Certificate::from_pem(ask).map_err(bad)?,
            })
        };
        Roots::new(vec![
            pem(Product::Milan, builtin::milan::ARK, builtin::milan::ASK)?,
            pem(Product::Genoa, builtin::genoa::ARK, builtin::genoa::ASK)?,
            pem(Product::Turin, builtin::turin::ARK, builtin::turin::ASK)?,
        ])
    }

    /// Other roots: the tests' own CA, or a private deployment's. The same
    /// checks apply.
    pub fn new(roots: Vec<Root>) -> Result<Self, AttestError> {
        for r in &roots {
            (&r.ark, &r.ark).verify().map_err(|e| {
                AttestError::Roots(format!("{} ARK is not self-signed: {e}", r.product))
            })?;
            (&r.ark, &r.ask)
                .verify()
                .map_err(|_| AttestError::AskSignature(r.product))?;
        }
        Ok(Roots(roots))
    }

    pub fn get(&self, product: Product) -> Option<&Root> {
        self.0.iter().find(|r| r.product == product)
    }

    /// The product whose ASK signed this VCEK, trying `candidates` in order.
    pub fn product_of(
        &self,
        vcek: &Certificate,
        candidates: &[Product],
    ) -> Result<Product, AttestError> {
        for p in candidates {
            if let Some(root) = self.get(*p)
                && (&root.ask, vcek).verify().is_ok()
            {
                return Ok(*p);
            }
        }
        Err(AttestError::VcekSignature(
            candidates
                .iter()
                .map(|p| p.kds_name())
                .collect::<Vec<_>>()
                .join(", "),
        ))
    }
}

/// The TCB a VCEK certifies, from its AMD extensions (KDS spec, table 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin only.
    pub fmc: Option<u8>,
}

impl Tcb {
    pub fn of(v: &sev::firmware::host::TcbVersion) -> Self {
        Tcb {
            bootloader: v.bootloader,
            tee: v.tee,
            snp: v.snp,
            microcode: v.microcode,
            fmc: v.fmc,
        }
    }

    /// Each component by name, for checks and messages.
    pub fn components(&self) -> Vec<(&'static str, u8)> {
        let mut v = vec![
            ("bootloader", self.bootloader),
            ("tee", self.tee),
            ("snp", self.snp),
            ("microcode", self.microcode),
        ];
        if let Some(f) = self.fmc {
            v.push(("fmc", f));
        }
        v
    }
}

const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// What a VCEK says it certifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekClaims {
    pub hwid: Vec<u8>,
    pub tcb: Tcb,
}

/// Parses a VCEK (DER) and reads its AMD extensions.
pub fn parse_vcek(der: &[u8]) -> Result<(Certificate, VcekClaims), AttestError> {
    let x509 = x509_cert::Certificate::from_der(der)
        .map_err(|e| AttestError::VcekMalformed(e.to_string()))?;
    let ext = |oid: &str| {
        x509.tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    // Each SPL is a DER INTEGER inside the extension's OCTET STRING.
    let spl = |oid: &str, name: &str| -> Result<Option<u8>, AttestError> {
        let Some(v) = ext(oid) else { return Ok(None) };
        let n = x509_cert::der::asn1::Uint::from_der(&v)
            .map_err(|_| AttestError::VcekMalformed(format!("{name} SPL is not an INTEGER")))?;
        match n.as_bytes() {
            [b] => Ok(Some(*b)),
            _ => Err(AttestError::VcekMalformed(format!(
                "{name} SPL is over 255"
            ))),
        }
    };
    let need = |oid: &str, name: &str| {
        spl(oid, name)?
            .ok_or_else(|| AttestError::VcekMalformed(format!("no {name} SPL extension")))
    };
    let tcb = Tcb {
        bootloader: need(OID_BL_SPL, "bootloader")?,
        tee: need(OID_TEE_SPL, "tee")?,
        snp: need(OID_SNP_SPL, "snp")?,
        microcode: need(OID_UCODE_SPL, "microcode")?,
        fmc: spl(OID_FMC_SPL, "fmc")?,
    };
    let hwid =
        ext(OID_HWID).ok_or_else(|| AttestError::VcekMalformed("no hwID extension".into()))?;
    let der_again = x509
        .to_der()
        .map_err(|e| AttestError::VcekMalformed(e.to_string()))?;
    if der_again != der {
        // DER is canonical: a certificate that does not re-encode to its
        // own bytes was not produced by a DER encoder.
        return Err(AttestError::VcekMalformed("not canonical DER".into()));
    }
    Ok((Certificate::from(x509), VcekClaims { hwid, tcb }))
}

/// Checks that a VCEK certifies this chip at exactly the reported TCB.
/// Turin VCEKs name the chip by the first 8 bytes of its id.
pub fn check_vcek_claims(
    claims: &VcekClaims,
    product: Product,
    chip_id: &[u8; 64],
    reported: &Tcb,
) -> Result<(), AttestError> {
    let want: &[u8] = match product {
        Product::Turin => &chip_id[..8],
        _ => &chip_id[..],
    };
    if claims.hwid != want {
        return Err(AttestError::VcekChip);
    }
    if claims.tcb != *reported {
        return Err(AttestError::VcekTcb {
            vcek: claims.tcb,
            report: *reported,
        });
    }
    Ok(())
}
