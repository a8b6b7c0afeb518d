//! AVX2 dot products of quantized weight rows with quantized activations:
//! the inner loop of every matrix product, so the one place where
//! intrinsics are worth their weight.
//!
//! Per block of 32: unpack the weights to bytes, `maddubs` them against the
//! int8 activations (u8 × i8 → i16 pairs), `madd` the pairs to i32, convert
//! and accumulate with one FMA by the product of the scales. Signed ×
//! signed (Q8_0) goes through `sign` so `maddubs` sees an unsigned operand.
//!
//! A call takes four rows of a matrix and one or two activation rows: the
//! scales of the four rows are converted together, an activation block is
//! loaded once for the four rows, the weights are unpacked once for both
//! activation rows, and the group's bytes are prefetched as one stream
//! (the rows of a matrix lie one after another). That gave one core
//! 1.5-1.7× the multiply-adds per second of a row at a time
//! (BENCHMARKS.md). Q4 rows interleaved in groups of four at load
//! ([`super::weights::Group::Interleaved`]) take 1.2-1.3× again, from
//! fewer loads. Tested against [`super::quant::dot_scalar`], and each
//! (row, activation row) pair is computed the same way whatever its
//! companions, which the batched forward pass relies on.

use super::quant::{ActBlock, WeightKind, dot_scalar};
use super::weights::{Group, interleaved_block};

