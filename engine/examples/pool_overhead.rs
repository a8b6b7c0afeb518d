//! The cost of one parallel section of the engine's thread team, with an
//! empty job (what every one of a step's ~150 sections pays).
//! `cargo run --release -p cocoon-engine --example pool_overhead -- [THREADS]`
use std::time::Instant;

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
    println!("{threads} threads: {:.2} µs per section", per * 1e6);
}
