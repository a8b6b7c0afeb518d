//! Reading a model pack exactly once while hashing it.
//!
//! The guest reads the pack from a disk the host controls, so it must
//! never read it twice: it reads every byte into memory, hashes what it
//! read, compares with the measured pack hash and only then parses those
//! same bytes. The pack hash ([`cocoon_image::packhash`]) hashes 1 MiB
//! leaves independently, so every core reads leaves and hashes each one
//! right after reading it, while it is still in the cache; verification
//! then costs about what the read costs (BENCHMARKS.md has the figures).
//!
//! The pack's length comes from its own header (a disk is rounded up to
//! whole sectors); that header is covered by the hash like everything else,
//! and the length it claims is bounded by the device before anything is
//! allocated.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use cocoon_image::digest::Sha256;
use cocoon_image::modelpack::{self, MAGIC, MAX_HEADER};
use cocoon_image::packhash::{self, LEAF};

/// Reader threads at most: beyond this the memory bus, not the cores, is
/// the bound.
const MAX_READERS: usize = 8;

/// A source that can be read at any offset (a block device, a file, or
/// bytes in memory for tests), from several threads at once.
pub trait ReadAt: Sync {
    /// Reads at most `buf.len()` bytes at `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;

    /// Fills `buf` from `offset`; short only at the end of the source.
    fn read_full_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the model disk does not hold a model pack (no COCOONMP magic)")]
    NotAPack,
    #[error("the model pack's header claims {claimed} bytes but the disk holds {available}")]
    Truncated { claimed: u64, available: u64 },
    #[error("the model pack's hash is {actual}, but the measured command line requires {expected}")]
    Mismatch { expected: String, actual: String },
    #[error("reading the model pack: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the pack at the start of `source` (at most `available` bytes),
/// hashing as it goes; returns the bytes only if their pack hash is
/// `expected`.
pub fn read_verified<R: ReadAt + ?Sized>(
    source: &R,
    available: u64,
    expected: &Sha256,
) -> Result<Vec<u8>, VerifyError> {
    let mut fixed = [0u8; 16];
    if source.read_full_at(&mut fixed, 0)? < 16 || &fixed[..8] != MAGIC {
        return Err(VerifyError::NotAPack);
    }
    let header_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap());
    if header_len > MAX_HEADER {
        return Err(VerifyError::NotAPack);
    }
    let mut header = vec![0u8; header_len as usize];
    if source.read_full_at(&mut header, 16)? < header.len() {
        return Err(VerifyError::NotAPack);
    }
    // Only the size is read from the (not yet verified) header; a lie
    // about it changes the hash, which covers the length.
    let gguf_size = serde_json::from_slice::<serde_json::Value>(&header)
        .ok()
        .and_then(|v| v["gguf"]["size"].as_u64())
        .ok_or(VerifyError::NotAPack)?;
    let total = modelpack::data_offset(header_len as u64)
        .checked_add(gguf_size)
        .ok_or(VerifyError::NotAPack)?;
    if total > available {
        return Err(VerifyError::Truncated {
            claimed: total,
            available,
        });
    }
    let head = fixed.len() + header.len();
    let mut out = vec![0u8; total as usize];
    out[..16].copy_from_slice(&fixed);
    out[16..head].copy_from_slice(&header);
    let leaves = read_leaves(source, &mut out, head)?;
    let actual = packhash::root(total, &leaves);
    if actual != *expected {
        return Err(VerifyError::Mismatch {
            expected: packhash::display(expected),
            actual: packhash::display(&actual),
        });
    }
    Ok(out)
}

