//! Decode steps of N sequences: one pass each, or one batched pass for all
//! (`cpu::forward_batch`), on the engine alone (no scheduler, no sampling).
//! `cargo run --release -p cocoon-engine --example batch_speed -- PACK [THREADS]`

use std::time::Instant;

use cocoon_engine::cpu::{Sequence, forward_batch};
use cocoon_engine::model::{CpuEngine, Model, Target, Weights};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pack = std::fs::read(&args[1]).expect("reading the pack");
    if let Some(t) = args.get(2) {
        // SAFETY: set before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t) };
    }
    let model = Model::load_with(&pack, (Target::Cpu, "cpu".into()), CpuEngine::Native).unwrap();
    let Some(Weights::Native(first)) = model.checkout() else {
        panic!("the native path does not take this model")
    };
    let engine = first.engine().clone();
    let prompt: Vec<u32> = (0..32).map(|i| 100 + i * 7).collect();
    let steps = 32;
    println!("{}", model.engine);
    for n in [1usize, 2, 4, 8] {
        let mut alone: Vec<Sequence> = (0..n).map(|_| Sequence::new(engine.clone())).collect();
        let mut batched: Vec<Sequence> = (0..n).map(|_| Sequence::new(engine.clone())).collect();
        for s in alone.iter_mut().chain(batched.iter_mut()) {
            s.forward(&prompt, 0).unwrap();
        }
        let t = Instant::now();
        for i in 0..steps {
            for s in alone.iter_mut() {
                s.forward(&[5], prompt.len() + i).unwrap();
            }
        }
        let one_by_one = (n * steps) as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..steps {
            let mut refs: Vec<&mut Sequence> = batched.iter_mut().collect();
            forward_batch(&mut refs, &vec![5; n]).unwrap();
        }
        let together = (n * steps) as f64 / t.elapsed().as_secs_f64();
        println!(
            "{n} sequences: {one_by_one:.1} tok/s one pass each, {together:.1} tok/s batched ({:.2}x)",
            together / one_by_one
        );
    }
}
