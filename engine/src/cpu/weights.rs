//! Reading a llama-family GGUF (llama, qwen2, qwen3) into the CPU engine's
//! layout: quantized matrices kept as their GGUF bytes where a kernel
//! exists, norms and biases as floats.

use std::io::Cursor;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};

use super::quant::{QK, WeightKind, quantize_q8_0};

/// Why a model does not take the native path (the caller then uses
/// candle's implementation instead).
pub type Unsupported = String;

/// A matrix of `rows` rows of `cols` values, each row whole blocks.
pub struct QMatrix {
    pub kind: WeightKind,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
    interleaved: bool,
}

/// Four rows of a matrix as [`Kernels::dot4n`] takes them.
///
/// [`Kernels::dot4n`]: super::simd::Kernels::dot4n
#[derive(Debug, Clone, Copy)]
pub enum Group<'a> {
    /// Four rows in the GGUF's layout (a short group repeats its last row,
    /// whose extra results the caller drops).
    Rows([&'a [u8]; 4]),
    /// Four rows interleaved block by block ([`QMatrix::interleave4`]).
    Interleaved(&'a [u8]),
}

impl QMatrix {
    /// `rows` rows of `cols` values in `kind` blocks, in the GGUF's layout.
    pub fn new(kind: WeightKind, rows: usize, cols: usize, data: Vec<u8>) -> QMatrix {
        let row_bytes = cols / QK * kind.block_bytes();
        assert!(cols.is_multiple_of(QK) && data.len() == rows * row_bytes);
        QMatrix {
            kind,
            rows,
            cols,
            row_bytes,
            data,
            interleaved: false,
        }
    }

    /// All rows' blocks, as in the GGUF (before [`QMatrix::interleave4`]).
    pub fn bytes(&self) -> &[u8] {
        assert!(
            !self.interleaved,
            "an interleaved matrix has no GGUF layout"
        );
        &self.data
    }

    /// Row `r`'s values as floats.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        if !self.interleaved {
            let row = &self.data[r * self.row_bytes..(r + 1) * self.row_bytes];
            return super::quant::dequantize_row(self.kind, row, out);
        }
        let (bb, j) = (self.kind.block_bytes(), r % 4);
        let group = &self.data[(r - j) * self.row_bytes..][..4 * self.row_bytes];
        for (g, xs) in group.chunks_exact(4 * bb).zip(out.chunks_exact_mut(QK)) {
            let block = interleaved_block(self.kind, g, j);
            super::quant::dequantize_row(self.kind, &block[..bb], xs);
        }
    }

    /// Rows `r..r + len` (1 to 4). Interleaved, `r` is a multiple of four
    /// and `len` is 4 (a matrix is interleaved only when its rows are a
    /// multiple of four, and callers walk groups of four from row 0).
    #[inline]
    pub fn group(&self, r: usize, len: usize) -> Group<'_> {
        debug_assert!((1..=4).contains(&len));
        if self.interleaved {
            assert!(
                r.is_multiple_of(4) && len == 4,
                "rows {r}..{} of an interleaved matrix",
                r + len
            );
            return Group::Interleaved(&self.data[r * self.row_bytes..][..4 * self.row_bytes]);
        }
        let row = |r: usize| &self.data[r * self.row_bytes..(r + 1) * self.row_bytes];
        Group::Rows(std::array::from_fn(|k| row(r + k.min(len - 1))))
    }

    /// Rewrites a Q4_0 or Q4_1 matrix whose row count is a multiple of four
    /// as groups of four rows, block by block: the four rows' scales (in
    /// the order [`INTERLEAVED_SCALES`] names), then their packed bytes
    /// (rows 0, 1, 2, 3). The AVX2 kernel then loads a block's four scales
    /// with one load and two rows' bytes with another, where the GGUF
    /// layout takes eight loads and four inserts; the arithmetic, and so
    /// every result, stays the same. Returns whether it did.
    pub fn interleave4(&mut self) -> bool {
        let q4 = matches!(self.kind, WeightKind::Q4_0 | WeightKind::Q4_1);
        if self.interleaved || !q4 || !self.rows.is_multiple_of(4) {
            return false;
        }
        let bb = self.kind.block_bytes();
        let hb = bb - 16;
        // A group takes the bytes its four rows took: rewrite each in place
        // from a copy of one group, not the matrix.
        let mut src = vec![0u8; 4 * self.row_bytes];
        for dst in self.data.chunks_exact_mut(4 * self.row_bytes) {
            src.copy_from_slice(dst);
            for (i, d) in dst.chunks_exact_mut(4 * bb).enumerate() {
                for j in 0..4 {
                    let b = &src[j * self.row_bytes + i * bb..][..bb];
                    let slot = INTERLEAVED_SCALES[j];
                    d[slot * hb..(slot + 1) * hb].copy_from_slice(&b[..hb]);
                    d[4 * hb + 16 * j..][..16].copy_from_slice(&b[hb..]);
                }
            }
        }
        self.interleaved = true;
        true
    }
}

