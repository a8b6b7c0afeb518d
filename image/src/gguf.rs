//! Just enough of the GGUF format to describe a model file: its version,
//! its tensor count and the scalar metadata a model pack records
//! (architecture, name, chat template, tokenizer kind).
//!
//! The reader never trusts a length: every string and array is bounded by
//! the bytes left in the file, so a malformed file is an error, not a huge
//! allocation. The tensors themselves are read by the engine (candle).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (magic {0:02x?})")]
    Magic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("GGUF metadata is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A scalar metadata value; arrays are summarised by their length.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i128),
    Float(f64),
    Bool(bool),
    String(String),
    Array { len: u64 },
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GgufInfo {
    pub version: u32,
    pub tensor_count: u64,
    pub metadata: BTreeMap<String, Value>,
}

impl GgufInfo {
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    /// `<arch>.context_length`, the longest sequence the model was trained for.
    pub fn context_length(&self) -> Option<u64> {
        let arch = self.architecture()?;
        self.metadata
            .get(&format!("{arch}.context_length"))?
            .as_u64()
    }
}

/// Strings longer than this are refused (chat templates are a few KiB).
const MAX_STRING: u64 = 1 << 20;

struct Cursor<R> {
    r: R,
    left: u64,
}

impl<R: Read> Cursor<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        if self.left < N as u64 {
            return Err(GgufError::Malformed(
                "the file ends inside the metadata".into(),
            ));
        }
        let mut b = [0; N];
        self.r.read_exact(&mut b)?;
        self.left -= N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > self.left || len > MAX_STRING {
            return Err(GgufError::Malformed(format!("a string of {len} bytes")));
        }
        let mut buf = vec![0; len as usize];
        self.r.read_exact(&mut buf)?;
        self.left -= len;
        String::from_utf8(buf).map_err(|_| GgufError::Malformed("a string is not UTF-8".into()))
    }
    fn skip(&mut self, n: u64) -> Result<(), GgufError> {
        if n > self.left {
            return Err(GgufError::Malformed("the file ends inside an array".into()));
        }
        std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        self.left -= n;
        Ok(())
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::Int(self.bytes::<1>()?[0] as i128),
            1 => Value::Int(self.bytes::<1>()?[0] as i8 as i128),
            2 => Value::Int(u16::from_le_bytes(self.bytes()?) as i128),
            3 => Value::Int(i16::from_le_bytes(self.bytes()?) as i128),
            4 => Value::Int(self.u32()? as i128),
            5 => Value::Int(i32::from_le_bytes(self.bytes()?) as i128),
            6 => Value::Float(f32::from_le_bytes(self.bytes()?) as f64),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(GgufError::Malformed("arrays nested too deep".into()));
                }
                let elem = self.u32()?;
                let len = self.u64()?;
                match fixed_size(elem) {
                    Some(size) => self.skip(len.checked_mul(size).ok_or_else(|| {
                        GgufError::Malformed(format!("an array of {len} elements"))
                    })?)?,
                    None => {
                        if len > self.left {
                            return Err(GgufError::Malformed(format!(
                                "an array of {len} elements"
                            )));
                        }
                        for _ in 0..len {
                            match elem {
                                8 => {
                                    let n = self.u64()?;
                                    self.skip(n)?;
                                }
                                _ => {
                                    self.value(elem, depth + 1)?;
                                }
                            }
                        }
                    }
                }
                Value::Array { len }
            }
            10 => Value::Int(self.u64()? as i128),
            11 => Value::Int(i64::from_le_bytes(self.bytes()?) as i128),
            12 => Value::Float(f64::from_le_bytes(self.bytes()?)),
            t => return Err(GgufError::Malformed(format!("unknown value type {t}"))),
        })
    }
}

fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Reads the header and metadata of the GGUF that starts at the reader's
/// current position and spans `len` bytes.
pub fn read_info<R: Read + Seek>(mut r: R, len: u64) -> Result<GgufInfo, GgufError> {
    let start = r.stream_position()?;
    let mut c = Cursor {
        r: &mut r,
        left: len,
    };
    let magic = c.bytes::<4>()?;
    if &magic != b"GGUF" {
        return Err(GgufError::Magic(magic));
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let tensor_count = c.u64()?;
    let kv_count = c.u64()?;
    if kv_count > c.left / 13 {
        return Err(GgufError::Malformed(format!("{kv_count} metadata entries")));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = c.string()?;
        let ty = c.u32()?;
        let value = c.value(ty, 0)?;
        metadata.insert(key, value);
    }
    r.seek(SeekFrom::Start(start))?;
    Ok(GgufInfo {
        version,
        tensor_count,
        metadata,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny GGUF (v3, no tensors) with the given string metadata and one
    /// array of strings, written the way llama.cpp's writer does.
    pub fn tiny_gguf(strings: &[(&str, &str)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((strings.len() as u64 + 2).to_le_bytes());
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        for (k, v) in strings {
            s(&mut b, k);
            b.extend(8u32.to_le_bytes());
            s(&mut b, v);
        }
        s(&mut b, "llama.context_length");
        b.extend(4u32.to_le_bytes());
        b.extend(2048u32.to_le_bytes());
        s(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        s(&mut b, "a");
        s(&mut b, "bc");
        b
    }

    #[test]
    fn reads_scalars_and_skips_arrays() {
        let g = tiny_gguf(&[("general.architecture", "llama"), ("general.name", "Tiny")]);
        let info = read_info(std::io::Cursor::new(&g), g.len() as u64).unwrap();
        assert_eq!(info.architecture(), Some("llama"));
        assert_eq!(info.get_str("general.name"), Some("Tiny"));
        assert_eq!(info.context_length(), Some(2048));
        assert_eq!(
            info.metadata["tokenizer.ggml.tokens"],
            Value::Array { len: 2 }
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let g = tiny_gguf(&[("general.architecture", "llama")]);
        for cut in 0..g.len() {
            assert!(
                read_info(std::io::Cursor::new(&g[..cut]), cut as u64).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn refuses_wrong_magic_version_and_huge_lengths() {
        let mut g = tiny_gguf(&[]);
        g[0] = b'X';
        assert!(matches!(
            read_info(std::io::Cursor::new(&g), g.len() as u64),
            Err(GgufError::Magic(_))
        ));
        let mut g = tiny_gguf(&[]);
        g[4] = 9;
        assert!(matches!(
            read_info(std::io::Cursor::new(&g), g.len() as u64),
            Err(GgufError::Version(9))
        ));
        let mut g = tiny_gguf(&[("general.name", "x")]);
        // The first key's length, set to 2^62.
        g[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(matches!(
            read_info(std::io::Cursor::new(&g), g.len() as u64),
            Err(GgufError::Malformed(_))
        ));
    }
}
