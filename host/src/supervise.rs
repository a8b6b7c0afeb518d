//! Running one VM: start QEMU, follow its console, wait until the guest
//! answers over TLS, then power it off cleanly when asked.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::qmp::Qmp;
use crate::report::Report;
use crate::rundir::RunDir;
use crate::serial::{self, ConsoleLine};
use cocoon_measurements::client;

/// Boot phases as the host saw them, with the guest's own clock.
#[derive(Default)]
struct Timeline {
    init: Option<(Instant, u64)>,
    listening: Option<(Instant, u64)>,
    ready: Option<Instant>,
}

impl Timeline {
    fn json(&self, start: Instant) -> Value {
        let ms = |d: Duration| d.as_millis() as u64;
        // The kernel started `uptime` before the host read each event; the
        // earliest such estimate has the least reading delay in it.
        let kernel_start = [self.init, self.listening]
            .into_iter()
            .flatten()
            .map(|(seen, up)| seen.checked_sub(Duration::from_millis(up)).unwrap_or(start))
            .min()
            .unwrap_or(start)
            .max(start);
        let (Some((_, init)), Some((listen_seen, listen)), Some(ready)) =
            (self.init, self.listening, self.ready)
        else {
            return Value::Null;
        };
        json!({
            "qemu_and_firmware_ms": ms(kernel_start - start),
            "kernel_ms": init,
            "init_to_listening_ms": listen.saturating_sub(init),
            "first_health_ms": ms(ready.saturating_duration_since(listen_seen)),
            "total_ms": ms(ready - start),
        })
    }
}

/// Everything the supervisor needs to run one VM.
pub struct Supervisor<'a> {
    pub report: &'a Report,
    pub run: &'a RunDir,
    pub qemu: &'a Path,
    pub qemu_version: &'a str,
    /// The QEMU arguments (dev or SNP), complete.
    pub qemu_args: Vec<String>,
    /// The local port forwarded to the guest's HTTPS port.
    pub port: u16,
    /// `kvm` or `tcg`, for the report.
    pub accel_name: &'static str,
    /// How long the guest may take to power off after the ACPI button.
    pub grace: Duration,
    pub boot_timeout: Duration,
}

/// Why the supervision loop ended.
enum Ending {
    /// Ctrl-C or `cocoon-host stop`; `listening`: whether the guest was
    /// already up (and so listens for the power button).
    StopRequested {
        listening: bool,
    },
    Exited(String),
}

