//! `cargo xtask demo`: the whole path on one screen: fetch and pack the
//! pinned demo model, build the image around it, boot it without SEV, ask
//! it a chat question over TLS, stop it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::{build, model, setup};

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
    let pack = model::default_pack(sh, root)?;
    let built = build::run(
        sh,
        root,
        &build::Args {
            profile: "cpu".into(),
            out: None,
            model: Some(pack.clone()),
        },
    )?;
    cmd!(sh, "cargo build --quiet --locked -p cocoon-host").run()?;
    let host = root.join("target/debug/cocoon-host");
    let port = args.port.to_string();
    let child = Command::new(&host)
        .args([
            "boot", "--dev", "--json", "--name", "demo", "--port", &port, "--image",
        ])
        .arg(&built.dir)
        .arg("--model")
        .arg(&pack)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", host.display()))?;
    // Whatever goes wrong here, the VM does not outlive the demo.
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("piped");
    let mut ready = false;
    let mut stopper = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let event: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("cocoon-host printed {line:?}"))?;
        println!(
            "cocoon-host: {}",
            event["message"].as_str().unwrap_or_default()
        );
        ready |= event["event"] == "ready";
        if event["event"] == "ready" {
            attest(&host, args.port)?;
            ask(args.port, event["cert_sha256"].as_str().unwrap_or_default())?;
        }
        // `hint` is the last thing `boot` prints once the guest is up.
        // Stop from the side, as a user would, and keep printing.
        if event["event"] == "hint" && !args.keep_running {
            stopper = Some(
                Command::new(&host)
                    .args(["stop", "--name", "demo"])
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
    }
    if let Some(mut s) = stopper
        && !s.wait()?.success()
    {
        bail!("`cocoon-host stop --name demo` failed");
    }
    let status = child.0.wait()?;
    if !ready {
        bail!("the guest never answered (cocoon-host exited with {status})");
    }
    if !status.success() {
        bail!("cocoon-host exited with {status}");
    }
    println!("demo: built, booted, answered a chat completion over TLS and stopped cleanly");
    Ok(())
}

/// What a client checks first: the dev guest has no SEV-SNP and says so;
/// `attest` accepts it only because it is told to, and prints that.
fn attest(host: &Path, port: u16) -> Result<()> {
    println!("demo: cocoon-host attest (a dev boot has no SEV-SNP: expect UNATTESTED)");
    let status = Command::new(host)
        .args([
            "attest",
            &format!("https://127.0.0.1:{port}"),
            "--offline",
            "--allow-unattested",
        ])
        .status()?;
    if !status.success() {
        bail!("cocoon-host attest failed on the dev guest");
    }
    Ok(())
}

/// One chat completion, as any OpenAI client would send it.
fn ask(port: u16, cert_sha256: &str) -> Result<()> {
    let question = "What is the capital of France? Answer in one sentence.";
    let body = serde_json::json!({
        "model": model::DEFAULT_MODEL,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 32,
        "temperature": 0,
    });
    println!(
        "demo: POST /v1/chat/completions: {question:?} (software-emulated CPU: expect a few tokens a second)"
    );
    let started = std::time::Instant::now();
    let (status, answer) = cocoon_measurements::client::request(
        port,
        "POST",
        "/v1/chat/completions",
        Some(&body.to_string()),
        cert_sha256,
        std::time::Duration::from_secs(600),
    )?;
    if status != 200 {
        bail!("the chat completion answered {status}: {answer}");
    }
    let v: serde_json::Value = serde_json::from_str(&answer)?;
    println!(
        "demo: the guest answered in {:.1} s ({} tokens): {:?}",
        started.elapsed().as_secs_f64(),
        v["usage"]["completion_tokens"],
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
    );
    Ok(())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
