//! `Bundle::open` on small bundles signed here with the `minisign` crate:
//! what it accepts, and that every kind of tampering is refused with the
//! file named. (The end-to-end tests in `tests/` do the same on a real
//! release with the stock tools.)

use std::fs;
use std::path::Path;

use cocoon_image::digest::Sha256;
use cocoon_image::manifest::{
    Artifact, BuildInfo, GitInfo, InitramfsInfo, MANIFEST_SCHEMA, Manifest,
};
use cocoon_release::bundle::{Bundle, ProfileManifest, SIGNATURE_FILE};
use cocoon_release::keys::{Keyring, TrustedKey};
use cocoon_release::signature::ReleaseName;
use cocoon_release::{provenance, sums};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct Signer {
    kp: minisign::KeyPair,
}

impl Signer {
    fn new() -> Self {
        Signer {
            kp: minisign::KeyPair::generate_unencrypted_keypair().unwrap(),
        }
    }
    fn trusted(&self) -> TrustedKey {
        TrustedKey::parse(&self.kp.pk.to_box().unwrap().to_string(), "test.pub").unwrap()
    }
    fn keyring(&self) -> Keyring {
        let mut ring = Keyring::default();
        ring.add(self.trusted()).unwrap();
        ring
    }
    /// Rewrites SHA256SUMS over the folder and signs it with `comment`.
    fn seal(&self, dir: &Path, comment: &str) {
        let mut listed = Vec::new();
        walk(dir, "", &mut listed);
        listed.retain(|p| p != sums::FILE && p != SIGNATURE_FILE);
        let entries: Vec<_> = listed
            .iter()
            .map(|p| (p.clone(), Sha256::of_file(&dir.join(p)).unwrap().0))
            .collect();
        let text = sums::write(&entries);
        fs::write(dir.join(sums::FILE), &text).unwrap();
        let sig = minisign::sign(
            Some(&self.kp.pk),
            &self.kp.sk,
            text.as_bytes(),
            Some(comment),
            None,
        )
        .unwrap();
        fs::write(dir.join(SIGNATURE_FILE), sig.into_string()).unwrap();
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    for e in fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            walk(root, &child, out);
        } else {
            out.push(child);
        }
    }
}

fn comment() -> String {
    ReleaseName {
        version: "1.0.0".into(),
        commit: COMMIT.into(),
        profiles: vec!["cpu".into()],
    }
    .trusted_comment()
}

/// A well-formed one-profile bundle, signed by `signer`.
fn bundle(dir: &Path, signer: &Signer) {
    fs::create_dir_all(dir.join("cpu")).unwrap();
    let mut artifacts = Vec::new();
    for (name, bytes) in [
        ("vmlinuz", &b"kernel"[..]),
        ("initrd.img", b"initrd"),
        ("cmdline", b"console=ttyS0"),
        ("OVMF.fd", b"firmware"),
    ] {
        fs::write(dir.join("cpu").join(name), bytes).unwrap();
        artifacts.push(Artifact {
            name: name.into(),
            sha256: Sha256::of(bytes),
            size: bytes.len() as u64,
        });
    }
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        name: "cocoon".into(),
        version: "0.1.0".into(),
        profile: "cpu".into(),
        git: GitInfo {
            commit: COMMIT.into(),
            dirty: false,
        },
        source_date_epoch: 1,
        build: BuildInfo {
            rustc: "rustc".into(),
            cargo: "cargo".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            cc: "gcc".into(),
            libc: "glibc".into(),
            cargo_profile: "guest".into(),
            cargo_features: vec![],
            rustflags: vec![],
            firmware_tools: vec![],
        },
        cmdline: "console=ttyS0".into(),
        inputs: vec![],
        sources: vec![],
        wheels: vec![],
        artifacts,
        initramfs: InitramfsInfo {
            compression: "zstd".into(),
            uncompressed_size: 6,
            uncompressed_sha256: Sha256::of(b"cpio"),
            files: vec![],
        },
        model: None,
        measurements: vec![],
    };
    let json = manifest.to_json();
    fs::write(dir.join("cpu/manifest.json"), &json).unwrap();
    let profiles = [ProfileManifest {
        name: "cpu".into(),
        manifest,
        manifest_sha256: Sha256::of(json.as_bytes()),
    }];
    fs::write(
        dir.join(provenance::FILE),
        provenance::statement("1.0.0", &profiles, provenance::LOCAL_BUILDER),
    )
    .unwrap();
    signer.seal(dir, &comment());
}

fn refused(dir: &Path, ring: &Keyring) -> String {
    Bundle::open(dir, ring).unwrap_err().to_string()
}

