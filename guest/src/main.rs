//! `cocoon-guest`: the only program in the cocoon guest, started by the
//! kernel as `/init` (PID 1).
//!
//! It does the boot duties a distribution's init would do (mounts, kernel
//! modules, the network), then serves HTTPS with a key made in memory. It
//! never starts a shell: on a fatal error it prints why on the serial
//! console and powers the VM off.

mod acpi;
mod api;
mod attest;
mod cli;
mod console;
mod cpu;
mod gpu;
mod model_disk;
mod modules;
mod mounts;
mod net;
mod power;
mod server;
mod shutdown;
mod tls;

use anyhow::{Context, Result};

/// The guest's HTTPS port; the host forwards to it.
const HTTPS_PORT: u16 = 443;

fn main() {
    console::init();
    power::install_panic_hook();
    if std::process::id() != 1 {
        // Host mode: the same engine and server as an ordinary program.
        let argv: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = cli::main(&argv) {
            eprintln!("cocoon-guest: error: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    let reason = match boot() {
        Ok(()) => None,
        Err(e) => Some(format!("{e:#}")),
    };
    match reason {
        None => power::power_off(),
        Some(reason) => power::fatal(&reason),
    }
}

/// Everything from `/init` to a clean shutdown. Returning `Ok` means a
/// shutdown was asked for; an error is fatal.
fn boot() -> Result<()> {
    console::event("init", &[]);
    cpu::check().context("checking the CPU")?;
    mounts::mount_early().context("mounting /proc, /sys and /dev")?;
    let loaded = modules::load_all().context("loading kernel modules")?;
    console::event("modules", &[("count", loaded.into())]);
    // The measured command line picks the profile; a GPU image stops here,
    // saying why, if its GPU is missing or not in the CC mode it requires.
    let gpus = match gpu::mode().context("the GPU profile on the command line")? {
        None => None,
        Some(mode) => Some(gpu::bring_up(mode).context("the GPU")?),
    };
    mounts::mount_configfs().context("mounting configfs")?;
    let attester = std::sync::Arc::new(attest::Attester::detect());
    console::event(
        "attestation",
        &[
            ("interface", attester.interface().into()),
            (
                "unattested",
                attester
                    .unattested_reason()
                    .unwrap_or("")
                    .to_string()
                    .into(),
            ),
        ],
    );
    shutdown::disable_ctrl_alt_del();

    let lease = net::bring_up().context("configuring the network")?;
    console::event(
        "network",
        &[
            ("interface", lease.interface.clone().into()),
            (
                "address",
                format!("{}/{}", lease.address, lease.prefix_len).into(),
            ),
            ("lease_s", lease.lease_secs.into()),
        ],
    );

    // The key comes first: a GPU in CC mode takes no CUDA work until its
    // evidence for this key is verified and it is released (the
    // GPUs-ready state), and the model loads onto it.
    let identity =
        tls::Identity::generate(&attester, gpus.as_ref()).context("creating the TLS key")?;
    // Before the async runtime: loading is CPU-bound and a failure here is
    // fatal (the VM powers off saying why, and serves nothing). A GPU
    // image serves from its GPU or not at all.
    let target = match &gpus {
        None => cocoon_engine::model::Target::Cpu,
        Some(_) => cocoon_engine::model::Target::Cuda,
    };
    let model = model_disk::load(target).context("the model")?;
    let state = api::AppState::new(model, cli::DEFAULT_LIMITS, attester.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cocoon")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        shutdown::spawn_reaper()?;
        net::spawn_lease_keeper(lease);
        let stop = shutdown::listen().context("listening for shutdown requests")?;
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], HTTPS_PORT));
        server::serve(addr, identity, api::router(state), stop).await
    })
}
