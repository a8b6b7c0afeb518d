//! `cocoon-host stop`: ask the supervising `cocoon-host boot` to power its
//! VM off, and wait until it has.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::rundir::RunDir;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The name the VM was booted with.
    #[arg(long, default_value = "dev")]
    name: String,
    /// The run directory it was booted with, if not the default.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Seconds to wait for the VM to stop.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let run = RunDir::locate(&args.name, args.run_dir.as_deref())?;
    let Some(pid) = run.running_supervisor() else {
        bail!(
            "no VM named `{}` is running (looked in {})",
            args.name,
            run.path.display()
        );
    };
    // SAFETY: kill(2) on a pid we just checked is a cocoon-host.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!(
            "cannot signal cocoon-host pid {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    let end = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < end {
        if run.running_supervisor().is_none() {
            println!("cocoon-host: VM `{}` stopped", args.name);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "VM `{}` (cocoon-host pid {pid}) did not stop within {} s",
        args.name,
        args.timeout
    )
}
