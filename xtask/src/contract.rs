//! The registry contract's npm side (`measurements/contract/`): installs
//! the pinned packages from package-lock.json and runs the contract's
//! checks: the recorded code hash recompiles, and the TVM-emulator tests.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

pub fn dir(root: &Path) -> PathBuf {
    root.join("measurements/contract")
}

/// `npm ci` unless node_modules already matches package-lock.json.
pub fn ensure_npm_packages(sh: &Shell, root: &Path) -> Result<()> {
    let dir = dir(root);
    let installed = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (installed.metadata(), lock.metadata()) {
        (Ok(i), Ok(l)) => i.modified()? >= l.modified()?,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    let _d = sh.push_dir(&dir);
    cmd!(sh, "npm ci --no-audit --no-fund")
        .run()
        .context("npm ci in measurements/contract (is npm installed? `cargo xtask setup`)")?;
    Ok(())
}

pub fn test(sh: &Shell, root: &Path) -> Result<()> {
    ensure_npm_packages(sh, root)?;
    let _d = sh.push_dir(dir(root));
    cmd!(sh, "npm run --silent check-build").run().context(
        "the recorded registry code is stale: run `npm run build` in measurements/contract",
    )?;
    cmd!(sh, "npm test --silent")
        .run()
        .context("the registry contract's tests failed")?;
    Ok(())
}
