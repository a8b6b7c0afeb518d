//! Loading a verified model pack: the tokenizer and chat template from the
//! GGUF metadata, the weights for one of the supported architectures, on
//! the CPU or (built with `cuda` or `cuda-candle`, and a working GPU) on
//! CUDA.

use std::io::Cursor;
use std::sync::Mutex;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use cocoon_image::modelpack::{self, PackHeader};

use crate::template::ChatTemplate;
use crate::tokenizer::{TokenId, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Pack(#[from] modelpack::PackError),
    #[error("reading the GGUF: {0}")]
    Gguf(String),
    #[error("the GGUF's tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error("architecture {0:?} is not supported")]
    Architecture(String),
    #[error("{0}")]
    Device(String),
}

/// The weights of one sequence. Llama and Qwen3 weights are shared between
/// clones (the tensors are reference-counted; only the KV cache is per
/// clone), so every request gets its own. candle's Qwen2 model cannot be
/// cloned: it serves one sequence at a time.
pub enum Weights {
    /// The engine's own CPU path ([`crate::cpu`]).
    Native(crate::cpu::Sequence),
    /// The engine's own CUDA path ([`crate::cuda`]).
    #[cfg(feature = "cuda-engine")]
    Cuda(crate::cuda::Sequence),
    Llama(quantized_llama::ModelWeights),
    Qwen2(Box<quantized_qwen2::ModelWeights>),
    Qwen3(quantized_qwen3::ModelWeights),
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Weights::Native(_) => "Weights::Native",
            #[cfg(feature = "cuda-engine")]
            Weights::Cuda(_) => "Weights::Cuda",
            Weights::Llama(_) => "Weights::Llama",
            Weights::Qwen2(_) => "Weights::Qwen2",
            Weights::Qwen3(_) => "Weights::Qwen3",
        })
    }
}

impl Weights {
    pub fn forward(&mut self, input: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Native(s) => native_step(input, |ids| s.forward(ids, pos)),
            #[cfg(feature = "cuda-engine")]
            Weights::Cuda(s) => native_step(input, |ids| s.forward(ids, pos)),
            Weights::Llama(m) => m.forward(input, pos),
            Weights::Qwen2(m) => m.forward(input, pos),
            Weights::Qwen3(m) => m.forward(input, pos),
        }
    }
    pub fn clear_kv_cache(&mut self) {
        match self {
            Weights::Native(s) => s.clear(),
            #[cfg(feature = "cuda-engine")]
            Weights::Cuda(s) => s.clear(),
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Qwen3(m) => m.clear_kv_cache(),
        }
    }
    /// A copy sharing the weights, with an empty KV cache; `None` if this
    /// architecture cannot share its weights.
    pub fn fork(&self) -> Option<Weights> {
        let mut w = match self {
            Weights::Native(s) => Weights::Native(crate::cpu::Sequence::new(s.engine().clone())),
            #[cfg(feature = "cuda-engine")]
            Weights::Cuda(s) => Weights::Cuda(crate::cuda::Sequence::new(s.engine().clone())),
            Weights::Llama(m) => Weights::Llama(m.clone()),
            Weights::Qwen3(m) => Weights::Qwen3(m.clone()),
            Weights::Qwen2(_) => return None,
        };
        w.clear_kv_cache();
        Some(w)
    }
}

/// A step of one of the engine's own paths: the token ids out of `input`,
/// the logits back as a `(1, vocab)` tensor on the CPU.
fn native_step(
    input: &Tensor,
    step: impl FnOnce(&[u32]) -> Result<Vec<f32>, String>,
) -> candle_core::Result<Tensor> {
    let ids: Vec<u32> = input.flatten_all()?.to_vec1()?;
    let logits = step(&ids).map_err(candle_core::Error::Msg)?;
    let vocab = logits.len();
    Tensor::from_vec(logits, (1, vocab), &Device::Cpu)
}

