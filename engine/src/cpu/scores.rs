//! Attention scores: the query's dot product with each cached key row,
//! four rows at a time.
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

use super::ops;
use super::simd::Kernels;

/// `out[p] = ops::dot(q, key(p)) * scale` for every position `p` of `out`.
pub fn scores<'a>(
    kernels: Kernels,
    q: &[f32],
    key: impl Fn(usize) -> &'a [f32],
    scale: f32,
    out: &mut [f32],
) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if kernels != Kernels::Scalar && q.len().is_multiple_of(8) {
        while done + 4 <= out.len() {
            let rows: [&[f32]; 4] = std::array::from_fn(|j| key(done + j));
            for r in rows {
                assert_eq!(r.len(), q.len());
            }
            // SAFETY: `detect` saw AVX2 on this CPU (every set but scalar
            // has it), and each row is as long as `q`, a multiple of 8.
            let s = unsafe { avx2::dot4(q, rows) };
            for (o, s) in out[done..done + 4].iter_mut().zip(s) {
                *o = s * scale;
            }
            done += 4;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernels;
    for (p, o) in out.iter_mut().enumerate().skip(done) {
        *o = ops::dot(q, key(p)) * scale;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `[ops::dot(q, rows[j])]`, the same additions in the same order:
    /// eight lanes of `q[i]·row[i]` products (multiplied, then added: no
    /// FMA, as `ops::dot` compiles), then `((0 + l0) + l1) + … + l7 + 0`.
    ///
    /// SAFETY: AVX2 and FMA; every row as long as `q`, a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in (0..q.len()).step_by(8) {
            // SAFETY: c + 8 <= len of q and of every row.
            let x = unsafe { _mm256_loadu_ps(q.as_ptr().add(c)) };
            for j in 0..4 {
                let y = unsafe { _mm256_loadu_ps(rows[j].as_ptr().add(c)) };
                acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(x, y));
            }
        }
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
    use super::super::ops::tests::noise;
    use super::*;

    #[test]
    fn same_bits_as_ops_dot() {
        for kernels in Kernels::available() {
            for (hd, seen) in [(64, 7), (128, 33), (32, 4), (256, 1), (80, 10), (20, 6)] {
                let kv_dim = 3 * hd;
                let (q, cache) = (noise(hd, 5), noise(seen * kv_dim, 7));
                let key = |p: usize| &cache[p * kv_dim + hd..][..hd];
                let mut got = vec![f32::NAN; seen];
                scores(kernels, &q, key, 0.125, &mut got);
                for (p, g) in got.iter().enumerate() {
                    let want = ops::dot(&q, key(p)) * 0.125;
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{kernels:?} head {hd} position {p}"
                    );
                }
            }
        }
    }
}
