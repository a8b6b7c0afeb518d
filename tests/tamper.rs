//! Tampering is refused before anything boots: a flipped byte in an image
//! artifact (checked by `cocoon-host`) or in a cached input (checked by
//! `cargo xtask build`), with a message naming the file.

use std::path::Path;
use std::process::Command;

use cocoon_image::digest::Sha256;
use cocoon_image::lock::InputsLock;
use cocoon_tests::{copy_image, flip_byte, host_boot, image, root};

fn boot_tampered(file: &str) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("image");
    copy_image(image(), &img);
    flip_byte(&img.join(file));
    let out = host_boot(
        &img,
        &tmp.path().join("run"),
        "tamper",
        &["--dev", "--port", "0"],
    );
    assert!(!out.status.success(), "a tampered {file} booted");
    (String::from_utf8_lossy(&out.stderr).into_owned(), tmp)
}

#[test]
fn a_flipped_byte_in_an_artifact_is_refused_before_qemu_starts() {
    for file in ["initrd.img", "vmlinuz", "cmdline", "OVMF.fd"] {
        let (err, tmp) = boot_tampered(file);
        assert!(
            err.contains(file) && err.contains("does not match"),
            "{file}: {err}"
        );
        assert!(err.contains("refusing to boot"), "{err}");
        assert!(
            !tmp.path().join("run/serial.log").exists(),
            "QEMU ran for a tampered {file}"
        );
    }
}

#[test]
fn a_manifest_that_lies_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("image");
    copy_image(image(), &img);
    let manifest_path = img.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let m = cocoon_image::manifest::Manifest::parse(&text, "x").unwrap();
    let real = m.artifact("initrd.img").unwrap().sha256.to_hex();
    std::fs::write(&manifest_path, text.replace(&real, &"ab".repeat(32))).unwrap();
    let out = host_boot(
        &img,
        &tmp.path().join("run"),
        "liar",
        &["--dev", "--port", "0"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("initrd.img") && err.contains("does not match"),
        "{err}"
    );
}

/// Copies the cached blobs of the CPU image's pinned input files (the
/// kernel's) into a private cache.
fn private_cache(dest: &Path) -> InputsLock {
    image(); // populates the shared cache
    let lock = InputsLock::load(&root().join("image/inputs.lock")).unwrap();
    let shared = cocoon_image::cache::Cache::open_default().unwrap();
    let private = cocoon_image::cache::Cache::at(dest);
    let kernel = lock
        .package(cocoon_image::profile::CPU.kernel_input)
        .unwrap();
    for f in &kernel.files {
        let blob = shared
            .get(&f.sha256, &f.path)
            .unwrap()
            .expect("the build cached every pinned file");
        private.put_file(&blob, &f.sha256, &f.path).unwrap();
    }
    lock
}

#[test]
fn a_flipped_byte_in_a_cached_input_is_refused_with_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let lock = private_cache(&cache_dir);
    let vmlinuz = lock
        .package(cocoon_image::profile::CPU.kernel_input)
        .unwrap()
        .files
        .iter()
        .find(|f| f.path.starts_with("boot/vmlinuz-"))
        .unwrap();
    let blob = cocoon_image::cache::Cache::at(&cache_dir).blob_path(&vmlinuz.sha256);
    flip_byte(&blob);
    let (actual, _) = Sha256::of_file(&blob).unwrap();

    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .env("COCOON_CACHE_DIR", &cache_dir)
        .args(["xtask", "build", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "built from a corrupted cache");
    assert!(
        err.contains("corrupted") && err.contains(&blob.display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&vmlinuz.sha256.to_hex()) && err.contains(&actual.to_hex()),
        "{err}"
    );
    assert!(
        err.contains(&vmlinuz.path),
        "the message names the input: {err}"
    );
    assert!(!tmp.path().join("out/initrd.img").exists());
}
