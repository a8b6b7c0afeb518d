//! The verifier: from a guest's certificate (and, for a session, a fresh
//! report) to a verdict, or to the one check that refused.
//!
//! Order: the report is authenticated first (VCEK ← ASK ← ARK, then AMD's
//! signature over the raw bytes), and only then are its claims read
//! (policy, TCB, measurement, `report_data`). Nothing an unauthenticated
//! report says is ever acted on, not even to choose an error message.

use serde::Serialize;
use sev::certs::snp::Certificate;
use x509_cert::der::{Decode, Encode};

use cocoon_evidence::{
    EXTENSION_OID, Evidence, certificate_report_data, gpu_nonce, session_report_data,
};

use super::amd::{self, Product, Roots, Tcb};
use super::error::AttestError;
use super::gpu::GpuAttested;
use super::policy::Policy;
use super::report::Report;
use super::vcek::VcekStore;

#[derive(Debug, Clone)]
pub struct Verifier {
    pub roots: Roots,
    pub vceks: VcekStore,
    pub policy: Policy,
    /// Accept a guest that declares it has no SEV-SNP (development boots).
    /// The verdict still says so; it never passes as attested.
    pub allow_unattested: bool,
}

/// What was verified about a genuine report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Attested {
    pub product: Product,
    pub report_version: u32,
    /// The launch measurement, hex.
    pub measurement: String,
    pub chip_id: String,
    pub reported_tcb: Tcb,
    pub policy: u64,
    pub vmpl: u32,
    /// Where the VCEK came from: "certificate", "cache or bundle", "AMD KDS".
    pub vcek_source: &'static str,
    /// The GPUs whose evidence the certificate's report binds (empty for a
    /// CPU image and for session reports).
    pub gpus: Vec<GpuAttested>,
}

/// The outcome for a certificate that passed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "platform", rename_all = "kebab-case")]
pub enum Verdict {
    /// A genuine report, accepted by the policy, binding the TLS key.
    SevSnp(Attested),
    /// The guest declares it has no SEV-SNP, and the caller allowed that.
    Unattested { reason: String },
}

impl Verifier {
    /// A verifier with AMD's roots, the default VCEK cache, KDS allowed.
    pub fn amd(policy: Policy) -> Result<Self, AttestError> {
        Ok(Verifier {
            roots: Roots::amd()?,
            vceks: VcekStore {
                cache: VcekStore::default_cache(),
                bundles: Vec::new(),
                network: true,
            },
            policy,
            allow_unattested: false,
        })
    }

    /// Authenticates a report and applies the policy.
    pub fn verify_report(
        &self,
        raw: &[u8],
        vcek_hint: Option<&[u8]>,
    ) -> Result<(Report, Attested), AttestError> {
        let report = Report::parse(raw)?;
        let f = &report.fields;
        let tcb = Tcb::of(&f.reported_tcb);
        let (product, vcek, source) = self.resolve_vcek(&report, &tcb, vcek_hint)?;
        report.verify_signature(vcek.public_key_sec1())?;
        self.policy.check(&report)?;
        let attested = Attested {
            product,
            report_version: f.version,
            measurement: hex::encode(f.measurement),
            chip_id: hex::encode(f.chip_id),
            reported_tcb: tcb,
            policy: u64::from(f.policy),
            vmpl: f.vmpl,
            vcek_source: source,
            gpus: Vec::new(),
        };
        Ok((report, attested))
    }

