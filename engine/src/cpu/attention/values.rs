//! The second half of attention: each head's output, the sum of the value
//! rows weighted by its softmaxed scores, for the query heads that share a
//! KV head together (each value row loaded once for all of them).
//!
//! The additions are [`ops::weighted_rows`]'s, in its order: per output
//! value, `0 + s0·v0 + s1·v1 + …` (each product rounded, then added: no
//! FMA), so the outputs are its bits whichever kernel runs
//! (`same_bits_as_weighted_rows`). LLVM does not vectorize that loop over
//! several heads without spilling every accumulator (measured 2026-11-27:
//! scalar code, decode 10 % slower), hence the intrinsics.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::cpu::ops;
use crate::cpu::simd::Kernels;

/// `out[h] = Σ_p w[h][p] · row(p) as f32` for `H` heads: `w` holds `len =
/// w.len() / H` weights per head and `out` `out.len() / H` values per
/// head, one head after another.
pub fn weighted<'a, const H: usize>(
    kernels: Kernels,
    w: &[f32],
    row: impl Fn(usize) -> &'a [f16],
    out: &mut [f32],
) {
    let (len, n) = (w.len() / H, out.len() / H);
    assert!(w.len() == H * len && out.len() == H * n);
    #[cfg(target_arch = "x86_64")]
    if kernels != Kernels::Scalar && n.is_multiple_of(64) {
        for p in 0..len {
            assert_eq!(row(p).len(), n);
        }
        // SAFETY: `detect` saw AVX2, FMA and F16C on this CPU (every set
        // but scalar has them), and every row holds `n` values, a multiple
        // of 64.
        unsafe {
            match (kernels == Kernels::Avx512Vnni, H) {
                (true, ..4) => avx2::weighted_wide::<H, 8>(w, &row, out),
                (true, _) => avx2::weighted_wide::<H, 4>(w, &row, out),
                (false, 1) => avx2::weighted::<H, 8>(w, &row, out),
                (false, ..4) => avx2::weighted::<H, 4>(w, &row, out),
                (false, _) => avx2::weighted::<H, 2>(w, &row, out),
            }
        }
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernels;
    // Elsewhere, the rows widened once and summed as f32.
    let mut rows = vec![0f32; len * n];
    for (p, r) in rows.chunks_exact_mut(n.max(1)).enumerate() {
        row(p).convert_to_f32_slice(r);
    }
    let row = |p: usize| &rows[p * n..(p + 1) * n];
    for (w, out) in w
        .chunks_exact(len.max(1))
        .zip(out.chunks_exact_mut(n.max(1)))
    {
        ops::weighted_rows(w, row, out);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use half::f16;
    use std::arch::x86_64::*;

    /// [`weighted`] compiled where AVX-512 VL gives it 32 vector
    /// registers (three heads' 24 accumulators of 64 values, four heads'
    /// 16 of 32) without spills.
    ///
    /// SAFETY: as [`weighted`], and the CPU has AVX-512 F and VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    pub unsafe fn weighted_wide<'a, const H: usize, const V: usize>(
        w: &[f32],
        row: &impl Fn(usize) -> &'a [f16],
        out: &mut [f32],
    ) {
        // SAFETY: the caller's promise, a superset of weighted's.
        unsafe { weighted::<H, V>(w, row, out) }
    }

    /// `8 × V` output values of each head at a time, in `V` registers per
    /// head across all rows: 64 (a whole 64-wide head: each row read in
    /// one pass) where the registers hold them (one head's 8 of 16, three
    /// heads' 24 of 32), else 32 or 16.
    ///
    /// SAFETY: AVX2, FMA and F16C; every row holds `out.len() / H`
    /// values, a multiple of `8 × V`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub unsafe fn weighted<'a, const H: usize, const V: usize>(
        w: &[f32],
        row: &impl Fn(usize) -> &'a [f16],
        out: &mut [f32],
    ) {
        let (len, n) = (w.len() / H, out.len() / H);
        for start in (0..n).step_by(8 * V) {
            let mut acc = [[_mm256_setzero_ps(); V]; H];
            for p in 0..len {
                let s: [__m256; H] = std::array::from_fn(|h| _mm256_set1_ps(w[h * len + p]));
                let r = row(p);
                if start == 0 {
                    // As the scores do, eight rows ahead.
                    crate::cpu::attention::prefetch_ahead(r, 8);
                }
                let r = r[start..start + 8 * V].as_ptr();
                // Each vector of the row loaded once, into every head's
                // accumulator at that offset (so not a loop over `acc`).
                #[allow(clippy::needless_range_loop)]
                for i in 0..V {
                    // SAFETY: r points at 8 × V values.
                    let y =
                        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(r.add(8 * i) as *const __m128i)) };
                    for h in 0..H {
                        acc[h][i] = _mm256_add_ps(acc[h][i], _mm256_mul_ps(s[h], y));
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                let o = out[h * n + start..][..8 * V].as_mut_ptr();
                for (i, a) in acc.iter().enumerate() {
                    // SAFETY: o points at 8 × V values.
                    unsafe { _mm256_storeu_ps(o.add(8 * i), *a) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::attention::tests::half_noise;
    use crate::cpu::ops::tests::noise;

    #[test]
    fn same_bits_as_weighted_rows() {
        for kernels in Kernels::available() {
            for (hd, seen) in [(64, 7), (128, 33), (32, 1), (80, 10), (20, 6)] {
                let kv_dim = 3 * hd;
                let w = noise(4 * seen, 5);
                let cache = half_noise(seen * kv_dim, 7);
                let row = |p: usize| &cache[p * kv_dim + hd..][..hd];
                let wide: Vec<f32> = cache.iter().map(|v| v.to_f32()).collect();
                let wide_row = |p: usize| &wide[p * kv_dim + hd..][..hd];
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let mut want = vec![0f32; 4 * hd];
                for h in 0..4 {
                    ops::weighted_rows(&w[h * seen..][..seen], wide_row, &mut want[h * hd..][..hd]);
                }
                let mut got = vec![f32::NAN; 4 * hd];
                weighted::<1>(kernels, &w[..seen], row, &mut got[..hd]);
                assert_eq!(bits(&got[..hd]), bits(&want[..hd]), "{kernels:?} {hd}");
                weighted::<2>(kernels, &w[..2 * seen], row, &mut got[..2 * hd]);
                assert_eq!(
                    bits(&got[..2 * hd]),
                    bits(&want[..2 * hd]),
                    "{kernels:?} {hd}"
                );
                weighted::<3>(kernels, &w[..3 * seen], row, &mut got[..3 * hd]);
                assert_eq!(
                    bits(&got[..3 * hd]),
                    bits(&want[..3 * hd]),
                    "{kernels:?} {hd}"
                );
                weighted::<4>(kernels, &w, row, &mut got);
                assert_eq!(bits(&got), bits(&want), "{kernels:?} {hd}");
            }
        }
    }
}
