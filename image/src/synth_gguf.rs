//! Synthetic-weight GGUF files of real model shapes, for benchmarks.
//!
//! Decode speed depends on the shapes and the quantization, not on the
//! weights' values, so a model of Llama-3.1-8B's shape with pseudo-random
//! weights measures what the real one would, without a 4.5 GB download.
//! The bytes are a pure function of (shape, quantization): the same file
//! comes out on any machine, so a GPU run and a CPU run of "the same
//! synthetic model" really are of the same model (compare the sha256).
//!
//! The writer streams: memory use is one block, whatever the size. Its
//! output loads in candle's `quantized_llama` and in llama.cpp: llama
//! architecture metadata, a byte-level ("gpt2") vocabulary of the shape's
//! size with no merges (every byte is a token; the rest are filler), and a
//! ChatML template so a model pack can be made of it.
//!
//! Scales are chosen so every matrix product keeps activations near unit
//! size (weights of standard deviation 1/sqrt(fan-in); embedding rows of
//! unit size): nothing overflows in f16 through the layers. The rows of the special tokens in the output
//! matrix are zero, so their logit is exactly 0 while the others are of
//! order 1 and the greedy argmax never picks them: generation never stops
//! early and every sequence produces the tokens a benchmark asks for.

use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The dimensions of a llama-architecture model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub name: &'static str,
    pub vocab: u64,
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub ffn: u64,
    pub rope_base: u32,
    pub context: u32,
    /// The output matrix is the token embedding (no `output.weight`).
    pub tied: bool,
    /// `tokenizer.ggml.pre` of the real model.
    pub pre: &'static str,
}

/// The shapes the GPU benchmark uses, from the models' published configs.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "smollm2-135m",
        vocab: 49152,
        hidden: 576,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        ffn: 1536,
        rope_base: 100_000,
        context: 8192,
        tied: true,
        pre: "smollm",
    },
    Shape {
        name: "llama-3.2-1b",
        vocab: 128_256,
        hidden: 2048,
        layers: 16,
        heads: 32,
        kv_heads: 8,
        ffn: 8192,
        rope_base: 500_000,
        context: 8192,
        tied: true,
        pre: "llama-bpe",
    },
    Shape {
        name: "llama-3.1-8b",
        vocab: 128_256,
        hidden: 4096,
        layers: 32,
        heads: 32,
        kv_heads: 8,
        ffn: 14336,
        rope_base: 500_000,
        context: 8192,
        tied: false,
        pre: "llama-bpe",
    },
];

pub fn shape(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.name == name)
}

/// The quantization of every matrix (as `llama-quantize --pure` would
/// write it); norms stay f32 as in every GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    Q4_0,
    /// Like Q4_0 with an offset per block (the demo model's encoding).
    Q4_1,
    Q8_0,
}

impl Quant {
    pub fn parse(s: &str) -> Option<Quant> {
        match s {
            "q4_0" => Some(Quant::Q4_0),
            "q4_1" => Some(Quant::Q4_1),
            "q8_0" => Some(Quant::Q8_0),
            _ => None,
        }
    }
    /// GGML type id.
    fn ggml_type(self) -> u32 {
        match self {
            Quant::Q4_0 => 2,
            Quant::Q4_1 => 3,
            Quant::Q8_0 => 8,
        }
    }
    /// `general.file_type` (llama_ftype).
    fn file_type(self) -> u32 {
        match self {
            Quant::Q4_0 => 2,
            Quant::Q4_1 => 3,
            Quant::Q8_0 => 7,
        }
    }
    /// Bytes per block of 32 weights.
    fn block_bytes(self) -> u64 {
        match self {
            Quant::Q4_0 => 18,
            Quant::Q4_1 => 20,
            Quant::Q8_0 => 34,
        }
    }
    /// Standard deviation of the integer levels (uniform 0..15 less 8, or
    /// uniform -127..127): the scale is 1/(fan-in^0.5 * this).
    fn level_std(self) -> f32 {
        match self {
            Quant::Q4_0 | Quant::Q4_1 => 4.61,
            Quant::Q8_0 => 73.3,
        }
    }
}

const F32: u32 = 0;
const ALIGN: u64 = 32;

/// One tensor: GGUF dims (innermost first), quantized or an f32 vector of ones.
struct TensorSpec {
    name: String,
    dims: Vec<u64>,
    quantized: bool,
}