    /// Verifies a guest's TLS certificate: its evidence, and that the
    /// report binds the certificate's public key.
    pub fn verify_certificate(&self, cert_der: &[u8]) -> Result<Verdict, AttestError> {
        let cert = x509_cert::Certificate::from_der(cert_der)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let oid = EXTENSION_OID
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(".");
        let mut found = cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id.to_string() == oid);
        let ext = found.next().ok_or(AttestError::NoEvidence)?;
        if found.next().is_some() {
            return Err(AttestError::Certificate(
                "two attestation extensions".into(),
            ));
        }
        match Evidence::from_der(ext.extn_value.as_bytes())? {
            // An unattested guest has nothing that could bind a GPU.
            Evidence::Unattested { .. } if self.policy.gpu.require => Err(AttestError::GpuRequired),
            Evidence::Unattested { reason } if self.allow_unattested => {
                Ok(Verdict::Unattested { reason })
            }
            Evidence::Unattested { reason } => Err(AttestError::Unattested(reason)),
            Evidence::SevSnp { report, vcek, gpus } => {
                let (report, mut attested) = self.verify_report(&report, vcek.as_deref())?;
                let spki = cert
                    .tbs_certificate
                    .subject_public_key_info
                    .to_der()
                    .map_err(|e| AttestError::Certificate(e.to_string()))?;
                // The authenticated report must cover the key and exactly
                // the GPU evidence presented (none, or all of it).
                if report.fields.report_data != certificate_report_data(&spki, &gpus) {
                    return Err(AttestError::KeyBinding);
                }
                attested.gpus = self.policy.gpu.check(&gpus, gpu_nonce(&spki))?;
                Ok(Verdict::SevSnp(attested))
            }
        }
    }

    /// Verifies a session report: genuine, accepted, from the same chip and
    /// measurement as the certificate's, and covering this nonce and this
    /// connection's exporter value.
    pub fn verify_session(
        &self,
        certificate: &Attested,
        raw: &[u8],
        vcek_hint: Option<&[u8]>,
        nonce: &[u8; 32],
        exporter: &[u8; 32],
    ) -> Result<Attested, AttestError> {
        let (report, attested) = self.verify_report(raw, vcek_hint)?;
        if attested.chip_id != certificate.chip_id
            || attested.measurement != certificate.measurement
        {
            return Err(AttestError::SessionMismatch);
        }
        if report.fields.report_data != session_report_data(nonce, exporter) {
            return Err(AttestError::SessionBinding);
        }
        Ok(attested)
    }

    /// Finds a VCEK that AMD's chain vouches for and that names this chip
    /// and TCB. Candidates are tried in order; the most telling failure is
    /// kept for the error.
    fn resolve_vcek(
        &self,
        report: &Report,
        tcb: &Tcb,
        hint: Option<&[u8]>,
    ) -> Result<(Product, Certificate, &'static str), AttestError> {
        let f = &report.fields;
        let products = candidate_products(report);
        let last_error = std::cell::RefCell::new(None);
        let try_one = |der: &[u8]| -> Option<(Product, Certificate)> {
            let checked = amd::parse_vcek(der).and_then(|(cert, claims)| {
                let product = self.roots.product_of(&cert, &products)?;
                amd::check_vcek_claims(&claims, product, &f.chip_id, tcb)?;
                Ok((product, cert))
            });
            match checked {
                Ok(found) => Some(found),
                Err(e) => {
                    *last_error.borrow_mut() = Some(e);
                    None
                }
            }
        };
        if let Some(der) = hint
            && let Some((p, c)) = try_one(der)
        {
            self.vceks.remember(p, &f.chip_id, tcb, der);
            return Ok((p, c, "certificate"));
        }
        for p in &products {
            for der in self.vceks.candidates(*p, &f.chip_id, tcb)? {
                if let Some((p, c)) = try_one(&der) {
                    return Ok((p, c, "cache or bundle"));
                }
            }
        }
        for p in &products {
            match self.vceks.fetch(*p, &f.chip_id, tcb) {
                Ok(der) => {
                    if let Some((p, c)) = try_one(&der) {
                        return Ok((p, c, "AMD KDS"));
                    }
                }
                Err(e) => {
                    let mut last = last_error.borrow_mut();
                    if last.is_none() {
                        *last = Some(e);
                    }
                }
            }
        }
        Err(last_error
            .into_inner()
            .unwrap_or_else(|| AttestError::VcekUnavailable("no candidate".into())))
    }
}

/// The products that could have made this report: a version 3+ report
/// names its CPU family and model; a version 2 report does not, so Milan
/// and Genoa are both tried (Turin firmware writes version 3 or later).
fn candidate_products(report: &Report) -> Vec<Product> {
    let f = &report.fields;
    if let (Some(family), Some(model)) = (f.cpuid_fam_id, f.cpuid_mod_id) {
        match sev::Generation::identify_cpu(family, model) {
            Ok(sev::Generation::Milan) => return vec![Product::Milan],
            Ok(sev::Generation::Genoa) => return vec![Product::Genoa],
            Ok(sev::Generation::Turin) => return vec![Product::Turin],
            _ => {}
        }
    }
    vec![Product::Milan, Product::Genoa]
}
