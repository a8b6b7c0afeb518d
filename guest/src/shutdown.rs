//! The duties of PID 1 besides serving: reaping orphans, and turning the
//! ways a VM is asked to stop into one shutdown request.
//!
//! A stop request is the ACPI power button (what QMP `system_powerdown`
//! presses), SIGTERM/SIGPWR, or Ctrl-Alt-Del (SIGINT, once the kernel is told
//! not to reboot on it).

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::acpi;

/// Ctrl-Alt-Del sends SIGINT to init instead of rebooting at once.
pub fn disable_ctrl_alt_del() {
    // SAFETY: reboot(2) with a command that only flips a kernel flag.
    unsafe { libc::reboot(libc::RB_DISABLE_CAD) };
}

/// Reaps every child that exits. The guest starts no processes, but the
/// kernel may (usermode helpers), and orphans are re-parented to PID 1.
pub fn spawn_reaper() -> Result<()> {
    let mut sigchld = signal(SignalKind::child()).context("installing the SIGCHLD handler")?;
    tokio::spawn(async move {
        loop {
            reap();
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(())
}

fn reap() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG writes only `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// A channel that yields the reason for the first stop request.
pub fn listen() -> Result<mpsc::Receiver<String>> {
    let (tx, rx) = mpsc::channel(4);
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT (Ctrl-Alt-Del)"),
        (SignalKind::from_raw(libc::SIGPWR), "SIGPWR"),
    ] {
        let mut s = signal(kind).with_context(|| format!("installing the {name} handler"))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            if s.recv().await.is_some() {
                let _ = tx.send(name.to_string()).await;
            }
        });
    }
    match acpi::AcpiEvents::subscribe() {
        Ok(events) => {
            std::thread::Builder::new()
                .name("acpi".into())
                .spawn(move || {
                    loop {
                        match events.next() {
                            Ok(class) if acpi::is_power_button(&class) => {
                                let _ = tx.blocking_send(format!("ACPI {class}"));
                                return;
                            }
                            Ok(other) => tracing::info!(event = %other, "ACPI event ignored"),
                            Err(e) => {
                                tracing::error!("reading ACPI events: {e}");
                                return;
                            }
                        }
                    }
                })
                .context("spawning the ACPI thread")?;
        }
        // The VM still stops when the host pulls the plug; say so.
        Err(e) => tracing::error!(
            "no ACPI power button events ({e}): the host can only stop this VM hard"
        ),
    }
    Ok(rx)
}
