//! One core's attention for the query heads of one KV head, hot in cache
//! (f16 rows, as the cache keeps them): one head per call (what
//! `cpu::forward` does when threads outnumber the groups) against all of
//! them in one call (`cpu::attention`), which loads each key and value
//! row once for the group; the same bits. Also the two halves alone.
//!
//!   cargo run --release -p cocoon-engine --example attention_speed

use std::hint::black_box;
use std::time::Instant;

use cocoon_engine::cpu::attention::{KvHead, scores, values};
use cocoon_engine::cpu::simd::Kernels;
use half::f16;

fn main() {
    let kernels = Kernels::detect();
    println!("kernels: {}", kernels.name());
    for (hd, seen, group) in [(64, 160, 3), (64, 1024, 3), (128, 160, 4), (128, 1024, 4)] {
        // Three KV heads, this one the second: rows apart as in the cache.
        let kv_dim = 3 * hd;
        let kv: Vec<f16> = (0..seen * kv_dim)
            .map(|i| f16::from_f32((i as f32 * 0.011).cos()))
            .collect();
        let row = |p: usize| &kv[p * kv_dim + hd..][..hd];
        let qs: Vec<f32> = (0..group * hd).map(|i| (i as f32 * 0.07).sin()).collect();
        let w: Vec<f32> = (0..group * seen)
            .map(|p| 1.0 / (p % seen + 1) as f32)
            .collect();
        let head = KvHead {
            key: row,
            value: row,
            scale: 0.125,
        };
        let reps = 20_000_000 / (seen * hd * group);
        // Microseconds per call of `f`, and its output.
        let time = |len: usize, f: &dyn Fn(&mut [f32])| {
            let mut out = vec![0f32; len];
            let t = Instant::now();
            for _ in 0..reps {
                f(black_box(&mut out));
            }
            (t.elapsed().as_secs_f64() / reps as f64 * 1e6, out)
        };
        let q = |h: usize| &qs[h * hd..][..hd];
        let line = |what: &str, (one, a): (f64, Vec<f32>), (all, b): (f64, Vec<f32>)| {
            assert!(a == b, "the same bits");
            println!(
                "head {hd}, {seen} positions, {group} heads: {what} {one:.2} us a head at a time, {all:.2} us together ({:.2}x)",
                one / all
            );
        };
        let alone = time(group * seen, &|out| {
            for (h, o) in out.chunks_exact_mut(seen).enumerate() {
                scores::scores(kernels, [black_box(q(h))], row, 0.125, o);
            }
        });
        let together = time(group * seen, &|out| match group {
            3 => scores::scores(kernels, [q(0), q(1), q(2)], row, 0.125, out),
            _ => scores::scores(kernels, [q(0), q(1), q(2), q(3)], row, 0.125, out),
        });
        line("scores", alone, together);
        let alone = time(group * hd, &|out| {
            for (h, o) in out.chunks_exact_mut(hd).enumerate() {
                values::weighted::<1>(kernels, black_box(&w[h * seen..][..seen]), row, o);
            }
        });
        let together = time(group * hd, &|out| match group {
            3 => values::weighted::<3>(kernels, black_box(&w), row, out),
            _ => values::weighted::<4>(kernels, black_box(&w), row, out),
        });
        line("values", alone, together);
        let mut scratch = Vec::new();
        let scratch = std::cell::RefCell::new(&mut scratch);
        let alone = time(group * hd, &|out| {
            for (h, o) in out.chunks_exact_mut(hd).enumerate() {
                head.attend(
                    kernels,
                    (black_box(q(h)), hd),
                    seen,
                    &mut scratch.borrow_mut(),
                    o,
                );
            }
        });
        let together = time(group * hd, &|out| {
            head.attend(
                kernels,
                (black_box(&qs), hd),
                seen,
                &mut scratch.borrow_mut(),
                out,
            );
        });
        line("attention", alone, together);
    }
}
