//! The DHCP client's exchanges: acquiring a lease (DISCOVER → OFFER →
//! REQUEST → ACK) and renewing it.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::dhcp::{self, MessageType, ParseError, Reply, Request};

/// A UDP socket on port 68 of one interface, allowed to broadcast.
fn open(interface: &str) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, dhcp::CLIENT_PORT).into())?;
    Ok(s.into())
}

/// A transaction id: it only has to differ between attempts.
fn new_xid(mac: &[u8; 6]) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(0);
    nanos
        ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]])
        ^ (crate::console::uptime() * 1e6) as u32
}

/// Sends `req` to `dest` and waits up to `wait` for a reply of one of the
/// `wanted` kinds (or a NAK). `None` when nothing usable came.
fn exchange(
    sock: &UdpSocket,
    req: &Request,
    dest: Ipv4Addr,
    wanted: MessageType,
    wait: Duration,
) -> io::Result<Option<Reply>> {
    sock.send_to(&req.encode(), SocketAddrV4::new(dest, dhcp::SERVER_PORT))?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        match dhcp::parse_reply(&buf[..n], req.xid, &req.mac) {
            Ok(r) if r.kind == wanted || r.kind == MessageType::Nak => return Ok(Some(r)),
            Ok(_) | Err(ParseError::NotOurs) => {}
            Err(ParseError::Invalid(why)) => {
                tracing::warn!("ignoring a malformed DHCP reply: {why}")
            }
        }
    }
}

/// Acquires a lease, retrying with backoff until `deadline` has passed.
pub fn acquire(interface: &str, mac: [u8; 6], deadline: Duration) -> io::Result<Reply> {
    let sock = open(interface)?;
    let start = Instant::now();
    let mut wait = Duration::from_millis(500);
    while start.elapsed() < deadline {
        let xid = new_xid(&mac);
        let discover = Request {
            kind: MessageType::Discover,
            xid,
            mac,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested_ip: None,
            server_id: None,
        };
        let offer = exchange(
            &sock,
            &discover,
            Ipv4Addr::BROADCAST,
            MessageType::Offer,
            wait,
        )?;
        wait = (wait * 2).min(Duration::from_secs(8));
        let Some(offer) = offer.filter(|o| o.kind == MessageType::Offer) else {
            continue;
        };
        let request = Request {
            kind: MessageType::Request,
            requested_ip: Some(offer.address),
            server_id: Some(offer.server_id),
            ..discover
        };
        for _ in 0..3 {
            match exchange(&sock, &request, Ipv4Addr::BROADCAST, MessageType::Ack, wait)? {
                Some(ack) if ack.kind == MessageType::Ack => return Ok(ack),
                Some(_nak) => break,
                None => {}
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no DHCP lease on {interface} after {} s: the VM's network must serve DHCP",
            deadline.as_secs()
        ),
    ))
}

/// Extends `lease`: unicast to its server while renewing, broadcast once
/// rebinding. `Ok(None)` when no server answered; a NAK comes back as a
/// reply of kind `Nak`.
pub fn renew(
    interface: &str,
    mac: [u8; 6],
    lease: &Reply,
    broadcast: bool,
) -> io::Result<Option<Reply>> {
    let sock = open(interface)?;
    let req = Request {
        kind: MessageType::Request,
        xid: new_xid(&mac),
        mac,
        ciaddr: lease.address,
        requested_ip: None,
        server_id: None,
    };
    let dest = if broadcast {
        Ipv4Addr::BROADCAST
    } else {
        lease.server_id
    };
    exchange(&sock, &req, dest, MessageType::Ack, Duration::from_secs(4))
}