impl TensorSpec {
    fn bytes(&self, q: Quant) -> u64 {
        let n: u64 = self.dims.iter().product();
        if self.quantized {
            n / 32 * q.block_bytes()
        } else {
            n * 4
        }
    }
}

fn tensors(s: &Shape) -> Vec<TensorSpec> {
    let head_dim = s.hidden / s.heads;
    let m = |name: String, dims: [u64; 2]| TensorSpec {
        name,
        dims: dims.to_vec(),
        quantized: true,
    };
    let v = |name: String, n: u64| TensorSpec {
        name,
        dims: vec![n],
        quantized: false,
    };
    let mut t = vec![
        m("token_embd.weight".into(), [s.hidden, s.vocab]),
        v("output_norm.weight".into(), s.hidden),
    ];
    if !s.tied {
        t.push(m("output.weight".into(), [s.hidden, s.vocab]));
    }
    for i in 0..s.layers {
        let b = |n: &str| format!("blk.{i}.{n}.weight");
        t.push(v(b("attn_norm"), s.hidden));
        t.push(m(b("attn_q"), [s.hidden, s.heads * head_dim]));
        t.push(m(b("attn_k"), [s.hidden, s.kv_heads * head_dim]));
        t.push(m(b("attn_v"), [s.hidden, s.kv_heads * head_dim]));
        t.push(m(b("attn_output"), [s.heads * head_dim, s.hidden]));
        t.push(v(b("ffn_norm"), s.hidden));
        t.push(m(b("ffn_gate"), [s.hidden, s.ffn]));
        t.push(m(b("ffn_up"), [s.hidden, s.ffn]));
        t.push(m(b("ffn_down"), [s.ffn, s.hidden]));
    }
    t
}

/// The weight bytes one decode step reads: every tensor but the embedding
/// table, of which a step reads one row (unless it is also the output
/// matrix). The KV cache is not counted (small at benchmark lengths).
pub fn decode_bytes_per_token(s: &Shape, q: Quant) -> u64 {
    tensors(s)
        .iter()
        .filter(|t| s.tied || t.name != "token_embd.weight")
        .map(|t| t.bytes(q))
        .sum()
}

/// The special tokens, last in the vocabulary: (text, role).
const SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// GPT-2's byte-to-unicode table (the same as the tokenizer's).
fn byte_char(b: u8) -> char {
    let printable = |c: u32| (0x21..=0x7E).contains(&c) || (0xA1..=0xAC).contains(&c) || c >= 0xAE;
    let b32 = b as u32;
    if printable(b32) {
        return char::from_u32(b32).expect("latin-1");
    }
    let extra = (0..b32).filter(|c| !printable(*c)).count() as u32;
    char::from_u32(256 + extra).expect("below 0x200")
}

fn vocab(s: &Shape) -> (Vec<String>, Vec<i32>) {
    let n = s.vocab as usize;
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let fillers = n - 256 - SPECIALS.len();
    tokens.extend((0..fillers).map(|i| format!("<synth{i}>")));
    tokens.extend(SPECIALS.iter().map(|t| t.to_string()));
    let mut types = vec![1i32; n];
    for t in &mut types[n - SPECIALS.len()..] {
        *t = 3; // control
    }
    (tokens, types)
}

/// The id of a special token of [`SPECIALS`].
fn special_id(s: &Shape, text: &str) -> u32 {
    let i = SPECIALS
        .iter()
        .position(|t| *t == text)
        .expect("a listed special");
    (s.vocab as usize - SPECIALS.len() + i) as u32
}