/// The dot product kernel this CPU runs, picked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 plus AVX-512 with VNNI (Zen 4 and later, Intel since Cascade
    /// Lake): interleaved Q4 groups go through [`avx512`]'s kernel, the
    /// rest through AVX2's.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Kernels {
    /// The best kernels this CPU has, or those `COCOON_CPU_KERNELS` names
    /// (`scalar`, `avx2`, `avx512vnni`) if it has them: a switch to
    /// compare them in one binary on one machine.
    pub fn detect() -> Kernels {
        let wanted = std::env::var("COCOON_CPU_KERNELS").unwrap_or_default();
        let available = Kernels::available();
        let best = *available.last().expect("scalar runs anywhere");
        available
            .into_iter()
            .find(|k| k.name() == wanted)
            .unwrap_or(best)
    }

    /// The kernel sets this CPU can run, weakest first.
    pub fn available() -> Vec<Kernels> {
        let best = Kernels::best();
        let all = [
            Kernels::Scalar,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512Vnni,
        ];
        let n = all
            .iter()
            .position(|&k| k == best)
            .expect("best is one of all")
            + 1;
        all[..n].to_vec()
    }

    fn best() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                    return Kernels::Avx512Vnni;
                }
                return Kernels::Avx2;
            }
        }
        Kernels::Scalar
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernels::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512Vnni => "avx512vnni",
        }
    }

    /// Four rows of one matrix against one activation row: `[rows[j] · act]`.
    #[inline]
    pub fn dot4(self, kind: WeightKind, rows: Group, act: &[ActBlock]) -> [f32; 4] {
        self.dot4n(kind, rows, [act])[0]
    }

    /// Four rows of one matrix against `N` activation rows:
    /// `out[t][j] = rows[j] · acts[t]`, each row's weights unpacked once
    /// for all `N`.
    ///
    /// A (row, activation row) pair's result depends only on that pair,
    /// never on its companions or on `N` (the same lanes and the same
    /// order of additions), so grouping rows or sequences differently
    /// (other thread counts, chunk edges, a short last group padded with a
    /// repeat, a batch) changes no bit of any logit.
    #[inline]
    pub fn dot4n<const N: usize>(
        self,
        kind: WeightKind,
        group: Group,
        acts: [&[ActBlock]; N],
    ) -> [[f32; 4]; N] {
        let blocks = acts.first().map_or(0, |a| a.len());
        for act in acts {
            assert_eq!(act.len(), blocks);
        }
        let rows = match group {
            Group::Rows(rows) => {
                for row in rows {
                    assert_eq!(row.len(), blocks * kind.block_bytes());
                }
                rows
            }
            Group::Interleaved(g) => {
                assert_eq!(g.len(), 4 * blocks * kind.block_bytes());
                match (self, kind) {
                    // SAFETY: `detect` saw AVX-512 F, BW and VNNI besides
                    // AVX2, FMA and F16C; the group holds `blocks` blocks
                    // of four rows (asserted above).
                    #[cfg(target_arch = "x86_64")]
                    (Kernels::Avx512Vnni, WeightKind::Q4_0) => unsafe {
                        return avx512::dot4_q4::<N, false>(g.as_ptr(), blocks, acts);
                    },
                    #[cfg(target_arch = "x86_64")]
                    (Kernels::Avx512Vnni, WeightKind::Q4_1) => unsafe {
                        return avx512::dot4_q4::<N, true>(g.as_ptr(), blocks, acts);
                    },
                    // SAFETY: as below; the group holds `blocks` blocks
                    // of four rows (asserted above).
                    #[cfg(target_arch = "x86_64")]
                    (Kernels::Avx2, WeightKind::Q4_0) => unsafe {
                        return avx2::dot4_q4::<N, false, true>([g.as_ptr(); 4], blocks, acts);
                    },
                    #[cfg(target_arch = "x86_64")]
                    (Kernels::Avx2, WeightKind::Q4_1) => unsafe {
                        return avx2::dot4_q4::<N, true, true>([g.as_ptr(); 4], blocks, acts);
                    },
                    // Only the AVX2 Q4 kernels read groups in place.
                    _ => {
                        let rows = deinterleave(kind, g);
                        return self.dot4n(
                            kind,
                            Group::Rows(rows.each_ref().map(|r| &r[..])),
                            acts,
                        );
                    }
                }
            }
        };
        match self {
            Kernels::Scalar => acts.map(|act| rows.map(|row| dot_scalar(kind, row, act))),
            // SAFETY: `detect` saw AVX2, FMA and F16C on this CPU, and
            // every row and activation row holds `blocks` blocks (asserted
            // above).
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 | Kernels::Avx512Vnni => unsafe {
                let p = rows.map(|r| r.as_ptr());
                match kind {
                    WeightKind::Q4_0 => avx2::dot4_q4::<N, false, false>(p, blocks, acts),
                    WeightKind::Q4_1 => avx2::dot4_q4::<N, true, false>(p, blocks, acts),
                    WeightKind::Q8_0 => avx2::dot4_q8_0(rows, acts),
                }
            },
        }
    }
}