/// Fills `out` from `source` (its first `head` bytes are there already:
/// they are not read twice) and returns the hash of each leaf. Threads
/// take leaves from one queue, so a slow read holds up nobody else; each
/// thread hashes the leaf it has just read. No byte is hashed that is not
/// the byte returned.
fn read_leaves<R: ReadAt + ?Sized>(
    source: &R,
    out: &mut [u8],
    head: usize,
) -> Result<Vec<[u8; 32]>, VerifyError> {
    let total = out.len();
    let count = total.div_ceil(LEAF);
    let readers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_READERS)
        .min(count.max(1));
    let queue = Mutex::new(out.chunks_mut(LEAF).enumerate());
    let failed = AtomicBool::new(false);
    let read_one = |i: usize, leaf: &mut [u8]| -> Result<[u8; 32], VerifyError> {
        let start = i * LEAF;
        let skip = head.saturating_sub(start).min(leaf.len());
        let got = source.read_full_at(&mut leaf[skip..], (start + skip) as u64)?;
        if skip + got < leaf.len() {
            return Err(VerifyError::Truncated {
                claimed: total as u64,
                available: (start + skip + got) as u64,
            });
        }
        Ok(packhash::leaf(leaf))
    };
    let per_thread = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..readers)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, [u8; 32])>, VerifyError> {
                    let mut hashed = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        // The lock is held only to take the next leaf.
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some((i, leaf)) = next else { break };
                        match read_one(i, leaf) {
                            Ok(h) => hashed.push((i, h)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(hashed)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a pack reader thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut leaves = vec![[0u8; 32]; count];
    for hashed in per_thread {
        for (i, h) in hashed? {
            leaves[i] = h;
        }
    }
    Ok(leaves)
}

/// Reads `len` bytes with one plain read and no hashing: the baseline the
/// benchmark compares verification against. Nothing serves from it.
pub fn read_unverified(mut source: impl std::io::Read, len: u64) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; len as usize];
    source.read_exact(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack whose GGUF part holds `gguf_len` bytes.
    fn pack_of(gguf_len: usize) -> Vec<u8> {
        let header = format!(r#"{{"gguf":{{"size":{gguf_len}}}}}"#);
        let mut b = MAGIC.to_vec();
        b.extend(1u32.to_le_bytes());
        b.extend((header.len() as u32).to_le_bytes());
        b.extend(header.as_bytes());
        b.resize(modelpack::data_offset(header.len() as u64) as usize, 0);
        b.extend((0..gguf_len).map(|i| (i * 31 % 251) as u8));
        b
    }

    #[test]
    fn reads_exactly_the_pack_and_checks_its_hash() {
        let b = pack_of(5);
        let hash = packhash::of_bytes(&b);
        let mut disk = b.clone();
        disk.resize(b.len().next_multiple_of(512), 0); // sector padding
        let n = disk.len() as u64;
        assert_eq!(read_verified(&disk[..], n, &hash).unwrap(), b);
        let e = read_verified(&disk[..], n, &Sha256([0; 32])).unwrap_err();
        assert!(matches!(e, VerifyError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("sha256tree:"), "{e}");
        // The file's plain sha256 is not the pack hash.
        assert!(read_verified(&disk[..], n, &Sha256::of(&b)).is_err());
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let b = pack_of(5);
        let hash = packhash::of_bytes(&b);
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 1;
            let n = t.len() as u64;
            assert!(read_verified(&t[..], n, &hash).is_err(), "byte {i}");
        }
    }

    #[test]
    fn packs_of_many_leaves_are_hashed_in_order() {
        for gguf_len in [LEAF, 3 * LEAF + 12345] {
            let b = pack_of(gguf_len);
            let hash = packhash::of_bytes(&b);
            let n = b.len() as u64;
            assert_eq!(read_verified(&b[..], n, &hash).unwrap(), b);
            // Two halves of a leaf swapped, and two whole leaves swapped
            // (each intact): both hash differently.
            let at = b.len() - gguf_len;
            let mut t = b.clone();
            t[at..at + LEAF / 2].copy_from_slice(&b[at + LEAF / 2..at + LEAF]);
            t[at + LEAF / 2..at + LEAF].copy_from_slice(&b[at..at + LEAF / 2]);
            assert!(matches!(
                read_verified(&t[..], n, &hash),
                Err(VerifyError::Mismatch { .. })
            ));
            if gguf_len > 2 * LEAF {
                let mut t = b.clone();
                t[LEAF..2 * LEAF].copy_from_slice(&b[2 * LEAF..3 * LEAF]);
                t[2 * LEAF..3 * LEAF].copy_from_slice(&b[LEAF..2 * LEAF]);
                assert!(matches!(
                    read_verified(&t[..], n, &hash),
                    Err(VerifyError::Mismatch { .. })
                ));
            }
            // The last byte flipped; the source cut short.
            let mut t = b.clone();
            *t.last_mut().unwrap() ^= 1;
            assert!(read_verified(&t[..], n, &hash).is_err());
            let cut = &b[..b.len() - LEAF / 2];
            assert!(matches!(
                read_verified(cut, n, &hash),
                Err(VerifyError::Truncated { .. })
            ));
        }
    }

    /// Counts how often each byte is read.
    struct Counting<'a> {
        bytes: &'a [u8],
        reads: Mutex<Vec<u32>>,
    }

    impl ReadAt for Counting<'_> {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            let n = self.bytes.read_at(buf, offset)?;
            let at = offset as usize;
            for c in &mut self.reads.lock().unwrap()[at..at + n] {
                *c += 1;
            }
            Ok(n)
        }
    }

    #[test]
    fn every_byte_is_read_exactly_once() {
        for b in [pack_of(3 * LEAF + 7), pack_of(0)] {
            let source = Counting {
                bytes: &b,
                reads: Mutex::new(vec![0; b.len()]),
            };
            let n = b.len() as u64;
            read_verified(&source, n, &packhash::of_bytes(&b)).unwrap();
            let reads = source.reads.into_inner().unwrap();
            assert!(reads.iter().all(|&c| c == 1), "{} bytes", b.len());
        }
    }

    #[test]
    fn a_header_longer_than_a_leaf() {
        // The longest header there may be: the bytes read first (magic,
        // lengths and header) then end 16 bytes into the second leaf.
        let frame = r#"{"pad":"","gguf":{"size":7}}"#.len();
        let pad = "x".repeat(MAX_HEADER as usize - frame);
        let header = format!(r#"{{"pad":"{pad}","gguf":{{"size":7}}}}"#);
        assert_eq!(16 + header.len(), LEAF + 16);
        let mut b = MAGIC.to_vec();
        b.extend(1u32.to_le_bytes());
        b.extend((header.len() as u32).to_le_bytes());
        b.extend(header.as_bytes());
        b.resize(modelpack::data_offset(header.len() as u64) as usize, 0);
        b.extend(b"GGUF!!!");
        let n = b.len() as u64;
        assert_eq!(
            read_verified(&b[..], n, &packhash::of_bytes(&b)).unwrap(),
            b
        );
    }

    #[test]
    fn lengths_beyond_the_disk_are_refused_before_allocating() {
        let mut b = pack_of(5);
        let header = br#"{"gguf":{"size":999999999999}}"#;
        b.truncate(12);
        b.extend((header.len() as u32).to_le_bytes());
        b.extend(header);
        let n = b.len() as u64;
        let any = Sha256([0; 32]);
        assert!(matches!(
            read_verified(&b[..], n, &any),
            Err(VerifyError::Truncated { .. })
        ));
        assert!(matches!(
            read_verified(&b"nope"[..], 4, &any),
            Err(VerifyError::NotAPack)
        ));
    }
}
