//! The CUDA forward pass: launching `kernels.cu`'s kernels for a layer,
//! a sequence's device buffers and KV cache, and the CUDA graph of its
//! decode step.

use std::sync::Arc;

use std::ffi::c_void;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream, DevicePtr,
    DriverError, PinnedHostSlice, sys,
};
use cudarc::nvrtc::Ptx;

use super::weights::{DMatrix, DWeights, check, kind_index, upload_all};
use crate::cpu::quant::{QK, WeightKind};
use crate::cpu::weights::{Unsupported, Weights};

/// The kernels, compiled by `build.rs`.
static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));

/// The longest sequence a CUDA sequence holds: its KV cache is allocated
/// whole on the first step (a fixed address is what lets the decode step
/// be a graph), 1 GiB for an 8B llama at 4096 positions.
pub const MAX_CONTEXT: usize = 4096;

/// Tokens per pass of a prompt: the size of a sequence's activation
/// buffers. Longer prompts run in several passes.
const PASS: usize = 64;

/// Activation rows per launch of a matrix kernel in a prompt pass (the
/// kernels' `_8` instances); a decode step runs the `_1` instances.
const TILE: usize = 8;

/// `kernels.cu`'s ATT_THREADS.
const ATT_THREADS: usize = 512;

/// One launch's argument: device addresses and scalars.
enum Arg {
    P(u64),
    I(i32),
    F(f32),
}

struct Kernels {
    _module: Arc<CudaModule>,
    /// `[1 row, TILE rows][format]` (formats in [`kind_index`] order).
    matvec: [[CudaFunction; 3]; 2],
    swiglu: [[CudaFunction; 3]; 2],
    /// The decode step's kernels that load more at once (`Decode`): two
    /// rows a warp (Q4_0, Q4_1), gate and up together (every format).
    matvec_r2: [CudaFunction; 2],
    swiglu_pair: [CudaFunction; 3],
    embed: CudaFunction,
    rmsnorm_quant: CudaFunction,
    rope_store: CudaFunction,
    /// By head size: `[32, 64, ..., 256]`.
    attention: [CudaFunction; 8],
}

impl Kernels {
    fn load(ctx: &Arc<CudaContext>) -> Result<Kernels, DriverError> {
        let module = ctx.load_module(Ptx::from_binary(FATBIN.to_vec()))?;
        let f = |name: &str| module.load_function(name);
        // The formats in `kind_index` order; `suffix`: the instance (the
        // activation rows per launch, 1 or TILE, or `pair`).
        let formats = |prefix: &str, suffix: &str| -> Result<[CudaFunction; 3], DriverError> {
            Ok([
                f(&format!("{prefix}_q4_0_{suffix}"))?,
                f(&format!("{prefix}_q4_1_{suffix}"))?,
                f(&format!("{prefix}_q8_0_{suffix}"))?,
            ])
        };
        Ok(Kernels {
            matvec: [
                formats("matvec", "1")?,
                formats("matvec", &TILE.to_string())?,
            ],
            swiglu: [
                formats("swiglu", "1")?,
                formats("swiglu", &TILE.to_string())?,
            ],
            matvec_r2: [f("matvec_q4_0_r2")?, f("matvec_q4_1_r2")?],
            swiglu_pair: formats("swiglu", "pair")?,
            embed: f("embed")?,
            rmsnorm_quant: f("rmsnorm_quant")?,
            rope_store: f("rope_store")?,
            attention: [
                f("attention_1")?,
                f("attention_2")?,
                f("attention_3")?,
                f("attention_4")?,
                f("attention_5")?,
                f("attention_6")?,
                f("attention_7")?,
                f("attention_8")?,
            ],
            _module: module,
        })
    }
}

/// How a decode step is launched: choices that change its speed, never
/// its bits (the tests hold them to the same logits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The step as a CUDA graph (else its launches one by one).
    pub graphs: bool,
    /// Kernels launched with programmatic dependent launch where the GPU
    /// has it (sm_90): each may start, and prefetch its weights, while the
    /// one before it finishes (`pdl_wait` in kernels.cu).
    pub pdl: bool,
    /// The decode step's matrix kernels.
    pub decode: Decode,
}

