//! Sends internal messages through the wallet: reads the wallet's seqno,
//! signs one external message per four internal messages, sends it and
//! waits until the seqno moves before signing the next (a wallet accepts
//! one seqno at a time).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tonlib_core::TonAddress;
use tonlib_core::cell::Cell;

use super::api::TonApi;
use super::wallet::{MAX_MESSAGES, OutMessage, Wallet};
use super::{Measurement, RegistryError, contract, messages};

/// nanoton per TON.
pub const NANO: u64 = 1_000_000_000;

/// How long a signed external message stays valid.
const VALIDITY: Duration = Duration::from_secs(120);

/// What publish, revoke and endorse attach: a base plus a share per
/// measurement. The attached value caps the gas (at the basechain price of
/// 400 nanoton per gas unit): a full 32-batch attaches 0.206 TON, room for
/// 515,000 gas, about 1.5 times the 350,000 it used in a registry of 4,000
/// records (BENCHMARKS.md). What the transaction does not spend stays in
/// the registry as its storage deposit (about 0.5 TON per 256-shape
/// release, some three years of that release's storage).
pub fn batch_value(measurements: usize) -> u64 {
    30_000_000 + 5_500_000 * measurements as u64
}

/// What a role change or a deploy attaches.
pub const ADMIN_VALUE: u64 = 50_000_000;
pub const DEPLOY_VALUE: u64 = 200_000_000;

fn to(registry: &TonAddress, value: u64, body: Cell) -> OutMessage {
    OutMessage {
        to: registry.clone(),
        value,
        body,
        state_init: None,
        bounce: true,
    }
}

/// One message per batch of [`messages::MAX_BATCH`] measurements, each
/// with its body from `body` and the value its size calls for.
fn batched(
    registry: &TonAddress,
    measurements: &[Measurement],
    body: impl Fn(&[Measurement]) -> Result<Cell, RegistryError>,
) -> Result<Vec<OutMessage>, RegistryError> {
    messages::batches(measurements)
        .iter()
        .map(|b| Ok(to(registry, batch_value(b.len()), body(b)?)))
        .collect()
}

pub fn publish_messages(
    registry: &TonAddress,
    release: &messages::Release,
    measurements: &[Measurement],
    query_id: u64,
) -> Result<Vec<OutMessage>, RegistryError> {
    batched(registry, measurements, |b| {
        messages::publish_body(query_id, release, b)
    })
}

pub fn revoke_messages(
    registry: &TonAddress,
    measurements: &[Measurement],
    query_id: u64,
) -> Result<Vec<OutMessage>, RegistryError> {
    batched(registry, measurements, |b| {
        messages::revoke_body(query_id, b)
    })
}

pub fn endorse_messages(
    registry: &TonAddress,
    measurements: &[Measurement],
    query_id: u64,
) -> Result<Vec<OutMessage>, RegistryError> {
    batched(registry, measurements, |b| {
        messages::endorse_body(query_id, b)
    })
}

pub fn role_message(
    registry: &TonAddress,
    op: messages::RoleOp,
    account: &TonAddress,
) -> Result<OutMessage, RegistryError> {
    Ok(to(
        registry,
        ADMIN_VALUE,
        messages::role_body(op, 0, account)?,
    ))
}

/// The message that deploys a registry owned by `owner` (an empty body;
/// the state init carries code and storage). Returns it and the address.
pub fn deploy_message(
    registry_id: u32,
    owner: &TonAddress,
) -> Result<(OutMessage, TonAddress), RegistryError> {
    let (init, address) = contract::state_init(registry_id, owner)?;
    let body = tonlib_core::cell::CellBuilder::new().build()?;
    Ok((
        OutMessage {
            to: address.clone(),
            value: DEPLOY_VALUE,
            body,
            state_init: Some(init),
            bounce: false,
        },
        address,
    ))
}

/// The internal messages of each external message.
fn groups(messages: &[OutMessage]) -> Vec<&[OutMessage]> {
    messages.chunks(MAX_MESSAGES).collect()
}

/// The wallet's state on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletState {
    pub seqno: u32,
    /// The wallet contract is not deployed yet: its first message carries
    /// its state init.
    pub needs_deploy: bool,
    pub balance: u128,
}

/// What was sent: one entry per external message.
#[derive(Debug, Clone)]
pub struct Sent {
    pub seqno: u32,
    pub message_hash: String,
    pub internal_messages: usize,
}

