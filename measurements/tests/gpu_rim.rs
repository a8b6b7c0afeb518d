//! NVIDIA RIMs: XML signatures, Canonical XML 1.1 and the conversion to
//! reference values, on RIMs signed by the stock `xmlsec1` with a test PKI
//! (tests/data/rim/, made by its make.py) whose digests are the real H100
//! report's blocks (tests/data/nvidia/). Every kind of change must fail,
//! each with its own error. `xmlsec1` and `xmllint` (libxml2) are the
//! cross-checks: the first must accept the fixtures, the second must
//! canonicalize documents to the same bytes as we do.

use std::process::Command;
use std::time::Duration;

use cocoon_measurements::gpu::chain::{self, ChainError};
use cocoon_measurements::gpu::rim::{self, Rim, RimError, RimMeasurement};
use cocoon_measurements::gpu::{ReferenceValues, Trailing, decode_hex_report, parse_report};

#[path = "support/test_rims.rs"]
mod test_rims;
use test_rims::{
    DRIVER, RIM_DIR as RIM, RIM_TIME, VBIOS, reference, rim_root, rim_text, test_rims,
};

const NVIDIA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nvidia");

fn verify(xml: &str) -> Result<Rim, RimError> {
    rim::verify(xml.as_bytes(), &rim_root(), RIM_TIME)
}

fn tool(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (the cross-checks need xmlsec1 and xmllint: apt install xmlsec1 libxml2-utils)")
    })
}

#[test]
fn the_fixtures_verify_here_and_with_xmlsec1() {
    for (name, version, active) in [
        ("driver.swidtag", "550.90.07", 20),
        ("vbios.swidtag", "96.00.9F.00.01", 11),
    ] {
        let r = verify(&rim_text(name)).unwrap();
        assert_eq!((r.name.as_str(), r.version.as_str()), ("GH100", version));
        assert_eq!(r.measurements.len(), 64);
        assert_eq!(r.measurements.iter().filter(|m| m.active).count(), active);
        assert_eq!(r.signers.len(), 3, "leaf, intermediate, root");
        let out = tool(Command::new("xmlsec1").args([
            "--verify",
            "--trusted-pem",
            &format!("{RIM}/root.pem"),
            "--enabled-reference-uris",
            "empty",
            &format!("{RIM}/{name}"),
        ]));
        assert!(out.status.success(), "xmlsec1 rejects {name}: {out:?}");
    }
}

#[test]
fn canonical_forms_match_xmllint() {
    let docs = [
        rim_text("driver.swidtag"),
        rim_text("vbios.swidtag"),
        // Escapes, references, an empty element, attribute order, a
        // redundant and a changed namespace declaration, CDATA, CR LF.
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<a xmlns=\"urn:x\" xmlns:p=\"urn:p\" z=\"1\" p:b=\"&lt;&amp;&quot;&#9;&#10;\" a=\"x\ty\">\r\n  <b xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" q:c=\"2\" p:c=\"3\">t &amp; &#x3C; &gt; ]]&gt;</b>\r\n  <c xmlns=\"\"/><![CDATA[<raw> & ]]><d>&#169;</d>\r\n</a>\r\n".into(),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, doc) in docs.iter().enumerate() {
        let path = dir.path().join(format!("{i}.xml"));
        std::fs::write(&path, doc).unwrap();
        let out = tool(Command::new("xmllint").arg("--c14n11").arg(&path));
        assert!(out.status.success(), "{out:?}");
        let root = rim::xml::parse(doc).unwrap();
        let ours = rim::c14n::document_without(&root, None).unwrap();
        assert_eq!(ours, String::from_utf8(out.stdout).unwrap(), "document {i}");
    }
}

#[test]
fn reference_values_from_the_rims_pass_on_the_real_report() {
    let (driver, vbios) = test_rims();
    let refs = reference(&driver, &vbios);
    assert!(refs.source.contains(&rim::fingerprint(&rim_root())));
    // Through the file format and back: what `cocoon-host import-rims`
    // writes is what `verify-gpu-evidence --reference` reads.
    let refs = ReferenceValues::from_json(refs.to_json().as_bytes()).unwrap();
    let hex = std::fs::read(format!("{NVIDIA}/hopperAttestationReport.txt")).unwrap();
    let report = parse_report(&decode_hex_report(&hex).unwrap(), Trailing::Reject).unwrap();
    let cmp = refs.compare(&report).unwrap();
    // SPDM blocks 2-12 (VBIOS) and 22-41 (driver).
    assert_eq!(cmp.matched, (2..=12).chain(22..=41).collect::<Vec<u8>>());

    // A measurement the RIM accepts only under another value fails.
    let other = test_rims::with_block_26_changed(&driver);
    let refs = reference(&other, &vbios);
    assert!(refs.compare(&report).is_err());
}

#[test]
fn rims_for_other_versions_or_overlapping_measurements_are_refused() {
    let (driver, vbios) = test_rims();
    let r = rim_root();
    assert!(matches!(
        ReferenceValues::from_rims(&driver, &vbios, "550.90.08", VBIOS, &r),
        Err(RimError::Version {
            expected: "driver",
            ..
        })
    ));
    assert!(matches!(
        ReferenceValues::from_rims(&driver, &vbios, DRIVER, "96.00.9f.00.02", &r),
        Err(RimError::Version {
            expected: "VBIOS",
            ..
        })
    ));
    // Swapped files: the versions say which is which.
    assert!(ReferenceValues::from_rims(&vbios, &driver, DRIVER, VBIOS, &r).is_err());
    let mut both = vbios.clone();
    both.measurements.push(RimMeasurement {
        index: 30,
        active: true,
        values: vec![vec![0; 48]],
    });
    assert_eq!(
        ReferenceValues::from_rims(&driver, &both, DRIVER, VBIOS, &r),
        Err(RimError::Conflict { index: 31 })
    );
}

