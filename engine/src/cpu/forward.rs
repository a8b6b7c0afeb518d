//! One forward pass over new tokens of a sequence: the llama block
//! (RMSNorm, attention with rotary positions and grouped KV heads, SwiGLU)
//! with Qwen2's biases and Qwen3's q/k norms, on the CPU.
//!
//! A layer is five parallel sections on the [`Pool`]: q/k/v, attention,
//! the output projection (added into the residual), gate and up (with the
//! SwiGLU applied as each pair of rows is done) and down (added into the
//! residual). The serial work between them (norms, quantizing activations,
//! rotary positions) is a few microseconds per token.

use std::sync::Arc;
use std::sync::Mutex;

use super::attention::{Item, Items, KvHead};
use super::cache::Rows;
use super::ops;
use super::pool::{Chunks, Pool};
use super::quant::{ActBlock, QK, WeightKind, quantize_act};
use super::simd::Kernels;
use super::weights::{Group, QMatrix, Weights};

/// The weights with what runs them, shared by every sequence.
pub struct Engine {
    pub weights: Weights,
    pub kernels: Kernels,
    pub pool: Pool,
    /// Per-thread scratch for attention scores.
    scratch: Vec<Mutex<Vec<f32>>>,
    inv_freq: Vec<f32>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cpu::Engine({}, {} kernels, {:?})",
            self.weights.cfg.arch,
            self.kernels.name(),
            self.pool
        )
    }
}

impl Engine {
    /// The engine on `threads` threads. With the AVX2 kernels, Q4 matrices
    /// are interleaved in groups of four rows ([`Weights::interleave4`];
    /// `COCOON_CPU_INTERLEAVE=0` keeps the GGUF layout, to compare).
    pub fn new(weights: Weights, threads: usize) -> Engine {
        let wanted = std::env::var("COCOON_CPU_INTERLEAVE").map_or(true, |v| v != "0");
        Engine::with_layout(weights, threads, wanted)
    }

    /// [`Engine::new`], interleaving or not whatever the environment says.
    pub fn with_layout(mut weights: Weights, threads: usize, interleave: bool) -> Engine {
        let kernels = Kernels::detect();
        if interleave && kernels != Kernels::Scalar {
            weights.interleave4();
        }
        let hd = weights.cfg.head_dim;
        let base = weights.cfg.rope_base;
        let inv_freq = (0..hd / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / hd as f32))
            .collect();
        let pool = Pool::new(threads);
        Engine {
            scratch: (0..pool.threads())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            weights,
            kernels,
            pool,
            inv_freq,
        }
    }
}

/// A raw pointer that threads write disjoint elements through.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every section writes each element from exactly one thread, and
// the pool's join orders those writes before anyone reads them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// SAFETY: `i` is in bounds and no other thread touches it during the
    /// section.
    #[inline]
    unsafe fn at(self, i: usize) -> *mut f32 {
        unsafe { self.0.add(i) }
    }
}

/// Rows per chunk handed out: small enough that a thread the OS preempts
/// holds up little work (the others take the rest of its share), big
/// enough that the counters are noise. (Chunks sized by bytes, for longer
/// prefetch streams, measured no better on the 2-core VM, back when all
/// threads took chunks from one counter.)
/// A multiple of [`GROUP`], so that only the end of a matrix (a row count
/// that is not a multiple of four) cuts a group short.
fn chunk_for(rows: usize, threads: usize) -> usize {
    (rows / (threads * 8)).clamp(GROUP, 64) / GROUP * GROUP
}

/// Rows per call of the dot kernel ([`Kernels::dot4`]).
const GROUP: usize = 4;

/// One sequence's KV cache ([`Rows`] per layer: f16, each KV head's rows
/// contiguous).
pub struct Sequence {
    engine: Arc<Engine>,
    /// Per layer: `len` rows of kv_heads × head_dim (post-rotary keys).
    k: Vec<Rows>,
    v: Vec<Rows>,
    len: usize,
}

