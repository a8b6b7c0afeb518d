//! The interleaved Q4 kernel with AVX-512 and VNNI: a block's four rows
//! in one 512-bit register (one row per 128-bit lane, as the group stores
//! them), and `vpdpbusd`, which multiplies u8 by i8 and adds four products
//! into each i32 in one instruction, where AVX2 needs `maddubs`, an i16
//! add and `madd`. A block of four rows is one load, two unpacking steps,
//! two `vpdpbusd`, one conversion and one FMA per activation row.
//!
//! Same bits as [`super::avx2::dot4_q4`]: each i32 lane sums the same eight
//! products exactly (no i16 step to saturate: every partial sum fits), and
//! every float lane meets the same conversions, multiplies, FMAs and final
//! additions in the same order. `every_kernel_matches_the_scalar_reference`
//! checks it bit for bit.

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
        // SAFETY: block i lies inside the group (the caller's promise).
        let (dm, packed) = unsafe {
            (
                avx2::group_scales::<WITH_MIN>(b),
                _mm512_loadu_si512(b.add(4 * hb) as *const __m512i),
            )
        };
        let w = [
            _mm512_and_si512(packed, low),
            _mm512_and_si512(_mm512_srli_epi16::<4>(packed), low),
        ];
        for t in 0..N {
            // SAFETY: every activation row holds `blocks` blocks.
            let a = unsafe { acts[t].get_unchecked(i) };
            let prod = avx2::block_products(dm, a);
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