/// Which kernels a decode step's matrix products run. Each adds a row's
/// blocks in the same order, so all give the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// One weight row a warp and gate before up: the kernels as first
    /// measured, kept to measure against.
    OneRow,
    /// Gate and up loaded together; two rows a warp (4-bit formats) on a
    /// matrix whose one-row blocks would take more than one wave of the
    /// GPU (an 8B llama's q|k|v and output matrix), where that measured
    /// faster and one row a warp slower (kernels.cu, `matvec_rows`).
    Auto,
    /// Two rows a warp on every 4-bit matrix: what the tests compare, as
    /// their small models' matrices all fit in one wave.
    TwoRows,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            graphs: true,
            pdl: true,
            decode: Decode::Auto,
        }
    }
}

impl Tuning {
    /// The default, less what `COCOON_CUDA_GRAPHS=0` (the launches one by
    /// one) or `COCOON_CUDA_PDL=0` (each kernel after the last has ended)
    /// turns off, with `COCOON_CUDA_DECODE=one-row` or `two-rows` for
    /// those [`Decode`] kernels: benchmarks measure what each buys.
    pub fn from_env() -> Tuning {
        let on = |name: &str| std::env::var(name).map_or(true, |v| v != "0");
        Tuning {
            graphs: on("COCOON_CUDA_GRAPHS"),
            pdl: on("COCOON_CUDA_PDL"),
            decode: match std::env::var("COCOON_CUDA_DECODE").as_deref() {
                Ok("one-row") => Decode::OneRow,
                Ok("two-rows") => Decode::TwoRows,
                _ => Decode::Auto,
            },
        }
    }
}

/// The weights on one GPU with the kernels that run them, shared by every
/// sequence.
pub struct Engine {
    w: DWeights,
    kernels: Kernels,
    ctx: Arc<CudaContext>,
    inv_freq: CudaSlice<f32>,
    pub tuning: Tuning,
    pub gpu: String,
    /// The GPU's multiprocessors: what one wave of blocks fills.
    sms: usize,
    pub capacity: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuda::Engine({}, {})", self.w.cfg.arch, self.gpu)
    }
}

/// Why the CUDA path does not run a model: a shape or format it does not
/// take, or a driver error (no SASS for this GPU, out of memory).
fn driver(what: &str) -> impl Fn(DriverError) -> Unsupported + '_ {
    move |e| format!("{what}: {e}")
}

impl Engine {
    /// Uploads the weights to GPU `ordinal`; `context` is the longest
    /// sequence wanted (capped at [`MAX_CONTEXT`]).
    pub fn load(
        weights: &Weights,
        ordinal: usize,
        context: usize,
        tuning: Tuning,
    ) -> Result<Engine, Unsupported> {
        check(weights)?;
        let ctx = CudaContext::new(ordinal).map_err(driver("opening the GPU"))?;
        // One stream per sequence and nothing shared between streams while
        // they run: cudarc's cross-stream events would only get in the way
        // of graph capture.
        // SAFETY: called before this context allocates anything.
        unsafe { ctx.disable_event_tracking() };
        let gpu = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let kernels = Kernels::load(&ctx).map_err(|e| {
            format!("loading the kernels on {gpu} (built for sm_80, sm_89 and sm_90): {e}")
        })?;
        // Before sm_90 there is no programmatic dependent launch.
        let (major, _) = ctx
            .compute_capability()
            .map_err(driver("the compute capability"))?;
        let tuning = Tuning {
            pdl: tuning.pdl && major >= 9,
            ..tuning
        };
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver("the multiprocessor count"))?;
        let stream = ctx.new_stream().map_err(driver("a stream"))?;
        let w = upload_all(&stream, weights).map_err(driver("uploading the weights"))?;
        let c = &w.cfg;
        let inv_freq: Vec<f32> = (0..c.head_dim / 2)
            .map(|i| 1.0 / c.rope_base.powf((2 * i) as f32 / c.head_dim as f32))
            .collect();
        let inv_freq = stream.clone_htod(&inv_freq).map_err(driver("uploading"))?;
        stream
            .synchronize()
            .map_err(driver("uploading the weights"))?;
        Ok(Engine {
            w,
            kernels,
            ctx,
            inv_freq,
            tuning,
            gpu,
            sms: sms.max(1) as usize,
            capacity: context.clamp(1, MAX_CONTEXT),
        })
    }

    pub fn vocab(&self) -> usize {
        self.w.cfg.vocab
    }
}

