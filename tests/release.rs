//! The checks of a signed release, run by `reproducible.rs` on the release
//! it made and verified (the builds are the expensive part: they are made
//! once, there).
//!
//! - the stock tools accept it: `minisign -V`, `sha256sum -c`, the in-toto
//!   Python bindings on the provenance, `tar` on the tarball;
//! - `cocoon-host boot --release` boots it;
//! - every kind of tampering is refused by `boot --release` and `verify`,
//!   naming the file; a signature by the stock CLI is accepted;
//! - a release whose `/init` the commit does not build fails `verify` with
//!   a mismatch naming `initrd.img` and the cpio entry.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cocoon_image::initramfs;

use cocoon_tests::release::{
    Key, bundle_files, copy_tree, host_boot_release, minisign_key, minisign_sign, rewrite_sums,
    text, trusted_comment, xtask,
};
use cocoon_tests::vm::BootedVm;

pub struct Release {
    pub bundle: PathBuf,
    pub tarball: PathBuf,
    pub key: Key,
    pub commit: String,
}

/// `cargo xtask verify` in the auditor's checkout; returns (exit code, stdout, stderr).
pub fn verify(
    auditor: &Path,
    tmp: &Path,
    bundle: &Path,
    pubkey: &Path,
) -> (Option<i32>, String, String) {
    let out = xtask(
        auditor,
        &tmp.join("tmp-verify"),
        "077",
        &[
            "verify",
            "--release",
            &bundle.display().to_string(),
            "--pubkey",
            &pubkey.display().to_string(),
        ],
        &[],
    );
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

pub fn stock_tools_accept(r: &Release) {
    let out = Command::new("minisign")
        .arg("-Vm")
        .arg(r.bundle.join("SHA256SUMS"))
        .arg("-p")
        .arg(&r.key.public)
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(
        out.status.success(),
        "minisign -V: {said}{}",
        text(&out.stderr)
    );
    assert!(
        said.contains(&format!(
            "cocoon 0.0.0-test commit {} profiles cpu,gpu",
            r.commit
        )),
        "the trusted comment names version and commit: {said}"
    );

    let out = Command::new("sha256sum")
        .current_dir(&r.bundle)
        .args(["--strict", "-c", "SHA256SUMS"])
        .output()
        .unwrap();
    assert!(out.status.success(), "sha256sum -c: {}", text(&out.stdout));

    let out = Command::new(cocoon_tests::python_with_sev_snp_measure())
        .arg(cocoon_tests::root().join("tests/tools/check_provenance.py"))
        .arg(&r.bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "in-toto bindings: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The tarball holds exactly the folder, owned by 0:0, one timestamp.
    let out = Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&r.tarball)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = text(&out.stdout);
    let times: std::collections::BTreeSet<&str> = listing
        .lines()
        .map(|l| {
            assert!(l.contains(" 0/0 "), "owner is not 0/0: {l}");
            l.split_whitespace().nth(4).unwrap()
        })
        .collect();
    assert_eq!(times.len(), 1, "one timestamp for all entries: {listing}");
    let names: Vec<String> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let path = l.split_whitespace().last().unwrap();
            path.strip_prefix("cocoon-0.0.0-test/").unwrap().to_string()
        })
        .collect();
    assert_eq!(
        names,
        bundle_files(&r.bundle),
        "the tarball holds the folder"
    );
}

/// `boot --dev --release` wants a profile named when the release has
/// several, then boots that one and stops it cleanly.
pub fn boots(r: &Release, tmp: &Path) {
    let pubkey = r.key.public.display().to_string();
    let out = host_boot_release(
        &r.bundle,
        &tmp.join("no-profile"),
        &["--dev", "--print-qemu-args", "--pubkey", &pubkey],
    );
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("several profiles (cpu, gpu): choose one with --profile"),
        "{err}"
    );
    let mut vm = BootedVm::boot_with(
        &[
            "--release",
            &r.bundle.display().to_string(),
            "--profile",
            "cpu",
            "--pubkey",
            &pubkey,
        ],
        "release",
    );
    let (status, _) = vm.get("/health", &vm.cert_sha256.clone()).unwrap();
    assert_eq!(status, 200);
    assert!(
        vm.events.iter().any(|e| e["event"] == "release"),
        "the release check is reported: {:#?}",
        vm.events
    );
    vm.signal(libc::SIGINT);
    assert!(vm.wait(Duration::from_secs(90)).success());
}

