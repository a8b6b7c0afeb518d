//! `cocoon-host attest URL`: is the server at URL the measured image on a
//! genuine AMD SEV-SNP machine, in this very TLS session?
//!
//! Prints what was verified and why it passed or failed (`--json` for
//! programs). Exit status 0 only for an accepted guest; an unattested guest
//! (a development boot) is refused unless `--allow-unattested`, and even
//! then the output says it is unattested.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cocoon_measurements::attest::{
    Allowlist, Attestation, GpuPolicy, MinTcb, Policy, RegistryAllowlist, VcekStore, Verdict,
    Verifier, attest,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The guest: `https://HOST:PORT` or `HOST:PORT`.
    url: String,
    /// An image folder (or its manifest.json): every launch measurement it
    /// lists is allowed.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// An allowed launch measurement (96 hex digits); repeatable.
    #[arg(long = "measurement", value_name = "HEX")]
    measurements: Vec<String>,
    /// Also allow what the measurement registry on TON allows (published,
    /// not revoked): the contract's address.
    #[arg(long, env = "COCOON_REGISTRY")]
    registry: Option<String>,
    /// With --registry: testnet, mainnet, or a TON HTTP API v2 URL.
    #[arg(long, env = "COCOON_TON_NETWORK", default_value = "testnet")]
    network: String,
    /// With --registry: the API key (X-API-Key).
    #[arg(long, env = "COCOON_TON_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// With --registry: require at least K endorsements by current auditors.
    #[arg(long, default_value_t = 0, value_name = "K")]
    min_endorsements: u32,
    /// Minimum TCB, e.g. `bootloader=3,tee=0,snp=8,microcode=115`.
    #[arg(long, default_value = "")]
    min_tcb: String,
    /// Folders of VCEKs fetched elsewhere (an offline bundle).
    #[arg(long = "vcek-dir", value_name = "DIR")]
    vcek_dirs: Vec<PathBuf>,
    /// Never ask AMD's key server; without a cached or bundled VCEK the
    /// check fails.
    #[arg(long)]
    offline: bool,
    /// Accept a guest that says it runs without SEV-SNP (development boots).
    #[arg(long)]
    allow_unattested: bool,
    /// Refuse a guest whose certificate carries no GPU evidence bound by
    /// its SNP report (use it for GPU images: it catches evidence stripped
    /// by the host, and a GPU outside CC mode).
    #[arg(long)]
    require_gpu: bool,
    /// Reference values the GPUs' measurement blocks must match
    /// (cocoon-gpu-reference-values/1, e.g. from `cocoon-host
    /// import-rims`); without it they are reported, not compared.
    #[arg(long, value_name = "FILE")]
    gpu_reference: Option<PathBuf>,
    /// The oldest NVIDIA driver accepted in GPU evidence.
    #[arg(long, value_name = "VERSION", default_value = cocoon_measurements::gpu::DEFAULT_MIN_DRIVER)]
    gpu_min_driver: String,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds for the connection and each read.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let addr = args
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    if addr.contains('/') || !addr.contains(':') {
        bail!("`{}` is not https://HOST:PORT", args.url);
    }
    let mut measurements = Vec::new();
    if let Some(path) = &args.manifest {
        let dir = if path.is_dir() {
            path.clone()
        } else {
            path.parent().map(PathBuf::from).unwrap_or_default()
        };
        let manifest = cocoon_image::manifest::Manifest::load(&dir)
            .with_context(|| format!("reading the manifest in {}", dir.display()))?;
        for m in &manifest.measurements {
            measurements.push(parse_measurement(&m.measurement)?);
        }
    }
    for m in &args.measurements {
        measurements.push(parse_measurement(m)?);
    }
    let allowlist = match &args.registry {
        None => None,
        Some(address) => {
            use cocoon_measurements::registry;
            let network = registry::api::Network::parse(&args.network)?;
            let list: Arc<dyn Allowlist> = Arc::new(RegistryAllowlist {
                api: registry::api::TonApi::new(&network, args.api_key.clone()),
                address: registry::parse_address(address)?,
                min_endorsements: args.min_endorsements,
            });
            Some(list)
        }
    };
    let policy = Policy {
        measurements,
        allowlist,
        gpu: GpuPolicy {
            require: args.require_gpu,
            min_driver: args
                .gpu_min_driver
                .parse()
                .map_err(|e| anyhow::anyhow!("--gpu-min-driver: {e}"))?,
            root: None,
            reference: match &args.gpu_reference {
                None => None,
                Some(path) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Some(
                        cocoon_measurements::gpu::ReferenceValues::from_json(&bytes)
                            .with_context(|| format!("{}", path.display()))?,
                    )
                }
            },
        },
        min_tcb: MinTcb::parse(&args.min_tcb).map_err(|e| anyhow::anyhow!("--min-tcb: {e}"))?,
    };
    let mut verifier = Verifier::amd(policy).context("loading AMD's roots")?;
    verifier.vceks = VcekStore {
        cache: VcekStore::default_cache(),
        bundles: args.vcek_dirs.clone(),
        network: !args.offline,
    };
    verifier.allow_unattested = args.allow_unattested;

    let result = attest(&addr, verifier, Duration::from_secs(args.timeout));
    if args.json {
        let value = match &result {
            Ok(a) => serde_json::json!({ "accepted": true, "attestation": a }),
            Err(e) => serde_json::json!({ "accepted": false, "error": e.to_string() }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &result {
            Ok(a) => print_accepted(&args.url, a),
            Err(e) => println!("REFUSED {}: {e}", args.url),
        }
    }
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("attestation failed: {e}")),
    }
}

