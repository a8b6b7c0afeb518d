//! Throughput of the dot kernels, cache-resident and streaming from memory,
//! for each kernel set this CPU has (AVX2, and AVX-512 VNNI where there is
//! one: it takes the interleaved Q4 groups).
//! `cargo run --release -p cocoon-engine --example kernel_speed`
use std::time::Instant;

use cocoon_engine::cpu::quant::{ActBlock, QK, WeightKind, quantize_act};
use cocoon_engine::cpu::simd::Kernels;
use cocoon_engine::cpu::weights::QMatrix;

fn main() {
    let sets: Vec<Kernels> = Kernels::available()
        .into_iter()
        .filter(|&k| k != Kernels::Scalar)
        .collect();
    let cols = 576;
    let blocks = cols / QK;
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut act = vec![ActBlock::default(); blocks];
    quantize_act(&x, &mut act);
    for kind in [WeightKind::Q4_0, WeightKind::Q4_1, WeightKind::Q8_0] {
        let rb = blocks * kind.block_bytes();
        for rows in [64usize, 1 << 17] {
            let mut w = vec![0u8; rows * rb];
            for (i, b) in w.iter_mut().enumerate() {
                *b = (i * 7 % 251) as u8;
            }
            for r in w.chunks_exact_mut(kind.block_bytes()) {
                r[0] = 0;
                r[1] = 0x3c;
            }
            let reps = ((1 << 23) / rows).max(3);
            let plain = QMatrix::new(kind, rows, cols, w);
            let mut grouped = QMatrix::new(kind, rows, cols, plain.bytes().to_vec());
            let layouts: &[(&str, &QMatrix)] = if grouped.interleave4() {
                &[("rows", &plain), ("interleaved", &grouped)]
            } else {
                &[("rows", &plain)]
            };
            // Four rows at a time, as the engine's matrix products go:
            // against one activation row (a decode step) and against two
            // (prefill and batched decode, the weights unpacked once), in
            // the GGUF's layout and interleaved by four (Q4).
            for (k, acts, &(layout, m)) in sets.iter().flat_map(|&k| {
                [1, 2]
                    .into_iter()
                    .flat_map(move |a| layouts.iter().map(move |l| (k, a, l)))
            }) {
                let t = Instant::now();
                let mut s = 0f32;
                for _ in 0..reps {
                    for r in (0..rows).step_by(4) {
                        let rows = m.group(r, 4);
                        s += match acts {
                            1 => k.dot4(kind, rows, &act).iter().sum::<f32>(),
                            _ => k
                                .dot4n(kind, rows, [&act, &act])
                                .as_flattened()
                                .iter()
                                .sum(),
                        };
                    }
                }
                let dt = t.elapsed().as_secs_f64();
                let bytes = (rows * rb * reps) as f64;
                let macs = (rows * cols * reps * acts) as f64;
                println!(
                    "{kind:?} {rows:>7} rows x {acts} act, {layout:>11}, {:>10}: {:.2} GB/s, {:.2} GMAC/s ({s:.1})",
                    k.name(),
                    bytes / dt / 1e9,
                    macs / dt / 1e9
                );
            }
        }
    }
}
