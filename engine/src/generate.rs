//! One generation: prefill the prompt, then one token per step, with the
//! request's sampling, stop sequences and token budget. The KV cache lives
//! in the sequence's own [`Weights`], so each step only runs the new token.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::model::{Model, Weights};
use crate::tokenizer::TokenId;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy (argmax).
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
        }
    }
}

impl SamplingParams {
    fn sampling(&self) -> Sampling {
        if self.temperature <= 0.0 {
            return Sampling::ArgMax;
        }
        let temperature = self.temperature;
        let p = self.top_p.filter(|p| *p < 1.0);
        let k = self.top_k.filter(|k| *k > 0);
        match (k, p) {
            (None, None) => Sampling::All { temperature },
            (Some(k), None) => Sampling::TopK { k, temperature },
            (None, Some(p)) => Sampling::TopP { p, temperature },
            (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn or a stop sequence matched.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What one step produced.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Text that is now final (may be empty while a stop sequence or a
    /// UTF-8 character is still incomplete).
    pub text: String,
    pub finished: Option<FinishReason>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt has {prompt} tokens; this model's context is {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the model is busy with another request")]
    Busy,
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}

pub struct Sequence {
    model: Arc<Model>,
    /// Always `Some` until drop, which hands them back to the model.
    weights: Option<Weights>,
    processor: LogitsProcessor,
    params: SamplingParams,
    /// Tokens not yet run through the model (the prompt, then each new token).
    pending: Vec<TokenId>,
    pos: usize,
    context: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text held back because it may start a stop sequence.
    held: String,
    pub finished: Option<FinishReason>,
    ignore_end: bool,
    /// The token the last step sampled (benchmarks compare them across devices).
    pub last_token: Option<TokenId>,
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints tokens or text: prompts stay out of logs.
        f.debug_struct("Sequence")
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Sequence {
    pub fn new(
        model: Arc<Model>,
        prompt: Vec<TokenId>,
        params: SamplingParams,
    ) -> Result<Self, GenerateError> {
        let context = model.context_length();
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if prompt.len() >= context {
            return Err(GenerateError::PromptTooLong {
                prompt: prompt.len(),
                context,
            });
        }
        let weights = model.checkout().ok_or(GenerateError::Busy)?;
        Ok(Sequence {
            model,
            weights: Some(weights),
            processor: LogitsProcessor::from_sampling(params.seed, params.sampling()),
            prompt_tokens: prompt.len(),
            completion_tokens: 0,
            pending: prompt,
            pos: 0,
            context,
            params,
            partial: Vec::new(),
            held: String::new(),
            finished: None,
            ignore_end: false,
            last_token: None,
        })
    }

    /// Keeps generating through end-of-turn tokens (benchmarks measure a
    /// fixed number of tokens, as llama-bench does).
    pub fn ignore_end_tokens(&mut self) {
        self.ignore_end = true;
    }

    /// Runs the model over the pending tokens and samples one more.
    pub fn step(&mut self) -> Result<Step, GenerateError> {
        if let Some(done) = self.done_without_forward() {
            return Ok(done);
        }
        let input = Tensor::new(self.pending.as_slice(), &self.model.device)?.unsqueeze(0)?;
        let weights = self.weights.as_mut().expect("present until drop");
        let logits = weights.forward(&input, self.pos)?;
        self.sample_from(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }

    /// The step of a sequence that needs no pass over the weights.
    fn done_without_forward(&mut self) -> Option<Step> {
        if let Some(f) = self.finished {
            return Some(Step {
                text: String::new(),
                finished: Some(f),
            });
        }
        if self.params.max_tokens == 0 {
            return Some(self.finish(FinishReason::Length));
        }
        None
    }

    /// The one token this sequence would run next in a batch of decode
    /// steps: past its prompt, on the engine's own CPU path.
    fn batchable(&mut self) -> Option<(TokenId, &mut crate::cpu::Sequence)> {
        match (self.pending.as_slice(), self.weights.as_mut()) {
            (&[token], Some(Weights::Native(seq))) => Some((token, seq)),
            _ => None,
        }
    }

    /// The rest of a step once the pending tokens have run: `logits` are
    /// the last one's.
    fn sample_from(&mut self, logits: Tensor) -> Result<Step, GenerateError> {
        let model = self.model.clone();
        self.pos += self.pending.len();
        let token = self.processor.sample(&logits)?;
        self.last_token = Some(token);
        self.completion_tokens += 1;
        if !self.ignore_end && model.end_tokens.contains(&token) {
            return Ok(self.finish(FinishReason::Stop));
        }
        self.pending = vec![token];
        self.partial.extend(model.tokenizer.token_bytes(token));
        let text = self.take_utf8();
        self.held.push_str(&text);
        if let Some(at) = self
            .params
            .stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            return Ok(self.finish(FinishReason::Stop));
        }
        if self.completion_tokens >= self.params.max_tokens || self.pos + 1 >= self.context {
            return Ok(self.finish(FinishReason::Length));
        }
        // Release everything that cannot be the start of a stop sequence.
        let keep = self
            .params
            .stop
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let release = self.held.len() - keep;
        let out: String = self.held.drain(..release).collect();
        Ok(Step {
            text: out,
            finished: None,
        })
    }

    fn take_utf8(&mut self) -> String {
        match std::str::from_utf8(&self.partial) {
            Ok(s) => {
                let s = s.to_string();
                self.partial.clear();
                s
            }
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: keep it for later.
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.partial[..valid]).into_owned();
                self.partial.drain(..valid);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                s
            }
        }
    }

    fn finish(&mut self, reason: FinishReason) -> Step {
        self.finished = Some(reason);
        let mut text = std::mem::take(&mut self.held);
        if reason == FinishReason::Length && !self.partial.is_empty() {
            text.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.partial)));
        }
        Step {
            text,
            finished: Some(reason),
        }
    }
}

