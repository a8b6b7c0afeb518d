//! Kernel modules: their metadata and the order to load them in.
//!
//! Debian's kernel package ships no `modules.dep`, so we read each module's
//! `.modinfo` section (`name=`, `depends=`, `vermagic=`) ourselves and
//! write a `modules.dep` holding exactly the modules the image loads. The
//! guest loads every module listed there, each after its dependencies.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("{path}: cannot decompress: {message}")]
    Decompress { path: String, message: String },
    #[error("{path}: not a 64-bit little-endian ELF module: {message}")]
    Elf { path: String, message: String },
    #[error("{path}: module has no `name=` in .modinfo")]
    NoName { path: String },
    #[error("{path}: built for kernel `{vermagic}`, the image's kernel is `{release}`")]
    WrongKernel {
        path: String,
        vermagic: String,
        release: String,
    },
    #[error(
        "module `{module}` needs `{dependency}`, which is not available: pin it with `cargo xtask lock`"
    )]
    MissingDependency { module: String, dependency: String },
    #[error("module `{0}` is not available: pin it with `cargo xtask lock`")]
    Missing(String),
    #[error("modules depend on each other in a cycle through `{0}`")]
    Cycle(String),
}

/// What `.modinfo` says about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo {
    pub name: String,
    pub depends: Vec<String>,
    pub vermagic: String,
}

/// Module names treat `-` and `_` alike (`virtio-rng` is `virtio_rng`).
pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name a file path stands for: `.../virtio_net.ko.xz` → `virtio_net`.
pub fn name_from_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file
        .strip_suffix(".ko.xz")
        .or_else(|| file.strip_suffix(".ko.zst"))
        .or_else(|| file.strip_suffix(".ko"))?;
    Some(canonical_name(stem))
}

