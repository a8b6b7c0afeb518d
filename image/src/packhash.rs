//! The pack hash: the name the measured command line gives a model pack
//! (`cocoon.model=sha256tree:<hex>`).
//!
//! A plain sha256 of the file cannot be computed faster than one core
//! hashes (SHA-256 chains every block to the one before), and on the
//! machines we run on one core hashes a pack from memory more slowly than
//! the guest reads it: verification would cost 1.2-1.6× the read
//! (BENCHMARKS.md). So the pack is cut into 1 MiB leaves that are hashed on
//! their own, in parallel and each right after it is read, while it is
//! still in the cache, and the root hashes the list of leaves:
//!
//! ```text
//! leaf[i] = SHA-256(pack[i·2^20 .. min((i+1)·2^20, len)])      0 ≤ i < ⌈len / 2^20⌉
//! root    = SHA-256("cocoon pack tree v1\0" ‖ u64le(len) ‖ leaf[0] ‖ leaf[1] ‖ …)
//! ```
//!
//! Two levels are enough: a 5 GB pack has 5 000 leaves, 160 KB for the root
//! to hash. The length fixes where every leaf starts and how many there
//! are, so two packs with one root mean a SHA-256 collision, in the root or
//! in a leaf. The prefix keeps a root from being read as any other SHA-256
//! we compute. Anyone can recompute it with a few lines of any language;
//! docs/model-pack.md has them in Python, and a test checks that they agree
//! with this code.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256 as Sha2};

use crate::digest::Sha256;

/// Bytes per leaf.
pub const LEAF: usize = 1 << 20;
/// What the root hashes first.
pub const DOMAIN: &[u8] = b"cocoon pack tree v1\0";
/// The scheme as the command line writes it.
pub const SCHEME: &str = "sha256tree";

/// One leaf's hash.
pub fn leaf(bytes: &[u8]) -> [u8; 32] {
    Sha2::digest(bytes).into()
}

/// The root over the leaves of a pack of `len` bytes.
pub fn root(len: u64, leaves: &[[u8; 32]]) -> Sha256 {
    let mut h = Sha2::new();
    h.update(DOMAIN);
    h.update(len.to_le_bytes());
    for l in leaves {
        h.update(l);
    }
    Sha256(h.finalize().into())
}

/// The pack hash of bytes in memory.
pub fn of_bytes(bytes: &[u8]) -> Sha256 {
    let leaves: Vec<[u8; 32]> = bytes.chunks(LEAF).map(leaf).collect();
    root(bytes.len() as u64, &leaves)
}

/// The pack hash of bytes fed in order, in pieces of any size (the host
/// side's streaming hasher; the guest hashes whole leaves in parallel).
#[derive(Default)]
pub struct Hasher {
    leaf: Sha2,
    in_leaf: usize,
    leaves: Vec<[u8; 32]>,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = (LEAF - self.in_leaf).min(bytes.len());
            self.leaf.update(&bytes[..n]);
            self.in_leaf += n;
            self.len += n as u64;
            bytes = &bytes[n..];
            if self.in_leaf == LEAF {
                self.end_leaf();
            }
        }
    }

    fn end_leaf(&mut self) {
        self.leaves
            .push(std::mem::take(&mut self.leaf).finalize().into());
        self.in_leaf = 0;
    }

    /// The pack hash and the length of everything fed.
    pub fn finish(mut self) -> (Sha256, u64) {
        if self.in_leaf > 0 {
            self.end_leaf();
        }
        (root(self.len, &self.leaves), self.len)
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The pack hash of everything `reader` yields, and its length.
pub fn of_reader(mut reader: impl Read) -> io::Result<(Sha256, u64)> {
    let mut h = Hasher::default();
    io::copy(&mut reader, &mut h)?;
    Ok(h.finish())
}

/// The pack hash of a file, and its length.
pub fn of_file(path: &Path) -> io::Result<(Sha256, u64)> {
    of_reader(std::fs::File::open(path)?)
}

/// `sha256tree:<hex>`, as the command line and the messages write it.
pub fn display(hash: &Sha256) -> String {
    format!("{SCHEME}:{}", hash.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack of `len` bytes that differ from leaf to leaf.
    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn reader_and_bytes_agree_at_every_leaf_boundary() {
        for len in [0, 1, LEAF - 1, LEAF, LEAF + 1, 3 * LEAF + 17] {
            let b = bytes(len);
            assert_eq!(
                of_reader(&b[..]).unwrap(),
                (of_bytes(&b), len as u64),
                "{len}"
            );
            // Fed in odd-sized pieces that straddle the leaf boundaries.
            let mut h = Hasher::default();
            for piece in b.chunks(4099) {
                h.update(piece);
            }
            assert_eq!(h.finish(), (of_bytes(&b), len as u64), "{len}");
        }
    }

    #[test]
    fn the_construction_is_the_documented_one() {
        // Two leaves, spelled out.
        let b = bytes(LEAF + 5);
        let mut h = Sha2::new();
        h.update(b"cocoon pack tree v1\0");
        h.update(((LEAF + 5) as u64).to_le_bytes());
        h.update(Sha2::digest(&b[..LEAF]));
        h.update(Sha2::digest(&b[LEAF..]));
        assert_eq!(of_bytes(&b).0, <[u8; 32]>::from(h.finalize()));
        // Not the plain sha256, and the length counts: a trailing zero
        // changes the root even where it leaves the last leaf's hash
        // computable from the same data.
        assert_ne!(of_bytes(&b), Sha256::of(&b));
        let mut longer = b.clone();
        longer.push(0);
        assert_ne!(of_bytes(&b), of_bytes(&longer));
    }

    #[test]
    fn every_leaf_is_covered() {
        let b = bytes(2 * LEAF + 3);
        let h = of_bytes(&b);
        for at in [0, LEAF - 1, LEAF, 2 * LEAF, 2 * LEAF + 2] {
            let mut t = b.clone();
            t[at] ^= 1;
            assert_ne!(of_bytes(&t), h, "byte {at}");
        }
    }
}
