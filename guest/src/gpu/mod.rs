//! The GPU profile: an NVIDIA GPU in confidential-computing mode, driven by
//! this one process.
//!
//! - [`cmdline`]: `cocoon.gpu=` on the measured command line picks it;
//! - [`libraries`]: the driver's user-space libraries load from the image;
//! - [`nodes`]: the /dev nodes the driver needs (no udev here);
//! - [`nvml`] and [`nvml_types`]: NVML through dlopen;
//! - [`cc`]: whether the GPU's CC state is acceptable for this image;
//! - [`evidence`]: each GPU's SPDM evidence for our key, verified here;
//! - [`probe`]: the host-mode `gpu-probe` command (NVML only).
//!
//! Order at boot: libraries, modules, nodes, NVML, CC state ([`bring_up`]); then,
//! once the TLS key exists, evidence for it, local verification, and only
//! then the GPUs-ready state ([`Gpus::attest_for_key`]). Every failure is
//! an error that `/init` reports on the console before powering off.

pub mod cc;
pub mod cmdline;
pub mod evidence;
pub mod libraries;
pub mod nodes;
pub mod nvml;
pub mod nvml_types;
pub mod probe;

use std::path::Path;

use anyhow::{Context, Result, bail};
use cocoon_evidence::GpuEvidence;

pub use cc::CcDecision;
pub use cmdline::GpuMode;
use nvml::{Device, Nvml};

/// The GPUs, checked and initialised, before their evidence is bound.
pub struct Gpus {
    nvml: Nvml,
    devices: Vec<Device>,
    pub decision: CcDecision,
    pub driver_version: String,
    pub cc_state: String,
}

/// The profile the measured command line asks for (`None`: CPU).
pub fn mode() -> Result<Option<GpuMode>> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    cmdline::parse(&cmdline)
}

/// Loads the NVIDIA modules, makes the device nodes and opens NVML; refuses
/// a GPU whose CC state this image does not allow.
pub fn bring_up(mode: GpuMode) -> Result<Gpus> {
    libraries::check()?;
    let loaded = crate::modules::load_gpu().context("loading the NVIDIA kernel modules")?;
    let bound = nodes::count_gpus(Path::new("/proc/driver/nvidia/gpus"))?;
    let proc_devices = std::fs::read_to_string("/proc/devices").context("reading /proc/devices")?;
    let plan = nodes::plan(&proc_devices, bound)?;
    nodes::create(Path::new("/dev"), &plan).context("creating the NVIDIA device nodes")?;
    let gpus = open(mode)?;
    crate::console::event(
        "gpu",
        &[
            ("modules", loaded.into()),
            ("count", gpus.devices.len().into()),
            ("driver", gpus.driver_version.clone().into()),
            ("cc", gpus.cc_state.clone().into()),
        ],
    );
    Ok(gpus)
}

/// NVML, the devices and the CC decision (also what `gpu-probe` runs).
fn open(mode: GpuMode) -> Result<Gpus> {
    let nvml = Nvml::open()?;
    let count = nvml.device_count()?;
    if count == 0 {
        bail!("NVML sees no GPU");
    }
    let devices = (0..count)
        .map(|i| nvml.device(i))
        .collect::<Result<Vec<_>>>()?;
    let state = nvml.cc_state()?;
    let decision = cc::decide(&state, mode).map_err(anyhow::Error::msg)?;
    Ok(Gpus {
        driver_version: nvml.driver_version()?,
        cc_state: cc::describe(&state),
        nvml,
        devices,
        decision,
    })
}

impl Gpus {
    /// Evidence of every GPU for the TLS key with this SubjectPublicKeyInfo,
    /// verified here, after which the GPUs are released for work. Empty in
    /// a development image whose GPU is not in CC mode (nothing to bind).
    pub fn attest_for_key(&self, spki_der: &[u8]) -> Result<Vec<GpuEvidence>> {
        if self.decision == CcDecision::Unattested {
            tracing::warn!("GPU outside CC mode, allowed by the command line: no GPU evidence");
            return Ok(Vec::new());
        }
        let nonce = cocoon_evidence::gpu_nonce(spki_der);
        let evidence = evidence::collect(&self.nvml, &self.devices, nonce)?;
        evidence::require_all(&evidence, nonce)?;
        self.nvml
            .set_ready_state(nvml_types::CC_ACCEPTING_CLIENT_REQUESTS_TRUE)
            .context("releasing the GPUs for work")?;
        crate::console::event("gpu-attested", &[("count", evidence.len().into())]);
        Ok(evidence)
    }
}
