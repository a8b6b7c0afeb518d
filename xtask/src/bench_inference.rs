//! `cargo xtask bench-inference`: our engine against llama.cpp on the same
//! GGUF, the same thread count and the same instruction set, in one run.
//!
//! llama.cpp is built from the sources vendored in the pinned
//! `llama-cpp-python` sdist (fetched with pip, checked by sha256), for this
//! machine's CPU (`GGML_NATIVE`: AVX-512 and VNNI where it has them), as
//! our engine picks this CPU's best kernels at run time (until 2026-11-27
//! it was built with AVX2/FMA/F16C only, like the x86-64-v3 guest, when
//! our engine had nothing better either). Both sides run a
//! prompt of `--prompt-tokens` and generate `--gen-tokens` tokens after it
//! (`llama-bench -p P -n 0`, then `-p 0 -n N -d P`: decode at the same
//! depth); runs alternate so that a noisy neighbour hurts both. Our side is the image's own `/init` binary in host
//! mode (`cocoon-guest bench`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cocoon_image::cache::Cache;
use cocoon_image::digest::Sha256;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::progress::Step;
use crate::{build, model};

/// The llama.cpp the comparison is against.
const LLAMA_CPP_PYTHON: &str = "llama-cpp-python==0.3.36";
const LLAMA_CPP_SDIST: &str = "llama_cpp_python-0.3.36.tar.gz";
const LLAMA_CPP_SDIST_SHA256: &str =
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Threads for both engines.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Alternating runs of each engine.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// A llama-bench to use instead of building one from the pinned sdist.
    #[arg(long)]
    llama_bench: Option<PathBuf>,
}

/// The pinned llama-cpp-python sdist (llama.cpp's sources are in it), from
/// the cache or fetched with pip and checked.
pub fn llama_cpp_sdist(sh: &Shell) -> Result<PathBuf> {
    let cache = Cache::open_default()?;
    let want: Sha256 = LLAMA_CPP_SDIST_SHA256.parse().map_err(anyhow::Error::msg)?;
    if let Some(p) = cache.get(&want, LLAMA_CPP_SDIST)? {
        return Ok(p);
    }
    let dl = tempfile::tempdir()?;
    let d = dl.path();
    cmd!(sh, "python3 -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation --dest {d} {LLAMA_CPP_PYTHON}")
        .run()
        .or_else(|_| cmd!(sh, "python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --dest {d} {LLAMA_CPP_PYTHON}").run())
        .context("pip could not download the llama-cpp-python sdist")?;
    Ok(cache.put_file(&d.join(LLAMA_CPP_SDIST), &want, LLAMA_CPP_SDIST)?)
}