/// One flipped byte in each file, an unsigned bundle, a signature by an
/// untrusted key, an edited trusted comment, an added and a removed file:
/// `boot --release` and `verify` refuse each, naming the file. Then the
/// stock CLI's signature (by a key given with --pubkey) is accepted.
pub fn tampering_is_refused(r: &Release, auditor: &Path, tmp: &Path) {
    let stranger = minisign_key(tmp, "stranger", None);
    let cli = minisign_key(tmp, "cli", None);
    let comment = trusted_comment(&r.bundle);
    type Tamper = Box<dyn Fn(&Path)>;
    let mut cases: Vec<(String, Tamper, String)> = Vec::new();
    for file in bundle_files(&r.bundle) {
        let f = file.clone();
        cases.push((
            format!("a flipped byte in {file}"),
            Box::new(move |b: &Path| cocoon_tests::flip_byte(&b.join(&f))),
            // A changed SHA256SUMS breaks the signature over it.
            if file == "SHA256SUMS" {
                "SHA256SUMS.minisig".into()
            } else {
                file
            },
        ));
    }
    cases.push((
        "no signature".into(),
        Box::new(|b: &Path| std::fs::remove_file(b.join("SHA256SUMS.minisig")).unwrap()),
        "SHA256SUMS.minisig".into(),
    ));
    let c = comment.clone();
    cases.push((
        "a signature by an untrusted key".into(),
        Box::new(move |b: &Path| minisign_sign(b, &stranger, &c)),
        "SHA256SUMS.minisig".into(),
    ));
    cases.push((
        "an edited trusted comment".into(),
        Box::new(|b: &Path| {
            let p = b.join("SHA256SUMS.minisig");
            let s = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, s.replace("cocoon 0.0.0-test ", "cocoon 9.9.9 ")).unwrap();
        }),
        "SHA256SUMS.minisig".into(),
    ));
    cases.push((
        "an added file".into(),
        Box::new(|b: &Path| std::fs::write(b.join("cpu/extra.ko"), b"x").unwrap()),
        "cpu/extra.ko".into(),
    ));
    cases.push((
        "a removed file".into(),
        Box::new(|b: &Path| std::fs::remove_file(b.join("cpu/OVMF.fd")).unwrap()),
        "cpu/OVMF.fd".into(),
    ));
    let pubkey = r.key.public.display().to_string();
    for (i, (what, tamper, names)) in cases.iter().enumerate() {
        let bundle = tmp.join(format!("tampered-{i}/cocoon-0.0.0-test"));
        copy_tree(&r.bundle, &bundle);
        tamper(&bundle);
        let run = tmp.join(format!("tampered-{i}/run"));
        let out = host_boot_release(
            &bundle,
            &run,
            &["--dev", "--port", "0", "--pubkey", &pubkey],
        );
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what}: boot --release accepted it");
        assert!(
            err.contains(names) && err.contains("refusing to boot"),
            "{what}: boot --release does not name {names}: {err}"
        );
        assert!(!run.join("serial.log").exists(), "{what}: QEMU ran");
        let (code, _, err) = verify(auditor, tmp, &bundle, &r.key.public);
        assert_eq!(
            code,
            Some(2),
            "{what}: verify did not say it could not check: {err}"
        );
        assert!(
            err.contains(names),
            "{what}: verify does not name {names}: {err}"
        );
        // Each copy holds both profiles (about 70 MB): not all at once.
        std::fs::remove_dir_all(tmp.join(format!("tampered-{i}"))).unwrap();
    }

    // The stock CLI's signature, with a key trusted on the command line.
    let bundle = tmp.join("cli-signed/cocoon-0.0.0-test");
    copy_tree(&r.bundle, &bundle);
    minisign_sign(&bundle, &cli, &comment);
    let run = tmp.join("cli-signed/run");
    let cli_pub = cli.public.display().to_string();
    let out = host_boot_release(
        &bundle,
        &run,
        &[
            "--dev",
            "--print-qemu-args",
            "--profile",
            "gpu",
            "--pubkey",
            &cli_pub,
        ],
    );
    assert!(
        out.status.success(),
        "the CLI's signature: {}",
        text(&out.stderr)
    );
    let out = host_boot_release(
        &bundle,
        &run,
        &["--dev", "--print-qemu-args", "--pubkey", &pubkey],
    );
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not trusted") && err.contains("SHA256SUMS.minisig"),
        "a key nobody trusts: {err}"
    );
}

