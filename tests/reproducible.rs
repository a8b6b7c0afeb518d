//! Reproducibility: two builds from two independent checkouts, at different
//! paths, with different TMPDIR and umask, give byte-identical artifacts
//! and manifests.
//!
//! Each checkout builds everything from scratch in its own target directory
//! (only the crate registry and the input cache are shared, as on any
//! machine). Set COCOON_SKIP_REPRODUCIBILITY=1 to skip it locally
//! (`cargo xtask test --quick`); CI never does.

use std::path::Path;
use std::process::Command;

use cocoon_tests::checkout::copy_worktree;
use cocoon_tests::{first_difference, root};

fn build(checkout: &Path, tmpdir: &Path, umask: &str) {
    std::fs::create_dir_all(tmpdir).unwrap();
    let out = Command::new("sh")
        .current_dir(checkout)
        .env("TMPDIR", tmpdir)
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO", env!("CARGO"))
        .args([
            "-c",
            &format!("umask {umask} && exec \"$CARGO\" xtask build"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build in {} failed:\n{}",
        checkout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_checkouts_build_identical_images() {
    if std::env::var_os("COCOON_SKIP_REPRODUCIBILITY").is_some() {
        eprintln!("skipped: COCOON_SKIP_REPRODUCIBILITY is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("second/checkout/at/a/deeper/path");
    copy_worktree(&root(), &a);
    copy_worktree(&root(), &b);
    build(&a, &tmp.path().join("tmp-a"), "022");
    build(&b, &tmp.path().join("tmp-b"), "077");
    let (img_a, img_b) = (a.join("target/cocoon/cpu"), b.join("target/cocoon/cpu"));
    for name in ["vmlinuz", "initrd.img", "cmdline", "manifest.json"] {
        let (x, y) = (
            std::fs::read(img_a.join(name)).unwrap(),
            std::fs::read(img_b.join(name)).unwrap(),
        );
        if let Some(at) = first_difference(&x, &y) {
            // Keep both trees for the post-mortem.
            let kept = tmp.keep();
            panic!(
                "kept in {}:\n{name} differs between the two checkouts at byte {at} ({} vs {} bytes); compare with \
                 `diffoscope {} {}`",
                kept.display(),
                x.len(),
                y.len(),
                img_a.join(name).display(),
                img_b.join(name).display()
            );
        }
    }
    let manifest = cocoon_image::manifest::Manifest::load(&img_a).unwrap();
    assert!(!manifest.git.dirty, "the checkouts are clean commits");
    // The /init inside differs from nothing else: say so explicitly.
    let init = manifest
        .initramfs
        .files
        .iter()
        .find(|f| f.path == "init")
        .unwrap();
    eprintln!(
        "reproduced: initrd.img {} / init sha256 {}",
        manifest.artifact("initrd.img").unwrap().sha256,
        init.sha256.unwrap()
    );
}

/// The SNP firmware, built a second time from scratch (a private cache
/// without the firmware, another TMPDIR and umask), is byte-identical to
/// the one in the image.
#[test]
fn the_firmware_builds_byte_identical_twice() {
    if std::env::var_os("COCOON_SKIP_REPRODUCIBILITY").is_some() {
        eprintln!("skipped: COCOON_SKIP_REPRODUCIBILITY is set");
        return;
    }
    let first = std::fs::read(cocoon_tests::image().join("OVMF.fd")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The pinned inputs, but no built firmware: the build must redo it.
    let lock = cocoon_image::lock::InputsLock::load(&root().join("image/inputs.lock")).unwrap();
    let shared = cocoon_image::cache::Cache::open_default().unwrap();
    let private = cocoon_image::cache::Cache::at(tmp.path().join("cache"));
    let pinned = lock
        .packages
        .iter()
        .flat_map(|p| &p.files)
        .chain(lock.sources.iter().flat_map(|s| &s.files));
    for f in pinned {
        let blob = shared
            .get(&f.sha256, &f.path)
            .unwrap()
            .expect("the first build cached every input");
        private.put_file(&blob, &f.sha256, &f.path).unwrap();
    }
    let tmpdir = tmp.path().join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let out = Command::new("sh")
        .current_dir(root())
        .env("COCOON_CACHE_DIR", tmp.path().join("cache"))
        .env("TMPDIR", &tmpdir)
        .env("CARGO", env!("CARGO"))
        .args([
            "-c",
            &format!(
                "umask 077 && exec \"$CARGO\" xtask build --out {}",
                tmp.path().join("out").display()
            ),
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("building the SNP firmware"),
        "the firmware came from a cache:\n{log}"
    );
    let second = std::fs::read(tmp.path().join("out/OVMF.fd")).unwrap();
    if let Some(at) = first_difference(&first, &second) {
        let kept = tmp.keep();
        panic!(
            "OVMF.fd differs at byte {at} between two builds (kept in {})",
            kept.display()
        );
    }
}