/// `llama-bench`, built once for this CPU into target/cocoon/llama.cpp.
fn llama_bench(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/cocoon/llama.cpp");
    let bin = dir.join("build-native/bin/llama-bench");
    if bin.is_file() {
        return Ok(bin);
    }
    let sdist = llama_cpp_sdist(sh)?;
    let step = Step::start("building llama.cpp (llama-bench) from the llama-cpp-python sdist");
    let src = dir.join("src");
    if !src.join("CMakeLists.txt").is_file() {
        std::fs::create_dir_all(&src)?;
        cmd!(
            sh,
            "tar -xzf {sdist} -C {src} --strip-components=3 llama_cpp_python-0.3.36/vendor/llama.cpp"
        )
        .run()?;
    }
    let build = dir.join("build-native");
    cmd!(
        sh,
        "cmake -S {src} -B {build} -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .context("configuring llama.cpp (is cmake installed? `cargo xtask setup` installs it)")?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .to_string();
    cmd!(sh, "cmake --build {build} -j {jobs} --target llama-bench")
        .quiet()
        .ignore_stdout()
        .run()?;
    step.done(&bin.display().to_string());
    Ok(bin)
}

fn run_json(cmd: &mut Command) -> Result<Value> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{cmd:?} printed no JSON"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let pack = model::default_pack(sh, root)?;
    let gguf = model::fetch_gguf(sh, root, model::DEFAULT_MODEL)?;
    // The guest binary as the image has it.
    build::run(
        sh,
        root,
        &build::Args {
            profile: "cpu".into(),
            out: None,
            model: Some(pack.clone()),
        },
    )?;
    let guest = crate::guest::built_binary(root, cocoon_image::profile::CPU.init);
    let bench = match &args.llama_bench {
        Some(b) => b.clone(),
        None => llama_bench(sh, root)?,
    };
    let (p, n, t) = (
        args.prompt_tokens.to_string(),
        args.gen_tokens.to_string(),
        args.threads.to_string(),
    );
    // Ours twice: the engine's own CPU path (what the image serves with)
    // and candle-transformers' (what it served with before), so the table
    // shows what the native path bought.
    let engines = ["native", "candle"];
    let mut ours: Vec<Runs> = engines.iter().map(|_| Runs::default()).collect();
    let (mut theirs_pp, mut theirs_tg) = (vec![], vec![]);
    let mut rss = 0u64;
    let mut load = Value::Null;
    for rep in 0..args.reps {
        eprintln!("xtask: run {}/{}", rep + 1, args.reps);
        for (engine, runs) in engines.iter().zip(ours.iter_mut()) {
            let out = run_json(
                Command::new(&guest)
                    .args(["bench", "--pack"])
                    .arg(&pack)
                    .args([
                        "--prompt-tokens",
                        &p,
                        "--gen-tokens",
                        &n,
                        "--reps",
                        "1",
                        "--threads",
                        &t,
                        "--cpu-engine",
                        engine,
                    ]),
            )?;
            let r = &out["runs"][0];
            runs.pp
                .push(r["prefill_tokens_per_s"].as_f64().unwrap_or(0.0));
            runs.tg
                .push(r["decode_tokens_per_s"].as_f64().unwrap_or(0.0));
            runs.ttft
                .push(r["time_to_first_token_s"].as_f64().unwrap_or(0.0));
            if *engine == "native" {
                rss = rss.max(out["peak_rss_bytes"].as_u64().unwrap_or(0));
                load = out["load"].clone();
            }
        }
        // Their prompt from an empty cache, and their decode after a cache
        // of the prompt's length, where ours decodes: `-p P -n N` alone
        // times generation from an empty cache, which skips the attention
        // over P positions that every one of our decode steps pays (this
        // command compared those two until 2026-11-27).
        let prompt = run_json(
            Command::new(&bench)
                .arg("-m")
                .arg(&gguf)
                .args(["-p", &p, "-n", "0", "-t", &t, "-r", "1", "-o", "json"]),
        )?;
        let decode = run_json(Command::new(&bench).arg("-m").arg(&gguf).args([
            "-p", "0", "-n", &n, "-d", &p, "-t", &t, "-r", "1", "-o", "json",
        ]))?;
        let tests = |v: &Value| v.as_array().cloned().unwrap_or_default();
        for test in tests(&prompt).into_iter().chain(tests(&decode)) {
            let ts = test["avg_ts"].as_f64().unwrap_or(0.0);
            if test["n_prompt"].as_u64() == Some(args.prompt_tokens as u64)
                && test["n_gen"].as_u64() == Some(0)
            {
                theirs_pp.push(ts);
            } else if test["n_gen"].as_u64() == Some(args.gen_tokens as u64)
                && test["n_depth"].as_u64() == Some(args.prompt_tokens as u64)
            {
                theirs_tg.push(ts);
            }
        }
    }
    if theirs_pp.is_empty() || theirs_tg.is_empty() {
        bail!("llama-bench printed no prompt or generation result");
    }
    let [native, candle] = [&ours[0], &ours[1]].map(|r| {
        (
            median(r.pp.clone()),
            median(r.tg.clone()),
            median(r.ttft.clone()),
        )
    });
    let (tpp, ttg) = (median(theirs_pp), median(theirs_tg));
    let size = std::fs::metadata(&gguf)?.len();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "| {t} threads, SmolLM2-135M Q4_1, p={p} n={n}, median of {} | cocoon | llama.cpp | ratio | cocoon on candle | ratio |",
        args.reps
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| prefill tokens/s | {:.1} | {tpp:.1} | {:.2}× | {:.1} | {:.2}× |",
        native.0,
        native.0 / tpp,
        candle.0,
        candle.0 / tpp
    );
    println!(
        "| decode tokens/s | {:.1} | {ttg:.1} | **{:.2}×** | {:.1} | {:.2}× |",
        native.1,
        native.1 / ttg,
        candle.1,
        candle.1 / ttg
    );
    println!(
        "| time to first token ({p}-token prompt) | {:.0} ms | {:.0} ms | | {:.0} ms | |",
        native.2 * 1e3,
        args.prompt_tokens as f64 / tpp * 1e3,
        candle.2 * 1e3
    );
    println!(
        "| peak RSS / GGUF size | {:.0} MiB / {:.0} MiB ({:.2}×) | | | | |",
        mib(rss),
        mib(size),
        rss as f64 / size as f64
    );
    let f = |k: &str| load[k].as_f64().unwrap_or(0.0);
    println!(
        "| pack read / read+verify / parse | {:.0} ms / {:.0} ms ({:.2}×) / {:.0} ms | | | | |",
        f("read_s") * 1e3,
        f("read_verify_s") * 1e3,
        f("read_verify_s") / f("read_s").max(1e-9),
        f("parse_s") * 1e3
    );
    Ok(())
}

/// One engine's results over the repetitions.
#[derive(Default)]
struct Runs {
    pp: Vec<f64>,
    tg: Vec<f64>,
    ttft: Vec<f64>,
}