/// splitmix64: fast, and seeded per tensor so a tensor's bytes do not
/// depend on the order they are written in.
struct Rng(u64);
impl Rng {
    fn seeded(name: &str) -> Rng {
        // FNV-1a of the name.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// f32 to IEEE half bits, round to nearest; for the normal range only
/// (the scales here are far from its ends).
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    assert!(
        (1..31).contains(&exp),
        "scale {x} outside f16's normal range"
    );
    let mant = b & 0x7f_ffff;
    let mut h = ((exp as u32) << 10) | (mant >> 13);
    if mant & 0x1fff > 0x1000 || (mant & 0x1fff == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}

struct Gguf<W: Write> {
    w: W,
    written: u64,
}

impl<W: Write> Gguf<W> {
    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.written += b.len() as u64;
        self.w.write_all(b)
    }
    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.raw(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.raw(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> io::Result<()> {
        self.u64(s.len() as u64)?;
        self.raw(s.as_bytes())
    }
    fn key(&mut self, k: &str, ty: u32) -> io::Result<()> {
        self.str(k)?;
        self.u32(ty)
    }
    fn kv_u32(&mut self, k: &str, v: u32) -> io::Result<()> {
        self.key(k, 4)?;
        self.u32(v)
    }
    fn kv_f32(&mut self, k: &str, v: f32) -> io::Result<()> {
        self.key(k, 6)?;
        self.raw(&v.to_le_bytes())
    }
    fn kv_bool(&mut self, k: &str, v: bool) -> io::Result<()> {
        self.key(k, 7)?;
        self.raw(&[v as u8])
    }
    fn kv_str(&mut self, k: &str, v: &str) -> io::Result<()> {
        self.key(k, 8)?;
        self.str(v)
    }
    fn kv_strs(&mut self, k: &str, v: &[String]) -> io::Result<()> {
        self.key(k, 9)?;
        self.u32(8)?;
        self.u64(v.len() as u64)?;
        v.iter().try_for_each(|s| self.str(s))
    }
    fn kv_i32s(&mut self, k: &str, v: &[i32]) -> io::Result<()> {
        self.key(k, 9)?;
        self.u32(5)?;
        self.u64(v.len() as u64)?;
        v.iter().try_for_each(|x| self.raw(&x.to_le_bytes()))
    }
    fn pad(&mut self) -> io::Result<()> {
        let n = self.written.next_multiple_of(ALIGN) - self.written;
        self.raw(&vec![0; n as usize])
    }
}

/// What [`write`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub decode_bytes_per_token: u64,
}

/// Writes the synthetic GGUF of `shape` quantized as `quant` to `out`.
pub fn write(shape: &Shape, quant: Quant, out: &Path) -> io::Result<Written> {
    let file = std::fs::File::create(out)?;
    let mut g = Gguf {
        w: BufWriter::with_capacity(8 << 20, file),
        written: 0,
    };
    write_to(shape, quant, &mut g)?;
    g.w.flush()?;
    g.w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(Written {
        bytes: g.written,
        decode_bytes_per_token: decode_bytes_per_token(shape, quant),
    })
}

fn write_to<W: Write>(s: &Shape, q: Quant, g: &mut Gguf<W>) -> io::Result<()> {
    let specs = tensors(s);
    let (tokens, types) = vocab(s);
    let eos = special_id(s, "<|endoftext|>");
    let bos = special_id(s, "<|im_start|>");
    g.raw(b"GGUF")?;
    g.u32(3)?;
    g.u64(specs.len() as u64)?;
    g.u64(22)?; // metadata entries, written below
    g.kv_str("general.architecture", "llama")?;
    g.kv_str("general.name", &format!("synthetic {}", s.name))?;
    g.kv_u32("general.file_type", q.file_type())?;
    g.kv_u32("general.alignment", ALIGN as u32)?;
    g.kv_u32("llama.context_length", s.context)?;
    g.kv_u32("llama.embedding_length", s.hidden as u32)?;
    g.kv_u32("llama.block_count", s.layers as u32)?;
    g.kv_u32("llama.feed_forward_length", s.ffn as u32)?;
    g.kv_u32("llama.rope.dimension_count", (s.hidden / s.heads) as u32)?;
    g.kv_u32("llama.attention.head_count", s.heads as u32)?;
    g.kv_u32("llama.attention.head_count_kv", s.kv_heads as u32)?;
    g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)?;
    g.kv_f32("llama.rope.freq_base", s.rope_base as f32)?;
    g.kv_str("tokenizer.ggml.model", "gpt2")?;
    g.kv_str("tokenizer.ggml.pre", s.pre)?;
    g.kv_strs("tokenizer.ggml.tokens", &tokens)?;
    g.kv_i32s("tokenizer.ggml.token_type", &types)?;
    g.kv_strs("tokenizer.ggml.merges", &[])?;
    g.kv_u32("tokenizer.ggml.bos_token_id", bos)?;
    g.kv_u32("tokenizer.ggml.eos_token_id", eos)?;
    // No BOS, as in SmolLM2's GGUF: prompts are exactly the tokens asked for.
    g.kv_bool("tokenizer.ggml.add_bos_token", false)?;
    g.kv_str("tokenizer.chat_template", CHATML)?;
    let mut offset = 0u64;
    for t in &specs {
        g.str(&t.name)?;
        g.u32(t.dims.len() as u32)?;
        for d in &t.dims {
            g.u64(*d)?;
        }
        g.u32(if t.quantized { q.ggml_type() } else { F32 })?;
        g.u64(offset)?;
        offset = (offset + t.bytes(q)).next_multiple_of(ALIGN);
    }
    g.pad()?;
    let output = if s.tied {
        "token_embd.weight"
    } else {
        "output.weight"
    };
    let zero_from = s.vocab - SPECIALS.len() as u64;
    for t in &specs {
        if !t.quantized {
            let ones = 1f32.to_le_bytes().repeat(t.dims[0] as usize);
            g.raw(&ones)?;
        } else {
            let (fan_in, rows) = (t.dims[0], t.dims[1]);
            let zero_rows = if t.name == output { zero_from } else { rows };
            write_matrix(g, q, &t.name, fan_in, rows, zero_rows)?;
        }
        g.pad()?;
    }
    Ok(())
}

/// Rows of `fan_in` weights in blocks of 32; rows from `zero_from` on are
/// all-zero (scale 0).
fn write_matrix<W: Write>(
    g: &mut Gguf<W>,
    q: Quant,
    name: &str,
    fan_in: u64,
    rows: u64,
    zero_from: u64,
) -> io::Result<()> {
    let mut rng = Rng::seeded(name);
    // The embedding table's rows are inputs, not a product: of unit size,
    // so each token's embedding weighs as much as what the layers add
    // (with 1/sqrt(fan-in) every position drifts to the same state and a
    // greedy run repeats one token, which would make a weak comparison).
    let std = if name == "token_embd.weight" {
        1.0
    } else {
        1.0 / (fan_in as f32).sqrt()
    };
    let base = std / q.level_std();
    let blocks_per_row = fan_in / 32;
    let mut row = Vec::with_capacity((blocks_per_row * q.block_bytes()) as usize);
    for r in 0..rows {
        row.clear();
        for _ in 0..blocks_per_row {
            let bits = rng.next();
            // A random sign and a factor in [0.5, 1.5): scales vary as in
            // real files, and the mean of Q4_0's levels (-0.5) cancels out.
            let factor = 0.5 + (bits >> 40) as f32 / (1u64 << 24) as f32;
            let sign = if bits & 1 == 0 { 1.0 } else { -1.0 };
            let d = if r >= zero_from {
                0
            } else {
                f16_bits(sign * factor * base)
            };
            row.extend_from_slice(&d.to_le_bytes());
            let mut levels = (q.block_bytes() - 2) as usize;
            if q == Quant::Q4_1 {
                // The offset centres the levels 0..15 on zero.
                let m = if r >= zero_from {
                    0
                } else {
                    f16_bits(-7.5 * sign * factor * base)
                };
                row.extend_from_slice(&m.to_le_bytes());
                levels -= 2;
            }
            let mut left = levels;
            while left > 0 {
                let word = rng.next().to_le_bytes();
                let n = left.min(8);
                row.extend_from_slice(&word[..n]);
                left -= n;
            }
        }
        g.raw(&row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matches_known_values() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-2.0), 0xc000);
        assert_eq!(f16_bits(0.000_976_562_5), 0x1400);
        assert_eq!(f16_bits(0.1), 0x2e66);
    }

