//! DHCPv4 messages (RFC 2131, options from RFC 2132): building the client's
//! requests and parsing the server's replies.
//!
//! Replies come from the host's network, which is untrusted: parsing checks
//! every length, and a reply is used only if it answers our transaction,
//! names our hardware address and carries a sane address and mask.

use std::net::Ipv4Addr;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Ask servers to broadcast their replies: until the address is configured
/// the kernel would drop a unicast reply to it.
const FLAG_BROADCAST: u16 = 0x8000;
const FIXED_LEN: usize = 236;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const END: u8 = 255;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            _ => return None,
        })
    }
}

/// What the client puts in a request.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub kind: MessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    /// Our current address when renewing (RFC 2131 4.3.2), else unspecified.
    pub ciaddr: Ipv4Addr,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0u8; FIXED_LEN];
        p[0] = BOOTREQUEST;
        p[1] = HTYPE_ETHERNET;
        p[2] = 6;
        p[4..8].copy_from_slice(&self.xid.to_be_bytes());
        if self.ciaddr.is_unspecified() {
            p[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
        }
        p[12..16].copy_from_slice(&self.ciaddr.octets());
        p[28..34].copy_from_slice(&self.mac);
        p.extend_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[opt::MESSAGE_TYPE, 1, self.kind as u8]);
        if let Some(ip) = self.requested_ip {
            p.extend_from_slice(&[opt::REQUESTED_IP, 4]);
            p.extend_from_slice(&ip.octets());
        }
        if let Some(ip) = self.server_id {
            p.extend_from_slice(&[opt::SERVER_ID, 4]);
            p.extend_from_slice(&ip.octets());
        }
        p.extend_from_slice(&[
            opt::PARAMETER_LIST,
            6,
            opt::SUBNET_MASK,
            opt::ROUTER,
            opt::MTU,
            opt::LEASE_TIME,
            opt::RENEWAL_TIME,
            opt::REBINDING_TIME,
        ]);
        p.push(opt::END);
        // Some servers drop requests shorter than a BOOTP packet (300 bytes).
        p.resize(p.len().max(300), 0);
        p
    }
}

/// A server reply that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    pub address: Ipv4Addr,
    pub server_id: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub mtu: Option<u16>,
    pub lease_secs: u32,
    pub renewal_secs: u32,
    pub rebinding_secs: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not for us (another transaction, another client, not a reply):
    /// ignore it and keep waiting.
    NotOurs,
    /// For us but unusable.
    Invalid(&'static str),
}

/// Lease times below this are raised to it: a hostile server must not make
/// the guest spin on renewals.
const MIN_LEASE_SECS: u32 = 60;

