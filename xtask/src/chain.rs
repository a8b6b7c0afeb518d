//! The TON registry from the pipeline's side: which network and registry,
//! what an image's manifest says to publish, and `cargo xtask verify
//! --chain` (is this image's measurement allowed, by whom, with how many
//! endorsements; `--endorse` sends the auditor's endorsement).
//!
//! The functions here are plain so that another `verify` mode (signed
//! releases) can call [`check_image`] and [`endorse`] directly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::digest::Sha256;
use cocoon_image::manifest::{MANIFEST_FILE, Manifest};
use cocoon_measurements::registry::api::{Network, TonApi};
use cocoon_measurements::registry::check::{self, Policy, Report};
use cocoon_measurements::registry::keys::SecretKey;
use cocoon_measurements::registry::messages::Release;
use cocoon_measurements::registry::reader::{Reader, Status};
use cocoon_measurements::registry::sender::{self, Sender};
use cocoon_measurements::registry::wallet::Wallet;
use cocoon_measurements::registry::{Measurement, TonAddress, parse_address};

/// The variable that may hold the wallet's secret key (a 24-word mnemonic
/// or a 64-hex-digit seed) when no `--key-file` is given.
pub const KEY_ENV: &str = "COCOON_TON_SECRET_KEY";

/// Where the registry is: shared by every command that talks to the chain.
#[derive(clap::Args, Debug, Clone)]
pub struct ChainArgs {
    /// testnet, mainnet, or the URL of a TON HTTP API v2 (toncenter's shape).
    #[arg(
        long,
        global = true,
        env = "COCOON_TON_NETWORK",
        default_value = "testnet"
    )]
    pub network: String,
    /// The registry contract's address.
    #[arg(long, global = true, env = "COCOON_REGISTRY")]
    pub registry: Option<String>,
    /// The API key, sent as X-API-Key (toncenter allows 1 request/s without one).
    #[arg(
        long,
        global = true,
        env = "COCOON_TON_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

impl ChainArgs {
    pub fn network(&self) -> Result<Network> {
        Ok(Network::parse(&self.network)?)
    }

    pub fn api(&self) -> Result<TonApi> {
        Ok(TonApi::new(&self.network()?, self.api_key.clone()))
    }

    pub fn registry(&self) -> Result<TonAddress> {
        let text = self.registry.as_deref().context(
            "no registry address: pass --registry ADDRESS or set COCOON_REGISTRY \
             (docs/registry.md lists the deployed ones)",
        )?;
        Ok(parse_address(text)?)
    }
}

/// The wallet key: `--key-file`, else `$COCOON_TON_SECRET_KEY`.
pub fn load_key(key_file: Option<&Path>) -> Result<SecretKey> {
    Ok(SecretKey::load(key_file, KEY_ENV)?)
}

/// The sha256 of the model pack an image serves (the one on its measured
/// command line); zero for an image built without a model.
pub fn model_sha256(manifest: &Manifest) -> [u8; 32] {
    manifest
        .model
        .as_ref()
        .map(|m| m.pack_hash.0)
        .unwrap_or([0u8; 32])
}

