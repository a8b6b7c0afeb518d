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
}

impl QMatrix {
    /// All rows' blocks, as in the GGUF.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    #[inline]
    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Rows `r..r + len` (1 to 4) as [`Kernels::dot4`] takes them: a
    /// short group repeats its last row, whose extra results the caller
    /// drops.
    ///
    /// [`Kernels::dot4`]: super::simd::Kernels::dot4
    #[inline]
    pub fn group(&self, r: usize, len: usize) -> [&[u8]; 4] {
        debug_assert!((1..=4).contains(&len));
        std::array::from_fn(|k| self.row(r + k.min(len - 1)))
    }
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
        let kind = kind.unwrap_or(WeightKind::Q8_0);
        Ok(QMatrix {
            kind,
            rows,
            cols,
            row_bytes: cols / QK * kind.block_bytes(),
            data,
        })
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
