//! Attention scores: the queries' dot products with each cached key row,
//! four rows at a time, for the query heads that share a KV head together.
//!
//! [`ops::dot`] alone is bound by the latency of its additions: a 64-long
//! dot product is eight dependent vector additions, then the eight lanes
//! summed one after another, and each position's waits on the last. Four
//! rows at once keep four chains in flight, and their lanes are summed
//! together: transposed so that one 128-bit addition adds lane `i` of all
//! four. The order of every addition is [`ops::dot`]'s, so the scores are
//! its bits (the CPU path's logits depend on no kernel choice), which
//! `same_bits_as_ops_dot` checks. An earlier try in plain Rust (2026-11-27,
//! `dot4`) was vectorized by LLVM across the four rows, with shuffles and
//! spills, and lost 15 % of decode; hence the intrinsics.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::cpu::ops;
use crate::cpu::simd::Kernels;

/// `out[h * len + p] = ops::dot(qs[h], key(p) as f32) * scale` for every
/// query head `h` and position `p < len`: the `H` heads of one KV group
/// share every key row loaded (`len` is `out.len() / H`).
pub fn scores<'a, const H: usize>(
    kernels: Kernels,
    qs: [&[f32]; H],
    key: impl Fn(usize) -> &'a [f16],
    scale: f32,
    out: &mut [f32],
) {
    let len = out.len() / H;
    assert_eq!(out.len(), H * len);
    let hd = qs.first().map_or(0, |q| q.len());
    assert!(qs.iter().all(|q| q.len() == hd));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if kernels != Kernels::Scalar && hd.is_multiple_of(8) {
        while done + 4 <= len {
            let rows: [&[f16]; 4] = std::array::from_fn(|j| key(done + j));
            for r in rows {
                assert_eq!(r.len(), hd);
            }
            // Two groups ahead.
            for r in rows {
                super::prefetch_ahead(r, 8);
            }
            // SAFETY: `detect` saw AVX2, FMA and F16C on this CPU (every
            // set but scalar has them), and each row is as long as every
            // query, a multiple of 8. With AVX-512 the same code has 32
            // registers.
            let s = unsafe {
                if kernels == Kernels::Avx512Vnni {
                    avx2::dot4_wide(qs, rows)
                } else {
                    avx2::dot4(qs, rows)
                }
            };
            for (h, s) in s.into_iter().enumerate() {
                for (o, s) in out[h * len + done..][..4].iter_mut().zip(s) {
                    *o = s * scale;
                }
            }
            done += 4;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernels;
    let mut k = vec![0f32; hd];
    for p in done..len {
        key(p).convert_to_f32_slice(&mut k);
        for (h, q) in qs.iter().enumerate() {
            out[h * len + p] = ops::dot(q, &k) * scale;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use half::f16;
    use std::arch::x86_64::*;

    /// [`dot4`] compiled where AVX-512 VL gives it 32 vector registers:
    /// three or four heads' sixteen accumulators without spills.
    ///
    /// SAFETY: as [`dot4`], and the CPU has AVX-512 F and VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    pub unsafe fn dot4_wide<const H: usize>(qs: [&[f32]; H], rows: [&[f16]; 4]) -> [[f32; 4]; H] {
        // SAFETY: the caller's promise, a superset of dot4's.
        unsafe { dot4(qs, rows) }
    }

    /// `[[ops::dot(qs[h], rows[j])]]`, the same additions in the same
    /// order: eight lanes of `q[i]·row[i]` products (multiplied, then
    /// added: no FMA, as `ops::dot` compiles), then
    /// `((0 + l0) + l1) + … + l7 + 0`. Each key row is loaded once for all
    /// `H` queries.
    ///
    /// SAFETY: AVX2, FMA and F16C; every row and query of one length, a
    /// multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub unsafe fn dot4<const H: usize>(qs: [&[f32]; H], rows: [&[f16]; 4]) -> [[f32; 4]; H] {
        let mut acc = [[_mm256_setzero_ps(); 4]; H];
        for c in (0..rows[0].len()).step_by(8) {
            for j in 0..4 {
                // SAFETY: c + 8 <= the length of every row and query.
                let y = unsafe {
                    _mm256_cvtph_ps(_mm_loadu_si128(rows[j].as_ptr().add(c) as *const __m128i))
                };
                for h in 0..H {
                    let x = unsafe { _mm256_loadu_ps(qs[h].as_ptr().add(c)) };
                    acc[h][j] = _mm256_add_ps(acc[h][j], _mm256_mul_ps(x, y));
                }
            }
        }
        acc.map(|a| sum_lanes(a))
    }

    /// Each of four vectors' eight lanes summed in `ops::dot`'s order.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn sum_lanes(acc: [__m256; 4]) -> [f32; 4] {
        // Transpose: lane[i] = [acc0[i], acc1[i], acc2[i], acc3[i]].
        let t0 = _mm256_unpacklo_ps(acc[0], acc[1]);
        let t1 = _mm256_unpackhi_ps(acc[0], acc[1]);
        let t2 = _mm256_unpacklo_ps(acc[2], acc[3]);
        let t3 = _mm256_unpackhi_ps(acc[2], acc[3]);
        let u = [
            _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2),
            _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2),
            _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3),
            _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3),
        ];
        // u[k] holds lanes k (low half) and k + 4 (high half).
        let mut s = _mm_setzero_ps();
        for v in u {
            s = _mm_add_ps(s, _mm256_castps256_ps128(v));
        }
        for v in u {
            s = _mm_add_ps(s, _mm256_extractf128_ps::<1>(v));
        }
        // `ops::dot`'s empty tail, added last.
        s = _mm_add_ps(s, _mm_setzero_ps());
        let mut out = [0f32; 4];
        // SAFETY: four floats.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::attention::tests::half_noise;
    use crate::cpu::ops::tests::noise;

    #[test]
    fn same_bits_as_ops_dot() {
        for kernels in Kernels::available() {
            for (hd, seen) in [(64, 7), (128, 33), (32, 4), (256, 1), (80, 10), (20, 6)] {
                let kv_dim = 3 * hd;
                let q = noise(4 * hd, 5);
                let cache = half_noise(seen * kv_dim, 7);
                let key = |p: usize| &cache[p * kv_dim + hd..][..hd];
                let q = |h: usize| &q[h * hd..][..hd];
                let check = |heads: usize, got: &[f32]| {
                    for h in 0..heads {
                        for p in 0..seen {
                            let mut k = vec![0f32; hd];
                            key(p).convert_to_f32_slice(&mut k);
                            let want = ops::dot(q(h), &k) * 0.125;
                            assert_eq!(
                                got[h * seen + p].to_bits(),
                                want.to_bits(),
                                "{kernels:?} head {hd} position {p}, {h} of {heads}"
                            );
                        }
                    }
                };
                let mut got = vec![f32::NAN; 4 * seen];
                scores(kernels, [q(0)], key, 0.125, &mut got[..seen]);
                check(1, &got);
                scores(kernels, [q(0), q(1)], key, 0.125, &mut got[..2 * seen]);
                check(2, &got);
                scores(
                    kernels,
                    [q(0), q(1), q(2)],
                    key,
                    0.125,
                    &mut got[..3 * seen],
                );
                check(3, &got);
                scores(kernels, [q(0), q(1), q(2), q(3)], key, 0.125, &mut got);
                check(4, &got);
            }
        }
    }
}
