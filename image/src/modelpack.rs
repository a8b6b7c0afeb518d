//! The model pack: one deterministic file that holds a GGUF model and what
//! the server needs to serve it, so that one hash, its pack hash (carried
//! on the measured kernel command line as `cocoon.model=sha256tree:<hex>`,
//! see [`crate::packhash`]), pins the weights, the tokenizer, the chat
//! template and the name clients use.
//!
//! Layout (all integers little-endian):
//!
//! | offset | bytes | what |
//! |---|---|---|
//! | 0 | 8 | magic `COCOONMP` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | header length `L` |
//! | 16 | `L` | header: compact JSON ([`PackHeader`], fields in fixed order) |
//! | 16+L | … | zeros up to the next multiple of [`ALIGN`] |
//! | `data_offset` | rest | the GGUF file, byte for byte |
//!
//! The tokenizer (vocabulary, merges, special tokens) stays inside the GGUF
//! where llama.cpp's converter put it; the header names which tokenizer
//! and pre-tokenizer that data is for, so the engine refuses kinds it does
//! not implement instead of tokenizing wrongly.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gguf::{self, GgufError};

pub const MAGIC: &[u8; 8] = b"COCOONMP";
pub const VERSION: u32 = 1;
/// The GGUF starts on a page boundary (GGUF's own tensor alignment is 32).
pub const ALIGN: u64 = 4096;
/// Headers are a few KiB (mostly the chat template).
pub const MAX_HEADER: u32 = 1 << 20;

/// The architectures the engine implements (candle-transformers' quantized
/// llama, qwen2 and qwen3).
pub const ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackHeader {
    /// The model id clients pass as `model`.
    pub name: String,
    /// GGUF `general.architecture`.
    pub architecture: String,
    /// Longest sequence (prompt + completion) the server accepts.
    pub context_length: u64,
    pub chat_template: String,
    pub tokenizer: TokenizerKind,
    pub gguf: GgufRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerKind {
    /// `tokenizer.ggml.model` (`gpt2` = byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: which pre-tokenizer splits the text.
    pub pre: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GgufRef {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("not a cocoon model pack (no COCOONMP magic)")]
    Magic,
    #[error("model pack format version {0} is not supported (this build reads {VERSION})")]
    Version(u32),
    #[error("model pack header: {0}")]
    Header(String),
    #[error("the GGUF: {0}")]
    Gguf(#[from] GgufError),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Options for [`write`]; `None` takes the value from the GGUF.
#[derive(Debug, Default, Clone)]
pub struct PackOptions {
    pub name: Option<String>,
    pub chat_template: Option<String>,
    pub context_length: Option<u64>,
}

/// Builds the header for a GGUF file, refusing models the engine cannot serve.
pub fn header_for(gguf_path: &Path, opts: &PackOptions) -> Result<PackHeader, PackError> {
    let mut f = std::fs::File::open(gguf_path)?;
    let size = f.metadata()?.len();
    let info = gguf::read_info(&mut f, size)?;
    let arch = info
        .architecture()
        .ok_or_else(|| PackError::Unsupported("the GGUF has no general.architecture".into()))?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(PackError::Unsupported(format!(
            "architecture {arch:?} is not supported (supported: {})",
            ARCHITECTURES.join(", ")
        )));
    }
    let tok_model = info.get_str("tokenizer.ggml.model").unwrap_or_default();
    if tok_model != "gpt2" {
        return Err(PackError::Unsupported(format!(
            "tokenizer {tok_model:?} is not supported (only byte-level BPE, \"gpt2\")"
        )));
    }
    let chat_template = match &opts.chat_template {
        Some(t) => t.clone(),
        None => info
            .get_str("tokenizer.chat_template")
            .ok_or_else(|| {
                PackError::Unsupported(
                    "the GGUF has no tokenizer.chat_template: pass one with --chat-template".into(),
                )
            })?
            .to_string(),
    };
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => gguf_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string(),
    };
    check_name(&name)?;
    let trained = info.context_length().unwrap_or(2048);
    let context_length = opts.context_length.unwrap_or(trained).min(trained);
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(PackHeader {
        name,
        architecture: arch.to_string(),
        context_length,
        chat_template,
        tokenizer: TokenizerKind {
            model: tok_model.to_string(),
            pre: info
                .get_str("tokenizer.ggml.pre")
                .unwrap_or("default")
                .to_string(),
        },
        gguf: GgufRef {
            sha256: hex::encode(h.finalize()),
            size,
        },
    })
}

fn check_name(name: &str) -> Result<(), PackError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PackError::Header(format!(
            "model name {name:?}: use 1-128 characters of A-Z a-z 0-9 - _ . : /"
        )))
    }
}