/// A loaded model: what every request needs.
#[derive(Debug)]
pub struct Model {
    pub header: PackHeader,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// Tokens that end the assistant's turn (EOS and the template's end
    /// of turn markers).
    pub end_tokens: Vec<TokenId>,
    /// Where candle's tensors live: the CPU for the engine's own paths
    /// (their steps take token ids and give back logits on the CPU).
    pub device: Device,
    pub device_name: String,
    /// Which implementation runs it, e.g. `native (avx2, 2 threads)` or
    /// `candle`, with the reason when the native path did not take it.
    pub engine: String,
    /// The loaded weights; sequences get forks of them (or, for Qwen2, the
    /// weights themselves while nobody else has them).
    weights: Mutex<Option<Weights>>,
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Cpu,
    /// GPU 0: the engine's own CUDA path, or candle's where this build has
    /// it (`cuda-candle`).
    Cuda,
}

/// Where to run: CUDA if this build has it and a GPU answers, else the CPU.
/// Never panics when there is no GPU or its driver fails; says why instead.
pub fn pick_device() -> (Target, String) {
    match gpu_name() {
        Ok(name) => (Target::Cuda, format!("cuda:0 ({name})")),
        Err(why) => (Target::Cpu, format!("cpu ({why})")),
    }
}

/// GPU 0's name, or why this process cannot run on it.
fn gpu_name() -> Result<String, String> {
    #[cfg(feature = "cuda-engine")]
    return crate::cuda::probe(0);
    #[cfg(not(feature = "cuda-engine"))]
    Err("built without CUDA".into())
}

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>, LoadError> {
    let v = ct
        .metadata
        .get(key)
        .ok_or_else(|| LoadError::Tokenizer(format!("{key} is missing")))?;
    v.to_vec()
        .map_err(|e| LoadError::Tokenizer(format!("{key}: {e}")))?
        .iter()
        .map(|s| {
            s.to_string()
                .cloned()
                .map_err(|e| LoadError::Tokenizer(format!("{key}: {e}")))
        })
        .collect()
}

fn u32_of(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn tokenizer_from(ct: &gguf_file::Content, header: &PackHeader) -> Result<Tokenizer, LoadError> {
    let tokens = strings(ct, "tokenizer.ggml.tokens")?;
    let merges = strings(ct, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| LoadError::Tokenizer(e.to_string()))?
            .iter()
            .map(|t| t.to_i32().map_err(|e| LoadError::Tokenizer(e.to_string())))
            .collect::<Result<_, _>>()?,
        None => vec![1; tokens.len()],
    };
    let eos = u32_of(ct, "tokenizer.ggml.eos_token_id")
        .ok_or_else(|| LoadError::Tokenizer("tokenizer.ggml.eos_token_id is missing".into()))?;
    let bos = u32_of(ct, "tokenizer.ggml.bos_token_id");
    let add_bos = ct
        .metadata
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(false);
    Tokenizer::new(
        tokens,
        &types,
        &merges,
        &header.tokenizer.pre,
        bos,
        eos,
        add_bos,
    )
    .map_err(|e| LoadError::Tokenizer(e.to_string()))
}

/// A device chosen by name: `cpu`, `cuda` (GPU 0, or an error saying why
/// not) or `auto` ([`pick_device`]). Benchmarks run the same model on both
/// to compare their tokens.
pub fn device_named(name: &str) -> Result<(Target, String), String> {
    match name {
        "auto" => Ok(pick_device()),
        "cpu" => Ok((Target::Cpu, "cpu".into())),
        "cuda" => gpu_name()
            .map(|n| (Target::Cuda, format!("cuda:0 ({n})")))
            .map_err(|e| format!("CUDA: {e}")),
        other => Err(format!("device {other:?}: use cpu, cuda or auto")),
    }
}

/// candle's CUDA device 0, for models the engine's own CUDA path does not
/// take (or `--cpu-engine candle`); only builds with `cuda-candle` have it.
fn candle_cuda() -> Result<Device, LoadError> {
    if cfg!(feature = "cuda-candle") {
        Device::new_cuda(0).map_err(|e| LoadError::Device(format!("candle's CUDA device 0: {e}")))
    } else {
        Err(LoadError::Device(
            "candle's CUDA path is not in this build (feature cuda-candle)".into(),
        ))
    }
}

