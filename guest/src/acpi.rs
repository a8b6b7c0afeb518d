//! ACPI events over generic netlink: how the host's "press the power
//! button" (QMP `system_powerdown`) reaches PID 1.
//!
//! The kernel's ACPI core registers the generic-netlink family
//! `acpi_event`; the `button` driver multicasts one message per press to its
//! group `acpi_mc_group`. Without a userspace daemon, listening here is the
//! whole of "acpid".

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_GENERIC: libc::c_int = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
const ACPI_GENL_ATTR_EVENT: u16 = 1;
const NLMSG_HDR: usize = 16;
const GENL_HDR: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Iterates over netlink attributes: `(type, payload)`; stops at the first
/// malformed one.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes(buf.get(..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        let payload = buf.get(4..len)?;
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// Splits a datagram into netlink messages: `(type, payload after nlmsghdr)`.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
        let payload = buf.get(NLMSG_HDR..len)?;
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A netlink socket subscribed to ACPI events.
pub struct AcpiEvents {
    fd: OwnedFd,
}

impl AcpiEvents {
    pub fn subscribe() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let events = AcpiEvents { fd };
        let group = events.resolve_group()?;
        // SAFETY: the option value is a u32 as NETLINK_ADD_MEMBERSHIP expects.
        let r = unsafe {
            libc::setsockopt(
                events.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_ADD_MEMBERSHIP,
                &group as *const u32 as *const libc::c_void,
                4,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(events)
    }

    /// Asks the generic-netlink controller for the `acpi_mc_group` id.
    fn resolve_group(&self) -> io::Result<u32> {
        let name = b"acpi_event\0";
        let attr_len = 4 + name.len();
        let total = NLMSG_HDR + GENL_HDR + attr_len.next_multiple_of(4);
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&GENL_ID_CTRL.to_ne_bytes());
        msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
        msg.extend_from_slice(&[CTRL_CMD_GETFAMILY, 1, 0, 0]);
        msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        msg.extend_from_slice(&CTRL_ATTR_FAMILY_NAME.to_ne_bytes());
        msg.extend_from_slice(name);
        msg.resize(total, 0);
        // SAFETY: sending a buffer we own.
        if unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr() as *const _, msg.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        let n = self.recv(&mut buf)?;
        for (kind, payload) in messages(&buf[..n]) {
            if kind == libc::NLMSG_ERROR as u16 {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the kernel has no acpi_event netlink family (no ACPI?)",
                ));
            }
            let attrs = payload
                .get(GENL_HDR..)
                .ok_or_else(|| invalid("short genetlink reply"))?;
            for (t, v) in attributes(attrs) {
                if t != CTRL_ATTR_MCAST_GROUPS {
                    continue;
                }
                for (_, group) in attributes(v) {
                    let mut gname = None;
                    let mut gid = None;
                    for (gt, gv) in attributes(group) {
                        match gt {
                            CTRL_ATTR_MCAST_GRP_NAME => {
                                gname = Some(gv.split(|b| *b == 0).next().unwrap_or(gv))
                            }
                            CTRL_ATTR_MCAST_GRP_ID => {
                                gid = gv.try_into().ok().map(u32::from_ne_bytes)
                            }
                            _ => {}
                        }
                    }
                    if let (Some(b"acpi_mc_group"), Some(id)) = (gname, gid) {
                        return Ok(id);
                    }
                }
            }
        }
        Err(invalid("acpi_event has no acpi_mc_group multicast group"))
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: receiving into a buffer we own, within its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut _,
                    buf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Blocks until the next ACPI event; returns its device class
    /// (`button/power`, ...).
    pub fn next(&self) -> io::Result<String> {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = self.recv(&mut buf)?;
            for (_, payload) in messages(&buf[..n]) {
                if let Some(class) = device_class(payload) {
                    return Ok(class);
                }
            }
        }
    }
}

/// The `device_class` of an `acpi_genl_event` in a genetlink payload.
fn device_class(payload: &[u8]) -> Option<String> {
    let attrs = payload.get(GENL_HDR..)?;
    let (_, event) = attributes(attrs).find(|(t, _)| *t == ACPI_GENL_ATTR_EVENT)?;
    // struct acpi_genl_event { char device_class[20]; char bus_id[15]; u32 type; u32 data; }
    let class = event.get(..20)?;
    let end = class.iter().position(|b| *b == 0).unwrap_or(class.len());
    Some(String::from_utf8_lossy(&class[..end]).into_owned())
}

/// Whether an event class means "power down".
pub fn is_power_button(class: &str) -> bool {
    class.starts_with("button/power")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn reads_the_device_class_of_an_event() {
        let mut event = [0u8; 44];
        event[..12].copy_from_slice(b"button/power");
        event[20..27].copy_from_slice(b"LNXPWRB");
        let mut payload = vec![1, 1, 0, 0];
        payload.extend(attr(ACPI_GENL_ATTR_EVENT, &event));
        let class = device_class(&payload).unwrap();
        assert_eq!(class, "button/power");
        assert!(is_power_button(&class));
        assert!(!is_power_button("button/sleep"));
    }

    #[test]
    fn malformed_messages_yield_nothing() {
        assert_eq!(device_class(&[1, 1, 0, 0, 0xff, 0xff, 1, 0]), None);
        assert_eq!(device_class(&[]), None);
        assert_eq!(messages(&[40, 0, 0, 0, 1]).count(), 0);
        let nested = attr(
            CTRL_ATTR_MCAST_GROUPS,
            &attr(1, &attr(CTRL_ATTR_MCAST_GRP_ID, &7u32.to_ne_bytes())),
        );
        let groups: Vec<_> = attributes(&nested).collect();
        assert_eq!(groups.len(), 1);
    }
}
