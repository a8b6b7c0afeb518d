//! Host mode: the same binary, started as an ordinary process instead of
//! as PID 1, runs the same engine and server on the host. Tests compare the
//! guest's answers with it, and the benchmarks time it against llama.cpp,
//! so "the same engine on the host" is the very code the image runs.
//!
//! ```text
//! cocoon-guest serve    --pack FILE [--port N] [--cert-out FILE] [--max-active N] [--max-queued N]
//! cocoon-guest generate --pack FILE (--chat TEXT [--system TEXT] | --prompt TEXT) [--max-tokens N] [--temperature T] [--seed N]
//! cocoon-guest tokenize --pack FILE --text TEXT
//! cocoon-guest bench    --pack FILE [--prompt-tokens N] [--gen-tokens N] [--reps N]
//! ```
//! `--threads N` (any command) sets the engine's thread count.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cocoon_engine::generate::{SamplingParams, generate};
use cocoon_engine::model::Model;
use cocoon_engine::scheduler::Limits;
use cocoon_engine::template::ChatMessage;
use cocoon_engine::tokenizer::Segment;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::AppState;

pub const DEFAULT_LIMITS: Limits = Limits {
    max_active: 4,
    max_queued: 32,
};

struct Args {
    command: String,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse(argv: &[String]) -> Result<Args> {
        let command = argv.first().cloned().unwrap_or_default();
        let mut flags = HashMap::new();
        let mut it = argv.iter().skip(1);
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .with_context(|| format!("unexpected argument {flag:?}"))?;
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            flags.insert(name.to_string(), value.clone());
        }
        Ok(Args { command, flags })
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }
    fn require(&self, name: &str) -> Result<&str> {
        self.get(name)
            .with_context(|| format!("{} needs --{name}", self.command))
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("--{name} {v:?} is not a number")),
        }
    }
}

