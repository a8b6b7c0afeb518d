//! The pseudo-filesystems the guest needs. The initramfs itself is the root.

use std::ffi::CString;
use std::io;

use anyhow::{Context, Result};

struct Mount {
    target: &'static str,
    fstype: &'static str,
    flags: libc::c_ulong,
}

const EARLY: &[Mount] = &[
    Mount {
        target: "/proc",
        fstype: "proc",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    },
    Mount {
        target: "/sys",
        fstype: "sysfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    },
    // devtmpfs: the kernel creates device nodes as drivers bind.
    Mount {
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
    },
];

pub fn mount_early() -> Result<()> {
    for m in EARLY {
        std::fs::create_dir_all(m.target).with_context(|| format!("creating {}", m.target))?;
        mount(m.fstype, m.target, m.fstype, m.flags)
            .with_context(|| format!("mounting {} on {}", m.fstype, m.target))?;
    }
    Ok(())
}

/// configfs, where configfs-tsm makes attestation reports. Its mount point
/// exists only once the configfs module is loaded; without it there is
/// nothing to mount (and no configfs-tsm).
pub fn mount_configfs() -> Result<()> {
    const TARGET: &str = "/sys/kernel/config";
    if std::path::Path::new(TARGET).is_dir() {
        mount(
            "configfs",
            TARGET,
            "configfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )?;
    }
    Ok(())
}

fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> io::Result<()> {
    let c = |s: &str| CString::new(s).expect("static strings have no NUL");
    let (source, target, fstype) = (c(source), c(target), c(fstype));
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
