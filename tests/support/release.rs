//! Helpers for the release tests: throwaway minisign keys made with the
//! stock `minisign` tool, `cargo xtask release`/`verify` in a checkout,
//! `cocoon-host boot --release`, and copies of a bundle to tamper with.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A key pair made by the Debian `minisign` CLI.
pub struct Key {
    pub public: PathBuf,
    pub secret: PathBuf,
    pub password: Option<String>,
}

/// Fails the test with the install command when the stock tool is missing.
pub fn require_minisign() {
    let ok = Command::new("minisign")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the minisign CLI is missing: run `cargo xtask setup` as root (the release tests need it)"
    );
}

/// `minisign -G`: a throwaway key pair in `dir`, password-protected when
/// `password` is given (the CLI reads it twice from stdin).
pub fn minisign_key(dir: &Path, name: &str, password: Option<&str>) -> Key {
    require_minisign();
    let (public, secret) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let mut cmd = Command::new("minisign");
    cmd.arg("-G")
        .arg("-f")
        .arg("-p")
        .arg(&public)
        .arg("-s")
        .arg(&secret);
    if password.is_none() {
        cmd.arg("-W");
    }
    let input = password.map(|p| format!("{p}\n{p}\n")).unwrap_or_default();
    let out = run_with_stdin(cmd, &input);
    assert!(out.status.success(), "minisign -G: {}", text(&out.stderr));
    Key {
        public,
        secret,
        password: password.map(str::to_string),
    }
}

/// `minisign -S`: signs `SHA256SUMS` in `bundle` with the stock tool and
/// the given trusted comment, replacing `SHA256SUMS.minisig`.
pub fn minisign_sign(bundle: &Path, key: &Key, trusted_comment: &str) {
    let mut cmd = Command::new("minisign");
    cmd.arg("-S")
        .arg("-s")
        .arg(&key.secret)
        .arg("-m")
        .arg(bundle.join("SHA256SUMS"))
        .arg("-t")
        .arg(trusted_comment);
    if key.password.is_none() {
        // -W keys need no password; minisign still must not wait for one.
        cmd.stdin(Stdio::null());
    }
    let input = key
        .password
        .clone()
        .map(|p| format!("{p}\n"))
        .unwrap_or_default();
    let out = run_with_stdin(cmd, &input);
    assert!(out.status.success(), "minisign -S: {}", text(&out.stderr));
}

/// The trusted comment of a bundle's signature (its third line).
pub fn trusted_comment(bundle: &Path) -> String {
    let sig = std::fs::read_to_string(bundle.join("SHA256SUMS.minisig")).unwrap();
    sig.lines()
        .nth(2)
        .and_then(|l| l.strip_prefix("trusted comment: "))
        .expect("a minisign signature has a trusted comment")
        .to_string()
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running minisign");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `cargo xtask <args>` in `checkout` with its own target folder, a TMPDIR
/// and umask of its own, and `envs`.
pub fn xtask(
    checkout: &Path,
    tmpdir: &Path,
    umask: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    std::fs::create_dir_all(tmpdir).unwrap();
    let mut cmd = Command::new("sh");
    cmd.current_dir(checkout)
        .env("TMPDIR", tmpdir)
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO", env!("CARGO"))
        .args([
            "-c",
            &format!("umask {umask} && exec \"$CARGO\" xtask \"$@\""),
            "sh",
        ])
        .args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `cocoon-host boot --release BUNDLE <extra>` to completion (for boots
/// that must be refused, or `--print-qemu-args`).
pub fn host_boot_release(bundle: &Path, run_dir: &Path, extra: &[&str]) -> Output {
    Command::new(crate::host_bin())
        .arg("boot")
        .arg("--release")
        .arg(bundle)
        .args(["--name", "release-test", "--run-dir"])
        .arg(run_dir)
        .args(extra)
        .output()
        .expect("running cocoon-host")
}

/// Copies a folder tree (a bundle) to `dest`.
pub fn copy_tree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Every file of a bundle, as sorted relative paths.
pub fn bundle_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
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
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

/// Rewrites `SHA256SUMS` over the bundle's current files with the stock
/// `sha256sum` (for a forged bundle that is then re-signed).
pub fn rewrite_sums(bundle: &Path) {
    let files: Vec<String> = bundle_files(bundle)
        .into_iter()
        .filter(|f| !f.starts_with("SHA256SUMS"))
        .collect();
    let out = Command::new("sha256sum")
        .current_dir(bundle)
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(bundle.join("SHA256SUMS"), out.stdout).unwrap();
}
