//! A decode step of several sequences in one pass (`forward_batch`) gives
//! each sequence exactly the logits it gets alone: the same kernels on the
//! same rows, each row attending only to its own cache. And a batch that
//! cannot run leaves every cache as it was.

use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, gguf_file};
use cocoon_engine::cpu::{Engine, Sequence, forward_batch, weights::Weights};

mod common;

use common::{VOCAB, gguf};

fn engine(arch: &str, dtype: GgmlDType, threads: usize) -> Arc<Engine> {
    let bytes = gguf(arch, dtype);
    let ct = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
    Arc::new(Engine::new(
        Weights::load(&ct, &bytes, arch).unwrap(),
        threads,
    ))
}

/// Prompts of different lengths, so the sequences sit at different
/// positions when they are batched.
const PROMPTS: [&[u32]; 3] = [&[1, 17, 42, 99, 250], &[3], &[7, 300, 12, 5, 9, 11, 13, 2]];
const STEPS: [[u32; 3]; 4] = [[5, 6, 7], [77, 78, 79], [311, 0, 1], [0, 0, 0]];

fn prefilled(e: &Arc<Engine>) -> Vec<Sequence> {
    PROMPTS
        .iter()
        .map(|p| {
            let mut s = Sequence::new(e.clone());
            s.forward(p, 0).unwrap();
            s
        })
        .collect()
}

/// And the same logits, to the bit, whatever the number of threads: how
/// the rows are split into chunks and groups of four changes nothing.
#[test]
fn a_batch_gives_each_sequence_its_own_logits_to_the_bit() {
    for arch in ["llama", "qwen2", "qwen3"] {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let mut first: Option<Vec<Vec<Vec<f32>>>> = None;
            for threads in [1, 2, 3] {
                let mut all = Vec::new();
                let e = engine(arch, dtype, threads);
                let mut alone = prefilled(&e);
                let mut batched = prefilled(&e);
                for (step, tokens) in STEPS.iter().enumerate() {
                    let want: Vec<Vec<f32>> = alone
                        .iter_mut()
                        .zip(tokens)
                        .zip(PROMPTS)
                        .map(|((s, &t), p)| s.forward(&[t], p.len() + step).unwrap())
                        .collect();
                    let mut refs: Vec<&mut Sequence> = batched.iter_mut().collect();
                    let got = forward_batch(&mut refs, tokens).unwrap();
                    assert_eq!(got, want, "{arch} {dtype:?} {threads} threads, step {step}");
                    all.push(got);
                }
                match &first {
                    None => first = Some(all),
                    Some(f) => assert!(
                        *f == all,
                        "{arch} {dtype:?}: {threads} threads differ from 1"
                    ),
                }
            }
        }
    }
}

#[test]
fn a_batch_that_cannot_run_changes_no_cache() {
    let e = engine("llama", GgmlDType::Q8_0, 2);
    let mut alone = prefilled(&e);
    let mut batched = prefilled(&e);
    {
        let mut refs: Vec<&mut Sequence> = batched.iter_mut().collect();
        let err = forward_batch(&mut refs, &[1, VOCAB as u32, 2]).unwrap_err();
        assert!(err.contains("vocabulary"), "{err}");
        let err = forward_batch(&mut refs, &[1, 2]).unwrap_err();
        assert!(err.contains("2 tokens for 3 sequences"), "{err}");
        assert!(forward_batch(&mut [], &[]).is_err());
    }
    // Another engine's sequence in the batch.
    let other = engine("llama", GgmlDType::Q8_0, 2);
    let mut stranger = Sequence::new(other);
    stranger.forward(&[4], 0).unwrap();
    {
        let (first, _) = batched.split_at_mut(1);
        let mut refs: Vec<&mut Sequence> = vec![&mut first[0], &mut stranger];
        let err = forward_batch(&mut refs, &[1, 2]).unwrap_err();
        assert!(err.contains("different engines"), "{err}");
    }
    // Every sequence goes on as if nothing had been tried.
    let want: Vec<Vec<f32>> = alone
        .iter_mut()
        .zip(PROMPTS)
        .map(|(s, p)| s.forward(&[8], p.len()).unwrap())
        .collect();
    let mut refs: Vec<&mut Sequence> = batched.iter_mut().collect();
    assert_eq!(forward_batch(&mut refs, &[8, 8, 8]).unwrap(), want);
}
