//! Independent checkouts of the working tree, for builds that must not
//! share anything with the workspace but the machine.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies the tracked and untracked-but-not-ignored files of `src` into
/// `dest` and commits them with fixed author, dates and message, so two
/// copies of the same tree get the same commit id (and the same
/// `SOURCE_DATE_EPOCH`: the source's HEAD commit time).
pub fn copy_worktree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let files = git(
        src,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    );
    for rel in files.split('\0').filter(|f| !f.is_empty()) {
        let from = src.join(rel);
        if !from.is_file() {
            continue; // deleted but still in the index
        }
        let to = dest.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let date = format!(
        "@{} +0000",
        git(src, &["log", "-1", "--format=%ct", "HEAD"]).trim()
    );
    git(dest, &["init", "-q", "-b", "main"]);
    git(dest, &["add", "-A"]);
    let out = Command::new("git")
        .current_dir(dest)
        .env("GIT_AUTHOR_NAME", "cocoon tests")
        .env("GIT_AUTHOR_EMAIL", "tests@cocoon.invalid")
        .env("GIT_COMMITTER_NAME", "cocoon tests")
        .env("GIT_COMMITTER_EMAIL", "tests@cocoon.invalid")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .args([
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "-m",
            "snapshot of the working tree",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git commit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