/// The engine's own CPU weights and the name of what runs them, or why
/// this model is not one the native path takes.
fn native_weights(
    ct: &gguf_file::Content,
    gguf: &[u8],
    arch: &str,
) -> Result<(Weights, String), String> {
    let w = crate::cpu::weights::Weights::load(ct, gguf, arch)?;
    let engine = std::sync::Arc::new(crate::cpu::Engine::new(
        w,
        candle_core::utils::get_num_threads(),
    ));
    let name = format!(
        "native ({}, {} threads)",
        engine.kernels.name(),
        engine.pool.threads()
    );
    Ok((Weights::Native(crate::cpu::Sequence::new(engine)), name))
}

/// The engine's own CUDA weights on GPU 0 and the name of what runs
/// them, or why this model is not one the CUDA path takes.
#[cfg(feature = "cuda-engine")]
fn cuda_weights(
    ct: &gguf_file::Content,
    gguf: &[u8],
    arch: &str,
    header: &PackHeader,
) -> Result<(Weights, String), String> {
    let w = crate::cpu::weights::Weights::load(ct, gguf, arch)?;
    let tuning = crate::cuda::Tuning::from_env();
    let engine = crate::cuda::Engine::load(&w, 0, header.context_length as usize, tuning)?;
    drop(w);
    let name = format!(
        "native cuda ({}, {:?}, {} positions)",
        engine.gpu, engine.tuning, engine.capacity
    );
    let engine = std::sync::Arc::new(engine);
    Ok((Weights::Cuda(crate::cuda::Sequence::new(engine)), name))
}

/// candle-transformers' model of `arch` on `device` (on the CPU with the
/// encodings candle has no SIMD kernel for re-encoded first).
fn candle_weights(
    ct: gguf_file::Content,
    reader: Cursor<&[u8]>,
    gguf: &[u8],
    arch: &str,
    device: &Device,
) -> Result<Weights, LoadError> {
    let gguf_err = |e: candle_core::Error| LoadError::Gguf(e.to_string());
    let repacked = match device {
        Device::Cpu => crate::repack::repack_for_cpu(&ct, gguf).map_err(gguf_err)?,
        _ => None,
    };
    let (ct, mut reader) = match &repacked {
        Some(bytes) => {
            let mut r = Cursor::new(bytes.as_slice());
            (gguf_file::Content::read(&mut r).map_err(gguf_err)?, r)
        }
        None => (ct, reader),
    };
    Ok(match arch {
        "llama" => Weights::Llama(
            quantized_llama::ModelWeights::from_gguf(ct, &mut reader, device).map_err(gguf_err)?,
        ),
        "qwen2" => Weights::Qwen2(Box::new(
            quantized_qwen2::ModelWeights::from_gguf(ct, &mut reader, device).map_err(gguf_err)?,
        )),
        "qwen3" => Weights::Qwen3(
            quantized_qwen3::ModelWeights::from_gguf(ct, &mut reader, device).map_err(gguf_err)?,
        ),
        other => return Err(LoadError::Architecture(other.to_string())),
    })
}

/// Which implementation runs a model on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuEngine {
    /// The engine's own ([`crate::cpu`]) where it takes the model, else candle.
    Native,
    /// candle-transformers' models (kept to compare against, and for
    /// architectures the native path does not take).
    Candle,
}

impl CpuEngine {
    pub fn named(name: &str) -> Result<CpuEngine, String> {
        match name {
            "native" => Ok(CpuEngine::Native),
            "candle" => Ok(CpuEngine::Candle),
            other => Err(format!("CPU engine {other:?}: use native or candle")),
        }
    }
}

impl Model {
    /// Loads a pack that is already in memory and already verified.
    pub fn load(pack_bytes: &[u8]) -> Result<Model, LoadError> {
        Model::load_on(pack_bytes, pick_device())
    }

    /// [`Model::load`] on a given device.
    pub fn load_on(pack_bytes: &[u8], target: (Target, String)) -> Result<Model, LoadError> {
        Model::load_with(pack_bytes, target, CpuEngine::Native)
    }

