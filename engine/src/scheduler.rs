//! Serving many requests from one engine thread, fairly.
//!
//! Requests wait in a bounded queue; up to `max_active` run at once, and
//! the engine thread gives each running sequence one token per round, so a
//! long completion never starves a short one. A request whose receiver is
//! gone (the client disconnected) is dropped at its next turn, which stops
//! its generation. The queue bound is checked at submission: beyond it the
//! caller is told to come back later (HTTP 429), never left waiting without
//! limit.
//!
//! On the engine's own CPU path the round's decode steps run as one batch
//! ([`step_all`]): one pass over the weights for every running sequence.
//! candle's quantized models keep their KV cache inside the model, one
//! sequence per instance, so there each sequence is its own pass.
//! BENCHMARKS.md has the figures.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use crate::generate::{FinishReason, GenerateError, SamplingParams, Sequence, step_all};
use crate::model::Model;
use crate::tokenizer::TokenId;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_active: usize,
    pub max_queued: usize,
}

/// What a request's receiver sees, in order: `Text`* then `Done` or `Error`.
#[derive(Debug, PartialEq)]
pub enum Event {
    Text(String),
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Error(String),
}

#[derive(Debug)]
pub struct Job {
    pub prompt: Vec<TokenId>,
    pub params: SamplingParams,
    pub events: UnboundedSender<Event>,
}

/// Counters for `/metrics` (never anything about the text).
#[derive(Debug, Default)]
pub struct Metrics {
    pub queued: AtomicU64,
    pub active: AtomicU64,
    pub rejected: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub completed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// Sum of times to first token, in microseconds, and their count.
    pub ttft_us: AtomicU64,
    pub ttft_count: AtomicU64,
    /// The longest time to first token seen, in microseconds.
    pub ttft_max_us: AtomicU64,
    pub busy_us: AtomicU64,
    /// Passes over the weights that stepped several sequences at once, and
    /// the sequence steps they made.
    pub batched_passes: AtomicU64,
    pub batched_steps: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("too many requests: {0} are running or queued; retry later")]
    Full(u64),
    #[error("the engine has stopped")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Job>,
    limits: Limits,
    pub metrics: Arc<Metrics>,
}

impl Scheduler {
    /// Starts the engine thread.
    pub fn start(model: Arc<Model>, limits: Limits) -> Scheduler {
        let limits = Limits {
            // An architecture that cannot share weights runs one at a time.
            max_active: if model.concurrent() {
                limits.max_active.max(1)
            } else {
                1
            },
            max_queued: limits.max_queued,
        };
        let (tx, rx) = mpsc::channel();
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || run(model, rx, limits, &m))
            .expect("spawning the engine thread");
        Scheduler {
            tx,
            limits,
            metrics,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let in_flight =
            self.metrics.queued.load(Ordering::SeqCst) + self.metrics.active.load(Ordering::SeqCst);
        if in_flight >= (self.limits.max_active + self.limits.max_queued) as u64 {
            self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Full(in_flight));
        }
        self.metrics.queued.fetch_add(1, Ordering::SeqCst);
        self.tx.send(job).map_err(|_| {
            self.metrics.queued.fetch_sub(1, Ordering::SeqCst);
            SubmitError::Stopped
        })
    }
}

struct Running {
    seq: Sequence,
    events: UnboundedSender<Event>,
    started: Instant,
    first_token: bool,
}

fn run(model: Arc<Model>, rx: mpsc::Receiver<Job>, limits: Limits, m: &Metrics) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut running: Vec<Running> = Vec::new();
    loop {
        // Block for work only when there is nothing to run.
        if running.is_empty() && waiting.is_empty() {
            match rx.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        waiting.extend(rx.try_iter());
        while running.len() < limits.max_active
            && let Some(job) = waiting.pop_front()
        {
            if job.events.is_closed() {
                m.queued.fetch_sub(1, Ordering::SeqCst);
                m.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match Sequence::new(model.clone(), job.prompt.clone(), job.params.clone()) {
                Ok(seq) => {
                    m.queued.fetch_sub(1, Ordering::SeqCst);
                    m.active.fetch_add(1, Ordering::SeqCst);
                    running.push(Running {
                        seq,
                        events: job.events,
                        started: Instant::now(),
                        first_token: true,
                    });
                }
                Err(GenerateError::Busy) => {
                    waiting.push_front(job);
                    break;
                }
                Err(e) => {
                    m.queued.fetch_sub(1, Ordering::SeqCst);
                    m.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = job.events.send(Event::Error(e.to_string()));
                }
            }
        }
        let round = Instant::now();
        running.retain_mut(|r| {
            if r.events.is_closed() {
                m.cancelled.fetch_add(1, Ordering::Relaxed);
                m.active.fetch_sub(1, Ordering::SeqCst);
                return false;
            }
            true
        });
        let mut seqs: Vec<&mut Sequence> = running.iter_mut().map(|r| &mut r.seq).collect();
        let round_steps = step_all(&mut seqs);
        if round_steps.batched > 0 {
            m.batched_passes.fetch_add(1, Ordering::Relaxed);
            m.batched_steps
                .fetch_add(round_steps.batched as u64, Ordering::Relaxed);
        }
        let mut steps = round_steps.steps.into_iter();
        running.retain_mut(|r| {
            let step = steps.next().expect("one step per running sequence");
            match step {
                Ok(step) => {
                    if r.first_token {
                        r.first_token = false;
                        let us = r.started.elapsed().as_micros() as u64;
                        m.ttft_us.fetch_add(us, Ordering::Relaxed);
                        m.ttft_max_us.fetch_max(us, Ordering::Relaxed);
                        m.ttft_count.fetch_add(1, Ordering::Relaxed);
                    }
                    if !step.text.is_empty() {
                        let _ = r.events.send(Event::Text(step.text));
                    }
                    match step.finished {
                        None => true,
                        Some(finish) => {
                            m.prompt_tokens
                                .fetch_add(r.seq.prompt_tokens as u64, Ordering::Relaxed);
                            m.completion_tokens
                                .fetch_add(r.seq.completion_tokens as u64, Ordering::Relaxed);
                            m.completed.fetch_add(1, Ordering::Relaxed);
                            m.active.fetch_sub(1, Ordering::SeqCst);
                            let _ = r.events.send(Event::Done {
                                finish,
                                prompt_tokens: r.seq.prompt_tokens,
                                completion_tokens: r.seq.completion_tokens,
                            });
                            false
                        }
                    }
                }
                Err(e) => {
                    m.failed.fetch_add(1, Ordering::Relaxed);
                    m.active.fetch_sub(1, Ordering::SeqCst);
                    let _ = r.events.send(Event::Error(e.to_string()));
                    false
                }
            }
        });
        m.busy_us
            .fetch_add(round.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}