/// Which error a changed RIM must give.
type Expect = fn(&RimError) -> bool;

/// Each change to a signed RIM and the error it must give.
#[test]
fn every_change_to_a_signed_rim_is_caught() {
    let good = rim_text("driver.swidtag");
    let value = |tag: &str| {
        let start = good.find(&format!("<ds:{tag}>")).unwrap() + tag.len() + 5;
        let end = good[start..].find('<').unwrap() + start;
        good[start..end].to_string()
    };
    let flip_b64 = |s: &str| {
        let c = if s.starts_with('A') { "B" } else { "A" };
        format!("{c}{}", &s[1..])
    };
    let sig = value("SignatureValue");
    let digest = value("DigestValue");
    let first_hash = good.find("ns2:Hash0=\"").unwrap() + 11;
    let mut changed_hash = good.clone();
    changed_hash.replace_range(first_hash..first_hash + 1, "f");
    assert_eq!(
        good.matches("<ds:X509Certificate>").count(),
        2,
        "signer and intermediate"
    );
    let inter_start = good.rfind("<ds:X509Certificate>").unwrap();
    let inter_end = good.rfind("</ds:X509Certificate>").unwrap() + "</ds:X509Certificate>".len();
    let without_inter = format!("{}{}", &good[..inter_start], &good[inter_end..]);

    let cases: Vec<(&str, String, Expect)> = vec![
        ("a digest in the payload", changed_hash, |e| {
            *e == RimError::Digest
        }),
        (
            "an inactive measurement made active",
            good.replacen("active=\"False\"", "active=\"True\"", 1),
            |e| *e == RimError::Digest,
        ),
        (
            "the version",
            good.replace(
                "colloquialVersion=\"550.90.07\"",
                "colloquialVersion=\"550.90.08\"",
            ),
            |e| *e == RimError::Digest,
        ),
        (
            "whitespace in the payload",
            good.replacen("    <ns0:Resource", "  <ns0:Resource", 1),
            |e| *e == RimError::Digest,
        ),
        (
            "the signature value",
            good.replace(&sig, &flip_b64(&sig)),
            |e| *e == RimError::Signature,
        ),
        (
            "the digest value (so SignedInfo changed)",
            good.replace(&digest, &flip_b64(&digest)),
            |e| *e == RimError::Digest,
        ),
        (
            "the intermediate certificate left out",
            without_inter,
            |e| matches!(e, RimError::Chain(ChainError::UntrustedRoot { .. })),
        ),
        (
            "a second signature",
            good.replacen(
                "<ns0:Entity",
                "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/><ns0:Entity",
                1,
            ),
            |e| matches!(e, RimError::Malformed(m) if m.contains("more than one Signature")),
        ),
        (
            "another signature algorithm",
            good.replace("xmldsig-more#ecdsa-sha384", "xmldsig-more#rsa-sha256"),
            |e| matches!(e, RimError::Unsupported(_)),
        ),
        (
            "another canonicalization",
            good.replacen(
                "http://www.w3.org/2006/12/xml-c14n11",
                "http://www.w3.org/2001/10/xml-exc-c14n#",
                1,
            ),
            |e| matches!(e, RimError::Unsupported(_)),
        ),
        (
            "a reference to part of the document",
            good.replace("<ds:Reference URI=\"\">", "<ds:Reference URI=\"#payload\">"),
            |e| matches!(e, RimError::Unsupported(_)),
        ),
        (
            "a SignedInfo in another namespace",
            good.replace("<ds:SignedInfo>", "<ds:SignedInfo xmlns:ds=\"urn:other\">"),
            |e| matches!(e, RimError::Unsupported(m) if m.contains("XMLDSig namespace")),
        ),
        (
            "a DOCTYPE",
            format!("<!DOCTYPE x [<!ENTITY e \"v\">]>{good}"),
            |e| matches!(e, RimError::Malformed(m) if m.contains("DOCTYPE")),
        ),
        ("content after the root", format!("{good}<extra/>"), |e| {
            matches!(e, RimError::Malformed(_))
        }),
        ("not XML", "<SoftwareIdentity".into(), |e| {
            matches!(e, RimError::Malformed(_))
        }),
    ];
    for (what, xml, expected) in cases {
        let got = verify(&xml);
        match got {
            Err(e) if expected(&e) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // A comment is not part of the canonical form (without comments):
    // one added where it moves no text still verifies, as xmlsec1 agrees.
    let commented = good.replacen("<ns0:Payload", "<!-- x --><ns0:Payload", 1);
    assert!(verify(&commented).is_ok());

    // Another root, and times outside the chain's validity.
    let nvidia = chain::pinned_root().unwrap();
    assert!(matches!(
        rim::verify(good.as_bytes(), &nvidia, RIM_TIME),
        Err(RimError::Chain(ChainError::UntrustedRoot { .. }))
    ));
    for when in [
        Duration::from_secs(1_577_836_800),
        Duration::from_secs(2_524_608_000),
    ] {
        assert!(matches!(
            rim::verify(good.as_bytes(), &rim_root(), when),
            Err(RimError::Chain(ChainError::Validity { .. }))
        ));
    }
    assert!(matches!(
        rim::verify(&vec![b' '; rim::MAX_RIM_LEN + 1], &rim_root(), RIM_TIME),
        Err(RimError::TooLarge { .. })
    ));
}
