//! Loading the kernel modules that the image carries.
//!
//! The build writes `/lib/modules/<release>/modules.dep` listing exactly the
//! modules this image needs; every one is loaded, each after the modules it
//! depends on. Modules are `.ko.xz`: the kernel decompresses them itself
//! (`MODULE_INIT_COMPRESSED_FILE`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// Parsed `modules.dep`: each module path with its dependencies' paths, in
/// file order.
pub fn parse_modules_dep(text: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((module, deps)) = line.split_once(':') else {
            bail!("modules.dep line {}: no `:`", n + 1);
        };
        out.push((
            module.trim().to_string(),
            deps.split_whitespace().map(str::to_string).collect(),
        ));
    }
    Ok(out)
}

/// The order to load in: every module after its dependencies, otherwise in
/// file order.
pub fn load_order(entries: &[(String, Vec<String>)]) -> Result<Vec<String>> {
    let deps: BTreeMap<&str, &[String]> = entries
        .iter()
        .map(|(m, d)| (m.as_str(), d.as_slice()))
        .collect();
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    fn visit<'a>(
        m: &'a str,
        deps: &BTreeMap<&'a str, &'a [String]>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if done.contains(m) {
            return Ok(());
        }
        if stack.contains(&m) {
            bail!("modules.dep has a dependency cycle through {m}");
        }
        let Some(ds) = deps.get(m) else {
            bail!("modules.dep names {m} as a dependency but has no line for it");
        };
        stack.push(m);
        for d in ds.iter() {
            visit(d, deps, stack, done, order)?;
        }
        stack.pop();
        done.insert(m);
        order.push(m.to_string());
        Ok(())
    }
    for (m, _) in entries {
        visit(m, &deps, &mut Vec::new(), &mut done, &mut order)?;
    }
    Ok(order)
}

fn release() -> Result<String> {
    // SAFETY: uname fills the struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(io::Error::last_os_error()).context("uname");
    }
    // SAFETY: the kernel NUL-terminates `release`.
    let r = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    Ok(r.to_string_lossy().into_owned())
}

fn finit_module(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let flags = if path.extension().is_some_and(|e| e == "xz") {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    let params = c"";
    // SAFETY: the fd is open for the call and `params` is NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // Already loaded (or built in): fine.
    if err.raw_os_error() == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(err)
    }
}

/// NVIDIA's modules are loaded by the GPU path, strictly (see `gpu`), not
/// with the rest: an ENODEV there means "no GPU", which a GPU image must
/// not shrug off.
pub fn is_gpu_module(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("nvidia")
}

fn image_modules() -> Result<(PathBuf, Vec<String>)> {
    let base = PathBuf::from("/lib/modules").join(release()?);
    let dep_file = base.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file)
        .with_context(|| format!("reading {}", dep_file.display()))?;
    let order = load_order(&parse_modules_dep(&text)?)?;
    Ok((base, order))
}

/// Loads the NVIDIA modules (`nvidia`, then `nvidia-uvm`, as modules.dep
/// orders them); returns how many. Missing modules or a driver that finds
/// no GPU are errors.
pub fn load_gpu() -> Result<usize> {
    let (base, order) = image_modules()?;
    let gpu: Vec<&String> = order.iter().filter(|m| is_gpu_module(m)).collect();
    for needed in ["nvidia.ko", "nvidia-uvm.ko"] {
        if !gpu
            .iter()
            .any(|m| m.rsplit('/').next().is_some_and(|n| n.starts_with(needed)))
        {
            bail!("no NVIDIA module: this image's modules.dep has no {needed}");
        }
    }
    for m in &gpu {
        let path = base.join(m);
        match finit_module(&path) {
            Ok(()) => tracing::info!(module = %m, "module loaded"),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                bail!("no NVIDIA GPU: {} found no device to drive", path.display())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("loading module {}", path.display()));
            }
        }
    }
    Ok(gpu.len())
}

/// Loads every module in the image's `modules.dep` but NVIDIA's; returns
/// how many.
pub fn load_all() -> Result<usize> {
    let (base, mut order) = image_modules()?;
    order.retain(|m| !is_gpu_module(m));
    for m in &order {
        let path = base.join(m);
        match finit_module(&path) {
            Ok(()) => tracing::info!(module = %m, "module loaded"),
            // A driver for hardware this VM does not have (sev-guest outside
            // SEV-SNP) refuses to load with ENODEV: nothing to drive.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                tracing::info!(module = %m, "no such device here: module not loaded")
            }
            Err(e) => {
                return Err(e).with_context(|| format!("loading module {}", path.display()));
            }
        }
    }
    Ok(order.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_first_whatever_the_file_order() {
        let text = "kernel/virtio_net.ko.xz: kernel/net_failover.ko.xz kernel/failover.ko.xz\n\
                    kernel/button.ko.xz:\n\
                    kernel/net_failover.ko.xz: kernel/failover.ko.xz\n\
                    kernel/failover.ko.xz:\n";
        let order = load_order(&parse_modules_dep(text).unwrap()).unwrap();
        let pos = |m: &str| order.iter().position(|x| x.contains(m)).unwrap();
        assert_eq!(order.len(), 4);
        assert!(pos("/failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
    }

    #[test]
    fn rejects_malformed_files() {
        assert!(parse_modules_dep("no colon here\n").is_err());
        let dangling = parse_modules_dep("a.ko: b.ko\n").unwrap();
        assert!(load_order(&dangling).is_err());
        let cycle = parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert!(load_order(&cycle).is_err());
    }

    #[test]
    fn nvidia_modules_are_left_to_the_gpu_path() {
        assert!(is_gpu_module("kernel/drivers/video/nvidia.ko.xz"));
        assert!(is_gpu_module("updates/dkms/nvidia-uvm.ko"));
        assert!(!is_gpu_module(
            "kernel/drivers/virt/coco/sev-guest/sev-guest.ko.xz"
        ));
        assert!(!is_gpu_module("kernel/nvidia/virtio_net.ko.xz"));
    }
}
