//! One core's attention for one head, its two halves as `cpu::forward`
//! runs them, each against what it replaced (the same bits):
//! - the scores, four key rows at a time (`cpu::scores`), against
//!   `ops::dot` for one row after another;
//! - the weighted sum of value rows (`ops::weighted_rows`: the head's
//!   output held in registers across the rows), against the row-at-a-time
//!   `ops::axpy` (the output loaded and stored for every row).
//!
//!   cargo run --release -p cocoon-engine --example attention_speed

use std::hint::black_box;
use std::time::Instant;

use cocoon_engine::cpu::simd::Kernels;
use cocoon_engine::cpu::{ops, scores};

fn main() {
    for (hd, seen) in [(64, 192), (64, 1024), (128, 192), (128, 1024)] {
        // Three KV heads, this one the second: rows apart as in the cache.
        let kv_dim = 3 * hd;
        let v: Vec<f32> = (0..seen * kv_dim)
            .map(|i| (i as f32 * 0.011).cos())
            .collect();
        let row = |p: usize| &v[p * kv_dim + hd..][..hd];
        let w: Vec<f32> = (0..seen).map(|p| 1.0 / (p + 1) as f32).collect();
        let reps = 20_000_000 / (seen * hd);
        // Microseconds per call of `f` on an output of `len`, and the output.
        let time = |len: usize, f: &dyn Fn(&mut [f32])| {
            let mut out = vec![0f32; len];
            let t = Instant::now();
            for _ in 0..reps {
                f(black_box(&mut out));
            }
            (t.elapsed().as_secs_f64() / reps as f64 * 1e6, out)
        };
        let (axpy, a) = time(hd, &|out| {
            out.fill(0.0);
            for (p, &s) in w.iter().enumerate() {
                ops::axpy(s, row(p), out);
            }
        });
        let (rows, b) = time(hd, &|out| ops::weighted_rows(&w, row, out));
        assert!(a == b, "the same bits");
        println!(
            "head {hd}, {seen} positions: {axpy:.2} us row by row (axpy), {rows:.2} us weighted_rows ({:.2}x)",
            axpy / rows
        );
        let q: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.07).sin()).collect();
        let key = |p: usize| &v[p * kv_dim..][..hd];
        let kernels = Kernels::detect();
        let (one, a) = time(seen, &|out| {
            for (p, o) in out.iter_mut().enumerate() {
                *o = ops::dot(black_box(&q), key(p)) * 0.125;
            }
        });
        let (four, b) = time(seen, &|out| {
            scores::scores(kernels, black_box(&q), key, 0.125, out)
        });
        assert!(a == b, "the same bits");
        println!(
            "head {hd}, {seen} positions: scores {one:.2} us a row at a time (ops::dot), {four:.2} us four at a time ({}, {:.2}x)",
            kernels.name(),
            one / four
        );
    }
}