impl Sequence {
    pub fn new(engine: Arc<Engine>) -> Sequence {
        let c = &engine.weights.cfg;
        let rows = vec![Rows::new(c.kv_heads, c.head_dim); c.layers];
        Sequence {
            k: rows.clone(),
            v: rows,
            engine,
            len: 0,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn clear(&mut self) {
        self.k
            .iter_mut()
            .chain(self.v.iter_mut())
            .for_each(Rows::clear);
        self.len = 0;
    }

    /// Runs `tokens` at positions `pos..`, which must continue the cache;
    /// returns the last token's logits.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, String> {
        if pos != self.len {
            return Err(format!(
                "position {pos} does not continue a cache of {}",
                self.len
            ));
        }
        let engine = self.engine.clone();
        let mut logits = engine.run(&mut [self], &[tokens])?;
        Ok(logits.pop().expect("one sequence, one set of logits"))
    }
}

/// One token for each of several sequences of one engine, in one pass:
/// the weights are read once for all of them, which is what a decode step
/// of a small batch costs on a CPU whose memory is the limit. Returns each
/// sequence's logits, the same to the bit as its own
/// [`forward`](Sequence::forward) would give (every row is computed by the
/// same kernels on the same inputs).
pub fn forward_batch(seqs: &mut [&mut Sequence], tokens: &[u32]) -> Result<Vec<Vec<f32>>, String> {
    let Some(first) = seqs.first() else {
        return Err("no sequences to run".into());
    };
    if tokens.len() != seqs.len() {
        return Err(format!(
            "{} tokens for {} sequences",
            tokens.len(),
            seqs.len()
        ));
    }
    let engine = first.engine.clone();
    if seqs.iter().any(|s| !Arc::ptr_eq(&s.engine, &engine)) {
        return Err("a batch mixes sequences of different engines".into());
    }
    let per_seq: Vec<&[u32]> = tokens.chunks(1).collect();
    engine.run(seqs, &per_seq)
}

/// Where one row of a pass comes from: its sequence and position.
#[derive(Clone, Copy)]
struct Row {
    seq: usize,
    pos: usize,
}

impl Engine {
    /// `tokens[s]` appended to `seqs[s]` for every `s`, all rows in one
    /// pass; returns the logits of each sequence's last new token.
    fn run(&self, seqs: &mut [&mut Sequence], tokens: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let w = &self.weights;
        let c = &w.cfg;
        let mut rows = Vec::new();
        for (s, t) in tokens.iter().enumerate() {
            if t.is_empty() {
                return Err("no tokens to run".into());
            }
            rows.extend((0..t.len()).map(|i| Row {
                seq: s,
                pos: seqs[s].len + i,
            }));
        }
        let ids: Vec<u32> = tokens.concat();
        let n = rows.len();
        let (dim, hd) = (c.dim, c.head_dim);
        let (q_dim, kv_dim) = (c.heads * hd, c.kv_heads * hd);

        let mut x = vec![0f32; n * dim];
        for (t, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= w.embed.rows {
                return Err(format!("token {id} is outside the vocabulary"));
            }
            w.embed.dequantize_row(id, &mut x[t * dim..(t + 1) * dim]);
        }
        // Rotary angles for each row's position, shared by every layer.
        let half = hd / 2;
        let (mut cos, mut sin) = (vec![0f32; n * half], vec![0f32; n * half]);
        for (t, row) in rows.iter().enumerate() {
            for (i, f) in self.inv_freq.iter().enumerate() {
                let (s, co) = (row.pos as f32 * f).sin_cos();
                cos[t * half + i] = co;
                sin[t * half + i] = s;
            }
        }

        let mut xn = vec![0f32; n * dim];
        let mut act = vec![ActBlock::default(); n * dim.max(q_dim).max(c.ffn) / QK];
        let (mut q, mut k, mut v) = (
            vec![0f32; n * q_dim],
            vec![0f32; n * kv_dim],
            vec![0f32; n * kv_dim],
        );
        let mut att = vec![0f32; n * q_dim];
        let mut h = vec![0f32; n * c.ffn];

        for (li, l) in w.layers.iter().enumerate() {
            // Attention.
            norm_rows(&x, &l.attn_norm, c.eps, dim, &mut xn);
            quantize_rows(&xn, &mut act);
            self.matmul(
                &mut [
                    (&l.wq, &mut q[..]),
                    (&l.wk, &mut k[..]),
                    (&l.wv, &mut v[..]),
                ],
                &act[..n * dim / QK],
                n,
                false,
            );
            for t in 0..n {
                let (qt, kt, vt) = (
                    &mut q[t * q_dim..(t + 1) * q_dim],
                    &mut k[t * kv_dim..(t + 1) * kv_dim],
                    &mut v[t * kv_dim..(t + 1) * kv_dim],
                );
                if let Some([bq, bk, bv]) = &l.bias {
                    ops::axpy(1.0, bq, qt);
                    ops::axpy(1.0, bk, kt);
                    ops::axpy(1.0, bv, vt);
                }
                let (ct, st) = (
                    &cos[t * half..(t + 1) * half],
                    &sin[t * half..(t + 1) * half],
                );
                for (heads, norm) in [
                    (qt, l.qk_norm.as_ref().map(|n| &n[0])),
                    (kt, l.qk_norm.as_ref().map(|n| &n[1])),
                ] {
                    for head in heads.chunks_exact_mut(hd) {
                        if let Some(nw) = norm {
                            ops::rms_norm_in_place(head, nw, c.eps);
                        }
                        ops::rope(head, ct, st, c.rope_interleaved);
                    }
                }
            }
            for (t, row) in rows.iter().enumerate() {
                let seq = &mut seqs[row.seq];
                seq.k[li].push(&k[t * kv_dim..(t + 1) * kv_dim]);
                seq.v[li].push(&v[t * kv_dim..(t + 1) * kv_dim]);
            }
            let caches: Vec<Cache> = rows
                .iter()
                .map(|row| Cache {
                    k: &seqs[row.seq].k[li],
                    v: &seqs[row.seq].v[li],
                    seen: row.pos + 1,
                })
                .collect();
            self.attention(&q, &caches, &mut att);
            quantize_rows(&att, &mut act);
            self.matmul(&mut [(&l.wo, &mut x[..])], &act[..n * q_dim / QK], n, true);

            // Feed-forward.
            norm_rows(&x, &l.ffn_norm, c.eps, dim, &mut xn);
            quantize_rows(&xn, &mut act);
            self.swiglu(&l.gate, &l.up, &act[..n * dim / QK], n, &mut h);
            quantize_rows(&h, &mut act);
            self.matmul(
                &mut [(&l.down, &mut x[..])],
                &act[..n * c.ffn / QK],
                n,
                true,
            );
        }
        for (seq, t) in seqs.iter_mut().zip(tokens) {
            seq.len += t.len();
        }

        // The logits of each sequence's last row, in one product.
        let last: Vec<usize> = (0..n)
            .filter(|&t| t + 1 == n || rows[t + 1].seq != rows[t].seq)
            .collect();
        let m = last.len();
        let mut normed = vec![0f32; m * dim];
        for (i, &t) in last.iter().enumerate() {
            ops::rms_norm(
                &x[t * dim..(t + 1) * dim],
                &w.out_norm,
                c.eps,
                &mut normed[i * dim..(i + 1) * dim],
            );
        }
        quantize_rows(&normed, &mut act);
        let mut logits = vec![0f32; m * c.vocab];
        self.matmul(
            &mut [(w.output(), &mut logits[..])],
            &act[..m * dim / QK],
            m,
            false,
        );
        Ok(logits.chunks_exact(c.vocab).map(<[f32]>::to_vec).collect())
    }
}

/// What one row's queries attend to: its sequence's cache of this layer,
/// up to and including its own position.
#[derive(Clone, Copy)]
struct Cache<'a> {
    k: &'a Rows,
    v: &'a Rows,
    seen: usize,
}

