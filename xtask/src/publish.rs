//! `cargo xtask publish`: puts every measurement of a manifest into the
//! registry on TON, from a publisher's wallet, then reads them back.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cocoon_measurements::registry::api::boc_base64;
use cocoon_measurements::registry::check::{self, Policy};
use cocoon_measurements::registry::reader::Reader;
use cocoon_measurements::registry::sender::{self, NANO, Sender};
use cocoon_measurements::registry::wallet::Wallet;

use crate::chain::{self, ChainArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image's manifest.json.
    #[arg(long)]
    manifest: PathBuf,
    /// The publisher wallet's key file (mode 0600: a 24-word mnemonic or a
    /// 64-hex-digit seed); else $COCOON_TON_SECRET_KEY.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Print what would be sent and the BOCs, and send nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    chain: ChainArgs,
}

pub fn run(args: &Args) -> Result<()> {
    let (_, release, measurements) = chain::manifest_release(&args.manifest)?;
    let registry = args.chain.registry()?;
    let messages = sender::publish_messages(&registry, &release, &measurements, 0)?;
    let attached: u64 = messages.iter().map(|m| m.value).sum();
    println!("registry:      {registry} ({})", args.chain.network);
    println!(
        "release:       version {}, manifest sha256 {}, model sha256 {}",
        release.version,
        hex::encode(release.manifest_sha256),
        hex::encode(release.model_sha256)
    );
    println!(
        "measurements:  {} in {} publish message(s), {:.3} TON attached in all",
        measurements.len(),
        messages.len(),
        attached as f64 / NANO as f64
    );
    // The key is needed to sign, even for a dry run; without one a dry run
    // shows the unsigned message bodies.
    let key = match chain::load_key(args.key_file.as_deref()) {
        Ok(k) => Some(k),
        Err(e) if args.dry_run => {
            eprintln!("xtask: {e}; showing the unsigned bodies");
            None
        }
        Err(e) => return Err(e),
    };
    let api = args.chain.api()?;
    if args.dry_run {
        let Some(key) = key else {
            for (i, m) in messages.iter().enumerate() {
                println!("body {}: {}", i + 1, boc_base64(&m.body)?);
            }
            return Ok(());
        };
        let sender = Sender::new(&api, Wallet::new(key)?);
        println!("wallet:        {}", sender.wallet().address());
        let state = sender
            .state()
            .with_context(|| format!("reading the wallet's seqno from {}", api.endpoint()))?;
        println!(
            "wallet state:  seqno {}, balance {:.4} TON{}",
            state.seqno,
            state.balance as f64 / NANO as f64,
            if state.needs_deploy {
                ", not deployed yet (the first message deploys it)"
            } else {
                ""
            }
        );
        if let Err(e) = sender.check_balance(state, &messages) {
            eprintln!("xtask: warning: {e}");
        }
        for (i, ext) in sender.sign_all(state, &messages)?.iter().enumerate() {
            println!(
                "external message {} (hash {}):",
                i + 1,
                ext.cell_hash().to_hex()
            );
            println!("{}", boc_base64(ext)?);
        }
        println!("dry run: nothing sent");
        return Ok(());
    }
    let key = key.expect("a real run returned above without a key");
    let sender = Sender::new(&api, Wallet::new(key)?);
    let reader = Reader::new(&api, registry.clone());
    reader.check_code()?;
    if !reader.is_publisher(sender.wallet().address())? {
        bail!(
            "wallet {} is not a publisher of registry {registry}: the owner adds it with \
             `cargo xtask registry add-publisher {}`",
            sender.wallet().address(),
            sender.wallet().address()
        );
    }
    let before = sender.state()?.balance;
    let sent = sender.send_all(&messages, |m| eprintln!("xtask: {m}"))?;
    let spent = before.saturating_sub(sender.state()?.balance);
    // Refused messages bounce their value back, so this can be less than
    // what was attached.
    println!(
        "wallet spent:  {:.4} TON ({:.4} attached)",
        spent as f64 / NANO as f64,
        attached as f64 / NANO as f64
    );
    for s in &sent {
        eprintln!(
            "xtask: seqno {} taken (external message {})",
            s.seqno, s.message_hash
        );
    }
    // Read everything back: a publisher's message can be refused by the
    // registry (a conflicting record) while the wallet's part succeeded.
    let report = check::check(&reader, &measurements)?;
    let policy = Policy {
        manifest_sha256: Some(release.manifest_sha256),
        min_endorsements: 0,
    };
    let problems = report.problems(&policy);
    if let Some((m, why)) = problems.first() {
        bail!(
            "sent, but {} of {} measurements are not allowed for this manifest; the first, {m}: {why}",
            problems.len(),
            measurements.len()
        );
    }
    println!(
        "published:     all {} measurements are allowed on chain",
        measurements.len()
    );
    Ok(())
}
