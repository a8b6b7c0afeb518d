//! Re-encoding weights whose quantization candle has no SIMD kernel for.
//!
//! candle's CPU backend has AVX2 dot products for Q4_0, Q8_0 and the
//! k-quants, but only scalar code for Q4_1, Q5_0 and Q5_1: a Q4_1 model
//! decodes several times slower than it could. On the CPU those tensors
//! are re-encoded as Q8_0 when the model loads (8 bits per weight carry a
//! 4- or 5-bit value with an error far below the original quantization's).
//! The pack, and so the measurement, keep the original bytes: this is how
//! the engine runs them, decided here in the open. BENCHMARKS.md has the
//! cost (memory, load time) and the gain.

use std::io::Cursor;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};

/// Whether candle lacks a SIMD dot product for this type.
fn slow_on_cpu(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// A GGUF (in memory) with every slow tensor re-encoded as Q8_0, or `None`
/// when there is nothing to do.
pub fn repack_for_cpu(
    ct: &gguf_file::Content,
    gguf: &[u8],
) -> candle_core::Result<Option<Vec<u8>>> {
    if !ct.tensor_infos.values().any(|t| slow_on_cpu(t.ggml_dtype)) {
        return Ok(None);
    }
    let mut reader = Cursor::new(gguf);
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = ct.tensor(&mut reader, name, &Device::Cpu)?;
        let dims = t.shape().dims();
        let fits = dims
            .last()
            .is_some_and(|d| d % GgmlDType::Q8_0.block_size() == 0);
        let t = if slow_on_cpu(t.dtype()) && fits {
            QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            t
        };
        tensors.push((name.as_str(), t));
    }
    let mut keys: Vec<&String> = ct.metadata.keys().collect();
    keys.sort();
    let metadata: Vec<(&str, &gguf_file::Value)> = keys
        .iter()
        .map(|k| (k.as_str(), &ct.metadata[*k]))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs)?;
    Ok(Some(out.into_inner()))
}
