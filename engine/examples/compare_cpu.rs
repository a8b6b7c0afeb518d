//! The native CPU path against candle's on one pack: greedy tokens, the
//! prompt's logits, and decode speed.
//! `cargo run --release -p cocoon-engine --example compare_cpu -- PACK [N]`

use std::time::Instant;

use candle_core::Device;
use cocoon_engine::model::{CpuEngine, Model, Target};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pack = std::fs::read(&args[1]).expect("reading the pack");
    let n: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(32);
    let prompt: Vec<u32> = vec![1, 28, 3, 4437, 198, 2683, 314, 253, 5356, 30, 2];
    for which in [CpuEngine::Native, CpuEngine::Candle] {
        let t = Instant::now();
        let model = Model::load_with(&pack, (Target::Cpu, "cpu".into()), which).unwrap();
        let load = t.elapsed();
        let mut w = model.checkout().unwrap();
        let input = candle_core::Tensor::new(prompt.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let t = Instant::now();
        let logits: Vec<f32> = w
            .forward(&input, 0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let prefill = t.elapsed();
        let argmax = |l: &[f32]| {
            l.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32
        };
        let mut tok = argmax(&logits);
        let mut toks = vec![tok];
        let t = Instant::now();
        for i in 0..n {
            let input = candle_core::Tensor::new(&[tok], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let l: Vec<f32> = w
                .forward(&input, prompt.len() + i)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            tok = argmax(&l);
            toks.push(tok);
        }
        let dec = t.elapsed();
        println!(
            "{:<28} load {:>6.0} ms  prefill {:>6.1} ms  decode {:>6.1} tok/s  logits[0..4] {:?}\n  tokens {:?}",
            model.engine,
            load.as_secs_f64() * 1e3,
            prefill.as_secs_f64() * 1e3,
            n as f64 / dec.as_secs_f64(),
            &logits[..4],
            toks
        );
    }
}