/// A device address as a kernel argument.
fn at<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    s.device_ptr(stream).0
}

/// A sequence's device memory, allocated on its first step.
struct Buffers {
    /// `[pos, ids[0..PASS]]`, copied in before each pass.
    meta: CudaSlice<i32>,
    /// The residual stream, PASS rows of dim.
    x: CudaSlice<f32>,
    /// q|k|v of PASS rows.
    qkv: CudaSlice<f32>,
    /// Two sets of quantized activations (a product's input and the next
    /// one's): PASS rows of the widest input, int8 values and (d, s).
    aq: [CudaSlice<i8>; 2],
    ads: [CudaSlice<f32>; 2],
    logits: CudaSlice<f32>,
    /// Page-locked host memory the logits are copied into (a copy into
    /// ordinary memory goes through a staging buffer: ~2x the time for an
    /// 8B model's 0.5 MB of logits).
    logits_host: PinnedHostSlice<f32>,
    /// Per layer: capacity rows of kv_dim.
    k: Vec<CudaSlice<f32>>,
    v: Vec<CudaSlice<f32>>,
}

/// A captured decode step. Its pointers are this sequence's buffers, which
/// never move; its position and token are read from `meta`.
struct Graph(CudaGraph);
// SAFETY: a graph is only launched through its sequence's `&mut self`, so
// never from two threads at once (what CUDA requires of graph objects).
unsafe impl Send for Graph {}

/// One sequence: its stream, buffers and KV cache.
pub struct Sequence {
    engine: Arc<Engine>,
    stream: Option<Arc<CudaStream>>,
    graph: Option<Graph>,
    bufs: Option<Box<Buffers>>,
    len: usize,
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuda::Sequence({} tokens)", self.len)
    }
}

impl Sequence {
    pub fn new(engine: Arc<Engine>) -> Sequence {
        Sequence {
            engine,
            stream: None,
            bufs: None,
            graph: None,
            len: 0,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Empties the cache (its memory and the graph are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn allocate(&mut self) -> Result<(), DriverError> {
        if self.bufs.is_some() {
            return Ok(());
        }
        let e = &self.engine;
        let c = &e.w.cfg;
        let stream = e.ctx.new_stream()?;
        let (q_dim, kv_dim) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let widest = c.dim.max(q_dim).max(c.ffn);
        let cache = e.capacity * kv_dim;
        let bufs = Buffers {
            meta: stream.alloc_zeros(1 + PASS)?,
            x: stream.alloc_zeros(PASS * c.dim)?,
            qkv: stream.alloc_zeros(PASS * (q_dim + 2 * kv_dim))?,
            aq: [
                stream.alloc_zeros(PASS * widest)?,
                stream.alloc_zeros(PASS * widest)?,
            ],
            ads: [
                stream.alloc_zeros(PASS * widest / QK * 2)?,
                stream.alloc_zeros(PASS * widest / QK * 2)?,
            ],
            logits: stream.alloc_zeros(c.vocab)?,
            // SAFETY: f32 has no invalid bit patterns; read only after the
            // stream has finished the copy into it (`forward` waits for the
            // stream). Flags 0: cached memory (write-combined memory is slow
            // for the CPU to read).
            logits_host: unsafe { e.ctx.alloc_pinned_with_flags(c.vocab, 0)? },
            k: (0..c.layers)
                .map(|_| stream.alloc_zeros(cache))
                .collect::<Result<_, _>>()?,
            v: (0..c.layers)
                .map(|_| stream.alloc_zeros(cache))
                .collect::<Result<_, _>>()?,
        };
        stream.synchronize()?;
        self.stream = Some(stream);
        self.bufs = Some(Box::new(bufs));
        Ok(())
    }

    /// Runs `tokens` at positions `pos..`, which must continue the cache;
    /// returns the last token's logits.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, String> {
        let e = self.engine.clone();
        if pos != self.len {
            return Err(format!(
                "position {pos} does not continue a cache of {}",
                self.len
            ));
        }
        if tokens.is_empty() {
            return Err("no tokens to run".into());
        }
        if pos + tokens.len() > e.capacity {
            return Err(format!(
                "{} tokens at position {pos} do not fit the GPU cache of {} positions",
                tokens.len(),
                e.capacity
            ));
        }
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= e.w.cfg.vocab) {
            return Err(format!("token {id} is outside the vocabulary"));
        }
        self.allocate()
            .map_err(|err| format!("GPU memory for a sequence: {err}"))?;
        let chunks: Vec<&[u32]> = tokens.chunks(PASS).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            self.pass(chunk, self.len, last)
                .map_err(|err| format!("the GPU step: {err}"))?;
            self.len += chunk.len();
        }
        let stream = self.stream.as_ref().expect("allocated");
        let bufs = self.bufs.as_mut().expect("allocated");
        // The wait is explicit: cudarc's events on page-locked memory are
        // not recorded while its event tracking is off (Engine::load).
        stream
            .memcpy_dtoh(&bufs.logits, &mut bufs.logits_host)
            .and_then(|()| stream.synchronize())
            .and_then(|()| bufs.logits_host.as_slice().map(<[f32]>::to_vec))
            .map_err(|err| format!("the GPU step: {err}"))
    }