#[test]
fn opens_a_good_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Signer::new();
    bundle(tmp.path(), &s);
    let b = Bundle::open(tmp.path(), &s.keyring()).unwrap();
    assert_eq!(b.name.version, "1.0.0");
    assert_eq!(b.name.commit, COMMIT);
    assert_eq!(b.key_id, s.trusted().id);
    assert_eq!(b.profile("cpu").unwrap().manifest.git.commit, COMMIT);
    assert_eq!(b.files.len(), 6);
}

#[test]
fn a_changed_added_or_missing_file_is_named() {
    let s = Signer::new();
    for file in ["cpu/vmlinuz", "cpu/manifest.json", "provenance.intoto.json"] {
        let tmp = tempfile::tempdir().unwrap();
        bundle(tmp.path(), &s);
        let p = tmp.path().join(file);
        let mut bytes = fs::read(&p).unwrap();
        bytes[0] ^= 1;
        fs::write(&p, bytes).unwrap();
        let err = refused(tmp.path(), &s.keyring());
        assert!(err.contains(file) && err.contains("changed"), "{err}");
    }
    let tmp = tempfile::tempdir().unwrap();
    bundle(tmp.path(), &s);
    fs::write(tmp.path().join("cpu/extra"), b"x").unwrap();
    let err = refused(tmp.path(), &s.keyring());
    assert!(err.contains("cpu/extra") && err.contains("added"), "{err}");
    fs::remove_file(tmp.path().join("cpu/extra")).unwrap();
    fs::remove_file(tmp.path().join("cpu/OVMF.fd")).unwrap();
    let err = refused(tmp.path(), &s.keyring());
    assert!(
        err.contains("cpu/OVMF.fd") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Signer::new();
    bundle(tmp.path(), &s);
    let kernel = tmp.path().join("cpu/vmlinuz");
    let real = tmp.path().join("../elsewhere-vmlinuz");
    fs::rename(&kernel, &real).unwrap();
    std::os::unix::fs::symlink(&real, &kernel).unwrap();
    let err = refused(tmp.path(), &s.keyring());
    assert!(
        err.contains("cpu/vmlinuz") && err.contains("symlink"),
        "{err}"
    );
}

#[test]
fn signatures_unsigned_untrusted_edited_revoked() {
    let s = Signer::new();
    let tmp = tempfile::tempdir().unwrap();
    bundle(tmp.path(), &s);
    let other = Signer::new();
    let err = refused(tmp.path(), &other.keyring());
    assert!(
        err.contains(SIGNATURE_FILE) && err.contains("not trusted"),
        "{err}"
    );

    let sig = tmp.path().join(SIGNATURE_FILE);
    let text = fs::read_to_string(&sig).unwrap();
    fs::write(&sig, text.replace("cocoon 1.0.0 ", "cocoon 1.0.1 ")).unwrap();
    let err = refused(tmp.path(), &s.keyring());
    assert!(
        err.contains(SIGNATURE_FILE) && err.contains("does not verify"),
        "{err}"
    );

    fs::remove_file(&sig).unwrap();
    let err = refused(tmp.path(), &s.keyring());
    assert!(
        err.contains(SIGNATURE_FILE) && err.contains("unsigned"),
        "{err}"
    );

    bundle(tmp.path(), &s);
    let revoked = format!("{}  test\n", s.trusted().id);
    let pubkey = s.kp.pk.to_box().unwrap().to_string();
    let ring = Keyring::from_texts(&[("k.pub", &pubkey)], &revoked).unwrap();
    let err = refused(tmp.path(), &ring);
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn signed_but_inconsistent_bundles_are_refused() {
    let s = Signer::new();
    // A manifest that records another commit than the signature.
    let tmp = tempfile::tempdir().unwrap();
    bundle(tmp.path(), &s);
    let m = tmp.path().join("cpu/manifest.json");
    let text = fs::read_to_string(&m).unwrap();
    fs::write(&m, text.replace(COMMIT, &"f".repeat(40))).unwrap();
    s.seal(tmp.path(), &comment());
    let err = refused(tmp.path(), &s.keyring());
    assert!(
        err.contains("cpu/manifest.json") && err.contains("signature names commit"),
        "{err}"
    );

    // A file the format does not know, even listed and signed.
    let tmp = tempfile::tempdir().unwrap();
    bundle(tmp.path(), &s);
    fs::write(tmp.path().join("install.sh"), b"#!/bin/sh").unwrap();
    s.seal(tmp.path(), &comment());
    let err = refused(tmp.path(), &s.keyring());
    assert!(
        err.contains("install.sh") && err.contains("not part of"),
        "{err}"
    );

    // A signature over a comment that is not a release name.
    let tmp = tempfile::tempdir().unwrap();
    bundle(tmp.path(), &s);
    s.seal(tmp.path(), "timestamp:1700000000");
    let err = refused(tmp.path(), &s.keyring());
    assert!(
        err.contains(SIGNATURE_FILE) && err.contains("trusted comment"),
        "{err}"
    );
}