/// Reads, hashes and loads a pack file. With `timed` (the benchmark) it
/// also reads it a second time, while hashing as the guest does, to time
/// verification against a plain read; the other commands read it once.
fn load(path: &str, timed: bool) -> Result<(Arc<Model>, serde_json::Value)> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {path}"))?
        .len();
    let t = Instant::now();
    let mut bytes = cocoon_engine::verify::read_unverified(std::fs::File::open(path)?, size)?;
    let read_s = t.elapsed().as_secs_f64();
    let sha = hex::encode(Sha256::digest(&bytes));
    let mut info = json!({"sha256": sha, "size": size});
    if timed {
        drop(bytes);
        let t = Instant::now();
        bytes = cocoon_engine::verify::read_verified(std::fs::File::open(path)?, size, &sha)?;
        info["read_s"] = json!(read_s);
        info["read_verify_s"] = json!(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let model = Model::load(&bytes).with_context(|| format!("loading {path}"))?;
    info["parse_s"] = json!(t.elapsed().as_secs_f64());
    info["device"] = json!(model.device_name);
    Ok((Arc::new(model), info))
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub fn main(argv: &[String]) -> Result<()> {
    let args = Args::parse(argv)?;
    if let Some(n) = args.get("threads") {
        let n: usize = n.parse().context("--threads takes a number")?;
        // SAFETY: set before any other thread exists (candle reads it when
        // its thread pool starts).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    match args.command.as_str() {
        "serve" => serve(&args),
        "generate" => generate_cmd(&args),
        "tokenize" => {
            let (model, _) = load(args.require("pack")?, false)?;
            let ids = model
                .tokenizer
                .encode(&[Segment::Content(args.require("text")?)]);
            println!("{}", json!(ids));
            Ok(())
        }
        "bench" => bench(&args),
        other => bail!(
            "cocoon-guest is the image's /init; as a host program it takes serve, generate, tokenize or bench (got {other:?})"
        ),
    }
}

fn params(args: &Args) -> Result<SamplingParams> {
    Ok(SamplingParams {
        temperature: args.num("temperature", 0.0)?,
        top_p: args.get("top-p").map(str::parse).transpose()?,
        top_k: args.get("top-k").map(str::parse).transpose()?,
        seed: args.num("seed", 0)?,
        max_tokens: args.num("max-tokens", 64)?,
        stop: args
            .get("stop")
            .map(|s| vec![s.to_string()])
            .unwrap_or_default(),
    })
}

fn prompt_tokens(model: &Model, args: &Args) -> Result<Vec<u32>> {
    if let Some(chat) = args.get("chat") {
        let mut messages = Vec::new();
        if let Some(system) = args.get("system") {
            messages.push(ChatMessage {
                role: "system".into(),
                content: system.into(),
            });
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: chat.into(),
        });
        let specials = model.tokenizer.special_texts();
        let specials: Vec<&str> = specials.iter().map(String::as_str).collect();
        let rendered = model.template.render(&messages, &specials)?;
        return Ok(model.tokenizer.encode(&rendered.segments()));
    }
    Ok(model
        .tokenizer
        .encode(&[Segment::Content(args.require("prompt")?)]))
}

fn generate_cmd(args: &Args) -> Result<()> {
    let (model, _) = load(args.require("pack")?, false)?;
    let prompt = prompt_tokens(&model, args)?;
    let g = generate(&model, prompt, params(args)?)?;
    println!(
        "{}",
        json!({
            "text": g.text, "finish_reason": g.finish.as_str(),
            "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "time_to_first_token_s": g.time_to_first_token.as_secs_f64(), "decode_tokens_per_s": g.decode_rate(),
        })
    );
    Ok(())
}

/// Prefill and decode rates for a synthetic prompt of `--prompt-tokens`
/// tokens and `--gen-tokens` generated tokens (greedy, no early stop),
/// the same shape llama-bench measures (`-p N -n M`).
fn bench(args: &Args) -> Result<()> {
    let (model, load_info) = load(args.require("pack")?, true)?;
    let n_prompt: usize = args.num("prompt-tokens", 128)?;
    let n_gen: usize = args.num("gen-tokens", 64)?;
    let reps: usize = args.num("reps", 3)?;
    let text =
        "The quick brown fox jumps over the lazy dog while the cat watches from the window. ";
    let unit = model.tokenizer.encode(&[Segment::Content(text)]);
    let prompt: Vec<u32> = unit.iter().copied().cycle().take(n_prompt).collect();
    let mut runs = Vec::new();
    for _ in 0..reps {
        let mut seq = cocoon_engine::generate::Sequence::new(
            model.clone(),
            prompt.clone(),
            SamplingParams {
                max_tokens: n_gen,
                ..Default::default()
            },
        )?;
        seq.ignore_end_tokens();
        let t = Instant::now();
        seq.step()?;
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut generated = 0;
        while seq.finished.is_none() {
            seq.step()?;
            generated += 1;
        }
        let decode = t.elapsed().as_secs_f64();
        runs.push(json!({
            "prefill_tokens_per_s": n_prompt as f64 / prefill,
            "time_to_first_token_s": prefill,
            "decode_tokens_per_s": generated as f64 / decode,
        }));
    }
    println!(
        "{}",
        json!({
            "engine": "cocoon", "threads": candle_core::utils::get_num_threads(),
            "prompt_tokens": n_prompt, "gen_tokens": n_gen, "runs": runs,
            "load": load_info, "peak_rss_bytes": peak_rss_bytes(),
        })
    );
    Ok(())
}

fn serve(args: &Args) -> Result<()> {
    let (model, info) = load(args.require("pack")?, false)?;
    let port: u16 = args.num("port", 8443)?;
    let limits = Limits {
        max_active: args.num("max-active", DEFAULT_LIMITS.max_active)?,
        max_queued: args.num("max-queued", DEFAULT_LIMITS.max_queued)?,
    };
    let attester = std::sync::Arc::new(crate::attest::Attester::host_mode());
    let identity = crate::tls::Identity::generate(&attester)?;
    if let Some(out) = args.get("cert-out") {
        std::fs::write(out, &identity.cert_pem).with_context(|| format!("writing {out}"))?;
    }
    crate::console::event(
        "model",
        &[("id", model.header.name.clone().into()), ("load", info)],
    );
    let state = AppState::new(Some(model), limits, attester);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send("interrupted".to_string()).await;
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        crate::server::serve(addr, identity, crate::api::router(state), rx).await
    })
}
