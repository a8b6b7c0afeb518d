//! AVX2 dot products of a row of quantized weights with quantized
//! activations: the inner loop of every matrix product, so the one place
//! where intrinsics are worth their weight.
//!
//! Per block of 32: unpack the weights to 32 bytes, `maddubs` them against
//! the int8 activations (u8 × i8 → i16 pairs), `madd` the pairs to eight
//! i32, convert and accumulate with one FMA by the product of the scales.
//! Signed × signed (Q8_0) goes through `sign` so `maddubs` sees an
//! unsigned operand. Tested against [`super::quant::dot_scalar`].

use super::quant::{ActBlock, WeightKind, dot_scalar};

/// The dot product kernel this CPU runs, picked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernels {
    pub fn detect() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Kernels::Avx2;
        }
        Kernels::Scalar
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernels::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => "avx2",
        }
    }

    /// One row of weights (whole blocks) against as many activation blocks.
    #[inline]
    pub fn dot(self, kind: WeightKind, row: &[u8], act: &[ActBlock]) -> f32 {
        debug_assert_eq!(row.len(), act.len() * kind.block_bytes());
        match self {
            Kernels::Scalar => dot_scalar(kind, row, act),
            // SAFETY: `detect` saw AVX2, FMA and F16C on this CPU, and the
            // row holds exactly `act.len()` blocks (checked by the caller
            // when the matrix was built).
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => unsafe {
                match kind {
                    WeightKind::Q4_0 => avx2::dot_q4(row, act, false),
                    WeightKind::Q4_1 => avx2::dot_q4(row, act, true),
                    WeightKind::Q8_0 => avx2::dot_q8_0(row, act),
                }
            },
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// How far ahead of the block being summed to ask for weights.
    const PREFETCH: usize = 4096;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// u8 × i8 products of 32 lanes, summed to eight floats.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Q4_0 (`with_min` false: offset -8d) or Q4_1 (offset m).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4(row: &[u8], act: &[ActBlock], with_min: bool) -> f32 {
        let bb = if with_min { 20 } else { 18 };
        let qs_at = if with_min { 4 } else { 2 };
        let low = _mm256_set1_epi8(0x0f);
        // Lane 1 of `offsets` sums offset × s over the blocks (lane 0 is
        // scratch). (Two accumulators, as for Q8_0, measured slower here.)
        let mut acc = _mm256_setzero_ps();
        let mut offsets = _mm_setzero_ps();
        let p = row.as_ptr();
        for (i, a) in act.iter().enumerate() {
            // SAFETY: block i lies inside `row` (len = act.len() * bb).
            let b = unsafe { p.add(i * bb) };
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PREFETCH) as *const i8);
            // [d, m] of the weights times [d, s] of the activations, in
            // one conversion and one multiply (ActBlock starts with d, s).
            let scales = if with_min {
                unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((b as *const i32).read_unaligned())) }
            } else {
                let d = unsafe { (b as *const u16).read_unaligned() } as i32;
                // Q4_0's offset is -8d: the half-float bit pattern of -8d
                // is not a shift away, so convert d twice.
                let d = _mm_cvtph_ps(_mm_cvtsi32_si128(d | (d << 16)));
                _mm_mul_ps(d, _mm_setr_ps(1.0, -8.0, 0.0, 0.0))
            };
            let ds = unsafe {
                _mm_castsi128_ps(_mm_loadl_epi64(a as *const ActBlock as *const __m128i))
            };
            let prod = _mm_mul_ps(scales, ds);
            offsets = _mm_add_ps(offsets, prod);
            // Nibble j is value j in the low half and value j + 16 in the
            // high half: low nibbles in lanes 0..16, high in 16..32.
            let packed = unsafe { _mm_loadu_si128(b.add(qs_at) as *const __m128i) };
            let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
            let w = _mm256_and_si256(both, low);
            let x = unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) };
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), dot_u8_i8(w, x), acc);
        }
        hsum(acc) + _mm_cvtss_f32(_mm_movehdup_ps(offsets))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8_0(row: &[u8], act: &[ActBlock]) -> f32 {
        // Two accumulators: consecutive blocks do not wait on each
        // other's FMA.
        let mut acc = [_mm256_setzero_ps(); 2];
        let p = row.as_ptr();
        for (i, a) in act.iter().enumerate() {
            // SAFETY: block i lies inside `row` (len = act.len() * 34).
            let b = unsafe { p.add(i * 34) };
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PREFETCH) as *const i8);
            let d = unsafe { (b as *const u16).read_unaligned() } as i32;
            let scale = _mm_mul_ss(_mm_cvtph_ps(_mm_cvtsi32_si128(d)), _mm_set_ss(a.d));
            let w = unsafe { _mm256_loadu_si256(b.add(2) as *const __m256i) };
            let x = unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) };
            let prod = dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
            acc[i & 1] = _mm256_fmadd_ps(_mm256_broadcastss_ps(scale), prod, acc[i & 1]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::quant::{QK, quantize_act};
    use super::*;

    /// Deterministic bytes and floats without a random-number crate.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn every_kernel_matches_the_scalar_reference() {
        let kernels = Kernels::detect();
        let mut seed = 7;
        for kind in [WeightKind::Q4_0, WeightKind::Q4_1, WeightKind::Q8_0] {
            for blocks in [1, 3, 18, 48] {
                let mut row: Vec<u8> = (0..blocks * kind.block_bytes())
                    .map(|_| lcg(&mut seed) as u8)
                    .collect();
                // Sane f16 scales (random bits can be NaN or huge).
                for b in row.chunks_exact_mut(kind.block_bytes()) {
                    let d = half::f16::from_f32((lcg(&mut seed) % 1000) as f32 / 1e4);
                    b[..2].copy_from_slice(&d.to_bits().to_le_bytes());
                    if kind == WeightKind::Q4_1 {
                        let m = half::f16::from_f32(-((lcg(&mut seed) % 1000) as f32) / 1e4);
                        b[2..4].copy_from_slice(&m.to_bits().to_le_bytes());
                    }
                }
                let x: Vec<f32> = (0..blocks * QK)
                    .map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let mut act = vec![ActBlock::default(); blocks];
                quantize_act(&x, &mut act);
                let want = dot_scalar(kind, &row, &act);
                let got = kernels.dot(kind, &row, &act);
                let tol = 1e-4 * (1.0 + want.abs());
                assert!(
                    (want - got).abs() <= tol,
                    "{kind:?} x{blocks} on {}: {want} vs {got}",
                    kernels.name()
                );
            }
        }
    }
}
