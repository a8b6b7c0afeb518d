//! `cocoon-host verify-gpu-evidence`: check a captured NVIDIA H100
//! attestation report (hex, as the driver's tools write it) and its
//! certificate chain (PEM, leaf first) offline.
//!
//! Chain, signature and nonce are always checked, and the driver version
//! against a minimum; the measurement blocks only with `--reference`.
//! Without it the output says plainly that they were not compared. The
//! exit status is 0 only if everything that was checked holds.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use cocoon_measurements::gpu::{
    self, CheckName, DEFAULT_MIN_DRIVER, DriverVersion, Evidence, Policy, ReferenceValues, Status,
    Trailing, Verdict,
};

/// Report files are hex text of a ~4 KiB report; refuse anything absurd
/// before reading it into memory.
const MAX_INPUT_LEN: u64 = 4 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The report: hex of the SPDM GET_MEASUREMENTS request followed by the
    /// GPU's MEASUREMENTS response (whitespace is ignored).
    #[arg(long)]
    report: PathBuf,
    /// The GPU's certificate chain, PEM, leaf first (the pinned NVIDIA
    /// Device Identity CA at the end may be left out).
    #[arg(long)]
    certs: PathBuf,
    /// The 32-byte nonce the request must carry, as 64 hex digits.
    #[arg(long)]
    nonce: String,
    /// Reference values for the measurement blocks (JSON,
    /// cocoon-gpu-reference-values/1; see docs/gpu-attestation.md;
    /// `cocoon-host import-rims` writes one from NVIDIA's RIMs).
    #[arg(long, conflicts_with_all = ["driver_rim", "vbios_rim"])]
    reference: Option<PathBuf>,
    /// Or NVIDIA's RIMs themselves: the driver's (with --vbios-rim and
    /// --rim-root), verified here, for the versions the report states.
    #[arg(long, requires_all = ["vbios_rim", "rim_root"])]
    driver_rim: Option<PathBuf>,
    /// The VBIOS's RIM (with --driver-rim).
    #[arg(long, requires_all = ["driver_rim", "rim_root"])]
    vbios_rim: Option<PathBuf>,
    /// NVIDIA's RIM root certificate (PEM) the RIMs' chains must lead to.
    #[arg(long, requires = "driver_rim")]
    rim_root: Option<PathBuf>,
    /// The oldest acceptable driver version.
    #[arg(long, default_value = DEFAULT_MIN_DRIVER)]
    min_driver: String,
    /// Accept one 00 byte after the signature (some capture tools add it;
    /// it is outside the signed bytes).
    #[arg(long)]
    allow_trailing_zero: bool,
    /// One JSON object (the verdict) instead of text.
    #[arg(long)]
    json: bool,
}

fn read_bounded(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading the {what} {}", path.display()))?
        .len();
    if len > MAX_INPUT_LEN {
        bail!("the {what} {} is {len} bytes, too large", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let nonce: [u8; 32] = hex::decode(args.nonce.trim())
        .ok()
        .and_then(|n| n.try_into().ok())
        .context("--nonce must be 64 hex digits (32 bytes)")?;
    let min_driver: DriverVersion = args.min_driver.parse().context("--min-driver")?;
    let report_hex = read_bounded(&args.report, "report")?;
    let report = gpu::decode_hex_report(&report_hex)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}", args.report.display()))?;
    let certs = read_bounded(&args.certs, "certificate chain")?;
    let trailing = if args.allow_trailing_zero {
        Trailing::AllowOneZeroByte
    } else {
        Trailing::Reject
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    let reference = match (
        &args.reference,
        &args.driver_rim,
        &args.vbios_rim,
        &args.rim_root,
    ) {
        (Some(path), ..) => Some(
            ReferenceValues::from_json(&read_bounded(path, "reference values")?)
                .with_context(|| format!("{}", path.display()))?,
        ),
        (None, Some(driver), Some(vbios), Some(root)) => {
            rim_reference(&report, trailing, driver, vbios, root, now)?
        }
        _ => None,
    };
    let policy = Policy {
        nonce,
        min_driver: Some(min_driver),
        reference,
        trailing,
        now,
    };
    let verdict = gpu::verify(
        Evidence {
            report: &report,
            chain_pem: &certs,
        },
        &policy,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", render(&verdict));
    }
    match verdict.error() {
        Some(e) => bail!("the GPU evidence does not verify: {e}"),
        None if !verdict.holds => bail!("the GPU evidence does not verify"),
        None => Ok(()),
    }
}

/// Reference values from the RIMs, verified, for the driver and VBIOS
/// versions the report states (the signature over those comes after; a
/// report that does not parse gets none, and fails on its own).
fn rim_reference(
    report: &[u8],
    trailing: Trailing,
    driver: &Path,
    vbios: &Path,
    root: &Path,
    now: std::time::Duration,
) -> anyhow::Result<Option<ReferenceValues>> {
    let root = crate::import_rims::read_root(root)?;
    let driver = crate::import_rims::read_rim(driver, &root, now)?;
    let vbios = crate::import_rims::read_rim(vbios, &root, now)?;
    let Ok(parsed) = gpu::parse_report(report, trailing) else {
        return Ok(None);
    };
    let opaque = &parsed.response.opaque;
    let refs = ReferenceValues::from_rims(
        &driver,
        &vbios,
        opaque.driver_version(),
        opaque.vbios_version(),
        &root,
    )?;
    Ok(Some(refs))
}

/// The human-readable verdict: one line per check, then what the GPU said.
fn render(v: &Verdict) -> String {
    let mut out = String::new();
    for c in &v.checks {
        let mark = match c.status {
            Status::Pass => "ok  ",
            Status::Fail => "FAIL",
            Status::NotChecked => "--  ",
        };
        let name = serde_json::to_value(c.name)
            .ok()
            .and_then(|n| n.as_str().map(str::to_string))
            .unwrap_or_default();
        out += &format!("{mark} {name:<18} {}\n", c.detail);
    }
    if let Some(e) = &v.evidence {
        let signed = v
            .check(CheckName::Signature)
            .is_some_and(|c| c.status == Status::Pass);
        out += &format!(
            "GPU: driver {}, VBIOS {}, {} measurement blocks{}\n",
            e.driver_version,
            e.vbios_version,
            e.measurement_blocks,
            if signed {
                ""
            } else {
                " (unsigned claims: the signature did not hold)"
            }
        );
    }
    out += &match (v.holds, v.measurements_compared) {
        (true, true) => "verdict: the GPU evidence holds, measurements included\n".to_string(),
        (true, false) => "verdict: chain, signature, nonce and driver hold; the measurement blocks were NOT compared (no --reference)\n".to_string(),
        (false, _) => "verdict: the GPU evidence does NOT hold\n".to_string(),
    };
    out
}
