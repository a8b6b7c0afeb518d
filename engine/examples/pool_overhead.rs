//! The cost of one parallel section of the engine's thread team, with an
//! empty job (what every one of a step's ~150 sections pays), and how many
//! of the team take part in a section that holds some work (64 chunks of
//! about a microsecond, the size of a 135M model's smaller sections at 16
//! threads): a team whose workers miss sections does not scale.
//! `cargo run --release -p cocoon-engine --example pool_overhead -- [THREADS]`
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cocoon_engine::cpu::pool::{Chunks, Pool};

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(2, |s| s.parse().unwrap());
    let pool = Pool::new(threads);
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n {
        let chunks = Chunks::new(64, 4, threads);
        pool.run(&|thread| while chunks.take(thread).is_some() {});
    }
    let per = t.elapsed().as_secs_f64() / n as f64;

    let sections = 20_000;
    let took_part = AtomicUsize::new(0);
    let t = Instant::now();
    for _ in 0..sections {
        let chunks = Chunks::new(64, 1, threads);
        pool.run(&|thread| {
            took_part.fetch_add(1, Ordering::Relaxed);
            while chunks.take(thread).is_some() {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(1) {
                    std::hint::spin_loop();
                }
            }
        });
    }
    let busy = t.elapsed().as_secs_f64() / sections as f64;
    println!(
        "{threads} threads: {:.2} µs per empty section; {:.2} threads take part in a section of 64 × 1 µs, which takes {:.1} µs",
        per * 1e6,
        took_part.load(Ordering::Relaxed) as f64 / sections as f64,
        busy * 1e6
    );
}
