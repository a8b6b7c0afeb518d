//! `cocoon-VERSION.tar`: the bundle folder as one file, byte-for-byte
//! reproducible: entries sorted by path, every mtime the release's
//! `SOURCE_DATE_EPOCH`, owner 0:0 with empty names, modes 0755/0644, ustar
//! headers (no pax extensions with times or ids).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `folder` (and everything under it) to `out`, named
/// `<folder's name>/...` inside the archive.
pub fn write(folder: &Path, out: impl Write, mtime: u64) -> io::Result<()> {
    let top = folder
        .file_name()
        .ok_or_else(|| io::Error::other("the bundle folder has no name"))?
        .to_string_lossy()
        .into_owned();
    let mut entries = Vec::new();
    collect(folder, &top, &mut entries)?;
    entries.sort();
    let mut tar = tar::Builder::new(out);
    for (name, is_dir) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        let data = if is_dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            Vec::new()
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            let rel = name
                .strip_prefix(&top)
                .unwrap_or(&name)
                .trim_start_matches('/');
            fs::read(folder.join(rel))?
        };
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, &name, data.as_slice())?;
    }
    tar.into_inner()?.flush()
}

/// `(archive path, is a folder)`; folders end with `/`.
fn collect(dir: &Path, name: &str, out: &mut Vec<(String, bool)>) -> io::Result<()> {
    out.push((format!("{name}/"), true));
    for e in fs::read_dir(dir)? {
        let e = e?;
        let child = format!("{name}/{}", e.file_name().to_string_lossy());
        let kind = e.file_type()?;
        if kind.is_dir() {
            collect(&e.path(), &child, out)?;
        } else if kind.is_file() {
            out.push((child, false));
        } else {
            return Err(io::Error::other(format!("{child}: not a regular file")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, umask_like_mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let top = root.join("cocoon-1.0");
        fs::create_dir_all(top.join("cpu")).unwrap();
        // Written in another order each time: the archive must not care.
        for (rel, body) in [("cpu/b", "2"), ("SHA256SUMS", "s"), ("cpu/a", "1")] {
            fs::write(top.join(rel), body).unwrap();
            fs::set_permissions(top.join(rel), fs::Permissions::from_mode(umask_like_mode))
                .unwrap();
        }
        top
    }

    #[test]
    fn same_folder_same_bytes_whatever_the_modes_and_times() {
        let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write(&tree(x.path(), 0o600), &mut a, 1_700_000_000).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&tree(y.path(), 0o664), &mut b, 1_700_000_000).unwrap();
        assert_eq!(a, b);
        let names: Vec<String> = tar::Archive::new(a.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "cocoon-1.0/",
                "cocoon-1.0/SHA256SUMS",
                "cocoon-1.0/cpu/",
                "cocoon-1.0/cpu/a",
                "cocoon-1.0/cpu/b"
            ]
        );
    }
}