/// One step of every sequence in `seqs`, as [`Sequence::step`] would make
/// it, in order. The sequences that are past their prompt on the engine's
/// own CPU path run as one batch ([`crate::cpu::forward_batch`]: the
/// weights are read once for all of them, and each gets the logits it
/// would get alone); the others (a prompt to prefill, candle's models) run
/// one by one.
pub fn step_all(seqs: &mut [&mut Sequence]) -> Steps {
    let mut results: Vec<Option<Result<Step, GenerateError>>> = seqs
        .iter_mut()
        .map(|s| s.done_without_forward().map(Ok))
        .collect();
    // Which sequences, their tokens and their caches.
    let (mut batch, mut tokens, mut natives) = (Vec::new(), Vec::new(), Vec::new());
    for (i, s) in seqs.iter_mut().enumerate() {
        if results[i].is_none()
            && let Some((token, native)) = s.batchable()
        {
            batch.push(i);
            tokens.push(token);
            natives.push(native);
        }
    }
    if batch.len() > 1 {
        match crate::cpu::forward_batch(&mut natives, &tokens) {
            Ok(all) => {
                for (&i, logits) in batch.iter().zip(all) {
                    let vocab = logits.len();
                    results[i] = Some(
                        Tensor::from_vec(logits, vocab, &Device::Cpu)
                            .map_err(GenerateError::from)
                            .and_then(|l| seqs[i].sample_from(l)),
                    );
                }
            }
            Err(e) => {
                for &i in &batch {
                    results[i] = Some(Err(candle_core::Error::Msg(e.clone()).into()));
                }
            }
        }
    }
    let batched = if batch.len() > 1 { batch.len() } else { 0 };
    let steps = seqs
        .iter_mut()
        .zip(results)
        .map(|(s, r)| r.unwrap_or_else(|| s.step()))
        .collect();
    Steps { steps, batched }
}

/// What [`step_all`] did.
#[derive(Debug)]
pub struct Steps {
    /// One per sequence, in order.
    pub steps: Vec<Result<Step, GenerateError>>,
    /// How many of them ran as one batch (0 when none did).
    pub batched: usize,
}

impl Drop for Sequence {
    fn drop(&mut self) {
        if let Some(w) = self.weights.take() {
            self.model.give_back(w);
        }
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of
/// `stop` (at a character boundary).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

/// A whole completion, with its timings (for the CLI, tests and benchmarks).
#[derive(Debug)]
pub struct Generation {
    pub text: String,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prefill plus the first sampled token.
    pub time_to_first_token: std::time::Duration,
    pub total: std::time::Duration,
}

impl Generation {
    /// Tokens per second after the first token (the decode rate).
    pub fn decode_rate(&self) -> f64 {
        let decode = (self.total - self.time_to_first_token).as_secs_f64();
        (self.completion_tokens.saturating_sub(1)) as f64 / decode.max(1e-9)
    }
}

/// Runs one prompt to the end on the calling thread (the server goes
/// through the scheduler instead).
pub fn generate(
    model: &Arc<Model>,
    prompt: Vec<TokenId>,
    params: SamplingParams,
) -> Result<Generation, GenerateError> {
    let start = Instant::now();
    let mut seq = Sequence::new(model.clone(), prompt, params)?;
    let mut text = String::new();
    let mut first = None;
    loop {
        let step = seq.step()?;
        first.get_or_insert_with(|| start.elapsed());
        text.push_str(&step.text);
        if let Some(finish) = step.finished {
            return Ok(Generation {
                text,
                finish,
                prompt_tokens: seq.prompt_tokens,
                completion_tokens: seq.completion_tokens,
                time_to_first_token: first.unwrap_or_default(),
                total: start.elapsed(),
            });
        }
    }
}
