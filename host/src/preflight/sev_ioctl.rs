//! `SEV_PLATFORM_STATUS` through `/dev/sev` (the PSP driver's ioctl).

use std::os::fd::AsRawFd;
use std::path::Path;

#[repr(C, packed)]
#[derive(Default)]
struct Status {
    api_major: u8,
    api_minor: u8,
    state: u8,
    flags: u32,
    build: u8,
    guest_count: u32,
}

#[repr(C)]
struct IssueCmd {
    cmd: u32,
    data: u64,
    error: u32,
}

const SEV_PLATFORM_STATUS: u32 = 1;
// _IOWR('S', 0x0, struct sev_issue_cmd)
const SEV_ISSUE_CMD: libc::c_ulong = 0xc018_5300;

pub fn platform_status(dev: &Path) -> std::io::Result<(u32, u32)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)?;
    let mut status = Status::default();
    let mut cmd = IssueCmd {
        cmd: SEV_PLATFORM_STATUS,
        data: &mut status as *mut Status as u64,
        error: 0,
    };
    // SAFETY: the kernel writes a `Status` through `data`, which lives
    // until the call returns.
    if unsafe { libc::ioctl(f.as_raw_fd(), SEV_ISSUE_CMD as _, &mut cmd) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((status.api_major as u32, status.api_minor as u32))
}
