//! `cargo xtask demo`: the whole path on one screen: build the image, boot
//! it without SEV, show it answering over TLS, stop it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::{build, setup};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Local port for the guest's HTTPS.
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Leave the VM running after it answered (stop it with Ctrl-C).
    #[arg(long)]
    keep_running: bool,
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    setup::ensure(sh)?;
    let built = build::run(
        sh,
        root,
        &build::Args {
            profile: "cpu".into(),
            out: None,
        },
    )?;
    cmd!(sh, "cargo build --quiet --locked -p cocoon-host").run()?;
    let host = root.join("target/debug/cocoon-host");
    let port = args.port.to_string();
    let mut child = Command::new(&host)
        .args([
            "boot", "--dev", "--name", "demo", "--port", &port, "--image",
        ])
        .arg(&built.dir)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", host.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if line.starts_with("cocoon-host: ready") {
            ready = true;
            if !args.keep_running {
                let status = Command::new(&host)
                    .args(["stop", "--name", "demo"])
                    .status()?;
                if !status.success() {
                    bail!("`cocoon-host stop --name demo` failed");
                }
            }
        }
    }
    let status = child.wait()?;
    if !ready {
        bail!("the guest never answered (cocoon-host exited with {status})");
    }
    if !status.success() {
        bail!("cocoon-host exited with {status}");
    }
    println!("demo: built, booted, answered over TLS and stopped cleanly");
    Ok(())
}
