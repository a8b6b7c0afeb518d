//! The cpio "newc" format (`070701`), which the kernel unpacks as initramfs.
//!
//! Each entry is a 110-byte ASCII header of thirteen 8-digit hex fields, the
//! NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes;
//! the archive ends with an entry named `TRAILER!!!`. The writer takes every
//! header field from its arguments (no clock, no user, no device numbers of
//! the build machine), so equal inputs give equal bytes.

use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode`.
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFCHR: u32 = 0o020000;

/// One archive member as the reader returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub data: Vec<u8>,
}

/// Writes entries in the order given; the caller decides the order.
pub struct Writer<W: Write> {
    out: W,
    offset: u64,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> Writer<W> {
    /// Every entry gets `mtime` (the build's `SOURCE_DATE_EPOCH`) and uid/gid 0.
    pub fn new(out: W, mtime: u32) -> Self {
        Writer {
            out,
            offset: 0,
            next_ino: 1,
            mtime,
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        if name.is_empty() || name.contains('\0') || name == TRAILER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio name {name:?}"),
            ));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.raw(name, ino, mode, nlink, rdev, data)
    }

    #[allow(clippy::too_many_arguments)]
    fn raw(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is over 4 GiB"))
        })?;
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, // uid
            0, // gid
            nlink, self.mtime, size, 0, // devmajor
            0, // devminor
            rdev.0, rdev.1, namesize, 0, // check
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for f in fields {
            header.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.put(&header)?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.offset % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.raw(TRAILER, 0, 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }
}

/// Parses a whole newc archive (up to the trailer). For tests and for
/// inspecting an image; it checks every bound and never panics on bad input.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let align = |p: usize| p.div_ceil(4) * 4;
    loop {
        let header = bytes
            .get(pos..pos + HEADER_LEN)
            .ok_or(format!("truncated header at {pos}"))?;
        if &header[..6] != MAGIC {
            return Err(format!("bad magic at {pos}"));
        }
        let at = pos;
        let field = |i: usize| -> Result<u32, String> {
            let s =
                std::str::from_utf8(&header[6 + i * 8..14 + i * 8]).map_err(|e| e.to_string())?;
            u32::from_str_radix(s, 16).map_err(|e| format!("bad field {i} at {at}: {e}"))
        };
        let (namesize, filesize) = (field(11)? as usize, field(6)? as usize);
        let name_start = pos + HEADER_LEN;
        let name_bytes = bytes
            .get(name_start..name_start + namesize)
            .ok_or(format!("truncated name at {pos}"))?;
        let name = std::str::from_utf8(name_bytes.strip_suffix(&[0]).ok_or("name without NUL")?)
            .map_err(|e| e.to_string())?
            .to_string();
        let data_start = align(name_start + namesize);
        let data = bytes
            .get(data_start..data_start + filesize)
            .ok_or(format!("truncated data of {name}"))?
            .to_vec();
        pos = align(data_start + filesize);
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            ino: field(0)?,
            mode: field(1)?,
            uid: field(2)?,
            gid: field(3)?,
            nlink: field(4)?,
            mtime: field(5)?,
            rdev_major: field(9)?,
            rdev_minor: field(10)?,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_documented_layout() {
        let mut w = Writer::new(Vec::new(), 0x5f5e100);
        w.file("init", 0o755, b"abcde").unwrap();
        let out = w.finish().unwrap();
        let expected_header = "070701\
            00000001\
            000081ED\
            00000000\
            00000000\
            00000001\
            05F5E100\
            00000005\
            00000000\
            00000000\
            00000000\
            00000000\
            00000005\
            00000000";
        assert_eq!(&out[..HEADER_LEN], expected_header.as_bytes());
        // name "init\0" ends at 115 → data at 116, 5 bytes, padded to 124.
        assert_eq!(&out[110..116], b"init\0\0");
        assert_eq!(&out[116..124], b"abcde\0\0\0");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == TRAILER.as_bytes()));
    }

    #[test]
    fn round_trips() {
        let mut w = Writer::new(Vec::new(), 7);
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, &[1, 2, 3]).unwrap();
        let entries = parse(&w.finish().unwrap()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].name, "dev/console");
        assert_eq!((entries[1].rdev_major, entries[1].rdev_minor), (5, 1));
        assert_eq!(entries[1].mode, S_IFCHR | 0o600);
        assert_eq!(entries[2].data, [1, 2, 3]);
        assert!(
            entries
                .iter()
                .all(|e| e.mtime == 7 && e.uid == 0 && e.gid == 0)
        );
    }

    #[test]
    fn parser_rejects_garbage_and_truncation() {
        let mut w = Writer::new(Vec::new(), 0);
        w.file("a", 0o644, b"xyz").unwrap();
        let good = w.finish().unwrap();
        for cut in [0, 50, 111, 118, good.len() - 4] {
            assert!(parse(&good[..cut]).is_err(), "accepted a cut at {cut}");
        }
        assert!(parse(b"070702").is_err());
    }

    #[test]
    fn refuses_bad_names() {
        let mut w = Writer::new(Vec::new(), 0);
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
        assert!(w.file(TRAILER, 0o644, b"").is_err());
    }
}