pub struct Sender<'a> {
    api: &'a TonApi,
    wallet: Wallet,
    poll: Duration,
    timeout: Duration,
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl<'a> Sender<'a> {
    pub fn new(api: &'a TonApi, wallet: Wallet) -> Self {
        Self {
            api,
            wallet,
            poll: Duration::from_secs(3),
            timeout: Duration::from_secs(180),
        }
    }

    /// How often and how long to wait for the seqno to move.
    pub fn with_polling(mut self, poll: Duration, timeout: Duration) -> Self {
        self.poll = poll;
        self.timeout = timeout;
        self
    }

    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    pub fn state(&self) -> Result<WalletState, RegistryError> {
        let info = self.api.address_information(self.wallet.address())?;
        if info.state != "active" {
            return Ok(WalletState {
                seqno: 0,
                needs_deploy: true,
                balance: info.balance,
            });
        }
        let stack = self
            .api
            .run_get_method(self.wallet.address(), "seqno", &[])?;
        let seqno = stack
            .first()
            .and_then(|v| v.int())
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| RegistryError::Stack {
                method: "seqno".into(),
                message: "not a 32-bit integer".into(),
            })?;
        Ok(WalletState {
            seqno,
            needs_deploy: false,
            balance: info.balance,
        })
    }

    /// The signed external messages for `messages` as they would be sent
    /// now, without sending: seqnos from the current one upwards.
    pub fn sign_all(
        &self,
        state: WalletState,
        messages: &[OutMessage],
    ) -> Result<Vec<Cell>, RegistryError> {
        let valid_until = unix_now() + VALIDITY.as_secs() as u32;
        groups(messages)
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                self.wallet.external_message(
                    state.seqno + i as u32,
                    valid_until,
                    state.needs_deploy && i == 0,
                    chunk,
                )
            })
            .collect()
    }

    /// Refuses to start when the wallet cannot pay for everything, so a
    /// publish never stops half way for want of funds.
    pub fn check_balance(
        &self,
        state: WalletState,
        messages: &[OutMessage],
    ) -> Result<(), RegistryError> {
        let attached: u128 = messages.iter().map(|m| u128::from(m.value)).sum();
        // Wallet-side fees: its own transaction (under 0.02 TON) and the
        // forwarding of each message (a 32-measurement publish is about 70
        // cells: under 0.02 TON). Measured: 0.1385 TON for a 256-shape
        // publish, 8 messages in 2 external messages (BENCHMARKS.md).
        let fees = 20_000_000u128 * (groups(messages).len() + messages.len()) as u128;
        if state.balance < attached + fees {
            return Err(RegistryError::Invalid(format!(
                "wallet {} holds {:.4} TON; sending needs about {:.4} TON ({:.4} attached + fees): top it up",
                self.wallet.address().to_base64_url(),
                state.balance as f64 / NANO as f64,
                (attached + fees) as f64 / NANO as f64,
                attached as f64 / NANO as f64
            )));
        }
        Ok(())
    }

    /// Sends everything, four internal messages per external message, each
    /// after the previous one was taken. `progress` hears of each step.
    pub fn send_all(
        &self,
        messages: &[OutMessage],
        mut progress: impl FnMut(&str),
    ) -> Result<Vec<Sent>, RegistryError> {
        let first = self.state()?;
        self.check_balance(first, messages)?;
        let mut state = first;
        let mut sent = Vec::new();
        let chunks = groups(messages);
        for (i, chunk) in chunks.iter().enumerate() {
            let valid_until = unix_now() + VALIDITY.as_secs() as u32;
            let ext = self.wallet.external_message(
                state.seqno,
                valid_until,
                state.needs_deploy,
                chunk,
            )?;
            progress(&format!(
                "sending external message {}/{} (seqno {}, {} internal)",
                i + 1,
                chunks.len(),
                state.seqno,
                chunk.len()
            ));
            self.api.send_boc(&ext)?;
            let next = self.wait_for_seqno(state.seqno + 1)?;
            sent.push(Sent {
                seqno: state.seqno,
                message_hash: ext.cell_hash().to_hex(),
                internal_messages: chunk.len(),
            });
            state = next;
        }
        Ok(sent)
    }

    fn wait_for_seqno(&self, wanted: u32) -> Result<WalletState, RegistryError> {
        let start = Instant::now();
        loop {
            let s = self.state()?;
            if !s.needs_deploy && s.seqno >= wanted {
                return Ok(s);
            }
            if start.elapsed() > self.timeout {
                return Err(RegistryError::Timeout(format!(
                    "the wallet's seqno did not reach {wanted} within {} s: the message was not \
                     accepted or has expired. Nothing after it was sent; check the wallet's balance \
                     and rerun (publishing the same release again is a no-op for what is on chain)",
                    self.timeout.as_secs()
                )));
            }
            std::thread::sleep(self.poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(n: usize) -> Vec<OutMessage> {
        let body = tonlib_core::cell::CellBuilder::new().build().unwrap();
        (0..n)
            .map(|_| to(&TonAddress::NULL, 1, body.clone()))
            .collect()
    }

    #[test]
    fn every_grouping_signs() {
        let w = Wallet::new(crate::registry::keys::SecretKey::from_seed([5; 32])).unwrap();
        for deploy in [false, true] {
            // Four messages and the wallet's state init fit one external message.
            for g in groups(&msgs(8)) {
                assert_eq!(g.len(), MAX_MESSAGES);
                w.external_message(0, 1, deploy, g).unwrap();
            }
        }
    }
}