impl Supervisor<'_> {
    /// Starts QEMU and supervises it until the VM is stopped.
    pub fn run(&self) -> Result<()> {
        let port = self.port;
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, stop.clone())?;
        }
        let log = fs::File::create(self.run.qemu_log())?;
        let start = Instant::now();
        let mut command = Command::new(self.qemu);
        command
            .args(&self.qemu_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // If this supervisor dies, however it dies, QEMU goes with it: no
        // orphaned VM keeps a port and memory.
        // SAFETY: prctl is async-signal-safe and touches no Rust state.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.qemu.display()))?;
        self.report.say(
            "started",
            &format!(
                "QEMU {} started (pid {}); serial console: {}",
                self.qemu_version,
                child.id(),
                self.run.serial_log().display()
            ),
            json!({ "pid": child.id(), "serial_log": self.run.serial_log(), "port": port }),
        );
        let mut qmp = match Qmp::connect(&self.run.qmp_socket(), Duration::from_secs(15)) {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{e:#}\n{}", self.qemu_log_tail());
            }
        };
        let console = serial::follow(&self.run.serial_log());
        let ending = self.watch(&mut child, &console, &stop, port, start);
        match ending {
            Ok(Ending::StopRequested { listening: true }) => self.power_down(&mut qmp, &mut child),
            Ok(Ending::StopRequested { listening: false }) => {
                // Nothing runs yet that could shut down cleanly: stop QEMU now.
                let _ = qmp.execute("quit", None);
                if wait_exit(&mut child, Duration::from_secs(5)).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                self.report
                    .say("stopped", "stopped during boot", json!({ "clean": false }));
                Ok(())
            }
            Ok(Ending::Exited(why)) => bail!("{why}"),
            Err(e) => {
                let _ = qmp.execute("quit", None);
                let _ = wait_exit(&mut child, Duration::from_secs(5)).or_else(|| {
                    let _ = child.kill();
                    child.wait().ok()
                });
                Err(e)
            }
        }
    }

    /// Follows the boot until the guest answers, then until a stop is
    /// requested or the VM goes away.
    fn watch(
        &self,
        child: &mut Child,
        console: &std::sync::mpsc::Receiver<ConsoleLine>,
        stop: &AtomicBool,
        port: u16,
        start: Instant,
    ) -> Result<Ending> {
        let deadline = start + self.boot_timeout;
        let mut timeline = Timeline::default();
        let mut cert: Option<String> = None;
        let mut fatal: Option<String> = None;
        let mut last_error = String::from("the guest has not started listening");
        let mut next_try = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(Ending::StopRequested {
                    listening: timeline.listening.is_some(),
                });
            }
            while let Ok(line) = console.try_recv() {
                match line {
                    ConsoleLine::Event(seen, v) => {
                        let up = v["uptime_ms"].as_u64().unwrap_or(0);
                        match v["event"].as_str().unwrap_or("") {
                            "init" => {
                                timeline.init = Some((seen, up));
                                self.report.say(
                                    "guest-init",
                                    &format!(
                                        "guest /init started {:.2} s after kernel start",
                                        up as f64 / 1e3
                                    ),
                                    json!({ "uptime_ms": up }),
                                );
                            }
                            "listening" => {
                                timeline.listening = Some((seen, up));
                                cert = v["cert_sha256"].as_str().map(str::to_string);
                            }
                            "fatal" => fatal = v["reason"].as_str().map(str::to_string),
                            _ => {}
                        }
                    }
                    ConsoleLine::KernelPanic(line) => {
                        fatal = Some(format!("the guest kernel panicked: {line}"))
                    }
                }
            }
            if let Some(status) = child.try_wait()? {
                // Give the console a moment: the reason is often its last line.
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(ConsoleLine::Event(_, v)) = console.try_recv() {
                    if v["event"] == "fatal" {
                        fatal = v["reason"].as_str().map(str::to_string);
                    }
                }
                let why = match fatal {
                    Some(reason) => format!("the guest stopped: {reason}"),
                    None => format!(
                        "QEMU exited ({status}) before it was asked to stop\n{}",
                        self.qemu_log_tail()
                    ),
                };
                return Ok(Ending::Exited(format!(
                    "{why}\n  serial console: {}",
                    self.run.serial_log().display()
                )));
            }
            if timeline.ready.is_none() {
                if let Some(fp) = cert.as_deref().filter(|_| Instant::now() >= next_try) {
                    match client::request(port, "GET", "/health", None, fp, Duration::from_secs(5))
                    {
                        Ok((200, body)) => {
                            timeline.ready = Some(Instant::now());
                            let times = timeline.json(start);
                            let url = format!("https://127.0.0.1:{port}");
                            self.report.say(
                                "ready",
                                &format!(
                                    "ready: {url} answered GET /health in {:.2} s: {}",
                                    times["total_ms"].as_u64().unwrap_or(0) as f64 / 1e3,
                                    body.trim()
                                ),
                                json!({ "url": url, "cert_sha256": fp, "health": body.trim(), "timeline": times,
                                        "accel": self.accel_name }),
                            );
                            self.report.say(
                                "timeline",
                                &describe_timeline(&times),
                                json!({ "timeline": times }),
                            );
                            self.report.say(
                                "hint",
                                &format!(
                                    "the guest's TLS certificate has sha256 {fp}; Ctrl-C or `cocoon-host stop --name {}` powers it off",
                                    self.run.name
                                ),
                                json!({}),
                            );
                        }
                        Ok((status, body)) => {
                            last_error = format!("GET /health answered {status}: {body}")
                        }
                        Err(e) => last_error = format!("{e:#}"),
                    }
                    next_try = Instant::now() + Duration::from_millis(100);
                }
                if Instant::now() > deadline {
                    bail!(
                        "the guest did not answer GET /health within {} s ({last_error})\n  serial console: {}",
                        self.boot_timeout.as_secs(),
                        self.run.serial_log().display()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// ACPI power button, then the guest powers itself off; QMP `quit` and
    /// finally a kill only if it does not.
    fn power_down(&self, qmp: &mut Qmp, child: &mut Child) -> Result<()> {
        let grace = self.grace;
        self.report.say(
            "stopping",
            "stopping: pressing the VM's ACPI power button",
            json!({}),
        );
        if let Err(e) = qmp.execute("system_powerdown", None) {
            self.report
                .say("warning", &format!("system_powerdown: {e:#}"), json!({}));
        }
        if let Some(status) = wait_exit(child, grace) {
            let reason = shutdown_reason(qmp);
            if reason.as_deref() == Some("guest-shutdown") {
                self.report.say(
                    "stopped",
                    "VM stopped cleanly: the guest powered itself off",
                    json!({ "clean": true, "status": status.code() }),
                );
                return Ok(());
            }
            bail!("the VM stopped, but not by powering off (QEMU: {status}, reason {reason:?})");
        }
        let _ = qmp.execute("quit", None);
        if wait_exit(child, Duration::from_secs(5)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!(
            "the guest did not power off within {} s of the ACPI power button; QEMU was stopped hard\n  serial console: {}",
            grace.as_secs(),
            self.run.serial_log().display()
        )
    }

    fn qemu_log_tail(&self) -> String {
        let text = fs::read_to_string(self.run.qemu_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(10).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        format!(
            "  QEMU said ({}):\n    {}",
            self.run.qemu_log().display(),
            tail.join("\n    ")
        )
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The `reason` of QEMU's SHUTDOWN event, if it sent one.
fn shutdown_reason(qmp: &Qmp) -> Option<String> {
    let mut reason = None;
    while let Ok(ev) = qmp.events.recv_timeout(Duration::from_millis(200)) {
        if ev["event"] == "SHUTDOWN" {
            reason = ev["data"]["reason"].as_str().map(str::to_string);
        }
    }
    reason
}

fn describe_timeline(t: &Value) -> String {
    let s = |k: &str| t[k].as_u64().unwrap_or(0) as f64 / 1e3;
    format!(
        "boot timeline: QEMU + firmware {:.2} s, kernel {:.2} s, /init to listening {:.2} s, first /health {:.2} s; total {:.2} s",
        s("qemu_and_firmware_ms"),
        s("kernel_ms"),
        s("init_to_listening_ms"),
        s("first_health_ms"),
        s("total_ms")
    )
}