/// The four rows of an interleaved group in the GGUF's layout again.
fn deinterleave(kind: WeightKind, g: &[u8]) -> [Vec<u8>; 4] {
    let bb = kind.block_bytes();
    std::array::from_fn(|j| {
        g.chunks_exact(4 * bb)
            .flat_map(|b| interleaved_block(kind, b, j).into_iter().take(bb))
            .collect()
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// How far ahead of the block being summed to ask for weights.
    pub(super) const PREFETCH: usize = 4096;

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

    /// Four rows of Q4_0 (`WITH_MIN` false: offset -8d) or Q4_1 (offset
    /// m) blocks against `N` activation rows.
    ///
    /// Two rows share each 256-bit register: the 16 packed bytes of one
    /// row in the low lane and of the next in the high lane, so one shift,
    /// one `madd`, one conversion and one FMA serve two row-blocks, and an
    /// activation block is loaded once for all four rows (llama.cpp gets
    /// the same sharing by repacking Q4_0 into interleaved 8-row blocks at
    /// load). The nibbles are unpacked once for all `N` activation rows. Low nibbles
    /// (values 0..16) meet the activations' first 16 bytes and high nibbles
    /// (16..32) the last 16, each half broadcast to both lanes. Each row
    /// sums its own four float lanes, then its offset: the arithmetic of
    /// one (row, activation row) pair is the same whatever `N` and
    /// whatever the other rows.
    ///
    /// `INTERLEAVED` false: `p` are four rows of `blocks` blocks in the
    /// GGUF's layout. True: `p[0]` is a group of four rows interleaved by
    /// [`QMatrix::interleave4`], whose scales come in one load and whose
    /// two pairs of rows come in one load each; the same values reach the
    /// same lanes, so the results are the same to the bit.
    ///
    /// SAFETY: the pointers hold `blocks` blocks (of four rows when
    /// interleaved).
    ///
    /// [`QMatrix::interleave4`]: super::super::weights::QMatrix::interleave4
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4_q4<const N: usize, const WITH_MIN: bool, const INTERLEAVED: bool>(
        p: [*const u8; 4],
        blocks: usize,
        acts: [&[ActBlock]; N],
    ) -> [[f32; 4]; N] {
        let bb = if WITH_MIN { 20 } else { 18 };
        let hb = bb - 16;
        let mut acc = [[_mm256_setzero_ps(); 2]; N];
        // Lanes 1, 5, 3, 7 sum offset × s of rows 0..4 (the rest scratch).
        let mut offsets = [_mm256_setzero_ps(); N];
        for i in 0..blocks {
            // The four rows lie one after another (rows of a matrix, or a
            // group): ask for the group's bytes as one stream, 4 × bb per
            // block.
            let ahead = p[0].wrapping_add(PREFETCH + i * 4 * bb);
            for k in 0..2 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * k) as *const i8);
            }
            // [d0, m0, d2, m2 | d1, m1, d3, m3] of the four blocks: rows
            // 0 and 1 (the two lanes of the first pair) find their d at the
            // same place in each 128-bit lane, as do rows 2 and 3, so an
            // in-lane shuffle spreads them. The packed bytes of rows 0 and
            // 1 (low and high lane), then of rows 2 and 3.
            // SAFETY: block i lies inside every row, or the group (the
            // caller's promise).
            let (dm, packed) = unsafe {
                if INTERLEAVED {
                    let g = p[0].add(i * 4 * bb);
                    let dm = if WITH_MIN {
                        _mm256_cvtph_ps(_mm_loadu_si128(g as *const __m128i))
                    } else {
                        q4_0_dm(_mm_cvtph_ps(_mm_loadl_epi64(g as *const __m128i)))
                    };
                    let q = g.add(4 * hb) as *const __m256i;
                    (dm, [_mm256_loadu_si256(q), _mm256_loadu_si256(q.add(1))])
                } else {
                    let b = p.map(|r| r.add(i * bb));
                    let dm = if WITH_MIN {
                        let h = b.map(|r| (r as *const i32).read_unaligned());
                        _mm256_cvtph_ps(_mm_setr_epi32(h[0], h[2], h[1], h[3]))
                    } else {
                        let h = b.map(|r| (r as *const i16).read_unaligned());
                        q4_0_dm(_mm_cvtph_ps(_mm_setr_epi16(
                            h[0], h[2], h[1], h[3], 0, 0, 0, 0,
                        )))
                    };
                    let pair = |r0: *const u8, r1: *const u8| {
                        _mm256_loadu2_m128i(
                            r1.add(hb) as *const __m128i,
                            r0.add(hb) as *const __m128i,
                        )
                    };
                    (dm, [pair(b[0], b[1]), pair(b[2], b[3])])
                }
            };
            let w = packed.map(|v| unpack(v));
            for t in 0..N {
                // SAFETY: every activation row holds `blocks` blocks.
                let a = unsafe { acts[t].get_unchecked(i) };
                // [d, s] of the activations in every pair of lanes
                // (ActBlock starts with d, s).
                let ds = unsafe { (a as *const ActBlock as *const i64).read_unaligned() };
                let prod = _mm256_mul_ps(dm, _mm256_castsi256_ps(_mm256_set1_epi64x(ds)));
                offsets[t] = _mm256_add_ps(offsets[t], prod);
                let xq = a.qs.as_ptr() as *const __m128i;
                let x = unsafe {
                    [
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(xq)),
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(xq.add(1))),
                    ]
                };
                let scales = [
                    _mm256_permute_ps::<0b00_00_00_00>(prod),
                    _mm256_permute_ps::<0b10_10_10_10>(prod),
                ];
                for k in 0..2 {
                    acc[t][k] = _mm256_fmadd_ps(scales[k], dot_pair(w[k], x), acc[t][k]);
                }
            }
        }
        std::array::from_fn(|t| {
            let mut l = [0f32; 16];
            let mut off = [0f32; 8];
            // SAFETY: 8 floats each.
            unsafe {
                _mm256_storeu_ps(l.as_mut_ptr(), acc[t][0]);
                _mm256_storeu_ps(l.as_mut_ptr().add(8), acc[t][1]);
                _mm256_storeu_ps(off.as_mut_ptr(), offsets[t]);
            }
            std::array::from_fn(|j| {
                let l = &l[4 * j..4 * j + 4];
                ((l[0] + l[2]) + (l[1] + l[3])) + off[[1, 5, 3, 7][j]]
            })
        })
    }

    /// [d0, -8d0, d2, -8d2 | d1, -8d1, d3, -8d3] from [d0, d2, d1, d3]:
    /// Q4_0's scales in the places Q4_1's (d, m) take.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn q4_0_dm(d: __m128) -> __m256 {
        let m = _mm_mul_ps(d, _mm_set1_ps(-8.0));
        _mm256_set_m128(_mm_unpackhi_ps(d, m), _mm_unpacklo_ps(d, m))
    }

    /// The nibbles of two rows' packed blocks (one row's 16 bytes in each
    /// lane) as bytes: `[values 0..16, values 16..32]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn unpack(v: __m256i) -> [__m256i; 2] {
        let low = _mm256_set1_epi8(0x0f);
        [
            _mm256_and_si256(v, low),
            _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
        ]
    }

    /// Two rows' unpacked blocks against one activation block (its two
    /// halves broadcast to both lanes): the integer dot products as
    /// floats, four lanes per row.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_pair(w: [__m256i; 2], x: [__m256i; 2]) -> __m256 {
        // Each i16 sums four products of at most 15 × 128: no saturation.
        let s = _mm256_add_epi16(
            _mm256_maddubs_epi16(w[0], x[0]),
            _mm256_maddubs_epi16(w[1], x[1]),
        );
        _mm256_cvtepi32_ps(_mm256_madd_epi16(s, _mm256_set1_epi16(1)))
    }

    /// Four rows of Q8_0 blocks against `N` activation rows. Signed ×
    /// signed goes through `sign` so `maddubs` sees an unsigned operand;
    /// each weight block's absolute values serve all `N` activation rows,
    /// and the four rows' scales are converted together. One accumulator
    /// per (row, activation row): the four rows already keep the FMAs
    /// independent.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4_q8_0<const N: usize>(
        rows: [&[u8]; 4],
        acts: [&[ActBlock]; N],
    ) -> [[f32; 4]; N] {
        let mut acc = [[_mm256_setzero_ps(); 4]; N];
        let p = rows.map(|r| r.as_ptr());
        let blocks = rows[0].len() / 34;
        for i in 0..blocks {
            // SAFETY: block i lies inside every row (the caller checked
            // that each row holds `blocks` blocks).
            let b = p.map(|r| unsafe { r.add(i * 34) });
            // As for Q4: one stream of 4 × 34 bytes per block.
            let ahead = p[0].wrapping_add(PREFETCH + i * 4 * 34);
            for k in 0..3 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * k) as *const i8);
            }
            let h = b.map(|r| unsafe { (r as *const i16).read_unaligned() });
            let d = _mm_cvtph_ps(_mm_setr_epi16(h[0], h[1], h[2], h[3], 0, 0, 0, 0));
            // SAFETY: 32 quants after each block's scale.
            let w = b.map(|r| unsafe { _mm256_loadu_si256(r.add(2) as *const __m256i) });
            let abs_w = w.map(|w| _mm256_sign_epi8(w, w));
            for t in 0..N {
                // SAFETY: every activation row holds `blocks` blocks.
                let a = unsafe { acts[t].get_unchecked(i) };
                // The four rows' d × d_act in both 128-bit lanes, so an
                // in-lane shuffle spreads row j's to all eight.
                let prod = _mm_mul_ps(d, _mm_set1_ps(a.d));
                let prod = _mm256_set_m128(prod, prod);
                let scales = [
                    _mm256_permute_ps::<0b00_00_00_00>(prod),
                    _mm256_permute_ps::<0b01_01_01_01>(prod),
                    _mm256_permute_ps::<0b10_10_10_10>(prod),
                    _mm256_permute_ps::<0b11_11_11_11>(prod),
                ];
                let x = unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) };
                for j in 0..4 {
                    let dot = dot_u8_i8(abs_w[j], _mm256_sign_epi8(x, w[j]));
                    acc[t][j] = _mm256_fmadd_ps(scales[j], dot, acc[t][j]);
                }
            }
        }
        acc.map(|acc| acc.map(|v| hsum(v)))
    }
}