/// Where the GGUF starts for a header of `header_len` bytes.
pub fn data_offset(header_len: u64) -> u64 {
    (16 + header_len).div_ceil(ALIGN) * ALIGN
}

/// Writes a pack; returns its pack hash ([`crate::packhash`]). The output
/// depends only on the GGUF bytes and `opts`.
pub fn write(
    gguf_path: &Path,
    opts: &PackOptions,
    out: &Path,
) -> Result<crate::digest::Sha256, PackError> {
    let header = header_for(gguf_path, opts)?;
    let json = serde_json::to_vec(&header).map_err(|e| PackError::Header(e.to_string()))?;
    let offset = data_offset(json.len() as u64);
    let tmp = out.with_extension("partial");
    let mut w = HashingWriter {
        inner: std::io::BufWriter::new(std::fs::File::create(&tmp)?),
        hash: crate::packhash::Hasher::default(),
    };
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(json.len() as u32).to_le_bytes())?;
    w.write_all(&json)?;
    w.write_all(&vec![0; (offset - 16 - json.len() as u64) as usize])?;
    let copied = std::io::copy(&mut std::fs::File::open(gguf_path)?, &mut w)?;
    if copied != header.gguf.size {
        return Err(PackError::Header(
            "the GGUF changed while it was being packed".into(),
        ));
    }
    w.inner.flush()?;
    w.inner.get_ref().sync_all()?;
    std::fs::rename(&tmp, out)?;
    Ok(w.hash.finish().0)
}

/// Hashes what it writes, as it writes it.
struct HashingWriter<W> {
    inner: W,
    hash: crate::packhash::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A parsed pack held in memory: the header and where the GGUF lies.
#[derive(Debug)]
pub struct Pack<'a> {
    pub header: PackHeader,
    pub gguf: &'a [u8],
}

/// Parses a pack already in memory (the guest reads and hashes the whole
/// pack first, then parses the bytes it hashed: never the disk again).
pub fn parse(bytes: &[u8]) -> Result<Pack<'_>, PackError> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(PackError::Magic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != VERSION {
        return Err(PackError::Version(version));
    }
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    if len > MAX_HEADER || 16 + len as usize > bytes.len() {
        return Err(PackError::Header(format!("a header of {len} bytes")));
    }
    let header: PackHeader = serde_json::from_slice(&bytes[16..16 + len as usize])
        .map_err(|e| PackError::Header(e.to_string()))?;
    check_name(&header.name)?;
    let offset = data_offset(len as u64) as usize;
    if bytes.len() < offset || bytes[16 + len as usize..offset].iter().any(|&b| b != 0) {
        return Err(PackError::Header(
            "the padding after the header is not zeros".into(),
        ));
    }
    let gguf = &bytes[offset..];
    if gguf.len() as u64 != header.gguf.size {
        return Err(PackError::Header(format!(
            "the header says the GGUF has {} bytes, the pack holds {}",
            header.gguf.size,
            gguf.len()
        )));
    }
    Ok(Pack { header, gguf })
}

