//! `cargo xtask registry`: the owner's and publishers' administration of
//! the registry contract: deploy it, grant and withdraw roles, revoke
//! measurements, show who is who.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cocoon_measurements::registry::messages::RoleOp;
use cocoon_measurements::registry::reader::Reader;
use cocoon_measurements::registry::sender::{self, Sender};
use cocoon_measurements::registry::wallet::{OutMessage, Wallet};
use cocoon_measurements::registry::{Measurement, contract, parse_address};

use crate::chain::{self, ChainArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The wallet's key file (mode 0600); else $COCOON_TON_SECRET_KEY.
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    chain: ChainArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Deploy a new registry owned by the key's wallet; prints its address.
    Deploy {
        /// Tells apart registries of the same owner (it changes the address).
        #[arg(long, default_value_t = 1)]
        id: u32,
    },
    /// Let ACCOUNT publish measurements (owner only).
    AddPublisher { account: String },
    /// Withdraw ACCOUNT's publisher role (owner only).
    RemovePublisher { account: String },
    /// Let ACCOUNT endorse measurements (owner only).
    AddAuditor { account: String },
    /// Withdraw ACCOUNT's auditor role, and with it its endorsements (owner only).
    RemoveAuditor { account: String },
    /// Hand the registry to another owner (owner only).
    TransferOwnership { account: String },
    /// Revoke measurements for good (owner or a publisher): every one of a
    /// manifest, or the ones given in hex.
    Revoke {
        #[arg(long)]
        manifest: Option<PathBuf>,
        measurements: Vec<String>,
    },
    /// Show the registry's id and owner, and the key's wallet and roles.
    Info,
}

pub fn run(args: &Args) -> Result<()> {
    let api = args.chain.api()?;
    if let Action::Deploy { id } = &args.action {
        let wallet = Wallet::new(chain::load_key(args.key_file.as_deref())?)?;
        let (message, address) = sender::deploy_message(*id, wallet.address())?;
        println!(
            "deploying registry {address} (id {id}, owner {}, code hash {})",
            wallet.address(),
            contract::compiled()?.code_hash_hex
        );
        Sender::new(&api, wallet).send_all(&[message], |m| eprintln!("xtask: {m}"))?;
        let (got_id, owner) = Reader::new(&api, address.clone())
            .info()
            .context("the registry does not answer after the deploy")?;
        println!("deployed: registry {address}, id {got_id}, owner {owner}");
        return Ok(());
    }
    let registry = args.chain.registry()?;
    let reader = Reader::new(&api, registry.clone());
    reader.check_code()?;
    if let Action::Info = &args.action {
        let (id, owner) = reader.info()?;
        println!("registry:  {registry}\nid:        {id}\nowner:     {owner}");
        if let Ok(key) = chain::load_key(args.key_file.as_deref()) {
            let w = Wallet::new(key)?;
            println!(
                "wallet:    {} (publisher: {}, auditor: {}, owner: {})",
                w.address(),
                reader.is_publisher(w.address())?,
                reader.is_auditor(w.address())?,
                *w.address() == owner
            );
        }
        return Ok(());
    }
    let wallet = Wallet::new(chain::load_key(args.key_file.as_deref())?)?;
    let messages: Vec<OutMessage> = match &args.action {
        Action::AddPublisher { account } => role(&registry, RoleOp::AddPublisher, account)?,
        Action::RemovePublisher { account } => role(&registry, RoleOp::RemovePublisher, account)?,
        Action::AddAuditor { account } => role(&registry, RoleOp::AddAuditor, account)?,
        Action::RemoveAuditor { account } => role(&registry, RoleOp::RemoveAuditor, account)?,
        Action::TransferOwnership { account } => {
            role(&registry, RoleOp::TransferOwnership, account)?
        }
        Action::Revoke {
            manifest,
            measurements,
        } => {
            let mut ms: Vec<Measurement> = measurements
                .iter()
                .map(|m| m.parse())
                .collect::<Result<_, _>>()?;
            if let Some(path) = manifest {
                ms.extend(chain::manifest_release(path)?.2);
            }
            if ms.is_empty() {
                bail!("nothing to revoke: pass --manifest FILE or measurements in hex");
            }
            sender::revoke_messages(&registry, &ms, 0)?
        }
        Action::Deploy { .. } | Action::Info => unreachable!("handled above"),
    };
    Sender::new(&api, wallet).send_all(&messages, |m| eprintln!("xtask: {m}"))?;
    eprintln!("xtask: sent; `cargo xtask registry info` shows the roles");
    Ok(())
}

fn role(
    registry: &cocoon_measurements::registry::TonAddress,
    op: RoleOp,
    account: &str,
) -> Result<Vec<OutMessage>> {
    Ok(vec![sender::role_message(
        registry,
        op,
        &parse_address(account)?,
    )?])
}