/// What publishing a manifest puts on chain: the release (manifest sha256
/// over the file's bytes, model sha256, version) and every measurement.
pub fn manifest_release(path: &Path) -> Result<(Manifest, Release, Vec<Measurement>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    let manifest = Manifest::parse(text, &path.display().to_string())?;
    if manifest.git.dirty {
        eprintln!(
            "xtask: warning: {} was built from a dirty tree: its commit alone does not reproduce it",
            path.display()
        );
    }
    let release = Release {
        manifest_sha256: Sha256::of(&bytes).0,
        model_sha256: model_sha256(&manifest),
        version: manifest.version.clone(),
    };
    release.validate()?;
    let measurements = manifest
        .measurements
        .iter()
        .map(|r| {
            r.measurement.parse::<Measurement>().with_context(|| {
                format!(
                    "{}: the measurement of {} vCPUs × {}",
                    path.display(),
                    r.vcpus,
                    r.cpu_type
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if measurements.is_empty() {
        bail!(
            "{} lists no measurements: nothing to publish",
            path.display()
        );
    }
    Ok((manifest, release, measurements))
}

/// `cargo xtask verify --chain`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Compare the image's measurements with the registry on TON (with
    /// --release: the rebuilt release's).
    #[arg(long)]
    pub chain: bool,
    /// The image directory [default: target/cocoon/cpu].
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Require at least K endorsements by current auditors.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub min_endorsements: u32,
    /// After a successful check, endorse every measurement with the
    /// auditor's wallet ("I rebuilt this and got the same measurement").
    #[arg(long)]
    pub endorse: bool,
    /// The auditor's key file (with --endorse); else $COCOON_TON_SECRET_KEY.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub chain_args: ChainArgs,
}

/// Every measurement of the manifest in `image_dir`, looked up on chain.
pub fn check_image(image_dir: &Path, chain: &ChainArgs) -> Result<(Release, Report)> {
    let (_, release, measurements) = manifest_release(&image_dir.join(MANIFEST_FILE))?;
    let api = chain.api()?;
    let registry = chain.registry()?;
    let reader = Reader::new(&api, registry);
    reader.check_code()?;
    let report = check::check(&reader, &measurements)
        .with_context(|| format!("reading the registry {}", reader.address()))?;
    Ok((release, report))
}

/// Endorses `measurements` with the auditor's wallet and waits until the
/// chain took it; then checks the endorsements are counted.
pub fn endorse(chain: &ChainArgs, key: SecretKey, measurements: &[Measurement]) -> Result<()> {
    let api = chain.api()?;
    let registry = chain.registry()?;
    let wallet = Wallet::new(key)?;
    let reader = Reader::new(&api, registry.clone());
    reader.check_code()?;
    if !reader.is_auditor(wallet.address())? {
        bail!(
            "wallet {} is not an auditor of registry {}: the owner adds it with \
             `cargo xtask registry add-auditor {}`",
            wallet.address(),
            registry,
            wallet.address()
        );
    }
    let messages = sender::endorse_messages(&registry, measurements, 0)?;
    let s = Sender::new(&api, wallet.clone());
    s.send_all(&messages, |m| eprintln!("xtask: {m}"))?;
    let me = &measurements[0];
    let n = reader.endorsement_count(me)?;
    eprintln!(
        "xtask: endorsed {} measurement(s) from {}; {me} now has {n} endorsement(s)",
        measurements.len(),
        wallet.address()
    );
    Ok(())
}

fn print_report(release: &Release, report: &Report, policy: &Policy) {
    let mut publishers: Vec<String> = report
        .entries
        .iter()
        .filter_map(|e| e.record.as_ref())
        .map(|r| format!("{} (version {})", r.publisher, r.version))
        .collect();
    publishers.sort();
    publishers.dedup();
    let allowed = report
        .entries
        .iter()
        .filter(|e| {
            e.record
                .as_ref()
                .is_some_and(|r| r.status == Status::Allowed)
        })
        .count();
    let min = report
        .entries
        .iter()
        .map(|e| e.endorsements)
        .min()
        .unwrap_or(0);
    let max = report
        .entries
        .iter()
        .map(|e| e.endorsements)
        .max()
        .unwrap_or(0);
    println!("registry:      {}", report.registry);
    println!(
        "manifest:      sha256 {}, version {}",
        hex::encode(release.manifest_sha256),
        release.version
    );
    println!(
        "measurements:  {} of {} allowed",
        allowed,
        report.entries.len()
    );
    println!(
        "published by:  {}",
        if publishers.is_empty() {
            "nobody".into()
        } else {
            publishers.join(", ")
        }
    );
    println!(
        "endorsements:  {min}..{max} per measurement (current auditors), {} required",
        policy.min_endorsements
    );
}

fn report_json(release: &Release, report: &Report, policy: &Policy) -> serde_json::Value {
    let entries: Vec<_> = report
        .entries
        .iter()
        .map(|e| {
            let r = e.record.as_ref();
            serde_json::json!({
                "measurement": e.measurement.to_string(),
                "status": match r.map(|r| r.status) {
                    None => "unknown",
                    Some(Status::Allowed) => "allowed",
                    Some(Status::Revoked) => "revoked",
                },
                "publisher": r.map(|r| r.publisher.to_string()),
                "version": r.map(|r| r.version.clone()),
                "manifest_sha256": r.map(|r| hex::encode(r.manifest_sha256)),
                "published_at": r.map(|r| r.published_at),
                "endorsements": e.endorsements,
                "problem": e.problem(policy),
            })
        })
        .collect();
    serde_json::json!({
        "registry": report.registry.to_string(),
        "manifest_sha256": hex::encode(release.manifest_sha256),
        "version": release.version,
        "ok": report.problems(policy).is_empty(),
        "measurements": entries,
    })
}

pub fn run_verify(root: &Path, args: &VerifyArgs) -> Result<()> {
    if !args.chain {
        bail!("say what to verify against: --chain (the registry on TON)");
    }
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| crate::default_image_dir(root, "cpu"));
    // Load the key first: a missing key fails before any network traffic.
    let key = if args.endorse {
        let (manifest, _, _) = manifest_release(&image.join(MANIFEST_FILE))?;
        if manifest.git.dirty {
            bail!(
                "{} was built from a dirty tree: an endorsement vouches for a rebuild of a \
                 commit, so rebuild from a clean checkout first",
                image.display()
            );
        }
        Some(load_key(args.key_file.as_deref())?)
    } else {
        None
    };
    let (release, report) = check_image(&image, &args.chain_args)?;
    let policy = Policy {
        manifest_sha256: Some(release.manifest_sha256),
        min_endorsements: args.min_endorsements,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&release, &report, &policy))?
        );
    } else {
        print_report(&release, &report, &policy);
    }
    let problems = report.problems(&policy);
    if let Some((m, why)) = problems.first() {
        bail!(
            "{} of {} measurements of {} fail the chain check; the first, {m}: {why}",
            problems.len(),
            report.entries.len(),
            image.display()
        );
    }
    eprintln!(
        "xtask: every measurement of {} is allowed on chain",
        image.display()
    );
    if let Some(key) = key {
        let ms: Vec<_> = report.entries.iter().map(|e| e.measurement).collect();
        endorse(&args.chain_args, key, &ms)?;
    }
    Ok(())
}
