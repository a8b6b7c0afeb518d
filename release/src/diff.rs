//! Where two builds of an artifact differ: the first byte, and for the
//! initramfs the first cpio entry, so an auditor knows where to look.

use std::collections::{BTreeMap, BTreeSet};

use cocoon_image::{initramfs, newc};

/// The first offset at which `a` and `b` differ (the shorter length when
/// one is a prefix of the other).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<u64> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
        .map(|i| i as u64)
}

/// Decompresses two `initrd.img` files and names the first cpio entry that
/// differs: `init (contents: 2 094 112 vs 2 094 120 bytes)`, `only in the
/// rebuild: lib/...`. `None` if the archives are equal (the compression
/// differs then).
pub fn initrd_entry_difference(released: &[u8], rebuilt: &[u8]) -> Result<Option<String>, String> {
    let unpack = |what: &str, bytes: &[u8]| {
        let cpio =
            initramfs::decompress(bytes).map_err(|e| format!("the {what} initrd.img: {e}"))?;
        newc::parse(&cpio).map_err(|e| format!("the {what} initrd.img's cpio: {e}"))
    };
    let (a, b) = (unpack("released", released)?, unpack("rebuilt", rebuilt)?);
    let by_name = |entries: &[newc::Entry]| -> BTreeMap<String, newc::Entry> {
        entries
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect()
    };
    let (a, b) = (by_name(&a), by_name(&b));
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut differences = Vec::new();
    for name in names {
        let what = match (a.get(name), b.get(name)) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) if x.data != y.data => format!(
                "{name} (contents: {} vs {} bytes, first difference at byte {})",
                x.data.len(),
                y.data.len(),
                first_difference(&x.data, &y.data).unwrap_or(0)
            ),
            (Some(_), Some(_)) => format!("{name} (header: mode, owner, time or device)"),
            (Some(_), None) => format!("only in the release: {name}"),
            (None, _) => format!("only in the rebuild: {name}"),
        };
        let is_dir =
            |e: Option<&newc::Entry>| e.is_some_and(|e| e.mode & 0o170000 == newc::S_IFDIR);
        differences.push((is_dir(a.get(name)) || is_dir(b.get(name)), what));
    }
    // A file says more than the folder that holds it.
    differences.sort_by_key(|(is_dir, _)| *is_dir);
    Ok(differences.into_iter().next().map(|(_, what)| what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initrd(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut t = initramfs::Initramfs::new();
        for (p, d) in files {
            t.add_file(p, 0o644, d.to_vec()).unwrap();
        }
        initramfs::compress(&t.cpio(1), initramfs::MAX_ZSTD_LEVEL).unwrap()
    }

    #[test]
    fn offsets() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }

    #[test]
    fn names_the_entry() {
        let a = initrd(&[("init", b"one"), ("lib/m.ko", b"m")]);
        let b = initrd(&[("init", b"two"), ("lib/m.ko", b"m")]);
        let d = initrd_entry_difference(&a, &b).unwrap().unwrap();
        assert!(d.starts_with("init (contents"), "{d}");
        let c = initrd(&[("init", b"one")]);
        let d = initrd_entry_difference(&a, &c).unwrap().unwrap();
        assert!(
            d.contains("only in the release") && d.contains("m.ko"),
            "{d}"
        );
        assert_eq!(initrd_entry_difference(&a, &a).unwrap(), None);
        assert!(initrd_entry_difference(b"junk", &a).is_err());
    }
}
