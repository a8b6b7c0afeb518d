//! `cocoon-host boot --dev`: verify the image, start QEMU, wait until the
//! guest answers over TLS, supervise it, power it off cleanly.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cocoon_image::manifest::{self, Manifest};
use cocoon_image::profile;
use serde_json::{Value, json};

use crate::accel::{self, Accel};
use crate::health;
use crate::qemu::{self, DevVm};
use crate::qmp::Qmp;
use crate::rundir::RunDir;
use crate::serial::{self, ConsoleLine};

/// The guest's HTTPS port (see the guest's main module).
const GUEST_PORT: u16 = 443;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Boot without SEV: the development and test path. (The SEV-SNP boot
    /// comes with the SNP launch work; until then --dev is required.)
    #[arg(long)]
    pub dev: bool,
    /// The image directory (vmlinuz, initrd.img, cmdline, manifest.json).
    #[arg(long)]
    pub image: PathBuf,
    /// Local port forwarded to the guest's HTTPS port (0: any free port).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// A name for the VM, for `cocoon-host stop --name`.
    #[arg(long, default_value = "dev")]
    pub name: String,
    /// Where to keep the QMP socket and logs [default: $XDG_RUNTIME_DIR/cocoon/<name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub vcpus: u32,
    /// Guest memory (e.g. 512M, 2G).
    #[arg(long, default_value = "1G")]
    pub memory: String,
    /// auto: KVM when it can run the guest, TCG otherwise.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Seconds to wait for the guest to answer before giving up.
    #[arg(long, default_value_t = 180)]
    pub boot_timeout: u64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// Progress output: `cocoon-host: ...` lines, or JSON lines with `--json`.
pub struct Report {
    json: bool,
}

impl Report {
    pub fn new(json: bool) -> Self {
        Report { json }
    }

    /// Never fails: a closed stdout must not take the supervisor (and the
    /// clean shutdown it owes the VM) down with it.
    pub fn say(&self, event: &str, message: &str, fields: Value) {
        use std::io::Write;
        let line = if self.json {
            let mut v = json!({ "event": event, "message": message });
            if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), fields) {
                obj.extend(extra);
            }
            v.to_string()
        } else {
            format!("cocoon-host: {message}")
        };
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

pub fn run(args: &Args) -> Result<()> {
    if !args.dev {
        bail!(
            "only `--dev` boots exist in this version: the SEV-SNP boot needs the firmware and \
             measurement work that has not landed yet"
        );
    }
    let report = Report::new(args.json);
    let memory_mib = qemu::parse_memory(&args.memory).map_err(anyhow::Error::msg)?;
    if !(1..=64).contains(&args.vcpus) {
        bail!("--vcpus {}: choose 1 to 64", args.vcpus);
    }
    let manifest = Manifest::load(&args.image)?;
    let qemu_bin = qemu::find()?;
    let qemu_version = qemu::check_version(&qemu_bin)?;
    let run = RunDir::locate(&args.name, args.run_dir.as_deref())?;
    run.claim()?;
    let result = (|| {
        // Boot private copies, checked after copying: nothing can change the
        // bytes between the check and QEMU reading them.
        let staged = stage(&args.image, &run.path, &manifest).context("refusing to boot")?;
        profile::check_cmdline(&manifest.cmdline).map_err(anyhow::Error::msg)?;
        report.say(
            "verified",
            &format!(
                "image {} verified against its manifest: profile {}, commit {}{}",
                args.image.display(),
                manifest.profile,
                short(&manifest.git.commit),
                if manifest.git.dirty {
                    " (uncommitted changes)"
                } else {
                    ""
                }
            ),
            json!({ "profile": manifest.profile, "commit": manifest.git.commit }),
        );
        let accel = choose_accel(args.accel)?;
        report.say(
            "accelerator",
            &format!("accelerator: {}", accel.describe()),
            json!({ "accel": accel.name() }),
        );
        let vm = Vm {
            args,
            report: &report,
            run: &run,
            memory_mib,
            qemu: &qemu_bin,
            qemu_version: &qemu_version,
            accel: &accel,
            cmdline: &manifest.cmdline,
            staged: &staged,
        };
        vm.supervise()
    })();
    run.release();
    result
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

fn choose_accel(choice: AccelChoice) -> Result<Accel> {
    Ok(match choice {
        AccelChoice::Tcg => Accel::Tcg("chosen with --accel tcg".into()),
        AccelChoice::Auto => accel::probe(),
        AccelChoice::Kvm => match accel::probe() {
            Accel::Kvm => Accel::Kvm,
            Accel::Tcg(why) => bail!("--accel kvm, but KVM cannot run the guest here: {why}"),
        },
    })
}

/// Copies the kernel and initrd into the run directory and checks the
/// copies against the manifest.
fn stage(image: &Path, run_dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
    manifest.verify_artifacts(image)?;
    let dir = run_dir.join("image");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    for a in &manifest.artifacts {
        fs::copy(image.join(&a.name), dir.join(&a.name))
            .with_context(|| format!("copying {}", a.name))?;
    }
    manifest.verify_artifacts(&dir)?;
    Ok(dir)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

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

struct Vm<'a> {
    args: &'a Args,
    report: &'a Report,
    run: &'a RunDir,
    memory_mib: u64,
    qemu: &'a Path,
    qemu_version: &'a str,
    accel: &'a Accel,
    cmdline: &'a str,
    staged: &'a Path,
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

impl Vm<'_> {
    fn supervise(&self) -> Result<()> {
        let port = if self.args.port == 0 {
            free_port()?
        } else {
            self.args.port
        };
        let (kernel, initrd) = (
            self.staged.join(manifest::KERNEL),
            self.staged.join(manifest::INITRD),
        );
        let vm = DevVm {
            kernel: &kernel,
            initrd: &initrd,
            cmdline: self.cmdline,
            accel: self.accel,
            vcpus: self.args.vcpus,
            memory_mib: self.memory_mib,
            host_port: port,
            guest_port: GUEST_PORT,
            serial_log: &self.run.serial_log(),
            qmp_socket: &self.run.qmp_socket(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, stop.clone())?;
        }
        let log = fs::File::create(self.run.qemu_log())?;
        let start = Instant::now();
        let mut command = Command::new(self.qemu);
        command
            .args(vm.args())
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
        let deadline = start + Duration::from_secs(self.args.boot_timeout);
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
                    match health::get(port, "/health", fp, Duration::from_secs(5)) {
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
                                        "accel": self.accel.name() }),
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
                        self.args.boot_timeout,
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
        let grace = match self.accel {
            Accel::Kvm => Duration::from_secs(15),
            Accel::Tcg(_) => Duration::from_secs(30),
        };
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
