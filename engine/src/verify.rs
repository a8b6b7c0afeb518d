//! Reading a model pack exactly once while hashing it.
//!
//! The guest reads the pack from a disk the host controls, so it must
//! never read it twice: it reads every byte into memory, hashes what it
//! read, compares with the measured hash and only then parses those same
//! bytes. A reader thread fills the next chunk while this thread hashes
//! the last one, so verification costs little more than the read itself.
//!
//! The pack's length comes from its own header (a disk is rounded up to
//! whole sectors); that header is covered by the hash like everything else,
//! and the length it claims is bounded by the device before anything is
//! allocated.

use std::io::Read;
use std::sync::mpsc;

use cocoon_image::modelpack::{self, MAGIC, MAX_HEADER};
use sha2::{Digest, Sha256};

const CHUNK: usize = 8 << 20;

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

/// Reads the pack at the start of `source` (at most `available` bytes),
/// hashing as it goes; returns the bytes only if their sha256 is
/// `expected` (lowercase hex).
pub fn read_verified<R: Read + Send + 'static>(
    source: R,
    available: u64,
    expected: &str,
) -> Result<Vec<u8>, VerifyError> {
    let mut source = source;
    let mut fixed = [0u8; 16];
    source
        .read_exact(&mut fixed)
        .map_err(|_| VerifyError::NotAPack)?;
    if &fixed[..8] != MAGIC {
        return Err(VerifyError::NotAPack);
    }
    let header_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap());
    if header_len > MAX_HEADER {
        return Err(VerifyError::NotAPack);
    }
    let mut header = vec![0u8; header_len as usize];
    source
        .read_exact(&mut header)
        .map_err(|_| VerifyError::NotAPack)?;
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
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&fixed);
    out.extend_from_slice(&header);
    let mut hash = Sha256::new();
    hash.update(&out);
    let mut rest = total - out.len() as u64;
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(2);
    let reader = std::thread::spawn(move || {
        while rest > 0 {
            let n = rest.min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            let r = source.read_exact(&mut buf).map(|_| buf);
            let failed = r.is_err();
            if tx.send(r).is_err() || failed {
                return;
            }
            rest -= n as u64;
        }
    });
    for chunk in rx {
        let chunk = chunk?;
        hash.update(&chunk);
        out.extend_from_slice(&chunk);
    }
    reader.join().expect("the reader thread does not panic");
    if out.len() as u64 != total {
        return Err(VerifyError::Truncated {
            claimed: total,
            available: out.len() as u64,
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

/// Reads a file without hashing it, the same way (the baseline the
/// benchmark compares verification against).
pub fn read_unverified<R: Read>(mut source: R, len: u64) -> std::io::Result<Vec<u8>> {
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
        assert_eq!(
            read_verified(std::io::Cursor::new(disk.clone()), n, &sha).unwrap(),
            b
        );
        let e = read_verified(std::io::Cursor::new(disk), n, &"0".repeat(64)).unwrap_err();
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
            assert!(
                read_verified(std::io::Cursor::new(t), n, &sha).is_err(),
                "byte {i}"
            );
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
            read_verified(std::io::Cursor::new(b), n, "x"),
            Err(VerifyError::Truncated { .. })
        ));
        assert!(matches!(
            read_verified(std::io::Cursor::new(b"nope".to_vec()), 4, "x"),
            Err(VerifyError::NotAPack)
        ));
    }
}
