//! Reading a model pack exactly once while hashing it.
//!
//! The guest reads the pack from a disk the host controls, so it must
//! never read it twice: it reads every byte into memory, hashes what it
//! read, compares with the measured hash and only then parses those same
//! bytes. Two reader threads fill the buffer chunk by chunk while this
//! thread hashes the chunks in order, so verification costs little more
//! than the read itself (BENCHMARKS.md has the figures).
//!
//! The pack's length comes from its own header (a disk is rounded up to
//! whole sectors); that header is covered by the hash like everything else,
//! and the length it claims is bounded by the device before anything is
//! allocated.

use std::sync::mpsc;

use cocoon_image::modelpack::{self, MAGIC, MAX_HEADER};
use sha2::{Digest, Sha256};

/// Bytes per read.
const CHUNK: usize = 1 << 20;
/// Reads in flight: a single reader copying from the page cache is about
/// as fast as SHA-256, so with one reader the hasher would wait on it.
const READERS: usize = 2;

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
    #[error(
        "the model pack's sha256 is {actual}, but the measured command line requires {expected}"
    )]
    Mismatch { expected: String, actual: String },
    #[error("reading the model pack: {0}")]
    Io(#[from] std::io::Error),
}

/// Feeds `bytes` to `hash` in pieces, asking for each piece's successor
/// while the current one is hashed: SHA-256 reads its input serially, and
/// from memory (rather than cache) it is stalled on every line without
/// this.
pub fn update_prefetching(hash: &mut Sha256, bytes: &[u8]) {
    const PIECE: usize = 4096;
    const AHEAD: usize = 2 * PIECE;
    for (i, piece) in bytes.chunks(PIECE).enumerate() {
        #[cfg(target_arch = "x86_64")]
        {
            let next = i * PIECE + AHEAD;
            for line in (next..(next + PIECE).min(bytes.len())).step_by(64) {
                // SAFETY: `line` is inside `bytes`; a prefetch reads nothing.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        bytes.as_ptr().add(line) as *const i8,
                    )
                };
            }
        }
        hash.update(piece);
    }
}

/// sha256 of `bytes` through [`update_prefetching`] (for the benchmark).
pub fn sha256_prefetching(bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    update_prefetching(&mut h, bytes);
    h.finalize().into()
}