/// Reads only the header of a pack file (for the host and xtask).
pub fn read_header(path: &Path) -> Result<PackHeader, PackError> {
    let mut f = std::fs::File::open(path)?;
    let mut fixed = [0u8; 16];
    f.read_exact(&mut fixed).map_err(|_| PackError::Magic)?;
    let len = u32::from_le_bytes(fixed[12..16].try_into().unwrap());
    if &fixed[..8] != MAGIC {
        return Err(PackError::Magic);
    }
    if len > MAX_HEADER {
        return Err(PackError::Header(format!("a header of {len} bytes")));
    }
    let mut buf = fixed.to_vec();
    buf.resize(16 + len as usize, 0);
    f.read_exact(&mut buf[16..])?;
    let header: PackHeader =
        serde_json::from_slice(&buf[16..]).map_err(|e| PackError::Header(e.to_string()))?;
    let total = f.metadata()?.len();
    if total != data_offset(len as u64) + header.gguf.size {
        return Err(PackError::Header(format!(
            "the file has {total} bytes, the header implies another size"
        )));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::tests::tiny_gguf;

    fn tiny(dir: &Path) -> std::path::PathBuf {
        let g = tiny_gguf(&[
            ("general.architecture", "llama"),
            ("tokenizer.ggml.model", "gpt2"),
            ("tokenizer.ggml.pre", "smollm"),
            ("tokenizer.chat_template", "{{ messages }}"),
        ]);
        let p = dir.join("Tiny-Model.gguf");
        std::fs::write(&p, g).unwrap();
        p
    }

    #[test]
    fn a_pack_is_deterministic_and_parses_back() {
        let d = tempfile::tempdir().unwrap();
        let g = tiny(d.path());
        let a = write(&g, &PackOptions::default(), &d.path().join("a.pack")).unwrap();
        let b = write(&g, &PackOptions::default(), &d.path().join("b.pack")).unwrap();
        assert_eq!(a, b);
        let bytes = std::fs::read(d.path().join("a.pack")).unwrap();
        assert_eq!(crate::packhash::of_bytes(&bytes), a);
        let pack = parse(&bytes).unwrap();
        assert_eq!(pack.header.name, "Tiny-Model");
        assert_eq!(pack.header.tokenizer.pre, "smollm");
        assert_eq!(pack.header.context_length, 2048);
        assert_eq!(pack.gguf, std::fs::read(&g).unwrap());
        assert_eq!(read_header(&d.path().join("a.pack")).unwrap(), pack.header);
    }

    #[test]
    fn options_change_the_pack() {
        let d = tempfile::tempdir().unwrap();
        let g = tiny(d.path());
        let a = write(&g, &PackOptions::default(), &d.path().join("a.pack")).unwrap();
        let opts = PackOptions {
            name: Some("tiny".into()),
            context_length: Some(512),
            ..Default::default()
        };
        let b = write(&g, &opts, &d.path().join("b.pack")).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            read_header(&d.path().join("b.pack"))
                .unwrap()
                .context_length,
            512
        );
    }

    #[test]
    fn refuses_unsupported_models_and_names() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.gguf");
        std::fs::write(
            &p,
            tiny_gguf(&[
                ("general.architecture", "mamba"),
                ("tokenizer.ggml.model", "gpt2"),
            ]),
        )
        .unwrap();
        let e = write(&p, &PackOptions::default(), &d.path().join("x")).unwrap_err();
        assert!(e.to_string().contains("mamba"), "{e}");
        std::fs::write(
            &p,
            tiny_gguf(&[
                ("general.architecture", "llama"),
                ("tokenizer.ggml.model", "llama"),
            ]),
        )
        .unwrap();
        assert!(write(&p, &PackOptions::default(), &d.path().join("x")).is_err());
        let g = tiny(d.path());
        let opts = PackOptions {
            name: Some("bad name\n".into()),
            ..Default::default()
        };
        assert!(write(&g, &opts, &d.path().join("x")).is_err());
    }

    #[test]
    fn malformed_packs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let g = tiny(d.path());
        write(&g, &PackOptions::default(), &d.path().join("a.pack")).unwrap();
        let good = std::fs::read(d.path().join("a.pack")).unwrap();
        assert!(matches!(parse(&good[..10]), Err(PackError::Magic)));
        let mut v = good.clone();
        v[8] = 2;
        assert!(matches!(parse(&v), Err(PackError::Version(2))));
        let mut v = good.clone();
        v.push(0);
        assert!(parse(&v).is_err());
        let mut v = good.clone();
        v[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&v).is_err());
        let len = u32::from_le_bytes(good[12..16].try_into().unwrap()) as usize;
        let mut v = good.clone();
        v[16 + len] = 1;
        assert!(parse(&v).is_err());
    }
}
