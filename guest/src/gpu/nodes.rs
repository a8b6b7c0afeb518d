//! The NVIDIA device nodes, made by hand: there is no udev and no
//! nvidia-modprobe in the image.
//!
//! `nvidia.ko` uses the fixed major 195 (`/dev/nvidiactl` is minor 255,
//! GPU N is minor N) and lists each GPU it bound under
//! `/proc/driver/nvidia/gpus/`; `nvidia-uvm.ko` takes a dynamic major, read
//! from `/proc/devices` (minor 0 the device, 1 the tools node).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub const NVIDIA_MAJOR: u32 = 195;
const CTL_MINOR: u32 = 255;
/// The driver's own limit on GPUs per system.
const MAX_GPUS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub major: u32,
    pub minor: u32,
}

/// The major `/proc/devices` lists for a character driver of that name.
fn char_major(proc_devices: &str, driver: &str) -> Option<u32> {
    proc_devices
        .lines()
        .skip_while(|l| l.trim() != "Character devices:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(' ').or_else(|| l.trim().split_once(' ')))
        .find(|(_, name)| name.trim() == driver)
        .and_then(|(major, _)| major.trim().parse().ok())
}

/// The nodes to make for `gpus` GPUs, from `/proc/devices`' text.
pub fn plan(proc_devices: &str, gpus: usize) -> Result<Vec<Node>> {
    if gpus == 0 {
        bail!("nvidia.ko loaded but bound no GPU (/proc/driver/nvidia/gpus is empty)");
    }
    if gpus > MAX_GPUS {
        bail!("{gpus} GPUs listed, over the driver's limit of {MAX_GPUS}");
    }
    // The open driver registers "nvidia-frontend" (older) or "nvidia".
    let major = char_major(proc_devices, "nvidia-frontend")
        .or_else(|| char_major(proc_devices, "nvidia"))
        .context("nvidia.ko registered no character device (/proc/devices has no nvidia entry)")?;
    if major != NVIDIA_MAJOR {
        bail!("nvidia.ko registered major {major}, not {NVIDIA_MAJOR}");
    }
    let uvm = char_major(proc_devices, "nvidia-uvm").context(
        "nvidia-uvm.ko registered no character device (/proc/devices has no nvidia-uvm)",
    )?;
    let node = |name: String, major, minor| Node { name, major, minor };
    let mut nodes = vec![node("nvidiactl".into(), major, CTL_MINOR)];
    nodes.extend((0..gpus as u32).map(|n| node(format!("nvidia{n}"), major, n)));
    nodes.push(node("nvidia-uvm".into(), uvm, 0));
    nodes.push(node("nvidia-uvm-tools".into(), uvm, 1));
    Ok(nodes)
}

/// How many GPUs the driver bound (entries under /proc/driver/nvidia/gpus).
pub fn count_gpus(driver_gpus: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(driver_gpus)
        .with_context(|| format!("{} (is nvidia.ko loaded?)", driver_gpus.display()))?;
    Ok(entries.flatten().count())
}

/// Makes each node under `dev` (mode 0666, as nvidia-modprobe does; the
/// guest has one user). An existing node with the same numbers is kept.
pub fn create(dev: &Path, nodes: &[Node]) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    for n in nodes {
        let path = dev.join(&n.name);
        let rdev = libc::makedev(n.major, n.minor);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.file_type().is_char_device() && meta.rdev() == rdev {
                continue;
            }
            bail!(
                "{} exists and is not char device {}:{}",
                path.display(),
                n.major,
                n.minor
            );
        }
        let c = CString::new(path.as_os_str().as_bytes()).context("a path with a NUL byte")?;
        // SAFETY: `c` is a NUL-terminated path that lives across the call.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, rdev) };
        if r != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mknod {} c {} {}", path.display(), n.major, n.minor));
        }
        // mknod's mode is filtered by the umask; the nodes must be usable.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n195 nvidia-frontend\n234 nvidia-uvm\n254 gpiochip\n\nBlock devices:\n195 nvidia\n253 virtblk\n";

    #[test]
    fn plans_ctl_each_gpu_and_uvm() {
        let nodes = plan(PROC_DEVICES, 2).unwrap();
        let got: Vec<_> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.major, n.minor))
            .collect();
        assert_eq!(
            got,
            [
                ("nvidiactl", 195, 255),
                ("nvidia0", 195, 0),
                ("nvidia1", 195, 1),
                ("nvidia-uvm", 234, 0),
                ("nvidia-uvm-tools", 234, 1),
            ]
        );
    }

    #[test]
    fn refuses_what_the_driver_did_not_register() {
        assert!(plan(PROC_DEVICES, 0).is_err());
        assert!(plan(PROC_DEVICES, MAX_GPUS + 1).is_err());
        let no_uvm = PROC_DEVICES.replace("234 nvidia-uvm\n", "");
        assert!(plan(&no_uvm, 1).is_err());
        // A block device of that name is not the character driver.
        let no_nvidia = PROC_DEVICES.replace("195 nvidia-frontend\n", "");
        assert!(plan(&no_nvidia, 1).is_err());
        let other_major = PROC_DEVICES.replace("195 nvidia-frontend", "196 nvidia");
        assert!(plan(&other_major, 1).is_err());
        // The newer name works too.
        let newer = PROC_DEVICES.replace("nvidia-frontend", "nvidia");
        assert_eq!(plan(&newer, 1).unwrap().len(), 4);
    }

    #[test]
    fn counts_the_gpus_the_driver_bound() {
        let d = tempfile::tempdir().unwrap();
        assert!(count_gpus(&d.path().join("absent")).is_err());
        for bus in ["0000:01:00.0", "0000:41:00.0"] {
            std::fs::create_dir(d.path().join(bus)).unwrap();
        }
        assert_eq!(count_gpus(d.path()).unwrap(), 2);
    }

    #[test]
    fn makes_the_nodes_in_a_directory() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let nodes = plan(PROC_DEVICES, 1).unwrap();
        match create(d.path(), &nodes) {
            Ok(()) => {}
            // mknod needs CAP_MKNOD; say so rather than pass silently.
            Err(e) if format!("{e:#}").contains("Operation not permitted") => {
                eprintln!("skipped: mknod is not permitted here ({e:#})");
                return;
            }
            Err(e) => panic!("{e:#}"),
        }
        for n in &nodes {
            let meta = std::fs::symlink_metadata(d.path().join(&n.name)).unwrap();
            assert!(meta.file_type().is_char_device(), "{}", n.name);
            assert_eq!(meta.rdev(), libc::makedev(n.major, n.minor), "{}", n.name);
            assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        }
        // Idempotent with the same numbers; refuses a node with others.
        create(d.path(), &nodes).unwrap();
        let mut wrong = nodes.clone();
        wrong[0].minor = 7;
        assert!(create(d.path(), &wrong[..1]).is_err());
        std::fs::write(d.path().join("nvidia-x"), b"").unwrap();
        let file = Node {
            name: "nvidia-x".into(),
            major: 195,
            minor: 9,
        };
        assert!(create(d.path(), &[file]).is_err());
    }
}
