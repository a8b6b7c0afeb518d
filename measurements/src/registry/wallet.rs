//! A wallet v4r2 (the standard code tonlib-core ships) that signs
//! external messages carrying up to four internal messages.

use std::sync::Arc;

use num_bigint::BigUint;
use tonlib_core::TonAddress;
use tonlib_core::cell::{ArcCell, Cell};
use tonlib_core::message::{CommonMsgInfo, InternalMessage, TonMessage, TransferMessage};
use tonlib_core::tlb_types::block::coins::Grams;
use tonlib_core::tlb_types::block::message::{
    CommonMsgInfo as CommonMsgInfoTlb, ExtInMsgInfo, Message,
};
use tonlib_core::tlb_types::block::msg_address::{MsgAddrNone, MsgAddressExt};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::primitives::either::{EitherRef, EitherRefLayout};
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::ton_wallet::TonWallet;
use tonlib_core::wallet::version_helper::VersionHelper;
use tonlib_core::wallet::wallet_version::WalletVersion;

use super::RegistryError;
use super::keys::SecretKey;

/// Internal messages one v4r2 external message may carry.
pub const MAX_MESSAGES: usize = 4;

/// One internal message the wallet sends.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub to: TonAddress,
    /// nanoton attached.
    pub value: u64,
    pub body: Cell,
    /// A state init deploys the destination (the registry's deploy).
    pub state_init: Option<Cell>,
    /// Bounceable: a rejected message comes back with its value.
    pub bounce: bool,
}

impl OutMessage {
    fn to_cell(&self) -> Result<ArcCell, RegistryError> {
        let info = CommonMsgInfo::InternalMessage(InternalMessage {
            ihr_disabled: true,
            bounce: self.bounce,
            bounced: false,
            src: TonAddress::NULL,
            dest: self.to.clone(),
            value: BigUint::from(self.value),
            ihr_fee: BigUint::from(0u32),
            fwd_fee: BigUint::from(0u32),
            created_lt: 0,
            created_at: 0,
        });
        let mut m = TransferMessage::new(info, Arc::new(self.body.clone()));
        if let Some(init) = &self.state_init {
            m.with_state_init(init.clone());
        }
        Ok(Arc::new(m.build()?))
    }
}

#[derive(Debug, Clone)]
pub struct Wallet {
    inner: TonWallet,
}

impl Wallet {
    pub fn new(key: SecretKey) -> Result<Self, RegistryError> {
        let inner = TonWallet::new(WalletVersion::V4R2, key.key_pair().clone())?;
        Ok(Self { inner })
    }

    pub fn address(&self) -> &TonAddress {
        &self.inner.address
    }

    /// The signed external message. `deploy` adds the wallet's state init
    /// (its first message, while the account is uninitialized).
    pub fn external_message(
        &self,
        seqno: u32,
        valid_until: u32,
        deploy: bool,
        messages: &[OutMessage],
    ) -> Result<Cell, RegistryError> {
        if messages.is_empty() || messages.len() > MAX_MESSAGES {
            return Err(RegistryError::Invalid(format!(
                "a wallet v4r2 message carries 1 to {MAX_MESSAGES} messages, not {}",
                messages.len()
            )));
        }
        let cells = messages
            .iter()
            .map(OutMessage::to_cell)
            .collect::<Result<Vec<_>, _>>()?;
        let body = self.inner.create_external_body(valid_until, seqno, cells)?;
        let signed = self.inner.sign_external_body(&body)?;
        // The state init and the body each go into a reference of their
        // own: tonlib-core's wrap_signed_body inlines both when their bits
        // fit, which overflows the cell's four references once the body
        // carries several messages.
        let info = CommonMsgInfoTlb::ExtIn(ExtInMsgInfo {
            src: MsgAddressExt::None(MsgAddrNone {}),
            dest: self.inner.address.to_msg_address_int(),
            import_fee: Grams::new(BigUint::from(0u32)),
        });
        let mut message = Message::new(info, Arc::new(signed));
        message.body.layout = EitherRefLayout::ToRef;
        if deploy {
            let code = VersionHelper::get_code(self.inner.version)?.clone();
            let data = VersionHelper::get_data(
                self.inner.version,
                &self.inner.key_pair,
                self.inner.wallet_id,
            )?;
            message.init = Some(EitherRef {
                value: StateInit::new(code, Arc::new(data)),
                layout: EitherRefLayout::ToRef,
            });
        }
        Ok(message.to_cell()?)
    }
}