/// The interleaved Q4 kernel with AVX-512 and VNNI: a block's four rows
/// in one 512-bit register (one row per 128-bit lane, as the group stores
/// them), and `vpdpbusd`, which multiplies u8 by i8 and adds four products
/// into each i32 in one instruction, where AVX2 needs `maddubs`, an i16
/// add and `madd`. A block of four rows is one load, two unpacking steps,
/// two `vpdpbusd`, one conversion and one FMA per activation row.
///
/// Same bits as [`avx2::dot4_q4`]: each i32 lane sums the same eight
/// products exactly (no i16 step to saturate: every partial sum fits), and
/// every float lane meets the same conversions, multiplies, FMAs and final
/// additions in the same order. `every_kernel_matches_the_scalar_reference`
/// checks it bit for bit.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// SAFETY: `g` holds `blocks` blocks of an interleaved group of four
    /// rows; the CPU has AVX2, FMA, F16C and AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot4_q4<const N: usize, const WITH_MIN: bool>(
        g: *const u8,
        blocks: usize,
        acts: [&[ActBlock]; N],
    ) -> [[f32; 4]; N] {
        let bb = if WITH_MIN { 20 } else { 18 };
        let hb = bb - 16;
        let mut acc = [_mm512_setzero_ps(); N];
        // As in AVX2's kernel: lanes 1, 5, 3, 7 sum offset × s of rows 0..4.
        let mut offsets = [_mm256_setzero_ps(); N];
        // Row r's d × d_act (at lane 2r of the 4-lane ordering
        // [d0, m0, d2, m2 | d1, m1, d3, m3], so 0, 4, 2, 6) to its 128-bit lane.
        let spread = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 2, 2, 2, 2, 6, 6, 6, 6);
        let low = _mm512_set1_epi8(0x0f);
        for i in 0..blocks {
            // SAFETY: block i lies inside the group (the caller's promise).
            let b = unsafe { g.add(i * 4 * bb) };
            let ahead = b.wrapping_add(avx2::PREFETCH);
            for k in 0..2 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * k) as *const i8);
            }
            let (dm, packed) = unsafe {
                let dm = if WITH_MIN {
                    _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i))
                } else {
                    avx2::q4_0_dm(_mm_cvtph_ps(_mm_loadl_epi64(b as *const __m128i)))
                };
                (dm, _mm512_loadu_si512(b.add(4 * hb) as *const __m512i))
            };
            let w = [
                _mm512_and_si512(packed, low),
                _mm512_and_si512(_mm512_srli_epi16::<4>(packed), low),
            ];
            for t in 0..N {
                // SAFETY: every activation row holds `blocks` blocks.
                let a = unsafe { acts[t].get_unchecked(i) };
                let ds = unsafe { (a as *const ActBlock as *const i64).read_unaligned() };
                let prod = _mm256_mul_ps(dm, _mm256_castsi256_ps(_mm256_set1_epi64x(ds)));
                offsets[t] = _mm256_add_ps(offsets[t], prod);
                let xq = a.qs.as_ptr() as *const __m128i;
                let x = unsafe {
                    [
                        _mm512_broadcast_i32x4(_mm_loadu_si128(xq)),
                        _mm512_broadcast_i32x4(_mm_loadu_si128(xq.add(1))),
                    ]
                };
                let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], x[0]);
                let dot = _mm512_dpbusd_epi32(dot, w[1], x[1]);
                let scale = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(prod));
                acc[t] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(dot), acc[t]);
            }
        }
        std::array::from_fn(|t| {
            let mut l = [0f32; 16];
            let mut off = [0f32; 8];
            // SAFETY: 16 and 8 floats.
            unsafe {
                _mm512_storeu_ps(l.as_mut_ptr(), acc[t]);
                _mm256_storeu_ps(off.as_mut_ptr(), offsets[t]);
            }
            std::array::from_fn(|j| {
                let l = &l[4 * j..4 * j + 4];
                ((l[0] + l[2]) + (l[1] + l[3])) + off[[1, 5, 3, 7][j]]
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::quant::{QK, quantize_act};
    use super::super::weights::QMatrix;
    use super::*;

    /// Deterministic bytes and floats without a random-number crate.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// A row of `blocks` random blocks with sane f16 scales (random bits
    /// can be NaN or huge).
    fn random_row(kind: WeightKind, blocks: usize, seed: &mut u64) -> Vec<u8> {
        let mut row: Vec<u8> = (0..blocks * kind.block_bytes())
            .map(|_| lcg(seed) as u8)
            .collect();
        for b in row.chunks_exact_mut(kind.block_bytes()) {
            let d = half::f16::from_f32((lcg(seed) % 1000) as f32 / 1e4);
            b[..2].copy_from_slice(&d.to_bits().to_le_bytes());
            if kind == WeightKind::Q4_1 {
                let m = half::f16::from_f32(-((lcg(seed) % 1000) as f32) / 1e4);
                b[2..4].copy_from_slice(&m.to_bits().to_le_bytes());
            }
        }
        row
    }

    fn check(kernels: Kernels, kind: WeightKind, rows: [&[u8]; 4], act: &[ActBlock]) {
        let got = kernels.dot4(kind, Group::Rows(rows), act);
        for (j, row) in rows.iter().enumerate() {
            let want = dot_scalar(kind, row, act);
            let tol = 1e-4 * (1.0 + want.abs());
            assert!(
                (want - got[j]).abs() <= tol,
                "{kind:?} row {j} x{} on {}: {want} vs {}",
                act.len(),
                kernels.name(),
                got[j]
            );
            // The same bits wherever the row sits and whatever its
            // companions: batched and differently chunked passes rely on it.
            assert_eq!(
                kernels.dot4(kind, Group::Rows([row; 4]), act)[0].to_bits(),
                got[j].to_bits()
            );
            let both = kernels.dot4n(kind, Group::Rows(rows), [act, act]);
            assert_eq!(both[0][j].to_bits(), got[j].to_bits());
            assert_eq!(both[1][j].to_bits(), got[j].to_bits());
            let mut moved = [rows[3], rows[2], rows[1], rows[0]];
            moved[3 - j] = row;
            assert_eq!(
                kernels.dot4(kind, Group::Rows(moved), act)[3 - j].to_bits(),
                got[j].to_bits()
            );
        }
        // The same four rows interleaved (Q4 only): the same bits, from
        // the AVX2 kernel and from the scalar fallback, and the same rows
        // when dequantized.
        let cols = act.len() * QK;
        let mut m = QMatrix::new(kind, 4, cols, rows.concat());
        let mut plain = vec![0f32; cols];
        m.dequantize_row(2, &mut plain);
        if !m.interleave4() {
            return;
        }
        let mut back = vec![0f32; cols];
        m.dequantize_row(2, &mut back);
        assert_eq!(plain, back);
        let g = m.group(0, 4);
        assert!(matches!(g, Group::Interleaved(_)));
        let bits = |v: [f32; 4]| v.map(f32::to_bits);
        assert_eq!(bits(kernels.dot4(kind, g, act)), bits(got));
        let both = kernels.dot4n(kind, g, [act, act]);
        assert_eq!((bits(both[0]), bits(both[1])), (bits(got), bits(got)));
        // Four activation rows at once (prefill on AVX-512), each with
        // its own bits.
        let rev: Vec<ActBlock> = act.iter().rev().cloned().collect();
        let alone = bits(kernels.dot4(kind, g, &rev));
        let four = kernels.dot4n(kind, g, [&rev, act, &rev, act]).map(bits);
        assert_eq!(four, [alone, bits(got), alone, bits(got)]);
        let scalar = Kernels::Scalar.dot4(kind, Group::Rows(rows), act);
        assert_eq!(bits(Kernels::Scalar.dot4(kind, g, act)), bits(scalar));
    }

    #[test]
    fn every_kernel_matches_the_scalar_reference() {
        let mut seed = 7;
        let kinds = [WeightKind::Q4_0, WeightKind::Q4_1, WeightKind::Q8_0];
        for (kernels, kind) in Kernels::available()
            .into_iter()
            .flat_map(|k| kinds.map(|q| (k, q)))
        {
            for blocks in [1, 3, 18, 48] {
                let rows: Vec<Vec<u8>> = (0..4)
                    .map(|_| random_row(kind, blocks, &mut seed))
                    .collect();
                let x: Vec<f32> = (0..blocks * QK)
                    .map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let mut act = vec![ActBlock::default(); blocks];
                quantize_act(&x, &mut act);
                check(
                    kernels,
                    kind,
                    std::array::from_fn(|j| rows[j].as_slice()),
                    &act,
                );
            }
        }
    }

    /// The largest products the kernels can meet (every nibble 15 or every
    /// byte -128, activations at ±127) sum without saturating an i16.
    #[test]
    fn extreme_blocks_do_not_saturate() {
        let blocks = 4;
        let kinds = [WeightKind::Q4_0, WeightKind::Q4_1, WeightKind::Q8_0];
        for (kernels, kind) in Kernels::available()
            .into_iter()
            .flat_map(|k| kinds.map(|q| (k, q)))
        {
            let mut row = vec![0u8; blocks * kind.block_bytes()];
            for (i, b) in row.chunks_exact_mut(kind.block_bytes()).enumerate() {
                let fill = match (kind, i % 2) {
                    (WeightKind::Q8_0, 0) => 0x80,
                    (WeightKind::Q8_0, _) => 0x7f,
                    (_, 0) => 0xff,
                    _ => 0x00,
                };
                b.fill(fill);
                b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
                if kind == WeightKind::Q4_1 {
                    b[2..4].copy_from_slice(&half::f16::from_f32(-1.0).to_bits().to_le_bytes());
                }
            }
            for sign in [1.0f32, -1.0] {
                let x = vec![sign; blocks * QK];
                let mut act = vec![ActBlock::default(); blocks];
                quantize_act(&x, &mut act);
                check(kernels, kind, [&row; 4], &act);
            }
        }
    }
}
