//! Reproducibility, and the signed release that rests on it: one build
//! signs a release with `cargo xtask release`, and `cargo xtask verify`
//! rebuilds the recorded commit in a clean worktree at another path, with
//! an empty target folder, another TMPDIR and umask, and compares every
//! byte and measurement. The two builds are also compared here file by
//! file, with the offset of any difference. The release checks (stock
//! tools, boot, tampering, a changed `/init`) then run on that release:
//! see `release.rs`.
//!
//! The releaser is this checkout when it is a clean commit (CI's case): its
//! images were built from an empty target folder by the tests before this
//! one, and the release reuses them. A checkout with uncommitted changes
//! cannot be released, so then a snapshot of it is committed in a
//! temporary folder and everything is built there from scratch (slower).
//! Either way the verify worktree starts empty. Set
//! COCOON_SKIP_REPRODUCIBILITY=1 to skip it locally (`cargo xtask test
//! --quick`); CI never does.

#[path = "release.rs"]
mod release;

use std::process::Command;
use std::time::Instant;

use cocoon_tests::checkout::copy_worktree;
use cocoon_tests::release::{minisign_key, require_minisign, text, xtask};
use cocoon_tests::{first_difference, root};

#[test]
fn a_release_verifies_byte_for_byte_against_a_rebuild_from_nothing() {
    if std::env::var_os("COCOON_SKIP_REPRODUCIBILITY").is_some() {
        eprintln!("skipped: COCOON_SKIP_REPRODUCIBILITY is set");
        return;
    }
    cocoon_tests::require_qemu();
    require_minisign();
    let tmp = tempfile::tempdir().unwrap();
    let releaser = if is_clean(&root()) {
        root()
    } else {
        eprintln!("this checkout has uncommitted changes: releasing a snapshot of it");
        let snapshot = tmp.path().join("snapshot/at/another/path");
        copy_worktree(&root(), &snapshot);
        snapshot
    };
    // The auditor's rebuild starts from nothing, whatever an earlier
    // verify left here.
    let verify_dir = releaser.join("target/cocoon/verify");
    if verify_dir.exists() {
        std::fs::remove_dir_all(&verify_dir).unwrap();
    }
    let key = minisign_key(tmp.path(), "release", Some("correct horse battery"));

    // The releaser: a password-protected key from the environment, as CI has it.
    let secret = std::fs::read_to_string(&key.secret).unwrap();
    let out_dir = tmp.path().join("released");
    let started = Instant::now();
    let out = xtask(
        &releaser,
        &tmp.path().join("tmp-release"),
        "022",
        &[
            "release",
            "--version",
            "0.0.0-test",
            "--out",
            &out_dir.display().to_string(),
        ],
        &[
            ("COCOON_RELEASE_KEY", &secret),
            ("COCOON_RELEASE_KEY_PASSWORD", "correct horse battery"),
        ],
    );
    let log = text(&out.stderr);
    assert!(
        out.status.success(),
        "release in {} failed:\n{log}",
        releaser.display()
    );
    eprintln!("release: {:.0} s", started.elapsed().as_secs_f64());
    let secret_line = secret.lines().nth(1).unwrap();
    assert!(
        !log.contains(secret_line) && !log.contains("correct horse"),
        "the secret key or its password reached the log"
    );

    // The auditor: the recorded commit, rebuilt from nothing.
    let bundle = out_dir.join("cocoon-0.0.0-test");
    let started = Instant::now();
    let (code, stdout, stderr) = release::verify(&releaser, tmp.path(), &bundle, &key.public);
    eprintln!("verify (cold): {:.0} s", started.elapsed().as_secs_f64());
    // Every profile: the GPU one's NVIDIA modules are compiled in each
    // build, at another path.
    let pairs = ["cpu", "gpu"].map(|profile| {
        (
            releaser.join("target/cocoon").join(profile),
            verify_dir.join("out").join(profile),
        )
    });
    for ((img_a, img_b), name) in pairs.iter().flat_map(|pair| {
        [
            "vmlinuz",
            "initrd.img",
            "cmdline",
            "OVMF.fd",
            "manifest.json",
        ]
        .map(|name| (pair, name))
    }) {
        let (Ok(x), Ok(y)) = (
            std::fs::read(img_a.join(name)),
            std::fs::read(img_b.join(name)),
        ) else {
            panic!("verify did not rebuild {name}:\n{stderr}");
        };
        if let Some(at) = first_difference(&x, &y) {
            // Keep both trees for the post-mortem.
            let kept = tmp.keep();
            panic!(
                "kept in {}:\n{name} differs between the release and the rebuild at byte {at} ({} vs {} bytes); compare with \
                 `diffoscope {} {}`",
                kept.display(),
                x.len(),
                y.len(),
                img_a.join(name).display(),
                img_b.join(name).display()
            );
        }
    }
    assert_eq!(code, Some(0), "verify:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("cpu/initrd.img")
            && stdout.contains("gpu/initrd.img")
            && !stdout.contains("MISMATCH"),
        "{stdout}"
    );
    let manifest = cocoon_image::manifest::Manifest::load(&pairs[0].0).unwrap();
    assert!(!manifest.git.dirty, "the release is of a clean commit");
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

    let r = release::Release {
        tarball: out_dir.join("cocoon-0.0.0-test.tar"),
        bundle,
        key,
        commit: manifest.git.commit.clone(),
    };
    release::stock_tools_accept(&r);
    release::boots(&r, tmp.path());
    release::tampering_is_refused(&r, &releaser, tmp.path());
    let started = Instant::now();
    release::changed_init_is_a_mismatch(&r, &releaser, tmp.path());
    eprintln!(
        "changed /init found (warm verify): {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// Whether `dir` is a commit as it stands (what `xtask release` asks).
fn is_clean(dir: &std::path::Path) -> bool {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["status", "--porcelain", "--untracked-files=normal"])
        .output()
        .unwrap();
    assert!(out.status.success(), "git status in {}", dir.display());
    out.stdout.is_empty()
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
