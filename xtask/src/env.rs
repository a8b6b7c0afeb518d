//! The build environment: the workspace, git, and the versions of the tools
//! whose output ends up in the image.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest_dir
        .parent()
        .context("xtask lives inside the workspace")?
        .to_path_buf())
}

pub struct GitInfo {
    pub commit: String,
    pub dirty: bool,
    /// Commit time of HEAD, or `SOURCE_DATE_EPOCH` when the caller set it.
    pub source_date_epoch: u64,
}

pub fn git_info(sh: &Shell, root: &Path) -> Result<GitInfo> {
    let _dir = sh.push_dir(root);
    let commit = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .context(
            "the build needs a git checkout with at least one commit (`git rev-parse HEAD` failed)",
        )?;
    // Untracked files count: a new source file changes what is built.
    let status = cmd!(sh, "git status --porcelain --untracked-files=normal")
        .quiet()
        .read()?;
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        _ => cmd!(sh, "git log -1 --format=%ct HEAD")
            .quiet()
            .read()?
            .trim()
            .parse()?,
    };
    if epoch > u32::MAX as u64 {
        bail!("SOURCE_DATE_EPOCH {epoch} does not fit a cpio header");
    }
    Ok(GitInfo {
        commit: commit.trim().to_string(),
        dirty: !status.trim().is_empty(),
        source_date_epoch: epoch,
    })
}

/// `rustc 1.95.0 (59807616e 2026-04-14), LLVM 22.1.2`
pub fn rustc_version(sh: &Shell) -> Result<String> {
    let vv = cmd!(sh, "rustc -vV").quiet().read()?;
    let first = vv.lines().next().unwrap_or_default().to_string();
    let llvm = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .unwrap_or("?");
    Ok(format!("{first}, LLVM {llvm}"))
}

pub fn cargo_version(sh: &Shell) -> Result<String> {
    Ok(cmd!(sh, "cargo -V").quiet().read()?.trim().to_string())
}

/// The first line of `cc --version`.
pub fn cc_version(sh: &Shell) -> Result<String> {
    let v = cmd!(sh, "cc --version")
        .quiet()
        .read()
        .context("no C compiler (`cc`): install build-essential")?;
    Ok(v.lines().next().unwrap_or_default().to_string())
}

/// The Debian version of the C library `/init` is linked with.
pub fn libc_version(sh: &Shell) -> Result<String> {
    let format = "-f=${Version}";
    let v = cmd!(sh, "dpkg-query -W {format} libc6-dev")
        .quiet()
        .read()
        .context(
            "libc6-dev is not installed: the guest links against glibc; install build-essential",
        )?;
    Ok(format!("glibc (libc6-dev {v})"))
}
