//! Helpers for the cross-crate tests: building the image once, running the
//! real `cargo xtask` and `cocoon-host`, and a TLS client that pins the
//! guest's certificate.

pub mod checkout;
pub mod devnet;
pub mod release;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Runs `cargo xtask <args>` in `dir` (a checkout) and returns its output.
pub fn xtask_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO"))
        .current_dir(dir)
        .args(["xtask"])
        .args(args)
        .output()
        .expect("running cargo xtask")
}

/// Builds the workspace's CPU image once per test process; returns its directory.
pub fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = xtask_in(&root(), &["build"]);
        assert!(
            out.status.success(),
            "cargo xtask build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root().join("target/cocoon/cpu")
    })
}

/// The pinned demo model's pack (`cargo xtask model-pack`), made once.
pub fn model_pack() -> &'static Path {
    static PACK: OnceLock<PathBuf> = OnceLock::new();
    PACK.get_or_init(|| {
        let out = xtask_in(&root(), &["model-pack", "--model", MODEL]);
        assert!(
            out.status.success(),
            "cargo xtask model-pack failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root().join(format!("target/cocoon/models/{MODEL}.pack"))
    })
}

/// The model the tests serve (pinned in image/models.lock).
pub const MODEL: &str = "smollm2-135m-instruct";

/// An image built with [`model_pack`], in its own directory.
pub fn model_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let pack = model_pack().to_str().unwrap().to_string();
        let out = xtask_in(
            &root(),
            &[
                "build",
                "--model",
                &pack,
                "--out",
                "target/cocoon/cpu-model",
            ],
        );
        assert!(
            out.status.success(),
            "cargo xtask build --model failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root().join("target/cocoon/cpu-model")
    })
}

/// The guest binary `cargo xtask build` made (the image's `/init`), which
/// also runs the same engine on the host.
pub fn guest_bin() -> PathBuf {
    model_image();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root().join("target"));
    target.join("x86_64-unknown-linux-gnu/guest/cocoon-guest")
}

/// The Python of `target/cocoon/venv` (with `openai`, `sev-snp-measure`).
pub fn venv_python() -> PathBuf {
    let python = root().join("target/cocoon/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `cargo xtask setup`",
        python.display()
    );
    python
}

/// The `cocoon-host` binary, built once per test process.
pub fn host_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .current_dir(root())
            .args(["build", "--quiet", "--locked", "-p", "cocoon-host"])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building cocoon-host failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or(root().join("target"));
        target.join("debug/cocoon-host")
    })
}

/// Runs `cocoon-host boot --image IMAGE --name NAME --run-dir RUN_DIR
/// <extra>` to completion (for boots that must be refused).
pub fn host_boot(image: &Path, run_dir: &Path, name: &str, extra: &[&str]) -> Output {
    Command::new(host_bin())
        .arg("boot")
        .arg("--image")
        .arg(image)
        .args(["--name", name, "--run-dir"])
        .arg(run_dir)
        .args(extra)
        .output()
        .expect("running cocoon-host")
}

/// Fails the test with the install command when QEMU is missing: the boot
/// tests are never skipped (CI always runs them).
pub fn require_qemu() {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "qemu-system-x86_64 is missing: run `cargo xtask setup` as root (the boot tests need it)"
    );
}

/// The Python with `sev-snp-measure` that `cargo xtask setup` installs.
pub fn python_with_sev_snp_measure() -> PathBuf {
    let python = root().join("target/cocoon/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `cargo xtask setup` (it installs sev-snp-measure for the cross-checks)",
        python.display()
    );
    python
}

/// Copies an image directory (its five files) into `dest`.
pub fn copy_image(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for name in [
        "vmlinuz",
        "initrd.img",
        "cmdline",
        "OVMF.fd",
        "manifest.json",
    ] {
        std::fs::copy(src.join(name), dest.join(name)).unwrap();
    }
}

/// Flips one bit of a file, in the middle.
pub fn flip_byte(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The first offset where two byte strings differ, for failure messages.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}