/// An `/init` the signed commit does not build, in an otherwise
/// well-formed bundle signed by the trusted key (a compromised build
/// machine, or a stolen key): `verify` finds it and names `initrd.img` and
/// the cpio entry `init`. The forgery is the release's own `/init` with one
/// of its messages changed in place (same length, so the archive stays
/// well-formed), recompressed, with the manifest, the provenance and the
/// checksums rewritten to agree and signed again: everything the signature
/// covers is consistent, and only the rebuild can tell. (Patching the
/// binary rather than building other source tests the same comparison
/// without a third compile of `/init`.)
pub fn changed_init_is_a_mismatch(r: &Release, auditor: &Path, tmp: &Path) {
    let bundle = tmp.join("forged/cocoon-0.0.0-test");
    copy_tree(&r.bundle, &bundle);
    let initrd = bundle.join("cpu/initrd.img");
    let manifest_path = bundle.join("cpu/manifest.json");
    let old_initrd = sha256_hex(&initrd);
    let old_manifest = sha256_hex(&manifest_path);

    let mut cpio = initramfs::decompress(&std::fs::read(&initrd).unwrap()).unwrap();
    let (from, to) = (
        &b"configuring the network"[..],
        &b"configuring the NETWORK"[..],
    );
    let hits: Vec<usize> = cpio
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "the guest's message moved or repeats: update this test"
    );
    cpio[hits[0]..hits[0] + to.len()].copy_from_slice(to);
    let forged = initramfs::compress(&cpio, 19).unwrap();
    std::fs::write(&initrd, &forged).unwrap();

    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let artifact = manifest["artifacts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["name"] == "initrd.img")
        .unwrap();
    artifact["sha256"] = sha256_hex(&initrd).into();
    artifact["size"] = forged.len().into();
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let prov = bundle.join("provenance.intoto.json");
    let p = std::fs::read_to_string(&prov).unwrap();
    std::fs::write(
        &prov,
        p.replace(&old_initrd, &sha256_hex(&initrd))
            .replace(&old_manifest, &sha256_hex(&manifest_path)),
    )
    .unwrap();
    rewrite_sums(&bundle);
    minisign_sign(&bundle, &r.key, &trusted_comment(&r.bundle));

    let (code, stdout, stderr) = verify(auditor, tmp, &bundle, &r.key.public);
    assert_eq!(
        code,
        Some(1),
        "verify must report a mismatch:\n{stdout}\n{stderr}"
    );
    let initrd_row = stdout
        .lines()
        .find(|l| l.starts_with("cpu/initrd.img "))
        .unwrap_or_else(|| panic!("no initrd.img row:\n{stdout}"));
    assert!(initrd_row.ends_with("MISMATCH"), "{stdout}");
    assert!(
        stdout.contains("cpu/initrd.img differs: first difference at byte")
            && stdout.contains("cpio entry init (contents"),
        "the mismatch names the offset and the cpio entry:\n{stdout}"
    );
    assert!(stdout.contains("diffoscope "), "{stdout}");
    let vmlinuz_row = stdout
        .lines()
        .find(|l| l.starts_with("cpu/vmlinuz "))
        .unwrap();
    assert!(vmlinuz_row.ends_with("match"), "{stdout}");
}

fn sha256_hex(path: &Path) -> String {
    cocoon_image::digest::Sha256::of_file(path)
        .unwrap()
        .0
        .to_hex()
}
