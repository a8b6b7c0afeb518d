//! `cocoon-host import-rims`: NVIDIA's RIMs for a driver and a VBIOS,
//! verified (XML signature, Canonical XML 1.1, certificate chain up to the
//! RIM root given) and written as reference values
//! (cocoon-gpu-reference-values/1) for `verify-gpu-evidence --reference`
//! and the guest's policy. The file records which RIMs and which root it
//! came from; `compare` then holds a report to the RIMs' versions.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use cocoon_measurements::gpu::chain;
use cocoon_measurements::gpu::rim::{self, MAX_RIM_LEN, Rim};
use cocoon_measurements::gpu::{DriverVersion, ReferenceValues};
use x509_cert::Certificate;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The driver's RIM (`NV_GPU_DRIVER_GH100_<version>`, SWID tag XML).
    #[arg(long)]
    driver_rim: PathBuf,
    /// The VBIOS's RIM (`NV_GPU_VBIOS_<project>_<sku>_<chip sku>_<version>`).
    #[arg(long)]
    vbios_rim: PathBuf,
    /// NVIDIA's RIM root certificate (PEM), obtained from NVIDIA: the chain
    /// in each RIM must lead to it. Its SHA-256 is printed and recorded.
    #[arg(long)]
    rim_root: PathBuf,
    /// Where to write the reference values (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Check the certificates' validity at this time (seconds since the
    /// Unix epoch) instead of now: for RIMs archived after their signing
    /// certificate expired.
    #[arg(long)]
    at: Option<u64>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = read_root(&args.rim_root)?;
    let now = match args.at {
        Some(s) => Duration::from_secs(s),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?,
    };
    let driver = read_rim(&args.driver_rim, &root, now)?;
    let vbios = read_rim(&args.vbios_rim, &root, now)?;
    // The versions say which is which: a driver's is major.minor.patch,
    // a VBIOS's five dot-separated hex bytes.
    if driver.version.parse::<DriverVersion>().is_err() {
        bail!(
            "{}: its version {} is not a driver version (is it the VBIOS RIM?)",
            args.driver_rim.display(),
            driver.version
        );
    }
    let vbios_like = |v: &str| {
        let parts: Vec<&str> = v.split('.').collect();
        parts.len() == 5
            && parts
                .iter()
                .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
    };
    if !vbios_like(&vbios.version) {
        bail!(
            "{}: its version {} is not a VBIOS version (is it the driver RIM?)",
            args.vbios_rim.display(),
            vbios.version
        );
    }
    let refs = ReferenceValues::from_rims(&driver, &vbios, &driver.version, &vbios.version, &root)
        .context("combining the two RIMs")?;
    let json = refs.to_json() + "\n";
    match &args.out {
        Some(p) => std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{json}"),
    }
    eprintln!(
        "import-rims: driver {} and VBIOS {} ({} and {} active measurements), signed by {}, root SHA-256 {}",
        driver.version,
        vbios.version,
        driver.measurements.iter().filter(|m| m.active).count(),
        vbios.measurements.iter().filter(|m| m.active).count(),
        driver.signers.first().map_or("?", String::as_str),
        rim::fingerprint(&root)
    );
    Ok(())
}

/// The one certificate in a PEM file.
pub fn read_root(path: &Path) -> anyhow::Result<Certificate> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut certs = chain::parse_pem_chain(&pem).with_context(|| format!("{}", path.display()))?;
    if certs.len() != 1 {
        bail!(
            "{}: expected one certificate, the RIM root, found {}",
            path.display(),
            certs.len()
        );
    }
    Ok(certs.remove(0))
}

/// A RIM file, verified.
pub fn read_rim(path: &Path, root: &Certificate, now: Duration) -> anyhow::Result<Rim> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_RIM_LEN as u64 {
        bail!("{}: {len} bytes, too large for a RIM", path.display());
    }
    let xml = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rim::verify(&xml, root, now).with_context(|| format!("{}", path.display()))
}