/// Where row `j` of an interleaved group keeps its scale(s) among the
/// four: rows 0 and 1 share a 256-bit register in the kernel (low and
/// high lane), as do rows 2 and 3, so the converted scales must come out
/// as [row 0, row 2 | row 1, row 3] (see `simd::avx2::dot4_q4`).
pub const INTERLEAVED_SCALES: [usize; 4] = [0, 2, 1, 3];

/// Row `j`'s block, in the GGUF's layout (the first `block_bytes` bytes),
/// out of one block of an interleaved group (`4 × block_bytes` bytes).
pub fn interleaved_block(kind: WeightKind, g: &[u8], j: usize) -> [u8; 20] {
    let (bb, slot) = (kind.block_bytes(), INTERLEAVED_SCALES[j]);
    let hb = bb - 16;
    let mut block = [0u8; 20];
    block[..hb].copy_from_slice(&g[slot * hb..(slot + 1) * hb]);
    block[hb..bb].copy_from_slice(&g[4 * hb + 16 * j..][..16]);
    block
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: String,
    pub layers: usize,
    pub dim: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    /// GGUF llama: interleaved pairs; Qwen: NeoX halves.
    pub rope_interleaved: bool,
    pub eps: f32,
    pub vocab: usize,
}

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: QMatrix,
    pub wk: QMatrix,
    pub wv: QMatrix,
    pub wo: QMatrix,
    /// Qwen2's attention biases.
    pub bias: Option<[Vec<f32>; 3]>,
    /// Qwen3's per-head norms of q and k.
    pub qk_norm: Option<[Vec<f32>; 2]>,
    pub ffn_norm: Vec<f32>,
    pub gate: QMatrix,
    pub up: QMatrix,
    pub down: QMatrix,
}

pub struct Weights {
    pub cfg: Config,
    pub embed: QMatrix,
    pub layers: Vec<Layer>,
    pub out_norm: Vec<f32>,
    /// `None`: tied to the embedding.
    pub output: Option<QMatrix>,
}

struct Reader<'a> {
    ct: &'a gguf_file::Content,
    gguf: &'a [u8],
}

impl Reader<'_> {
    fn info(&self, name: &str) -> Result<&gguf_file::TensorInfo, Unsupported> {
        self.ct
            .tensor_infos
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))
    }

    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>, Unsupported> {
        let t = self
            .ct
            .tensor(&mut Cursor::new(self.gguf), name, &Device::Cpu)
            .map_err(|e| format!("{name}: {e}"))?;
        let v: Vec<f32> = t
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(|e| format!("{name}: {e}"))?;
        if v.len() != len {
            return Err(format!("{name} has {} values, expected {len}", v.len()));
        }
        Ok(v)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, Unsupported> {
        let info = self.info(name)?;
        if info.shape.dims() != [rows, cols] {
            return Err(format!(
                "{name} has shape {:?}, expected [{rows}, {cols}]",
                info.shape.dims()
            ));
        }
        if !cols.is_multiple_of(QK) {
            return Err(format!("{name}: rows of {cols} are not whole blocks"));
        }
        let kind = match info.ggml_dtype {
            GgmlDType::Q4_0 => Some(WeightKind::Q4_0),
            GgmlDType::Q4_1 => Some(WeightKind::Q4_1),
            GgmlDType::Q8_0 => Some(WeightKind::Q8_0),
            _ => None,
        };
        let data = match kind {
            Some(kind) => {
                let len = rows * cols / QK * kind.block_bytes();
                let start = (self.ct.tensor_data_offset + info.offset) as usize;
                self.gguf
                    .get(start..start.saturating_add(len))
                    .ok_or_else(|| format!("{name} runs past the end of the GGUF"))?
                    .to_vec()
            }
            // Any other encoding: its values, re-quantized once.
            None => quantize_q8_0(&self.floats(name, rows * cols)?),
        };
        Ok(QMatrix::new(
            kind.unwrap_or(WeightKind::Q8_0),
            rows,
            cols,
            data,
        ))
    }

    fn u32(&self, key: &str) -> Result<usize, Unsupported> {
        self.ct
            .metadata
            .get(key)
            .and_then(|v| v.to_u32().ok())
            .map(|v| v as usize)
            .ok_or_else(|| format!("{key} is missing"))
    }

    fn f32_or(&self, key: &str, default: f32) -> f32 {
        self.ct
            .metadata
            .get(key)
            .and_then(|v| v.to_f32().ok())
            .unwrap_or(default)
    }
}

