//! Throughput of the dot kernels, cache-resident and streaming from memory.
//! `cargo run --release -p cocoon-engine --example kernel_speed`
use std::time::Instant;

use cocoon_engine::cpu::quant::{ActBlock, QK, WeightKind, quantize_act};
use cocoon_engine::cpu::simd::Kernels;

fn main() {
    let k = Kernels::detect();
    let cols = 576;
    let blocks = cols / QK;
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut act = vec![ActBlock::default(); blocks];
    quantize_act(&x, &mut act);
    for kind in [WeightKind::Q4_1, WeightKind::Q8_0] {
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
            let reps = (1 << 23) / rows;
            let t = Instant::now();
            let mut s = 0f32;
            for _ in 0..reps.max(3) {
                for r in 0..rows {
                    s += k.dot(kind, &w[r * rb..(r + 1) * rb], &act);
                }
            }
            let dt = t.elapsed().as_secs_f64();
            let bytes = (rows * rb * reps.max(3)) as f64;
            let macs = (rows * cols * reps.max(3)) as f64;
            println!(
                "{kind:?} {rows:>7} rows: {:.2} GB/s, {:.2} GMAC/s ({s:.1})",
                bytes / dt / 1e9,
                macs / dt / 1e9
            );
        }
    }
}
