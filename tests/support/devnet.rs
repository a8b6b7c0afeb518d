//! The local TON devnet (`measurements/contract/devnet/server.js`): the
//! TON HTTP API v2 subset over the @ton/sandbox emulator, started per test
//! and stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::root;

/// The contract folder: package.json, the devnet, the scripts.
pub fn contract_dir() -> PathBuf {
    root().join("measurements/contract")
}

/// Whether Node.js is there; the registry tests need it and say so.
pub fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the npm packages from package-lock.json unless present.
pub fn ensure_npm_packages() {
    let dir = contract_dir();
    if dir.join("node_modules/@ton/sandbox").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("running npm ci (install npm: `cargo xtask setup`)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

pub struct Devnet {
    child: Child,
    pub endpoint: String,
}

impl Devnet {
    /// Starts a devnet that funds each `address` with 100 TON and requires `api_key`.
    pub fn start(fund: &[String], api_key: &str) -> Devnet {
        ensure_npm_packages();
        let mut cmd = Command::new("node");
        cmd.arg("devnet/server.js")
            .args(["--api-key", api_key])
            .current_dir(contract_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for a in fund {
            cmd.args(["--fund", &format!("{a}=100")]);
        }
        let mut child = cmd.spawn().expect("starting the devnet with node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("reading the devnet's first line");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the devnet printed `{line}`, not its endpoint: {e}"));
        let endpoint = v["endpoint"].as_str().expect("endpoint").to_string();
        Devnet { child, endpoint }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
