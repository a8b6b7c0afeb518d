//! Configuring network interfaces with the classic ioctls: bring a link up,
//! set its IPv4 address, mask and MTU, add the default route.

use std::fs;
use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An `AF_INET` datagram socket, only used as a handle for the ioctls.
fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned by the returned value.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(request: libc::Ioctl, arg: *mut libc::c_void) -> io::Result<()> {
    let sock = ctl_socket()?;
    // SAFETY: callers pass a pointer to the struct this request expects.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, arg) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux.
    unsafe { mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

pub fn set_up(name: &str) -> io::Result<()> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut req as *mut _ as *mut _)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(libc::SIOCSIFFLAGS, &mut req as *mut _ as *mut _)
}

pub fn set_address(name: &str, address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix_len as u32).unwrap_or(0));
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(address);
    ioctl(libc::SIOCSIFADDR, &mut req as *mut _ as *mut _)?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr_in(mask);
    ioctl(libc::SIOCSIFNETMASK, &mut req as *mut _ as *mut _)
}

pub fn set_mtu(name: &str, mtu: u16) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ioctl(libc::SIOCSIFMTU, &mut req as *mut _ as *mut _)
}

pub fn add_default_route(name: &str, gateway: Ipv4Addr) -> io::Result<()> {
    let mut dev: Vec<u8> = name.as_bytes().to_vec();
    dev.push(0);
    // SAFETY: rtentry is plain data; all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    rt.rt_dev = dev.as_mut_ptr() as *mut libc::c_char;
    match ioctl(libc::SIOCADDRT, &mut rt as *mut _ as *mut _) {
        // The route survives a renewal that changes nothing.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// The hardware address of an interface, from sysfs.
pub fn mac_address(name: &str) -> io::Result<[u8; 6]> {
    let text = fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad MAC {text:?}"),
        ));
    }
    for (d, p) in mac.iter_mut().zip(parts) {
        *d =
            u8::from_str_radix(p, 16).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    Ok(mac)
}

/// Ethernet interfaces other than loopback, sorted by name.
pub fn ethernet_interfaces() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir("/sys/class/net")? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = fs::read_to_string(entry.path().join("type")).unwrap_or_default();
        // ARPHRD_ETHER
        if name != "lo" && kind.trim() == "1" {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