/// The ELF bytes of a module file, decompressing `.ko.xz`.
pub fn decompress(path: &str, bytes: &[u8]) -> Result<Vec<u8>, KmodError> {
    if path.ends_with(".ko.xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(bytes), &mut out).map_err(|e| {
            KmodError::Decompress {
                path: path.to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(out)
    } else if path.ends_with(".ko") {
        Ok(bytes.to_vec())
    } else {
        Err(KmodError::Decompress {
            path: path.to_string(),
            message: "only .ko and .ko.xz modules are supported".into(),
        })
    }
}

/// The `.modinfo` section of a 64-bit little-endian ELF file.
fn modinfo_section<'a>(path: &str, elf: &'a [u8]) -> Result<&'a [u8], KmodError> {
    let bad = |m: &str| KmodError::Elf {
        path: path.to_string(),
        message: m.to_string(),
    };
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(bad("bad ELF header"));
    }
    let shoff = u64_at(0x28).ok_or_else(|| bad("truncated header"))? as usize;
    let shentsize = u16_at(0x3a).ok_or_else(|| bad("truncated header"))? as usize;
    let shnum = u16_at(0x3c).ok_or_else(|| bad("truncated header"))? as usize;
    let shstrndx = u16_at(0x3e).ok_or_else(|| bad("truncated header"))? as usize;
    let table_end = shnum
        .checked_mul(shentsize)
        .and_then(|n| n.checked_add(shoff));
    if shentsize < 0x40 || shstrndx >= shnum || table_end.is_none_or(|end| end > elf.len()) {
        return Err(bad("bad section table"));
    }
    let section = |i: usize| -> Option<(u32, &'a [u8])> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(h)?;
        let off = u64_at(h + 0x18)? as usize;
        let size = u64_at(h + 0x20)? as usize;
        Some((name, elf.get(off..off.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx).ok_or_else(|| bad("bad section-name table"))?;
    for i in 0..shnum {
        let (name_off, data) = section(i).ok_or_else(|| bad("section out of bounds"))?;
        let name = names
            .get(name_off as usize..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            return Ok(data);
        }
    }
    Err(bad("no .modinfo section"))
}

/// Reads `.modinfo` from a module file (compressed or not).
pub fn modinfo(path: &str, file_bytes: &[u8]) -> Result<ModInfo, KmodError> {
    let elf = decompress(path, file_bytes)?;
    let section = modinfo_section(path, &elf)?;
    let mut name = None;
    let mut depends = Vec::new();
    let mut vermagic = String::new();
    for field in section.split(|&b| b == 0) {
        let field = String::from_utf8_lossy(field);
        if let Some((k, v)) = field.split_once('=') {
            match k {
                "name" => name = Some(canonical_name(v)),
                "depends" => {
                    depends = v
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(canonical_name)
                        .collect()
                }
                "vermagic" => vermagic = v.to_string(),
                _ => {}
            }
        }
    }
    let name = name.ok_or_else(|| KmodError::NoName {
        path: path.to_string(),
    })?;
    Ok(ModInfo {
        name,
        depends,
        vermagic,
    })
}

/// Checks that a module was built for `release` (the first word of vermagic).
pub fn check_vermagic(path: &str, info: &ModInfo, release: &str) -> Result<(), KmodError> {
    if info.vermagic.split_whitespace().next() == Some(release) {
        Ok(())
    } else {
        Err(KmodError::WrongKernel {
            path: path.to_string(),
            vermagic: info.vermagic.clone(),
            release: release.to_string(),
        })
    }
}

/// The closure of `roots` under `depends`, in load order (every module after
/// its dependencies; ties broken by name, so the order is stable).
pub fn load_order(
    roots: &[&str],
    available: &BTreeMap<String, ModInfo>,
) -> Result<Vec<String>, KmodError> {
    fn visit(
        name: &str,
        needed_by: Option<&str>,
        available: &BTreeMap<String, ModInfo>,
        visiting: &mut BTreeSet<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), KmodError> {
        if done.contains(name) {
            return Ok(());
        }
        let info = available.get(name).ok_or_else(|| match needed_by {
            Some(m) => KmodError::MissingDependency {
                module: m.to_string(),
                dependency: name.to_string(),
            },
            None => KmodError::Missing(name.to_string()),
        })?;
        if !visiting.insert(name.to_string()) {
            return Err(KmodError::Cycle(name.to_string()));
        }
        let mut deps = info.depends.clone();
        deps.sort();
        for d in &deps {
            visit(d, Some(name), available, visiting, done, order)?;
        }
        visiting.remove(name);
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }
    let mut roots: Vec<String> = roots.iter().map(|r| canonical_name(r)).collect();
    roots.sort();
    let (mut visiting, mut done, mut order) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for r in &roots {
        visit(r, None, available, &mut visiting, &mut done, &mut order)?;
    }
    Ok(order)
}

/// A `modules.dep` for `order` (load order); `path_of` gives each module's
/// path relative to `/lib/modules/<release>/`. As in kmod's format, a
/// module's line lists all of its transitive dependencies.
pub fn modules_dep(
    order: &[String],
    available: &BTreeMap<String, ModInfo>,
    path_of: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    for name in order {
        let mut deps = BTreeSet::new();
        let mut stack = available[name].depends.clone();
        while let Some(d) = stack.pop() {
            if deps.insert(d.clone()) {
                stack.extend(available[&d].depends.iter().cloned());
            }
        }
        // Dependencies in reverse load order, as modprobe expects.
        let listed: Vec<&str> = order
            .iter()
            .rev()
            .filter(|m| deps.contains(*m))
            .map(|m| path_of[m].as_str())
            .collect();
        out.push_str(&path_of[name]);
        out.push(':');
        for p in listed {
            out.push(' ');
            out.push_str(p);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, deps: &[&str]) -> (String, ModInfo) {
        (
            name.to_string(),
            ModInfo {
                name: name.to_string(),
                depends: deps.iter().map(|d| d.to_string()).collect(),
                vermagic: "6.12.0 SMP".into(),
            },
        )
    }

    fn world() -> BTreeMap<String, ModInfo> {
        BTreeMap::from([
            info("virtio_net", &["net_failover"]),
            info("net_failover", &["failover"]),
            info("failover", &[]),
            info("button", &[]),
        ])
    }

    #[test]
    fn dependencies_load_first() {
        let order = load_order(&["virtio_net", "button"], &world()).unwrap();
        assert_eq!(order, ["button", "failover", "net_failover", "virtio_net"]);
    }

    #[test]
    fn writes_modules_dep_with_transitive_dependencies() {
        let w = world();
        let order = load_order(&["virtio-net"], &w).unwrap();
        let paths = order
            .iter()
            .map(|m| (m.clone(), format!("kernel/{m}.ko.xz")))
            .collect();
        assert_eq!(
            modules_dep(&order, &w, &paths),
            "kernel/failover.ko.xz:\n\
             kernel/net_failover.ko.xz: kernel/failover.ko.xz\n\
             kernel/virtio_net.ko.xz: kernel/net_failover.ko.xz kernel/failover.ko.xz\n"
        );
    }

    #[test]
    fn reports_missing_and_cyclic_dependencies() {
        let mut w = world();
        w.remove("failover");
        let err = load_order(&["virtio_net"], &w).unwrap_err().to_string();
        assert!(
            err.contains("net_failover") && err.contains("failover"),
            "{err}"
        );
        assert!(matches!(
            load_order(&["nope"], &w),
            Err(KmodError::Missing(_))
        ));
        let cyc = BTreeMap::from([info("a", &["b"]), info("b", &["a"])]);
        assert!(matches!(load_order(&["a"], &cyc), Err(KmodError::Cycle(_))));
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            name_from_path("kernel/drivers/char/hw_random/virtio-rng.ko.xz").unwrap(),
            "virtio_rng"
        );
        assert_eq!(name_from_path("x/button.ko").unwrap(), "button");
        assert_eq!(name_from_path("x/readme.txt"), None);
    }

    /// A minimal ELF64 file with one `.modinfo` section.
    fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 0x40];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let info_off = elf.len();
        elf.extend_from_slice(modinfo);
        let str_off = elf.len();
        elf.extend_from_slice(shstr);
        let shoff = elf.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut h = [0u8; 0x40];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&h);
        };
        sh(0, 0, 0);
        sh(1, info_off, modinfo.len());
        sh(10, str_off, shstr.len());
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_modinfo_from_elf() {
        let elf = fake_module(b"license=GPL\0depends=net_failover,\0name=virtio_net\0vermagic=6.12.95 SMP mod_unload\0");
        let info = modinfo("m.ko", &elf).unwrap();
        assert_eq!(info.name, "virtio_net");
        assert_eq!(info.depends, ["net_failover"]);
        check_vermagic("m.ko", &info, "6.12.95").unwrap();
        assert!(check_vermagic("m.ko", &info, "6.1.0").is_err());
    }

    #[test]
    fn rejects_malformed_elf_without_panicking() {
        let elf = fake_module(b"name=x\0");
        for cut in [0, 5, 0x30, 0x41, elf.len() - 1] {
            assert!(
                modinfo("m.ko", &elf[..cut]).is_err(),
                "accepted a file cut at {cut}"
            );
        }
        let mut bad = elf.clone();
        bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(modinfo("m.ko", &bad).is_err());
        assert!(modinfo("m.ko.xz", b"not xz").is_err());
    }
}