fn norm_rows(x: &[f32], weight: &[f32], eps: f32, dim: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        ops::rms_norm(xr, weight, eps, or);
    }
}

fn quantize_rows(x: &[f32], act: &mut [ActBlock]) {
    quantize_act(x, &mut act[..x.len() / QK]);
}

impl Engine {
    /// `f(t, [rows[j] · act[t]])` for each of the `n` activation rows of
    /// `blocks` blocks in `act`, two (or four) at a time: each weight block
    /// is unpacked once for them (prefill and batched decode).
    #[inline]
    fn dots(
        &self,
        kind: WeightKind,
        rows: Group,
        (act, blocks, n): (&[ActBlock], usize, usize),
        mut f: impl FnMut(usize, [f32; 4]),
    ) {
        let row = |t: usize| &act[t * blocks..(t + 1) * blocks];
        let mut t = 0;
        // Four at a time where the kernel has the registers for it
        // (AVX-512's 32): each weight block unpacked once for four rows.
        #[cfg(target_arch = "x86_64")]
        while self.kernels == Kernels::Avx512Vnni && t + 4 <= n {
            let ys = self
                .kernels
                .dot4n(kind, rows, [row(t), row(t + 1), row(t + 2), row(t + 3)]);
            for (i, y) in ys.into_iter().enumerate() {
                f(t + i, y);
            }
            t += 4;
        }
        while t + 2 <= n {
            let [y0, y1] = self.kernels.dot4n(kind, rows, [row(t), row(t + 1)]);
            f(t, y0);
            f(t + 1, y1);
            t += 2;
        }
        if t < n {
            f(t, self.kernels.dot4(kind, rows, row(t)));
        }
    }