pub fn parse_reply(packet: &[u8], xid: u32, mac: &[u8; 6]) -> Result<Reply, ParseError> {
    use ParseError::*;
    if packet.len() < FIXED_LEN + 4
        || packet[0] != BOOTREPLY
        || packet[1] != HTYPE_ETHERNET
        || packet[2] != 6
    {
        return Err(NotOurs);
    }
    if packet[4..8] != xid.to_be_bytes() || packet[28..34] != mac[..] {
        return Err(NotOurs);
    }
    if packet[FIXED_LEN..FIXED_LEN + 4] != MAGIC_COOKIE {
        return Err(Invalid("no DHCP magic cookie"));
    }
    let address = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[16..20]).unwrap());

    let (mut kind, mut server_id, mut mask, mut router, mut mtu) = (None, None, None, None, None);
    let (mut lease, mut t1, mut t2) = (None, None, None);
    let mut i = FIXED_LEN + 4;
    while i < packet.len() {
        let code = packet[i];
        if code == opt::PAD {
            i += 1;
            continue;
        }
        if code == opt::END {
            break;
        }
        let len = *packet.get(i + 1).ok_or(Invalid("truncated option"))? as usize;
        let data = packet
            .get(i + 2..i + 2 + len)
            .ok_or(Invalid("truncated option"))?;
        i += 2 + len;
        let ip = || <[u8; 4]>::try_from(data.get(..4)?).ok().map(Ipv4Addr::from);
        let u32v = || <[u8; 4]>::try_from(data).ok().map(u32::from_be_bytes);
        match code {
            opt::MESSAGE_TYPE if len == 1 => kind = MessageType::from_u8(data[0]),
            opt::SERVER_ID => server_id = ip(),
            opt::SUBNET_MASK => mask = ip(),
            opt::ROUTER => router = ip(),
            opt::MTU if len == 2 => mtu = Some(u16::from_be_bytes([data[0], data[1]])),
            opt::LEASE_TIME => lease = u32v(),
            opt::RENEWAL_TIME => t1 = u32v(),
            opt::REBINDING_TIME => t2 = u32v(),
            _ => {}
        }
    }
    let kind = kind.ok_or(Invalid("no message type"))?;
    let server_id = server_id.ok_or(Invalid("no server identifier"))?;
    if kind == MessageType::Nak {
        return Ok(Reply {
            kind,
            address: Ipv4Addr::UNSPECIFIED,
            server_id,
            prefix_len: 0,
            router: None,
            mtu: None,
            lease_secs: 0,
            renewal_secs: 0,
            rebinding_secs: 0,
        });
    }
    if kind != MessageType::Offer && kind != MessageType::Ack {
        return Err(NotOurs);
    }
    if address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_loopback()
    {
        return Err(Invalid("unusable address"));
    }
    let mask = mask.ok_or(Invalid("no subnet mask"))?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 || !(8..=30).contains(&bits.leading_ones())
    {
        return Err(Invalid("subnet mask is not a contiguous /8../30"));
    }
    let prefix_len = bits.leading_ones() as u8;
    let same_subnet = |a: Ipv4Addr| u32::from(a) & bits == u32::from(address) & bits;
    // A router outside our subnet cannot be reached without more routes: ignore it.
    let router = router.filter(|r| same_subnet(*r) && *r != address);
    let mtu = mtu.filter(|m| (576..=9000).contains(m));
    let lease_secs = lease.unwrap_or(3600).max(MIN_LEASE_SECS);
    let renewal_secs = t1
        .filter(|t| *t > 0 && *t < lease_secs)
        .unwrap_or(lease_secs / 2);
    let rebinding_secs = t2
        .filter(|t| *t > renewal_secs && *t < lease_secs)
        .unwrap_or(lease_secs / 8 * 7)
        .max(renewal_secs);
    Ok(Reply {
        kind,
        address,
        server_id,
        prefix_len,
        router,
        mtu,
        lease_secs,
        renewal_secs,
        rebinding_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// A reply as QEMU's user-mode network sends it.
    fn reply(kind: u8, xid: u32, extra: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; FIXED_LEN];
        p[0] = BOOTREPLY;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p[28..34].copy_from_slice(&MAC);
        p.extend_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[
            53, 1, kind, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2,
        ]);
        p.extend_from_slice(&[51, 4, 0, 1, 0x51, 0x80]);
        p.extend_from_slice(extra);
        p.push(255);
        p
    }

    #[test]
    fn parses_a_slirp_offer() {
        let r = parse_reply(&reply(2, 7, &[]), 7, &MAC).unwrap();
        assert_eq!(r.kind, MessageType::Offer);
        assert_eq!(r.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.prefix_len, 24);
        assert_eq!(r.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            (r.lease_secs, r.renewal_secs, r.rebinding_secs),
            (86400, 43200, 75600)
        );
    }

    #[test]
    fn ignores_other_transactions_and_clients() {
        assert_eq!(
            parse_reply(&reply(2, 8, &[]), 7, &MAC),
            Err(ParseError::NotOurs)
        );
        assert_eq!(
            parse_reply(&reply(2, 7, &[]), 7, &[0; 6]),
            Err(ParseError::NotOurs)
        );
        let mut req = reply(2, 7, &[]);
        req[0] = BOOTREQUEST;
        assert_eq!(parse_reply(&req, 7, &MAC), Err(ParseError::NotOurs));
    }

    #[test]
    fn rejects_hostile_replies_without_panicking() {
        let good = reply(5, 7, &[]);
        for cut in 0..good.len() {
            let _ = parse_reply(&good[..cut], 7, &MAC);
        }
        // An option whose length runs past the end.
        let mut bad = reply(5, 7, &[]);
        bad.pop();
        bad.extend_from_slice(&[3, 200, 1]);
        assert!(matches!(
            parse_reply(&bad, 7, &MAC),
            Err(ParseError::Invalid(_))
        ));
        // A non-contiguous mask, a broadcast address.
        let mask = reply(5, 7, &[]);
        let mut m = mask.clone();
        let at = m
            .windows(6)
            .position(|w| w == [1, 4, 255, 255, 255, 0])
            .unwrap();
        m[at + 4] = 0x0f;
        assert!(parse_reply(&m, 7, &MAC).is_err());
        let mut b = mask.clone();
        b[16..20].copy_from_slice(&[255; 4]);
        assert!(parse_reply(&b, 7, &MAC).is_err());
    }

    #[test]
    fn clamps_tiny_leases_and_drops_foreign_routers() {
        let mut p = reply(5, 7, &[3, 4, 192, 168, 0, 1]);
        let at = p.windows(2).position(|w| w == [51, 4]).unwrap();
        p[at + 2..at + 6].copy_from_slice(&1u32.to_be_bytes());
        let r = parse_reply(&p, 7, &MAC).unwrap();
        assert_eq!(r.lease_secs, MIN_LEASE_SECS);
        assert_eq!(
            r.router, None,
            "the last router option is off-subnet and must be dropped"
        );
    }

    #[test]
    fn nak_needs_only_a_server() {
        let r = parse_reply(&reply(6, 7, &[]), 7, &MAC).unwrap();
        assert_eq!(r.kind, MessageType::Nak);
    }

    #[test]
    fn requests_are_well_formed() {
        let req = Request {
            kind: MessageType::Request,
            xid: 0xdeadbeef,
            mac: MAC,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested_ip: Some(Ipv4Addr::new(10, 0, 2, 15)),
            server_id: Some(Ipv4Addr::new(10, 0, 2, 2)),
        }
        .encode();
        assert!(req.len() >= 300);
        assert_eq!(req[0], BOOTREQUEST);
        assert_eq!(&req[4..8], &0xdeadbeefu32.to_be_bytes());
        assert_eq!(&req[10..12], &FLAG_BROADCAST.to_be_bytes());
        assert_eq!(&req[28..34], &MAC);
        assert_eq!(&req[236..240], &MAGIC_COOKIE);
        assert_eq!(&req[240..243], &[53, 1, 3]);
        assert_eq!(&req[243..249], &[50, 4, 10, 0, 2, 15]);
        assert_eq!(&req[249..255], &[54, 4, 10, 0, 2, 2]);
    }
}
