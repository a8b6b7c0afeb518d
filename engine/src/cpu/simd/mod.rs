//! SIMD dot products of quantized weight rows with quantized activations:
//! the inner loop of every matrix product, so the one place where
//! intrinsics are worth their weight. `avx2.rs` has the kernels every
//! x86-64-v3 CPU runs; `avx512.rs` one for interleaved Q4 groups on CPUs
//! with AVX-512 VNNI, which gives the same bits.
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
    /// Lake): interleaved Q4 groups go through `avx512.rs`'s kernel, the
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
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

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
