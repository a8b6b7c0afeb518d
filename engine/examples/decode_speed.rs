//! Decode steps of the engine's CPU path alone (no sampling, no server):
//! `SEQS` sequences are filled with a `DEPTH`-token prompt first, then
//! each decodes 64 tokens; prints the fastest sequence's rate. Best of
//! several, because on a shared VM interference only ever slows a run
//! down, and alternating two builds of this shows a change that the
//! server-level `cocoon-guest bench` medians hide in their noise.
//!
//!   cargo run --release -p cocoon-engine --example decode_speed -- PACK [DEPTH] [SEQS] [THREADS]

use std::time::Instant;

use cocoon_engine::cpu::Sequence;
use cocoon_engine::model::{CpuEngine, Model, Target, Weights};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: decode_speed PACK [DEPTH] [SEQS] [THREADS]");
        std::process::exit(2);
    };
    let arg = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a whole number"))
    };
    let (depth, seqs, threads) = (arg(2, 128), arg(3, 8), arg(4, 1));
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let pack = std::fs::read(path).expect("reading the pack");
    let model = Model::load_with(&pack, (Target::Cpu, "cpu".into()), CpuEngine::Native)
        .expect("loading the pack");
    let Some(Weights::Native(first)) = model.checkout() else {
        panic!("the native path does not take this model")
    };
    let engine = first.engine().clone();
    let prompt: Vec<u32> = (0..depth as u32).map(|i| 100 + i * 7).collect();
    let mut all: Vec<Sequence> = (0..seqs)
        .map(|_| {
            let mut s = Sequence::new(engine.clone());
            s.forward(&prompt, 0).expect("the prompt");
            s
        })
        .collect();
    let steps = 64;
    let mut best = f64::MAX;
    for s in all.iter_mut() {
        let t = Instant::now();
        for i in 0..steps {
            s.forward(&[5], depth + i).expect("a step");
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{}: depth {depth}, best of {seqs}: {:.1} tok/s ({:.3} ms a step)",
        model.engine,
        steps as f64 / best,
        best / steps as f64 * 1e3
    );
}
