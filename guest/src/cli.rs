//! Host mode: the same binary, started as an ordinary process instead of
//! as PID 1, runs the same engine and server on the host. Tests compare the
//! guest's answers with it, and the benchmarks time it against llama.cpp,
//! so "the same engine on the host" is the very code the image runs.
//!
//! ```text
//! cocoon-guest serve    --pack FILE [--port N] [--cert-out FILE] [--max-active N] [--max-queued N]
//! cocoon-guest generate --pack FILE (--chat TEXT [--system TEXT] | --prompt TEXT) [--max-tokens N] [--temperature T] [--seed N]
//! cocoon-guest tokenize --pack FILE --text TEXT
//! cocoon-guest bench    --pack FILE [--prompt-tokens N] [--gen-tokens N] [--reps N] [--warmup N] [--probe-steps N]
//!                       [--first-tokens N] [--concurrency 1,8,32] [--concurrent-gen-tokens N] [--concurrent-reps N]
//!                       [--time-verify false] [--logits-out FILE]
//! cocoon-guest synth-gguf --shape NAME [--quant q4_0|q4_1|q8_0] --gguf FILE [--pack FILE]
//! cocoon-guest gpu-probe [--nonce HEX]    # NVML's view of this host's GPUs, JSON
//! ```
//! `--threads N` (any command) sets the engine's thread count; `--device
//! cpu|cuda|auto` (commands that load a pack) where it runs (default auto:
//! CUDA if this build has it and a GPU answers); `--cpu-engine
//! native|candle` which implementation runs there (default native: the
//! engine's own, `cocoon_engine::cpu` or, on a GPU, `cocoon_engine::cuda`;
//! candle's is kept to compare against).

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
fn load(args: &Args, timed: bool) -> Result<(Arc<Model>, serde_json::Value)> {
    let path = args.require("pack")?;
    let device = cocoon_engine::model::device_named(args.get("device").unwrap_or("auto"))
        .map_err(anyhow::Error::msg)?;
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {path}"))?
        .len();
    let t = Instant::now();
    let mut bytes = cocoon_engine::verify::read_unverified(std::fs::File::open(path)?, size)?;
    let read_s = t.elapsed().as_secs_f64();
    let hash = cocoon_image::packhash::of_bytes(&bytes);
    let mut info = json!({"pack_hash": cocoon_image::packhash::display(&hash), "size": size});
    if timed {
        drop(bytes);
        let t = Instant::now();
        bytes = cocoon_engine::verify::read_verified(&std::fs::File::open(path)?, size, &hash)?;
        info["read_s"] = json!(read_s);
        info["read_verify_s"] = json!(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let cpu_engine =
        cocoon_engine::model::CpuEngine::named(args.get("cpu-engine").unwrap_or("native"))
            .map_err(anyhow::Error::msg)?;
    let model =
        Model::load_with(&bytes, device, cpu_engine).with_context(|| format!("loading {path}"))?;
    info["parse_s"] = json!(t.elapsed().as_secs_f64());
    info["device"] = json!(model.device_name);
    info["engine"] = json!(model.engine);
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
            let (model, _) = load(&args, false)?;
            let ids = model
                .tokenizer
                .encode(&[Segment::Content(args.require("text")?)]);
            println!("{}", json!(ids));
            Ok(())
        }
        "bench" => bench(&args),
        "synth-gguf" => synth_gguf(&args),
        "gpu-probe" => {
            let out = crate::gpu::probe::run(args.get("nonce"))?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        other => bail!(
            "cocoon-guest is the image's /init; as a host program it takes serve, generate, tokenize, bench, synth-gguf or gpu-probe (got {other:?})"
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
    let (model, _) = load(args, false)?;
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
/// the same shape llama-bench measures (`-p N -n M`). One untimed warm-up
/// run comes first (`--warmup 0` skips it), so one-time costs (CUDA
/// modules, cuBLAS handles) stay out of the figures; its time to first
/// token is reported apart as the cold one. The tokens of the first timed
/// run are printed, to compare devices. `--concurrency 1,8,32` also runs
/// 8 and then 32 sequences at once through the server's scheduler
/// (`--concurrent-gen-tokens` each, `--concurrent-reps` times).
fn bench(args: &Args) -> Result<()> {
    let time_verify = !matches!(args.get("time-verify"), Some("false" | "0"));
    let (model, load_info) = load(args, time_verify)?;
    let n_prompt: usize = args.num("prompt-tokens", 128)?;
    let n_gen: usize = args.num("gen-tokens", 64)?;
    let reps: usize = args.num("reps", 3)?;
    let levels: Vec<usize> = args
        .get("concurrency")
        .unwrap_or("1")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("--concurrency takes numbers separated by commas (1,8,32)")?;
    let conc_gen: usize = args.num("concurrent-gen-tokens", n_gen)?;
    let conc_reps: usize = args.num("concurrent-reps", 1)?;
    let text =
        "The quick brown fox jumps over the lazy dog while the cat watches from the window. ";
    let unit = model.tokenizer.encode(&[Segment::Content(text)]);
    let prompt: Vec<u32> = unit.iter().copied().cycle().take(n_prompt).collect();
    let mut cold = serde_json::Value::Null;
    if args.num("warmup", 1)? > 0 {
        let warm = bench_one(&model, &prompt, n_gen.min(4))?;
        cold = warm["time_to_first_token_s"].clone();
    }
    // The first greedy token after each of N different prompts (the
    // text's tokens from N different offsets): a comparison of devices
    // over many inputs, where one long greedy run of a random-weight model
    // soon repeats a single token.
    let mut first_tokens = Vec::new();
    for i in 0..args.num("first-tokens", 0)? {
        let p: Vec<u32> = unit.iter().copied().cycle().skip(i * 7).take(32).collect();
        let mut seq = cocoon_engine::generate::Sequence::new(
            model.clone(),
            p,
            SamplingParams {
                max_tokens: 1,
                ..Default::default()
            },
        )?;
        seq.step()?;
        first_tokens.extend(seq.last_token);
    }
    let probe = match args.num("probe-steps", 0)? {
        0 => serde_json::Value::Null,
        n => probe_enqueue(&model, &prompt, n, args.get("logits-out"))?,
    };
    let mut runs = Vec::new();
    let mut tokens = serde_json::Value::Null;
    let mut concurrent = Vec::new();
    for &n in &levels {
        if n <= 1 {
            for _ in 0..reps {
                let mut run = bench_one(&model, &prompt, n_gen)?;
                if let Some(t) = run.as_object_mut().and_then(|o| o.remove("tokens"))
                    && tokens.is_null()
                {
                    tokens = t;
                }
                runs.push(run);
            }
        } else {
            let level_runs = (0..conc_reps)
                .map(|_| bench_concurrent(&model, &prompt, conc_gen, n))
                .collect::<Result<Vec<_>>>()?;
            concurrent.push(json!({"concurrency": n, "gen_tokens": conc_gen, "runs": level_runs}));
        }
    }
    println!(
        "{}",
        json!({
            "engine": "cocoon", "threads": candle_core::utils::get_num_threads(),
            "device": model.device_name, "prompt_tokens": n_prompt, "gen_tokens": n_gen,
            "cold_time_to_first_token_s": cold, "runs": runs, "tokens": tokens,
            "concurrent": concurrent,
            "enqueue_probe": probe, "first_tokens": first_tokens,
            "load": load_info, "peak_rss_bytes": peak_rss_bytes(),
        })
    );
    Ok(())
}

/// One sequence on this thread, step by step. Each step ends by copying
/// the logits to the host to sample, so on a GPU the clock reads come
/// after the device has finished.
fn bench_one(model: &Arc<Model>, prompt: &[u32], n_gen: usize) -> Result<serde_json::Value> {
    let mut seq = cocoon_engine::generate::Sequence::new(
        model.clone(),
        prompt.to_vec(),
        SamplingParams {
            max_tokens: n_gen,
            ..Default::default()
        },
    )?;
    seq.ignore_end_tokens();
    let t = Instant::now();
    seq.step()?;
    let prefill = t.elapsed().as_secs_f64();
    let mut tokens: Vec<u32> = seq.last_token.into_iter().collect();
    let t = Instant::now();
    let mut generated = 0;
    while seq.finished.is_none() {
        seq.step()?;
        tokens.extend(seq.last_token);
        generated += 1;
    }
    let decode = t.elapsed().as_secs_f64();
    Ok(json!({
        "prefill_tokens_per_s": prompt.len() as f64 / prefill,
        "time_to_first_token_s": prefill,
        "decode_tokens_per_s": generated as f64 / decode,
        "tokens": tokens,
    }))
}

/// Where a decode step's time goes on a GPU, without a profiler: the time
/// for `forward` to return (the host building the graph and enqueueing
/// every kernel; on CUDA nothing in it waits for the device) against the
/// time until the device has finished too. When the two are close the GPU
/// sits idle waiting for launches (the step is host-bound); when the
/// enqueue is short the step is bound by the kernels themselves.
///
/// With `logits_out`, the prompt's logits and every step's are written
/// there one after another (f32, little-endian), to compare devices or
/// implementations value by value.
fn probe_enqueue(
    model: &Arc<Model>,
    prompt: &[u32],
    steps: usize,
    logits_out: Option<&str>,
) -> Result<serde_json::Value> {
    use candle_core::Tensor;
    let dev = &model.device;
    let mut w = model
        .checkout()
        .context("the model is busy with another sequence")?;
    let result = (|| -> Result<serde_json::Value> {
        let input = Tensor::new(prompt, dev)?.unsqueeze(0)?;
        let logits: Vec<f32> = w
            .forward(&input, 0)?
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        // The prompt's logits, to compare devices by value: the largest
        // eight and the size of the whole vector.
        let mut top: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(8);
        let norm = logits
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let mut all = logits.clone();
        let (mut enqueue, mut step) = (Vec::new(), Vec::new());
        for i in 0..steps {
            let t = Instant::now();
            let input = Tensor::new(&[prompt[i % prompt.len()]], dev)?.unsqueeze(0)?;
            let logits = w.forward(&input, prompt.len() + i)?;
            enqueue.push(t.elapsed().as_secs_f64());
            dev.synchronize()?;
            step.push(t.elapsed().as_secs_f64());
            if logits_out.is_some() {
                all.extend(
                    logits
                        .flatten_all()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_vec1::<f32>()?,
                );
            }
        }
        if let Some(path) = logits_out {
            let bytes: Vec<u8> = all.iter().flat_map(|x| x.to_le_bytes()).collect();
            std::fs::write(path, bytes).with_context(|| format!("writing {path}"))?;
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Ok(json!({
            "prompt_logits_top8": top, "prompt_logits_l2": norm,
            "steps": steps,
            "median_enqueue_s": median(enqueue),
            "median_step_s": median(step),
        }))
    })();
    model.give_back(w);
    result
}

/// `n` sequences submitted at once to the server's scheduler (one token
/// per sequence per round; on the engine's own CPU path a round's decode
/// steps are one batched pass over the weights, on candle each token is
/// its own pass).
/// Aggregate rate = all completion tokens over the wall time from
/// submission to the last `Done`; the decode-only rate leaves out the
/// first round (every sequence's prefill).
fn bench_concurrent(
    model: &Arc<Model>,
    prompt: &[u32],
    n_gen: usize,
    n: usize,
) -> Result<serde_json::Value> {
    use cocoon_engine::scheduler::{Event, Job, Scheduler};

    use std::sync::atomic::Ordering::Relaxed;
    let scheduler = Scheduler::start(
        model.clone(),
        Limits {
            max_active: n,
            max_queued: n,
        },
    );
    let start = Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..n {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        scheduler
            .submit(Job {
                prompt: prompt.to_vec(),
                params: SamplingParams {
                    max_tokens: n_gen,
                    ..Default::default()
                },
                events: tx,
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        waiters.push(std::thread::spawn(move || -> Result<usize, String> {
            while let Some(ev) = rx.blocking_recv() {
                match ev {
                    Event::Done {
                        completion_tokens, ..
                    } => return Ok(completion_tokens),
                    Event::Error(e) => return Err(e),
                    Event::Text(_) => {}
                }
            }
            Err("the engine stopped".into())
        }));
    }
    let mut total = 0;
    for w in waiters {
        total += w
            .join()
            .map_err(|_| anyhow::anyhow!("a waiter panicked"))?
            .map_err(anyhow::Error::msg)?;
    }
    let wall = start.elapsed().as_secs_f64();
    let m = &scheduler.metrics;
    let ttft_mean = m.ttft_us.load(Relaxed) as f64 / m.ttft_count.load(Relaxed).max(1) as f64 / 1e6;
    let ttft_max = m.ttft_max_us.load(Relaxed) as f64 / 1e6;
    Ok(json!({
        "aggregate_tokens_per_s": total as f64 / wall,
        "decode_aggregate_tokens_per_s": total.saturating_sub(n) as f64 / (wall - ttft_max).max(1e-9),
        "time_to_first_token_s": ttft_mean,
        "max_time_to_first_token_s": ttft_max,
        "completion_tokens": total,
        "wall_s": wall,
    }))
}

/// Writes a synthetic-weight GGUF of a real model's shape (and, with
/// `--pack`, its model pack): the GPU benchmark makes its models on the
/// device machine itself, since an 8B file is too large to carry there.
fn synth_gguf(args: &Args) -> Result<()> {
    use cocoon_image::synth_gguf::{self, Quant};
    let name = args.require("shape")?;
    let shape = synth_gguf::shape(name).with_context(|| {
        let names: Vec<&str> = synth_gguf::SHAPES.iter().map(|s| s.name).collect();
        format!("no shape {name:?} (shapes: {})", names.join(", "))
    })?;
    let quant_name = args.get("quant").unwrap_or("q4_0");
    let quant = Quant::parse(quant_name).context("--quant takes q4_0, q4_1 or q8_0")?;
    let gguf = std::path::PathBuf::from(args.require("gguf")?);
    let t = Instant::now();
    let w = synth_gguf::write(shape, quant, &gguf)?;
    let write_s = t.elapsed().as_secs_f64();
    let (sha, _) = cocoon_image::digest::Sha256::of_file(&gguf)?;
    let mut out = json!({
        "shape": shape.name, "quant": quant_name, "gguf": gguf, "bytes": w.bytes,
        "sha256": sha.to_hex(), "decode_bytes_per_token": w.decode_bytes_per_token,
        "write_s": write_s,
    });
    if let Some(pack) = args.get("pack") {
        let opts = cocoon_image::modelpack::PackOptions {
            name: Some(format!("synth-{}-{quant_name}", shape.name)),
            ..Default::default()
        };
        let hash = cocoon_image::modelpack::write(&gguf, &opts, std::path::Path::new(pack))?;
        out["pack_hash"] = json!(cocoon_image::packhash::display(&hash));
    }
    println!("{out}");
    Ok(())
}

fn serve(args: &Args) -> Result<()> {
    let (model, info) = load(args, false)?;
    let port: u16 = args.num("port", 8443)?;
    let limits = Limits {
        max_active: args.num("max-active", DEFAULT_LIMITS.max_active)?,
        max_queued: args.num("max-queued", DEFAULT_LIMITS.max_queued)?,
    };
    let attester = std::sync::Arc::new(crate::attest::Attester::host_mode());
    let identity = crate::tls::Identity::generate(&attester, None)?;
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
