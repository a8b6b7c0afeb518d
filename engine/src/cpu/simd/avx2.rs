//! The AVX2 kernels (x86-64-v3: AVX2, FMA, F16C).

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
                let dm = group_scales::<WITH_MIN>(g);
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
                    _mm256_loadu2_m128i(r1.add(hb) as *const __m128i, r0.add(hb) as *const __m128i)
                };
                (dm, [pair(b[0], b[1]), pair(b[2], b[3])])
            }
        };
        let w = packed.map(|v| unpack(v));
        for t in 0..N {
            // SAFETY: every activation row holds `blocks` blocks.
            let a = unsafe { acts[t].get_unchecked(i) };
            let prod = block_products(dm, a);
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

/// The scales of one block of an interleaved group at `g`, as
/// [d0, m0, d2, m2 | d1, m1, d3, m3] (Q4_0: m = -8d).
///
/// SAFETY: `g` points at a block of an interleaved group.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn group_scales<const WITH_MIN: bool>(g: *const u8) -> __m256 {
    // SAFETY: a group block starts with its four rows' scales (8 or 16 bytes).
    unsafe {
        if WITH_MIN {
            _mm256_cvtph_ps(_mm_loadu_si128(g as *const __m128i))
        } else {
            q4_0_dm(_mm_cvtph_ps(_mm_loadl_epi64(g as *const __m128i)))
        }
    }
}

/// The four rows' [d × d_act, m × s_act] for one activation block, laid
/// out as `dm` is (`ActBlock` starts with d, s: read as one pair and
/// broadcast to every pair of lanes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn block_products(dm: __m256, a: &ActBlock) -> __m256 {
    // SAFETY: an ActBlock starts with two f32s.
    let ds = unsafe { (a as *const ActBlock as *const i64).read_unaligned() };
    _mm256_mul_ps(dm, _mm256_castsi256_ps(_mm256_set1_epi64x(ds)))
}

/// [d0, -8d0, d2, -8d2 | d1, -8d1, d3, -8d3] from [d0, d2, d1, d3]:
/// Q4_0's scales in the places Q4_1's (d, m) take.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_dm(d: __m128) -> __m256 {
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
pub unsafe fn dot4_q8_0<const N: usize>(rows: [&[u8]; 4], acts: [&[ActBlock]; N]) -> [[f32; 4]; N] {
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