/// Reads the pack at the start of `source` (at most `available` bytes),
/// hashing as it goes; returns the bytes only if their sha256 is
/// `expected` (lowercase hex).
pub fn read_verified<R: ReadAt + ?Sized>(
    source: &R,
    available: u64,
    expected: &str,
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
    // about it changes the hash.
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
    let total = total as usize;
    let head = fixed.len() + header.len();
    let mut out = vec![0u8; total];
    out[..16].copy_from_slice(&fixed);
    out[16..head].copy_from_slice(&header);
    let mut hash = Sha256::new();
    hash.update(&out[..head]);
    // Readers fill the final buffer, chunk i by reader i % READERS, and
    // hand each filled chunk over read-only; this thread hashes the chunks
    // in order as they complete. No byte is copied twice, and no byte is
    // hashed that is not the byte returned.
    let got = std::thread::scope(|scope| -> Result<usize, VerifyError> {
        let (tx, rx) = mpsc::channel::<(usize, std::io::Result<&[u8]>)>();
        let chunks: Vec<&mut [u8]> = out[head..].chunks_mut(CHUNK).collect();
        let count = chunks.len();
        let mut shares: Vec<Vec<(usize, &mut [u8])>> = (0..READERS).map(|_| Vec::new()).collect();
        for (i, c) in chunks.into_iter().enumerate() {
            shares[i % READERS].push((i, c));
        }
        for share in shares {
            let tx = tx.clone();
            scope.spawn(move || {
                for (i, chunk) in share {
                    let want = chunk.len();
                    let r = source
                        .read_full_at(chunk, (head + i * CHUNK) as u64)
                        .map(|n| &chunk[..n]);
                    let stop = r.as_ref().map_or(true, |c| c.len() < want);
                    if tx.send((i, r)).is_err() || stop {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut arrived: Vec<Option<&[u8]>> = vec![None; count];
        let (mut next, mut got) = (0, head);
        while next < count {
            let Ok((i, r)) = rx.recv() else { break };
            arrived[i] = Some(r?);
            while let Some(chunk) = arrived.get(next).copied().flatten() {
                update_prefetching(&mut hash, chunk);
                got += chunk.len();
                next += 1;
                if chunk.len() < CHUNK && next < count {
                    // The source ended early.
                    return Ok(got);
                }
            }
        }
        Ok(got)
    })?;
    if got != total {
        return Err(VerifyError::Truncated {
            claimed: total as u64,
            available: got as u64,
        });
    }
    let actual = hex::encode(hash.finalize());
    if actual != expected {
        return Err(VerifyError::Mismatch {
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(out)
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

    fn pack_bytes() -> Vec<u8> {
        let header = br#"{"gguf":{"size":5}}"#;
        let mut b = MAGIC.to_vec();
        b.extend(1u32.to_le_bytes());
        b.extend((header.len() as u32).to_le_bytes());
        b.extend(header);
        b.resize(modelpack::data_offset(header.len() as u64) as usize, 0);
        b.extend(b"GGUF!");
        b
    }

    #[test]
    fn reads_exactly_the_pack_and_checks_its_hash() {
        let b = pack_bytes();
        let sha = hex::encode(Sha256::digest(&b));
        let mut disk = b.clone();
        disk.resize(b.len().next_multiple_of(512), 0); // sector padding
        let n = disk.len() as u64;
        assert_eq!(read_verified(&disk[..], n, &sha).unwrap(), b);
        let e = read_verified(&disk[..], n, &"0".repeat(64)).unwrap_err();
        assert!(matches!(e, VerifyError::Mismatch { .. }), "{e}");
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let b = pack_bytes();
        let sha = hex::encode(Sha256::digest(&b));
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 1;
            let n = t.len() as u64;
            assert!(read_verified(&t[..], n, &sha).is_err(), "byte {i}");
        }
    }

    #[test]
    fn packs_of_many_chunks_are_hashed_in_order() {
        for gguf_len in [CHUNK, 3 * CHUNK + 12345] {
            let mut b = pack_bytes();
            b.truncate(b.len() - 5);
            let header = format!(r#"{{"gguf":{{"size":{gguf_len}}}}}"#);
            b.truncate(12);
            b.extend((header.len() as u32).to_le_bytes());
            b.extend(header.as_bytes());
            b.resize(modelpack::data_offset(header.len() as u64) as usize, 0);
            b.extend((0..gguf_len).map(|i| (i * 31 % 251) as u8));
            let sha = hex::encode(Sha256::digest(&b));
            let n = b.len() as u64;
            assert_eq!(read_verified(&b[..], n, &sha).unwrap(), b);
            // Chunks swapped (each intact) hash differently.
            let mut t = b.clone();
            let at = b.len() - gguf_len;
            t[at..at + CHUNK / 2].copy_from_slice(&b[at + CHUNK / 2..at + CHUNK]);
            t[at + CHUNK / 2..at + CHUNK].copy_from_slice(&b[at..at + CHUNK / 2]);
            assert!(matches!(
                read_verified(&t[..], n, &sha),
                Err(VerifyError::Mismatch { .. })
            ));
            // The last byte flipped; the source cut short.
            let mut t = b.clone();
            *t.last_mut().unwrap() ^= 1;
            assert!(read_verified(&t[..], n, &sha).is_err());
            let cut = &b[..b.len() - CHUNK / 2];
            assert!(matches!(
                read_verified(cut, n, &sha),
                Err(VerifyError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn lengths_beyond_the_disk_are_refused_before_allocating() {
        let mut b = pack_bytes();
        let header = br#"{"gguf":{"size":999999999999}}"#;
        b.truncate(12);
        b.extend((header.len() as u32).to_le_bytes());
        b.extend(header);
        let n = b.len() as u64;
        assert!(matches!(
            read_verified(&b[..], n, "x"),
            Err(VerifyError::Truncated { .. })
        ));
        assert!(matches!(
            read_verified(&b"nope"[..], 4, "x"),
            Err(VerifyError::NotAPack)
        ));
    }
}