impl Weights {
    /// Interleaves the Q4 matrices ([`QMatrix::interleave4`]) that a
    /// parallel section reaches in whole groups of four: a section walks
    /// its matrices as one run of rows in groups of four, so a matrix is
    /// taken if its rows, and those of every matrix before it in its
    /// section, are a multiple of four (q, k and v share a section; every
    /// other matrix has its own). Returns how many it interleaved.
    pub fn interleave4(&mut self) -> usize {
        let fours = |m: &QMatrix| m.rows.is_multiple_of(4);
        let mut done = 0;
        for l in &mut self.layers {
            let aligned = [
                fours(&l.wq),
                fours(&l.wq) && fours(&l.wk),
                fours(&l.wq) && fours(&l.wk),
            ];
            for (m, ok) in [&mut l.wq, &mut l.wk, &mut l.wv].into_iter().zip(aligned) {
                done += (ok && m.interleave4()) as usize;
            }
            for m in [&mut l.wo, &mut l.gate, &mut l.up, &mut l.down] {
                done += m.interleave4() as usize;
            }
        }
        for m in std::iter::once(&mut self.embed).chain(self.output.as_mut()) {
            done += m.interleave4() as usize;
        }
        done
    }

    /// The weights of `arch` from a parsed GGUF and its bytes, or why the
    /// native path does not take this model.
    pub fn load(ct: &gguf_file::Content, gguf: &[u8], arch: &str) -> Result<Weights, Unsupported> {
        let rope_interleaved = match arch {
            "llama" => true,
            "qwen2" | "qwen3" => false,
            other => return Err(format!("architecture {other}")),
        };
        let r = Reader { ct, gguf };
        let key = |k: &str| format!("{arch}.{k}");
        let dim = r.u32(&key("embedding_length"))?;
        let heads = r.u32(&key("attention.head_count"))?;
        let kv_heads = r.u32(&key("attention.head_count_kv")).unwrap_or(heads);
        let head_dim = r
            .u32(&key("attention.key_length"))
            .unwrap_or(dim / heads.max(1));
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !head_dim.is_multiple_of(2)
        {
            return Err(format!(
                "{heads} heads over {kv_heads} kv heads of {head_dim}"
            ));
        }
        if let Ok(rot) = r.u32(&key("rope.dimension_count"))
            && rot != head_dim
        {
            return Err(format!("partial rotary ({rot} of {head_dim})"));
        }
        let vocab = r.info("token_embd.weight")?.shape.dims()[0];
        let cfg = Config {
            arch: arch.to_string(),
            layers: r.u32(&key("block_count"))?,
            dim,
            ffn: r.u32(&key("feed_forward_length"))?,
            heads,
            kv_heads,
            head_dim,
            rope_base: r.f32_or(&key("rope.freq_base"), 10_000.0),
            rope_interleaved,
            eps: r.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-6),
            vocab,
        };
        let (q_dim, kv_dim) = (heads * head_dim, kv_heads * head_dim);
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let t = |n: &str| format!("blk.{i}.{n}");
            let bias = if ct.tensor_infos.contains_key(&t("attn_q.bias")) {
                Some([
                    r.floats(&t("attn_q.bias"), q_dim)?,
                    r.floats(&t("attn_k.bias"), kv_dim)?,
                    r.floats(&t("attn_v.bias"), kv_dim)?,
                ])
            } else {
                None
            };
            let qk_norm = if ct.tensor_infos.contains_key(&t("attn_q_norm.weight")) {
                Some([
                    r.floats(&t("attn_q_norm.weight"), head_dim)?,
                    r.floats(&t("attn_k_norm.weight"), head_dim)?,
                ])
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: r.floats(&t("attn_norm.weight"), dim)?,
                wq: r.matrix(&t("attn_q.weight"), q_dim, dim)?,
                wk: r.matrix(&t("attn_k.weight"), kv_dim, dim)?,
                wv: r.matrix(&t("attn_v.weight"), kv_dim, dim)?,
                wo: r.matrix(&t("attn_output.weight"), dim, q_dim)?,
                bias,
                qk_norm,
                ffn_norm: r.floats(&t("ffn_norm.weight"), dim)?,
                gate: r.matrix(&t("ffn_gate.weight"), cfg.ffn, dim)?,
                up: r.matrix(&t("ffn_up.weight"), cfg.ffn, dim)?,
                down: r.matrix(&t("ffn_down.weight"), dim, cfg.ffn)?,
            });
        }
        let output = if ct.tensor_infos.contains_key("output.weight") {
            Some(r.matrix("output.weight", vocab, dim)?)
        } else {
            None
        };
        Ok(Weights {
            embed: r.matrix("token_embd.weight", vocab, dim)?,
            out_norm: r.floats("output_norm.weight", dim)?,
            output,
            layers,
            cfg,
        })
    }

    pub fn output(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }
}
