//! A VM booted with the real `cocoon-host boot --dev --json`, for tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct BootedVm {
    child: Child,
    lines: Receiver<Value>,
    /// Every JSON line `cocoon-host` printed so far.
    pub events: Vec<Value>,
    pub name: String,
    pub run_dir: PathBuf,
    pub port: u16,
    pub cert_sha256: String,
    _tmp: tempfile::TempDir,
}

impl BootedVm {
    /// Boots `image` under a fresh name and run directory; waits for `ready`.
    pub fn boot(image: &Path, name: &str) -> BootedVm {
        Self::boot_with(&["--image", &image.display().to_string()], name)
    }

    /// Boots what `source` names (`--image DIR`, or `--release DIR
    /// --pubkey KEY`) under a fresh name and run directory; waits for `ready`.
    pub fn boot_with(source: &[&str], name: &str) -> BootedVm {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = tmp.path().join("run");
        let mut child = Command::new(crate::host_bin())
            .args([
                "boot",
                "--dev",
                "--json",
                "--port",
                "0",
                "--memory",
                "1G",
                "--name",
                name,
                "--run-dir",
            ])
            .arg(&run_dir)
            .args(source)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting cocoon-host");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut vm = BootedVm {
            child,
            lines,
            events: Vec::new(),
            name: name.to_string(),
            run_dir,
            port: 0,
            cert_sha256: String::new(),
            _tmp: tmp,
        };
        let ready = vm.wait_for("ready", Duration::from_secs(240));
        let url = ready["url"].as_str().unwrap();
        vm.port = url.rsplit(':').next().unwrap().parse().unwrap();
        vm.cert_sha256 = ready["cert_sha256"].as_str().unwrap().to_string();
        vm
    }

    /// Waits for a `cocoon-host` event; panics with what was seen on timeout.
    pub fn wait_for(&mut self, event: &str, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            if let Some(v) = self.events.iter().find(|v| v["event"] == event) {
                return v.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            let why = match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(v) => {
                    self.events.push(v);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => format!("within {within:?}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    "before it exited (its error is in the test's stderr)".to_string()
                }
            };
            panic!(
                "no `{event}` from cocoon-host {why}; saw {:#?}\nserial console:\n{}",
                self.events,
                std::fs::read_to_string(self.run_dir.join("serial.log")).unwrap_or_default()
            );
        }
    }

    /// Sends a signal to `cocoon-host` (SIGINT is Ctrl-C).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for `cocoon-host` to exit; collects the rest of its events.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            while let Ok(v) = self.lines.try_recv() {
                self.events.push(v);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(v) = self.lines.try_recv() {
                    self.events.push(v);
                }
                return status;
            }
            assert!(
                Instant::now() < end,
                "cocoon-host did not exit within {within:?}: {:#?}",
                self.events
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl-C to `cocoon-host`, which must power the guest off cleanly.
    pub fn stop_cleanly(mut self) {
        self.signal(libc::SIGINT);
        let status = self.wait(Duration::from_secs(120));
        assert!(
            status.success(),
            "cocoon-host exited with {status}: {:?}",
            self.events
        );
    }

    /// `GET path` over TLS, trusting only `cert_sha256`.
    pub fn get(&self, path: &str, cert_sha256: &str) -> Result<(u16, String), String> {
        https_get(self.port, path, cert_sha256)
    }
}

impl Drop for BootedVm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The guest's certificate in PEM, checked against the pinned hash.
pub fn fetch_cert_pem(port: u16, cert_sha256: &str) -> String {
    cocoon_measurements::client::fetch_cert_pem(port, cert_sha256, Duration::from_secs(30)).unwrap()
}

/// `GET path` on loopback, trusting only the certificate `cert_sha256`.
pub fn https_get(port: u16, path: &str, cert_sha256: &str) -> Result<(u16, String), String> {
    https(port, "GET", path, None, cert_sha256)
}

/// Any request on loopback, trusting only the certificate `cert_sha256`.
pub fn https(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    cert_sha256: &str,
) -> Result<(u16, String), String> {
    cocoon_measurements::client::request(
        port,
        method,
        path,
        body,
        cert_sha256,
        Duration::from_secs(600),
    )
    .map_err(|e| e.to_string())
}
