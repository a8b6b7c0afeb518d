//! The block formats the CPU engine computes with, and their scalar dot
//! products (the reference the SIMD kernels are tested against, and the
//! path on CPUs without AVX2).
//!
//! Weights stay in their GGUF encoding, byte for byte (Q4_0, Q4_1, Q8_0);
//! any other encoding is re-quantized to Q8_0 once at load. Activations
//! are quantized per 32 values to [`ActBlock`] before each matrix product,
//! as llama.cpp does (its Q8_1): integer dot products inside a block, one
//! float multiply per block.

use half::f16;

/// Values per block, for every format here.
pub const QK: usize = 32;

/// The weight encodings with a kernel of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKind {
    /// `d: f16, qs: [u8; 16]`, value = d * (nibble - 8).
    Q4_0,
    /// `d: f16, m: f16, qs: [u8; 16]`, value = d * nibble + m.
    Q4_1,
    /// `d: f16, qs: [i8; 32]`, value = d * q.
    Q8_0,
}

impl WeightKind {
    /// Bytes per block of [`QK`] values.
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightKind::Q4_0 => 18,
            WeightKind::Q4_1 => 20,
            WeightKind::Q8_0 => 34,
        }
    }
}

/// 32 activations quantized to int8: value = d * q, and `s` = d * Σq
/// (what the offset of a Q4_0/Q4_1 block multiplies).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ActBlock {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

impl Default for ActBlock {
    fn default() -> Self {
        ActBlock {
            d: 0.0,
            s: 0.0,
            qs: [0; QK],
        }
    }
}

/// Quantizes `x` (a multiple of [`QK`] long) into `out`.
///
/// Written so the compiler vectorizes it on x86-64-v3 (it ran as scalar
/// code and took 5 % of a decode step): eight running maxima instead of
/// one fold, and ties rounded to even (`round_ties_even` is one `vroundps`;
/// `round`, ties away from zero, is a libm call), as llama.cpp's AVX2 code
/// rounds.
pub fn quantize_act(x: &[f32], out: &mut [ActBlock]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let mut lanes = [0f32; 8];
        for part in xs.chunks_exact(8) {
            for (m, v) in lanes.iter_mut().zip(part) {
                *m = m.max(v.abs());
            }
        }
        let amax = lanes.iter().fold(0f32, |m, v| m.max(*v));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (q, v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
        }
        let sum: i32 = b.qs.iter().map(|q| *q as i32).sum();
        b.d = d;
        b.s = d * sum as f32;
    }
}

/// Quantizes `x` (a multiple of [`QK`] long) as Q8_0 weight blocks, the
/// encoding other weight formats are converted to.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK * 34);
    for xs in x.chunks_exact(QK) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(xs.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// The values of one row of weights (for the embedding lookup).
pub fn dequantize_row(kind: WeightKind, row: &[u8], out: &mut [f32]) {
    let bb = kind.block_bytes();
    for (b, xs) in row.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
        match kind {
            WeightKind::Q4_0 | WeightKind::Q4_1 => {
                let d = f16_at(b, 0);
                let (m, qs) = match kind {
                    WeightKind::Q4_0 => (-8.0 * d, &b[2..18]),
                    _ => (f16_at(b, 2), &b[4..20]),
                };
                for j in 0..QK / 2 {
                    xs[j] = d * (qs[j] & 0x0f) as f32 + m;
                    xs[j + QK / 2] = d * (qs[j] >> 4) as f32 + m;
                }
            }
            WeightKind::Q8_0 => {
                let d = f16_at(b, 0);
                for (x, q) in xs.iter_mut().zip(&b[2..34]) {
                    *x = d * (*q as i8) as f32;
                }
            }
        }
    }
}

/// Scalar dot product of one row of weights with quantized activations.
pub fn dot_scalar(kind: WeightKind, row: &[u8], act: &[ActBlock]) -> f32 {
    let bb = kind.block_bytes();
    let mut acc = 0f32;
    for (b, a) in row.chunks_exact(bb).zip(act) {
        match kind {
            WeightKind::Q4_0 | WeightKind::Q4_1 => {
                let qs = if kind == WeightKind::Q4_0 {
                    &b[2..18]
                } else {
                    &b[4..20]
                };
                let (lo, hi) = a.qs.split_at(QK / 2);
                let isum: i32 = qs
                    .iter()
                    .zip(lo.iter().zip(hi))
                    .map(|(q, (l, h))| (q & 0x0f) as i32 * *l as i32 + (q >> 4) as i32 * *h as i32)
                    .sum();
                let d = f16_at(b, 0);
                let offset = if kind == WeightKind::Q4_0 {
                    -8.0 * d
                } else {
                    f16_at(b, 2)
                };
                acc += d * a.d * isum as f32 + offset * a.s;
            }
            WeightKind::Q8_0 => {
                let isum: i32 = b[2..34]
                    .iter()
                    .zip(&a.qs)
                    .map(|(w, x)| (*w as i8) as i32 * *x as i32)
                    .sum();
                acc += f16_at(b, 0) * a.d * isum as f32;
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let mut a = vec![ActBlock::default(); 2];
        quantize_act(&x, &mut a);
        for (b, xs) in a.iter().zip(x.chunks(QK)) {
            let sum: i32 = b.qs.iter().map(|q| *q as i32).sum();
            assert!((b.s - b.d * sum as f32).abs() < 1e-5);
            for (q, v) in b.qs.iter().zip(xs) {
                assert!((b.d * *q as f32 - v).abs() <= b.d * 0.5 + 1e-6);
            }
        }
    }

    #[test]
    fn q8_0_weights_dequantize_to_what_was_quantized() {
        let x: Vec<f32> = (0..96).map(|i| (i as f32 * 0.7).sin()).collect();
        let q = quantize_q8_0(&x);
        assert_eq!(q.len(), 3 * 34);
        let mut back = vec![0f32; 96];
        dequantize_row(WeightKind::Q8_0, &q, &mut back);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() < 1.0 / 127.0 + 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn scalar_dot_equals_dequantized_dot() {
        // A Q4_1 block by hand: d = 0.5, m = -1, nibbles 0..15 twice.
        let mut b = Vec::new();
        b.extend_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        b.extend_from_slice(&f16::from_f32(-1.0).to_bits().to_le_bytes());
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 8.0).collect();
        let mut a = vec![ActBlock::default()];
        quantize_act(&x, &mut a);
        let mut w = vec![0f32; 32];
        dequantize_row(WeightKind::Q4_1, &b, &mut w);
        let xq: Vec<f32> = a[0].qs.iter().map(|q| a[0].d * *q as f32).collect();
        let want: f32 = w.iter().zip(&xq).map(|(a, b)| a * b).sum();
        let got = dot_scalar(WeightKind::Q4_1, &b, &a);
        assert!((want - got).abs() < 1e-3, "{want} vs {got}");
    }
}