    /// [`Model::load_on`] with a choice of implementation: the engine's own
    /// (where it takes the model, else candle's) or candle's.
    pub fn load_with(
        pack_bytes: &[u8],
        (target, device_name): (Target, String),
        cpu_engine: CpuEngine,
    ) -> Result<Model, LoadError> {
        let pack = modelpack::parse(pack_bytes)?;
        let mut reader = Cursor::new(pack.gguf);
        let ct =
            gguf_file::Content::read(&mut reader).map_err(|e| LoadError::Gguf(e.to_string()))?;
        let tokenizer = tokenizer_from(&ct, &pack.header)?;
        let text =
            |id: Option<TokenId>| id.map(|i| tokenizer.decode_special(i)).unwrap_or_default();
        let template = ChatTemplate::new(
            &pack.header.chat_template,
            &text(tokenizer.bos),
            &text(Some(tokenizer.eos)),
        )?;
        let mut end_tokens = vec![tokenizer.eos];
        for t in [
            "<|im_end|>",
            "<|endoftext|>",
            "<|eot_id|>",
            "<|end_of_text|>",
        ] {
            if let Some(id) = tokenizer.special(t)
                && !end_tokens.contains(&id)
            {
                end_tokens.push(id);
            }
        }
        let arch = pack.header.architecture.as_str();
        let native = (cpu_engine == CpuEngine::Native).then(|| match target {
            Target::Cpu => native_weights(&ct, pack.gguf, arch),
            #[cfg(feature = "cuda-engine")]
            Target::Cuda => cuda_weights(&ct, pack.gguf, arch, &pack.header),
            #[cfg(not(feature = "cuda-engine"))]
            Target::Cuda => Err("built without CUDA".into()),
        });
        let device = match (target, &native) {
            (Target::Cpu, _) | (Target::Cuda, Some(Ok(_))) => Device::Cpu,
            // On a GPU, candle's CUDA path is the fallback if the build has
            // it; otherwise the model is refused, never quietly served
            // from the CPU.
            (Target::Cuda, Some(Err(why))) => candle_cuda().map_err(|e| {
                LoadError::Device(format!(
                    "the CUDA engine does not take this model ({why}); {e}"
                ))
            })?,
            (Target::Cuda, None) => candle_cuda()?,
        };
        let (weights, engine) = match native {
            Some(Ok(native)) => native,
            // Not a model the native path takes: candle runs it.
            Some(Err(why)) => (
                candle_weights(ct, reader, pack.gguf, arch, &device)?,
                format!("candle (not the native path: {why})"),
            ),
            None => (
                candle_weights(ct, reader, pack.gguf, arch, &device)?,
                "candle".into(),
            ),
        };
        Ok(Model {
            header: pack.header,
            tokenizer,
            template,
            end_tokens,
            device,
            device_name,
            engine,
            weights: Mutex::new(Some(weights)),
        })
    }

    /// Weights for a new sequence, with an empty KV cache; `None` while an
    /// architecture that cannot share its weights is busy with another.
    pub fn checkout(&self) -> Option<Weights> {
        let mut slot = self.weights.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref()?.fork() {
            Some(w) => Some(w),
            None => slot.take(),
        }
    }

    /// Returns weights from [`Model::checkout`] (only unshareable ones are kept).
    pub fn give_back(&self, mut w: Weights) {
        if w.fork().is_none() {
            w.clear_kv_cache();
            *self.weights.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        }
    }

    /// Whether sequences can run side by side.
    pub fn concurrent(&self) -> bool {
        let slot = self.weights.lock().unwrap_or_else(|p| p.into_inner());
        !matches!(slot.as_ref(), Some(Weights::Qwen2(_)))
    }

    /// The longest sequence this server runs: the pack's context length,
    /// capped where candle's llama precomputes its rotary tables.
    pub fn context_length(&self) -> usize {
        #[cfg(feature = "cuda-engine")]
        if let Some(Weights::Cuda(s)) = self
            .weights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return (self.header.context_length as usize).min(s.engine().capacity);
        }
        let llama = self.header.architecture == "llama";
        let cap = if llama {
            quantized_llama::MAX_SEQ_LEN
        } else {
            usize::MAX
        };
        (self.header.context_length as usize).min(cap)
    }
}
