//! The recorded commit, checked out clean in a worktree of the auditor's
//! own repository (`target/cocoon/verify/src`). The worktree is kept between
//! runs and forced to the commit each time, so a second verify recompiles
//! only what changed; everything untracked in it is deleted first.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

pub fn worktree(sh: &Shell, root: &Path, commit: &str) -> Result<PathBuf> {
    let src = root.join("target/cocoon/verify/src");
    let _dir = sh.push_dir(root);
    let spec = format!("{commit}^{{commit}}");
    if cmd!(sh, "git cat-file -e {spec}")
        .quiet()
        .ignore_stderr()
        .run()
        .is_err()
    {
        bail!(
            "commit {commit} is not in the repository at {}: fetch it (`git fetch origin --tags`, \
             or clone the repository the release came from) and verify again",
            root.display()
        );
    }
    if src.join(".git").exists() {
        let _in = sh.push_dir(&src);
        cmd!(sh, "git checkout --quiet --detach --force {commit}")
            .quiet()
            .run()
            .context("checking out the recorded commit in the verify worktree")?;
        cmd!(sh, "git clean -ffdxq").quiet().run()?;
    } else {
        std::fs::create_dir_all(src.parent().unwrap())?;
        cmd!(sh, "git worktree prune").quiet().run()?;
        cmd!(sh, "git worktree add --quiet --detach {src} {commit}")
            .quiet()
            .run()
            .context("creating the verify worktree")?;
    }
    let _in = sh.push_dir(&src);
    let head = cmd!(sh, "git rev-parse HEAD").quiet().read()?;
    let status = cmd!(sh, "git status --porcelain --untracked-files=normal")
        .quiet()
        .read()?;
    if head.trim() != commit || !status.trim().is_empty() {
        bail!(
            "the verify worktree {} is not a clean checkout of {commit}: remove it and verify again",
            src.display()
        );
    }
    Ok(src)
}