    #[test]
    fn byte_chars_are_gpt2s() {
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(0), 'Ā');
    }

    #[test]
    fn sizes_add_up() {
        let s = shape("smollm2-135m").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        let w = write(s, Quant::Q4_0, &p).unwrap();
        assert_eq!(w.bytes, std::fs::metadata(&p).unwrap().len());
        let info = crate::gguf::read_info(std::fs::File::open(&p).unwrap(), w.bytes).unwrap();
        assert_eq!(info.architecture(), Some("llama"));
        assert_eq!(info.context_length(), Some(8192));
        // 135M parameters at 4.5 bits, the tied embedding counted once.
        let mib = w.decode_bytes_per_token as f64 / (1 << 20) as f64;
        assert!((60.0..80.0).contains(&mib), "{mib} MiB");
        // Deterministic: the same bytes again.
        let p2 = dir.path().join("m2.gguf");
        write(s, Quant::Q4_0, &p2).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&p2).unwrap());
    }

    #[test]
    fn eight_b_reads_its_size_per_token() {
        let s = shape("llama-3.1-8b").unwrap();
        let gb = decode_bytes_per_token(s, Quant::Q4_0) as f64 / 1e9;
        // 8.03B parameters less the 0.53B embedding table, at 4.5 bits.
        assert!((4.1..4.4).contains(&gb), "{gb} GB");
    }
}