fn parse_measurement(hex_str: &str) -> Result<[u8; 48]> {
    let mut m = [0u8; 48];
    hex::decode_to_slice(hex_str.trim(), &mut m)
        .with_context(|| format!("`{hex_str}` is not a launch measurement (96 hex digits)"))?;
    Ok(m)
}

fn print_accepted(url: &str, a: &Attestation) {
    match &a.verdict {
        Verdict::SevSnp(r) => {
            println!("ATTESTED {url}");
            println!(
                "  platform      AMD SEV-SNP ({}), report version {}",
                r.product, r.report_version
            );
            println!("  measurement   {} (allowed)", r.measurement);
            println!("  chip          {}…", &r.chip_id[..16]);
            let t = &r.reported_tcb;
            println!(
                "  TCB           bootloader {} tee {} snp {} microcode {}{}",
                t.bootloader,
                t.tee,
                t.snp,
                t.microcode,
                t.fmc.map(|f| format!(" fmc {f}")).unwrap_or_default()
            );
            println!(
                "  policy        {:#x}: debug off, no migration agent; VMPL {}",
                r.policy, r.vmpl
            );
            println!(
                "  chain         report ← VCEK ({}) ← ASK ← AMD ARK",
                r.vcek_source
            );
            if r.gpus.is_empty() {
                println!(
                    "  TLS key       bound: report_data = SHA-512(label ‖ the certificate's key)"
                );
                println!("  GPU           none in the evidence");
            } else {
                println!(
                    "  TLS key       bound: report_data = SHA-512(label ‖ SHA-512(GPU evidence) ‖ the certificate's key)"
                );
                for g in &r.gpus {
                    println!(
                        "  GPU {}         NVIDIA, driver {}, VBIOS {}, {} measurement blocks ({})",
                        g.index,
                        g.driver_version,
                        g.vbios_version,
                        g.measurement_blocks,
                        if g.measurements_compared {
                            "matched the --gpu-reference values"
                        } else {
                            "NOT compared with reference values: no --gpu-reference"
                        }
                    );
                    println!(
                        "                chain {} ← NVIDIA root; signed nonce {}… = hash of the TLS key",
                        g.certificate_chain.len(),
                        &g.nonce[..16]
                    );
                }
            }
            if a.session.is_some() {
                println!(
                    "  session       bound: a fresh report covers our nonce and this connection's exporter"
                );
            }
        }
        Verdict::Unattested { reason } => {
            println!("UNATTESTED {url} (accepted only because of --allow-unattested)");
            println!("  the guest says: {reason}");
            println!("  nothing about this server's code or platform was verified");
        }
    }
}
