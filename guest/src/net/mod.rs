//! The guest's one network interface, configured by DHCP.
//!
//! The address, mask and route come from the host's network and are
//! untrusted like everything from the host: they decide where packets go,
//! never what is accepted (TLS and attestation do that).

mod client;
mod dhcp;
mod iface;

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long to wait for the NIC to appear after its driver loads.
const LINK_WAIT: Duration = Duration::from_secs(10);
/// How long to try for a first lease before giving up.
const LEASE_WAIT: Duration = Duration::from_secs(60);

/// A configured interface.
#[derive(Debug, Clone)]
pub struct Lease {
    pub interface: String,
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub lease_secs: u32,
    reply: dhcp::Reply,
}

/// Brings up `lo` and the first Ethernet interface, and configures it by DHCP.
pub fn bring_up() -> Result<Lease> {
    iface::set_up("lo").context("bringing up lo")?;
    let start = Instant::now();
    let interface = loop {
        if let Some(first) = iface::ethernet_interfaces()
            .context("listing interfaces")?
            .into_iter()
            .next()
        {
            break first;
        }
        if start.elapsed() > LINK_WAIT {
            bail!(
                "no network interface appeared within {} s: the VM needs a virtio-net device",
                LINK_WAIT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    iface::set_up(&interface).with_context(|| format!("bringing up {interface}"))?;
    let mac = iface::mac_address(&interface)
        .with_context(|| format!("reading the MAC address of {interface}"))?;
    let reply = client::acquire(&interface, mac, LEASE_WAIT)?;
    apply(&interface, mac, reply)
}

fn apply(interface: &str, mac: [u8; 6], reply: dhcp::Reply) -> Result<Lease> {
    iface::set_address(interface, reply.address, reply.prefix_len).with_context(|| {
        format!(
            "setting {}/{} on {interface}",
            reply.address, reply.prefix_len
        )
    })?;
    if let Some(mtu) = reply.mtu {
        iface::set_mtu(interface, mtu)
            .with_context(|| format!("setting MTU {mtu} on {interface}"))?;
    }
    if let Some(gw) = reply.router {
        iface::add_default_route(interface, gw)
            .with_context(|| format!("adding the default route via {gw}"))?;
    }
    tracing::info!(
        interface,
        address = %reply.address,
        prefix = reply.prefix_len,
        router = ?reply.router,
        lease_s = reply.lease_secs,
        "network configured"
    );
    Ok(Lease {
        interface: interface.to_string(),
        mac,
        address: reply.address,
        prefix_len: reply.prefix_len,
        lease_secs: reply.lease_secs,
        reply,
    })
}

/// Keeps the lease alive for as long as the guest runs (RFC 2131 4.4.5):
/// renew with the server at T1, rebind with anyone at T2, start over when
/// the lease has run out or a server says no.
pub fn spawn_lease_keeper(mut lease: Lease) {
    thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            loop {
                match keep(&lease) {
                    Ok(next) => lease = next,
                    Err(e) => {
                        tracing::error!("DHCP: {e:#}; trying again in 10 s");
                        thread::sleep(Duration::from_secs(10));
                    }
                }
            }
        })
        .expect("spawning the DHCP thread");
}

/// One lease period: returns the lease that replaces `lease`.
fn keep(lease: &Lease) -> Result<Lease> {
    let got = Instant::now();
    let at = |secs: u32| got + Duration::from_secs(secs as u64);
    let (t1, t2, end) = (
        at(lease.reply.renewal_secs),
        at(lease.reply.rebinding_secs),
        at(lease.reply.lease_secs),
    );
    thread::sleep(t1.saturating_duration_since(Instant::now()));
    while Instant::now() < end {
        let rebinding = Instant::now() >= t2;
        match client::renew(&lease.interface, lease.mac, &lease.reply, rebinding)? {
            Some(r) if r.kind == dhcp::MessageType::Ack && r.address == lease.address => {
                return apply(&lease.interface, lease.mac, r);
            }
            Some(_) => break, // NAK, or a different address: start over
            None => {
                // RFC 2131: wait half the time left to the next deadline, at least 60 s.
                let next = if rebinding { end } else { t2 };
                let half = next.saturating_duration_since(Instant::now()) / 2;
                thread::sleep(
                    half.max(Duration::from_secs(60))
                        .min(end.saturating_duration_since(Instant::now())),
                );
            }
        }
    }
    tracing::warn!(interface = %lease.interface, "DHCP lease lost; acquiring a new one");
    let reply = client::acquire(&lease.interface, lease.mac, LEASE_WAIT)?;
    apply(&lease.interface, lease.mac, reply)
}
