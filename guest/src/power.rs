//! Ending the VM: a clean power-off, or a fatal error that says why first.
//!
//! PID 1 must never exit (the kernel would panic) and must never hand the
//! console to anything else, so every way out of `/init` ends here.

use crate::console;

/// Flushes filesystems and powers the VM off. Never returns.
pub fn power_off() -> ! {
    tracing::info!("powering off");
    // SAFETY: sync and reboot take no pointers; RB_POWER_OFF does not return
    // on success.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // Only reached if the kernel refused (it does not for PID 1 as root).
    loop {
        std::thread::park();
    }
}

/// Reports a fatal error on the console, then powers off.
pub fn fatal(reason: &str) -> ! {
    eprintln!("cocoon-guest: FATAL: {reason}");
    console::event("fatal", &[("reason", reason.into())]);
    power_off()
}

/// A panic anywhere is a bug in the guest: report it and stop the VM rather
/// than serve in an unknown state.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let reason = format!("panic: {info}");
        if std::process::id() == 1 {
            fatal(&reason);
        }
        eprintln!("{reason}");
    }));
}