    /// `outs[j][t * rows_j + r] = W_j[r] · act[t]` for every matrix `j`
    /// (or `+=` when `add`: a projection into the residual), all rows of
    /// all matrices in one parallel section.
    fn matmul(&self, outs: &mut [(&QMatrix, &mut [f32])], act: &[ActBlock], n: usize, add: bool) {
        let blocks = act.len() / n;
        let mats: Vec<(&QMatrix, Out)> = outs
            .iter_mut()
            .map(|(m, o)| {
                assert_eq!(m.cols / QK, blocks);
                assert!(o.len() >= n * m.rows);
                (*m, Out(o.as_mut_ptr()))
            })
            .collect();
        let total: usize = mats.iter().map(|(m, _)| m.rows).sum();
        let threads = self.pool.threads();
        let chunks = Chunks::new(total, chunk_for(total, threads), threads);
        self.pool.run(&|thread| {
            while let Some(range) = chunks.take(thread) {
                let mut g = range.start;
                while g < range.end {
                    let (mut r, mut j) = (g, 0);
                    while r >= mats[j].0.rows {
                        r -= mats[j].0.rows;
                        j += 1;
                    }
                    let (m, out) = mats[j];
                    let len = GROUP.min(range.end - g).min(m.rows - r);
                    let rows = m.group(r, len);
                    self.dots(m.kind, rows, (act, blocks, n), |t, y| {
                        for (k, y) in y[..len].iter().enumerate() {
                            // SAFETY: (t, r + k) belongs to this chunk only.
                            let o = unsafe { &mut *out.at(t * m.rows + r + k) };
                            *o = if add { *o + *y } else { *y };
                        }
                    });
                    g += len;
                }
            }
        });
    }

    /// `h[t * ffn + r] = silu(gate[r] · act[t]) · (up[r] · act[t])`.
    fn swiglu(&self, gate: &QMatrix, up: &QMatrix, act: &[ActBlock], n: usize, h: &mut [f32]) {
        let blocks = gate.cols / QK;
        assert!(up.rows == gate.rows && up.cols == gate.cols);
        assert!(act.len() >= n * blocks && h.len() >= n * gate.rows);
        let out = Out(h.as_mut_ptr());
        let threads = self.pool.threads();
        let chunks = Chunks::new(gate.rows, chunk_for(gate.rows, threads), threads);
        self.pool.run(&|thread| {
            while let Some(range) = chunks.take(thread) {
                for r in range.clone().step_by(GROUP) {
                    let len = GROUP.min(range.end - r);
                    let (gr, ur) = (gate.group(r, len), up.group(r, len));
                    // The gate's products first, then each replaced by
                    // silu(gate) · up.
                    self.dots(gate.kind, gr, (act, blocks, n), |t, g| {
                        for (k, g) in g[..len].iter().enumerate() {
                            // SAFETY: (t, r + k) belongs to this chunk only.
                            unsafe { *out.at(t * gate.rows + r + k) = *g };
                        }
                    });
                    self.dots(up.kind, ur, (act, blocks, n), |t, u| {
                        for (k, u) in u[..len].iter().enumerate() {
                            // SAFETY: as above.
                            unsafe {
                                let h = out.at(t * gate.rows + r + k);
                                *h = ops::silu(*h) * u;
                            }
                        }
                    });
                }
            }
        });
    }

    /// Causal attention of each row's queries over its own cache, a KV
    /// group's query heads per work item ([`Items`]).
    fn attention(&self, q: &[f32], caches: &[Cache], out: &mut [f32]) {
        let c = &self.weights.cfg;
        let (hd, heads) = (c.head_dim, c.heads);
        let scale = 1.0 / (hd as f32).sqrt();
        let n = caches.len();
        assert!(q.len() >= n * heads * hd && out.len() >= n * heads * hd);
        for cache in caches {
            assert!(cache.k.len() >= cache.seen && cache.v.len() >= cache.seen);
        }
        let threads = self.pool.threads();
        let items = Items::new(heads, c.kv_heads, n, threads);
        let o = Out(out.as_mut_ptr());
        let chunks = Chunks::new(items.count(n), 1, threads);
        self.pool.run(&|thread| {
            let mut scores = self.scratch[thread]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            while let Some(range) = chunks.take(thread) {
                for i in range {
                    let Item {
                        row: t,
                        kv_head: kvh,
                        first,
                        count,
                    } = items.item(i);
                    let Cache { k, v, seen } = caches[t];
                    let qs = &q[(t * heads + first) * hd..][..count * hd];
                    // SAFETY: these heads of this token are this item's alone.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(o.at((t * heads + first) * hd), count * hd)
                    };
                    let head = KvHead {
                        key: |p: usize| k.row(p, kvh),
                        value: |p: usize| v.row(p, kvh),
                        scale,
                    };
                    head.attend(self.kernels, (qs, hd), seen, &mut scores, dst);
                }
            }
        });
    }
}