    /// One pass of up to [`PASS`] tokens at `pos`; the logits of the last
    /// one when `logits`. A single token runs as the sequence's graph.
    fn pass(&mut self, tokens: &[u32], pos: usize, logits: bool) -> Result<(), DriverError> {
        let e = self.engine.clone();
        let stream = self.stream.clone().expect("allocated");
        let bufs = self.bufs.as_mut().expect("allocated");
        let mut meta = Vec::with_capacity(1 + tokens.len());
        meta.push(pos as i32);
        meta.extend(tokens.iter().map(|&t| t as i32));
        stream.memcpy_htod(&meta, &mut bufs.meta)?;
        let bufs = self.bufs.as_ref().expect("allocated");
        if tokens.len() > 1 || !logits || !e.tuning.graphs {
            return e.enqueue(&stream, bufs, tokens.len(), logits);
        }
        if self.graph.is_none() {
            stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)?;
            let enqueued = e.enqueue(&stream, bufs, 1, true);
            let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0));
            enqueued?;
            self.graph = graph?.map(Graph);
        }
        match &self.graph {
            Some(g) => g.0.launch(),
            None => e.enqueue(&stream, bufs, 1, true),
        }
    }
}

impl Engine {
    fn launch(
        &self,
        stream: &CudaStream,
        f: &CudaFunction,
        grid: (usize, usize),
        block: usize,
        shared: usize,
        args: &[Arg],
    ) -> Result<(), DriverError> {
        // cuLaunchKernelEx directly, for its launch attribute: cudarc's
        // builder has none (and with event tracking off, Engine::load, it
        // would add nothing else).
        let mut params: Vec<*mut c_void> = args
            .iter()
            .map(|a| match a {
                Arg::P(p) => p as *const u64 as *mut c_void,
                Arg::I(i) => i as *const i32 as *mut c_void,
                Arg::F(x) => x as *const f32 as *mut c_void,
            })
            .collect();
        let mut attr = sys::CUlaunchAttribute {
            id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            value: sys::CUlaunchAttributeValue {
                programmaticStreamSerializationAllowed: 1,
            },
        };
        let cfg = sys::CUlaunchConfig {
            gridDimX: grid.0 as u32,
            gridDimY: grid.1 as u32,
            gridDimZ: 1,
            blockDimX: block as u32,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: shared as u32,
            hStream: stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: u32::from(self.tuning.pdl),
        };
        self.ctx.bind_to_thread()?;
        // SAFETY: `params` points at `args`, which outlive the call, one
        // value per kernel parameter in order; every device address is a
        // live buffer of the engine or of the sequence, sized for the
        // launch's rows, as each kernel's comment in kernels.cu describes
        // its arguments. The attribute is read during the call only.
        unsafe {
            sys::cuLaunchKernelEx(
                &cfg,
                f.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
    }

    /// `out[t * stride + r] (+)= m[r] · act[t]` for `n` activation rows.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        s: &CudaStream,
        m: &DMatrix,
        (aq, ads): (u64, u64),
        n: usize,
        out: u64,
        stride: usize,
        add: bool,
    ) -> Result<(), DriverError> {
        let blocks = m.blocks();
        let kind = kind_index(m.kind) as usize;
        // One row a warp, 8 rows a block of 256 threads, 4 blocks an SM
        // (the kernels' 64 registers): a wave is 32 rows an SM.
        let two_rows = n == 1
            && m.kind != WeightKind::Q8_0
            && match self.tuning.decode {
                Decode::OneRow => false,
                Decode::Auto => m.rows > 32 * self.sms,
                Decode::TwoRows => true,
            };
        let (f, rows_per_block) = if two_rows {
            (&self.kernels.matvec_r2[kind], 16)
        } else {
            (&self.kernels.matvec[usize::from(n > 1)][kind], 8)
        };
        for t0 in (0..n).step_by(TILE) {
            let nt = TILE.min(n - t0);
            self.launch(
                s,
                f,
                (m.rows.div_ceil(rows_per_block), 1),
                256,
                0,
                &[
                    Arg::P(at(&m.qs, s)),
                    Arg::P(at(&m.sc, s)),
                    Arg::I(m.rows as i32),
                    Arg::I(blocks as i32),
                    Arg::P(aq + (t0 * blocks * QK) as u64),
                    Arg::P(ads + (t0 * blocks * 8) as u64),
                    Arg::I(nt as i32),
                    Arg::P(out + (t0 * stride * 4) as u64),
                    Arg::I(stride as i32),
                    Arg::I(i32::from(add)),
                ],
            )?;
        }
        Ok(())
    }

    /// The `n` rows' SwiGLU of gate and up, quantized into `(hq, hs)`.
    fn swiglu(
        &self,
        s: &CudaStream,
        (gate, up): (&DMatrix, &DMatrix),
        (aq, ads): (u64, u64),
        n: usize,
        (hq, hs): (u64, u64),
    ) -> Result<(), DriverError> {
        let blocks = gate.blocks();
        let hblocks = gate.rows / QK;
        let kind = kind_index(gate.kind) as usize;
        debug_assert_eq!(gate.kind, up.kind);
        let f = if n == 1 && self.tuning.decode != Decode::OneRow {
            &self.kernels.swiglu_pair[kind]
        } else {
            &self.kernels.swiglu[usize::from(n > 1)][kind]
        };
        for t0 in (0..n).step_by(TILE) {
            let nt = TILE.min(n - t0);
            self.launch(
                s,
                f,
                (hblocks, 1),
                256,
                0,
                &[
                    Arg::P(at(&gate.qs, s)),
                    Arg::P(at(&gate.sc, s)),
                    Arg::P(at(&up.qs, s)),
                    Arg::P(at(&up.sc, s)),
                    Arg::I(gate.rows as i32),
                    Arg::I(blocks as i32),
                    Arg::P(aq + (t0 * blocks * QK) as u64),
                    Arg::P(ads + (t0 * blocks * 8) as u64),
                    Arg::I(nt as i32),
                    Arg::P(hq + (t0 * hblocks * QK) as u64),
                    Arg::P(hs + (t0 * hblocks * 8) as u64),
                ],
            )?;
        }
        Ok(())
    }

    /// Norm + quantize of `n` rows of `x` (at address `x`).
    fn norm(
        &self,
        s: &CudaStream,
        x: u64,
        weight: &CudaSlice<f32>,
        n: usize,
        (aq, ads): (u64, u64),
    ) -> Result<(), DriverError> {
        let c = &self.w.cfg;
        // Eight 32-value blocks per block of 256 threads.
        let blocks = (c.dim / QK).div_ceil(8);
        self.launch(
            s,
            &self.kernels.rmsnorm_quant,
            (blocks, n),
            256,
            0,
            &[
                Arg::P(x),
                Arg::P(at(weight, s)),
                Arg::F(c.eps),
                Arg::I(c.dim as i32),
                Arg::P(aq),
                Arg::P(ads),
            ],
        )
    }

    /// Every kernel of a pass of `n` tokens, in stream order.
    fn enqueue(
        &self,
        s: &CudaStream,
        b: &Buffers,
        n: usize,
        logits: bool,
    ) -> Result<(), DriverError> {
        let (w, c) = (&self.w, &self.w.cfg);
        let (q_dim, kv_dim) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let tot = q_dim + 2 * kv_dim;
        let meta = at(&b.meta, s);
        let (pos, ids) = (meta, meta + 4);
        let x = at(&b.x, s);
        let qkv = at(&b.qkv, s);
        let act = [
            (at(&b.aq[0], s), at(&b.ads[0], s)),
            (at(&b.aq[1], s), at(&b.ads[1], s)),
        ];
        self.launch(
            s,
            &self.kernels.embed,
            (n, 1),
            256,
            0,
            &[
                Arg::P(at(&w.embed.qs, s)),
                Arg::P(at(&w.embed.sc, s)),
                Arg::I(kind_index(w.embed.kind)),
                Arg::I(c.dim as i32),
                Arg::P(ids),
                Arg::P(x),
            ],
        )?;
        let opt = |o: Option<&CudaSlice<f32>>| o.map_or(0, |v| at(v, s));
        for (l, layer) in w.layers.iter().enumerate() {
            self.norm(s, x, &layer.attn_norm, n, act[0])?;
            for (m, first) in &layer.qkv {
                self.matmul(s, m, act[0], n, qkv + (first * 4) as u64, tot, false)?;
            }
            let (kc, vc) = (at(&b.k[l], s), at(&b.v[l], s));
            let norms = layer.qk_norm.as_ref();
            let pairs = (c.head_dim / 2).div_ceil(32) * 32;
            self.launch(
                s,
                &self.kernels.rope_store,
                (c.heads + c.kv_heads, n),
                pairs,
                0,
                &[
                    Arg::P(qkv),
                    Arg::P(opt(layer.bias.as_ref())),
                    Arg::P(opt(norms.map(|n| &n[0]))),
                    Arg::P(opt(norms.map(|n| &n[1]))),
                    Arg::P(at(&self.inv_freq, s)),
                    Arg::P(pos),
                    Arg::I(c.heads as i32),
                    Arg::I(c.kv_heads as i32),
                    Arg::I(c.head_dim as i32),
                    Arg::F(c.eps),
                    Arg::I(i32::from(c.rope_interleaved)),
                    Arg::P(kc),
                    Arg::P(vc),
                ],
            )?;
            // Scores for every position the cache can hold, so that one
            // captured launch serves every step.
            self.launch(
                s,
                &self.kernels.attention[c.head_dim / QK - 1],
                (c.heads, n),
                ATT_THREADS,
                self.capacity * 4,
                &[
                    Arg::P(qkv),
                    Arg::P(kc),
                    Arg::P(vc),
                    Arg::P(pos),
                    Arg::I(c.heads as i32),
                    Arg::I(c.kv_heads as i32),
                    Arg::F(1.0 / (c.head_dim as f32).sqrt()),
                    Arg::P(act[1].0),
                    Arg::P(act[1].1),
                ],
            )?;
            self.matmul(s, &layer.wo, act[1], n, x, c.dim, true)?;
            self.norm(s, x, &layer.ffn_norm, n, act[0])?;
            self.swiglu(s, (&layer.gate, &layer.up), act[0], n, act[1])?;
            self.matmul(s, &layer.down, act[1], n, x, c.dim, true)?;
        }
        if logits {
            let last = x + ((n - 1) * c.dim * 4) as u64;
            self.norm(s, last, &w.out_norm, 1, act[0])?;
            let out = w.output();
            self.matmul(s, out, act[0], 1, at(&b.logits, s), c.vocab, false)?;
        }
        Ok(())
    }
}
