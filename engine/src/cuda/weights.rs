//! The CPU engine's weights ([`crate::cpu::weights::Weights`], read from
//! the GGUF) re-laid-out for the CUDA kernels and uploaded.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DriverError};

use crate::cpu::quant::{QK, WeightKind};
use crate::cpu::weights::{Config, QMatrix, Unsupported, Weights};

/// A matrix on the device: per block its values (16 bytes of nibbles, or
/// 32 int8) in `qs`, and its scale (`d` as f16, or `d, m` as two f16 for
/// Q4_1) in `sc`; blocks row after row.
pub struct DMatrix {
    pub kind: WeightKind,
    pub rows: usize,
    pub cols: usize,
    pub qs: CudaSlice<u8>,
    pub sc: CudaSlice<u8>,
}

impl DMatrix {
    pub fn blocks(&self) -> usize {
        self.cols / QK
    }
}

/// The kernels' number for a block format (`kernels.cu`'s Q4_0, Q4_1, Q8_0).
pub fn kind_index(kind: WeightKind) -> i32 {
    match kind {
        WeightKind::Q4_0 => 0,
        WeightKind::Q4_1 => 1,
        WeightKind::Q8_0 => 2,
    }
}

/// Splits GGUF blocks into the values and scales arrays.
fn split(kind: WeightKind, bytes: &[u8], qs: &mut Vec<u8>, sc: &mut Vec<u8>) {
    let scale_bytes = match kind {
        WeightKind::Q4_1 => 4,
        WeightKind::Q4_0 | WeightKind::Q8_0 => 2,
    };
    for block in bytes.chunks_exact(kind.block_bytes()) {
        sc.extend_from_slice(&block[..scale_bytes]);
        qs.extend_from_slice(&block[scale_bytes..]);
    }
}

/// Uploads matrices of one format and width as one matrix, their rows one
/// after another (q, k and v become one product).
fn upload(stream: &Arc<CudaStream>, parts: &[&QMatrix]) -> Result<DMatrix, DriverError> {
    let (kind, cols) = (parts[0].kind, parts[0].cols);
    debug_assert!(parts.iter().all(|m| m.kind == kind && m.cols == cols));
    let rows = parts.iter().map(|m| m.rows).sum();
    let (mut qs, mut sc) = (Vec::new(), Vec::new());
    for m in parts {
        split(kind, m.bytes(), &mut qs, &mut sc);
    }
    Ok(DMatrix {
        kind,
        rows,
        cols,
        qs: stream.clone_htod(&qs)?,
        sc: stream.clone_htod(&sc)?,
    })
}

pub struct DLayer {
    pub attn_norm: CudaSlice<f32>,
    /// q, k and v as one matrix when they share a format, else apart;
    /// with the first output row of each.
    pub qkv: Vec<(DMatrix, usize)>,
    /// Qwen2's biases of q|k|v.
    pub bias: Option<CudaSlice<f32>>,
    /// Qwen3's per-head norms of q and k.
    pub qk_norm: Option<[CudaSlice<f32>; 2]>,
    pub wo: DMatrix,
    pub ffn_norm: CudaSlice<f32>,
    pub gate: DMatrix,
    pub up: DMatrix,
    pub down: DMatrix,
}

pub struct DWeights {
    pub cfg: Config,
    pub embed: DMatrix,
    pub layers: Vec<DLayer>,
    pub out_norm: CudaSlice<f32>,
    /// `None`: tied to the embedding.
    pub output: Option<DMatrix>,
}

impl DWeights {
    pub fn output(&self) -> &DMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }
}

/// What the kernels need of a model's shape, checked before anything is
/// uploaded.
pub fn check(w: &Weights) -> Result<(), Unsupported> {
    let c = &w.cfg;
    if !c.head_dim.is_multiple_of(QK) || c.head_dim > 256 {
        return Err(format!(
            "heads of {} (the kernels take multiples of 32 up to 256)",
            c.head_dim
        ));
    }
    if !c.dim.is_multiple_of(QK) || !c.ffn.is_multiple_of(QK) {
        return Err(format!(
            "widths {} and {} are not whole blocks",
            c.dim, c.ffn
        ));
    }
    for (i, l) in w.layers.iter().enumerate() {
        if l.gate.kind != l.up.kind {
            return Err(format!("layer {i}: gate and up are of different formats"));
        }
    }
    Ok(())
}

/// Uploads `w` (whose shape [`check`] accepted) through `stream`.
pub fn upload_all(stream: &Arc<CudaStream>, w: &Weights) -> Result<DWeights, DriverError> {
    let floats = |v: &[f32]| stream.clone_htod(v);
    let mut layers = Vec::with_capacity(w.layers.len());
    for l in &w.layers {
        let same = l.wq.kind == l.wk.kind && l.wk.kind == l.wv.kind;
        let qkv = if same {
            vec![(upload(stream, &[&l.wq, &l.wk, &l.wv])?, 0)]
        } else {
            vec![
                (upload(stream, &[&l.wq])?, 0),
                (upload(stream, &[&l.wk])?, l.wq.rows),
                (upload(stream, &[&l.wv])?, l.wq.rows + l.wk.rows),
            ]
        };
        layers.push(DLayer {
            attn_norm: floats(&l.attn_norm)?,
            qkv,
            bias: match &l.bias {
                Some(b) => Some(floats(&b.concat())?),
                None => None,
            },
            qk_norm: match &l.qk_norm {
                Some([q, k]) => Some([floats(q)?, floats(k)?]),
                None => None,
            },
            wo: upload(stream, &[&l.wo])?,
            ffn_norm: floats(&l.ffn_norm)?,
            gate: upload(stream, &[&l.gate])?,
            up: upload(stream, &[&l.up])?,
            down: upload(stream, &[&l.down])?,
        });
    }
    Ok(DWeights {
        cfg: w.cfg.clone(),
        embed: upload(stream, &[&w.embed])?,
        layers,
        out_norm: floats(&w.out_norm)?,
        output: match &w.output {
            Some(m) => Some(upload(stream, &[m])?),
            None => None,
        },
    })
}
