// The CUDA engine's kernels (engine/src/cuda/forward.rs launches them).
// Compiled ahead of time by engine/build.rs into SASS for the GPUs named
// there, so no PTX compiler is needed where the engine runs.
//
// The arithmetic mirrors the CPU engine (engine/src/cpu): weights stay in
// their GGUF block encoding (split into a nibble/byte array and a scale
// array for aligned loads), activations are quantized per 32 values to
// int8 with (d, s = d * sum q) before each matrix product, and a block's
// products are integer dot products (dp4a) with one float step per block.
// Float additions happen in another order than on the CPU, so logits agree
// to rounding, not to the bit (docs/inference.md).
//
// A decode step reads its position and token from device memory, so the
// same launches can be captured once into a CUDA graph and replayed.

#include <cuda_fp16.h>
#include <stdint.h>

#define QK 32
#define Q4_0 0
#define Q4_1 1
#define Q8_0 2

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One warp quantizes 32 values (one per lane) as the CPU's quantize_act
// does: d = amax / 127, q = v * (1 / d) rounded to nearest even.
__device__ __forceinline__ void quantize_block(float v, int8_t* q, float2* ds) {
    const int lane = threadIdx.x & 31;
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    const int qi = __float2int_rn(v * id);
    q[lane] = (int8_t)qi;
    const int sum = warp_sum_int(qi);
    if (lane == 0) *ds = make_float2(d, d * (float)sum);
}

// Block sums of a whole thread block (blockDim.x a multiple of 32, at most
// 1024); every thread gets the result.
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = lane < warps ? scratch[lane] : -INFINITY;
    return warp_max(v);
}

// One weight block's values as eight words of four int8 (or four
// nibbles, values 0..15, for the 4-bit kinds) and its scale(s).
template <int K>
__device__ __forceinline__ void load_block(const uint8_t* __restrict__ qs,
                                           const void* __restrict__ sc, size_t wb, int w[8],
                                           float& d, float& m) {
    if (K == Q8_0) {
        const uint4 lo = __ldg((const uint4*)qs + wb * 2);
        const uint4 hi = __ldg((const uint4*)qs + wb * 2 + 1);
        w[0] = lo.x; w[1] = lo.y; w[2] = lo.z; w[3] = lo.w;
        w[4] = hi.x; w[5] = hi.y; w[6] = hi.z; w[7] = hi.w;
        d = __half2float(__ldg((const __half*)sc + wb));
        m = 0.0f;
    } else {
        // Byte j holds value j (low nibble) and value j + 16 (high).
        const uint4 p = __ldg((const uint4*)qs + wb);
        w[0] = p.x & 0x0f0f0f0f; w[1] = p.y & 0x0f0f0f0f;
        w[2] = p.z & 0x0f0f0f0f; w[3] = p.w & 0x0f0f0f0f;
        w[4] = (p.x >> 4) & 0x0f0f0f0f; w[5] = (p.y >> 4) & 0x0f0f0f0f;
        w[6] = (p.z >> 4) & 0x0f0f0f0f; w[7] = (p.w >> 4) & 0x0f0f0f0f;
        if (K == Q4_0) {
            d = __half2float(__ldg((const __half*)sc + wb));
            m = 0.0f;
        } else {
            const float2 dm = __half22float2(__ldg((const __half2*)sc + wb));
            d = dm.x;
            m = dm.y;
        }
    }
}

// One lane's share of `nt` (up to NT) dot products of weight row `row`
// with activation rows: the lane takes blocks lane, lane + 32, ...
//   qs: the row-major blocks' 4-bit (16 bytes) or 8-bit (32 bytes) values
//   sc: per block a half d (Q4_0, Q8_0) or a half2 (d, m) (Q4_1)
//   aq: nt rows of `blocks * 32` int8, as: nt rows of `blocks` (d, s)
// U blocks' weights are loaded before any is used, so that each lane has
// several loads in flight (batch-1 decode is bound by memory latency and
// bandwidth, not arithmetic).
template <int K, int NT, int U = (NT == 1 ? 4 : 2)>
__device__ __forceinline__ void row_dots(const uint8_t* __restrict__ qs,
                                         const void* __restrict__ sc, int row, int blocks,
                                         const int8_t* __restrict__ aq,
                                         const float2* __restrict__ as, int nt, float acc[NT]) {
    const int lane = threadIdx.x & 31;
    const size_t base = (size_t)row * blocks;
    for (int b0 = lane; b0 < blocks; b0 += 32 * U) {
        int w[U][8];
        float d[U], m[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (b0 + 32 * u < blocks) load_block<K>(qs, sc, base + b0 + 32 * u, w[u], d[u], m[u]);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int b = b0 + 32 * u;
            if (b >= blocks) break;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (NT == 1 || t < nt) {
                    const int4* a = (const int4*)(aq + ((size_t)t * blocks + b) * QK);
                    const int4 a0 = a[0], a1 = a[1];
                    int s = __dp4a(w[u][0], a0.x, 0);
                    s = __dp4a(w[u][1], a0.y, s);
                    s = __dp4a(w[u][2], a0.z, s);
                    s = __dp4a(w[u][3], a0.w, s);
                    s = __dp4a(w[u][4], a1.x, s);
                    s = __dp4a(w[u][5], a1.y, s);
                    s = __dp4a(w[u][6], a1.z, s);
                    s = __dp4a(w[u][7], a1.w, s);
                    const float2 ads = as[(size_t)t * blocks + b];
                    if (K == Q4_0)
                        acc[t] += d[u] * (ads.x * (float)s - 8.0f * ads.y);
                    else if (K == Q4_1)
                        acc[t] += d[u] * ads.x * (float)s + m[u] * ads.y;
                    else
                        acc[t] += d[u] * ads.x * (float)s;
                }
            }
        }
    }
}

// out[t * out_stride + row] (+)= W[row] . act[t] for t < nt: one warp per
// row, eight rows per block of 256 threads; U blocks in flight per lane.
template <int K, int NT, int U>
__device__ void matvec(const uint8_t* __restrict__ qs, const void* __restrict__ sc, int rows,
                       int blocks, const int8_t* __restrict__ aq, const float2* __restrict__ as,
                       int nt, float* __restrict__ out, int out_stride, int add) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    row_dots<K, NT, U>(qs, sc, row, blocks, aq, as, nt, acc);
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float v = warp_sum(acc[t]);
        if (lane == t && t < nt) {
            float* o = out + (size_t)t * out_stride + row;
            *o = add ? *o + v : v;
        }
    }
}

// h = silu(gate . act) * (up . act), quantized at once for the next
// product: a block owns 32 rows (one quantization block), its warps take
// them in turn.
template <int K, int NT>
__device__ void swiglu_quant(const uint8_t* __restrict__ gq, const void* __restrict__ gs,
                             const uint8_t* __restrict__ uq, const void* __restrict__ us,
                             int rows, int blocks, const int8_t* __restrict__ aq,
                             const float2* __restrict__ as, int nt, int8_t* __restrict__ hq,
                             float2* __restrict__ hs) {
    __shared__ float h[NT][QK];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int k = warp; k < QK; k += warps) {
        const int row = blockIdx.x * QK + k;
        float g[NT], u[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) g[t] = u[t] = 0.0f;
        row_dots<K, NT>(gq, gs, row, blocks, aq, as, nt, g);
        row_dots<K, NT>(uq, us, row, blocks, aq, as, nt, u);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float gv = warp_sum(g[t]), uv = warp_sum(u[t]);
            if (lane == 0) h[t][k] = gv / (1.0f + expf(-gv)) * uv;
        }
    }
    __syncthreads();
    const int hblocks = rows / QK;
    for (int t = warp; t < nt; t += warps)
        quantize_block(h[t][lane], hq + ((size_t)t * hblocks + blockIdx.x) * QK,
                       hs + (size_t)t * hblocks + blockIdx.x);
}

#define MATVEC(K, NT, U, NAME)                                                                    \
    extern "C" __global__ void __launch_bounds__(256) NAME(                                      \
        const uint8_t* qs, const void* sc, int rows, int blocks, const int8_t* aq,               \
        const float2* as, int nt, float* out, int out_stride, int add) {                         \
        matvec<K, NT, U>(qs, sc, rows, blocks, aq, as, nt, out, out_stride, add);                \
    }
MATVEC(Q4_0, 1, 4, matvec_q4_0_1)
MATVEC(Q4_1, 1, 4, matvec_q4_1_1)
MATVEC(Q8_0, 1, 4, matvec_q8_0_1)
MATVEC(Q4_0, 8, 2, matvec_q4_0_8)
MATVEC(Q4_1, 8, 2, matvec_q4_1_8)
MATVEC(Q8_0, 8, 2, matvec_q8_0_8)
// (Eight blocks in flight per lane in the one-row instances measured
// slower on the 8B shape: 310.5 against 322.7 tok/s, BENCHMARKS.md.)

// Launched with 256 threads, each warp taking four of the 32 rows. The
// one-row instances are compiled for up to 1024 threads (which caps them
// at 64 registers) as they were measured: a row per warp at 1024 threads
// ran the 8B shape at 322.7 tok/s, 256 threads at 333.6 (BENCHMARKS.md).
#define SWIGLU(K, NT, NAME)                                                                       \
    extern "C" __global__ void __launch_bounds__(NT == 1 ? 1024 : 256) NAME(                     \
        const uint8_t* gq, const void* gs, const uint8_t* uq, const void* us, int rows,          \
        int blocks, const int8_t* aq, const float2* as, int nt, int8_t* hq, float2* hs) {        \
        swiglu_quant<K, NT>(gq, gs, uq, us, rows, blocks, aq, as, nt, hq, hs);                   \
    }
SWIGLU(Q4_0, 1, swiglu_q4_0_1)
SWIGLU(Q4_1, 1, swiglu_q4_1_1)
SWIGLU(Q8_0, 1, swiglu_q8_0_1)
SWIGLU(Q4_0, 8, swiglu_q4_0_8)
SWIGLU(Q4_1, 8, swiglu_q4_1_8)
SWIGLU(Q8_0, 8, swiglu_q8_0_8)

// The rows ids[0..nt) of an embedding matrix, as floats: x[t * dim + i].
// One block per token.
extern "C" __global__ void embed(const uint8_t* __restrict__ qs, const void* __restrict__ sc,
                                 int kind, int dim, const int* __restrict__ ids,
                                 float* __restrict__ x) {
    const int t = blockIdx.x;
    const int blocks = dim / QK;
    const size_t base = (size_t)ids[t] * blocks;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const size_t b = base + i / QK;
        const int j = i % QK;
        float v;
        if (kind == Q8_0) {
            v = __half2float(((const __half*)sc)[b]) * (float)(int8_t)qs[b * 32 + j];
        } else {
            const uint8_t byte = qs[b * 16 + (j & 15)];
            const int q = j < 16 ? (byte & 15) : (byte >> 4);
            if (kind == Q4_0) {
                v = __half2float(((const __half*)sc)[b]) * (float)(q - 8);
            } else {
                const float2 dm = __half22float2(((const __half2*)sc)[b]);
                v = dm.x * (float)q + dm.y;
            }
        }
        x[(size_t)t * dim + i] = v;
    }
}

// RMS-normalises row blockIdx.y of x, multiplies by the norm's weight and
// quantizes the result for the next product. Every block sums the whole
// row's squares itself (a few KB from L2) and quantizes eight of its
// 32-value blocks, one per warp: a single block doing all of a 4096-wide
// row took 7 us, most of it one warp after another waiting on memory.
// blockDim.x = 256.
extern "C" __global__ void __launch_bounds__(256) rmsnorm_quant(
    const float* __restrict__ x, const float* __restrict__ weight, float eps, int dim,
    int8_t* __restrict__ aq, float2* __restrict__ as) {
    __shared__ float scratch[32];
    const float* row = x + (size_t)blockIdx.y * dim;
    float ss = 0.0f;
    const float4* r4 = (const float4*)row;
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
        const float4 v = r4[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = block_sum(ss, scratch);
    const float scale = 1.0f / sqrtf(ss / (float)dim + eps);
    const int lane = threadIdx.x & 31;
    const int blocks = dim / QK;
    const int b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (b >= blocks) return;
    const int i = b * QK + lane;
    quantize_block(row[i] * scale * weight[i], aq + ((size_t)blockIdx.y * blocks + b) * QK,
                   as + (size_t)blockIdx.y * blocks + b);
}

// For token t (blockIdx.y) at position *pos + t, head blockIdx.x of the
// fused q|k|v row: adds the bias, applies Qwen3's per-head norm, rotates
// (pairs (2i, 2i+1) when interleaved, else (i, i + hd/2)) and, for key
// heads, stores the key and its value head in the cache. Query heads are
// rotated in place. Thread i takes pair i; blockDim.x is hd / 2 rounded up
// to whole warps.
extern "C" __global__ void rope_store(float* __restrict__ qkv, const float* __restrict__ bias,
                                      const float* __restrict__ q_norm,
                                      const float* __restrict__ k_norm,
                                      const float* __restrict__ inv_freq,
                                      const int* __restrict__ pos, int heads, int kv_heads,
                                      int hd, float eps, int interleaved,
                                      float* __restrict__ cache_k, float* __restrict__ cache_v) {
    __shared__ float scratch[32];
    const int t = blockIdx.y, head = blockIdx.x, i = threadIdx.x, half_hd = hd / 2;
    const bool active = i < half_hd;
    const int q_dim = heads * hd, kv_dim = kv_heads * hd, tot = q_dim + 2 * kv_dim;
    const bool is_q = head < heads;
    const int off = is_q ? head * hd : q_dim + (head - heads) * hd;
    float* h = qkv + (size_t)t * tot + off;
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half_hd;
    float x = 0.0f, y = 0.0f;
    if (active) {
        x = h[a];
        y = h[b];
        if (bias) {
            x += bias[off + a];
            y += bias[off + b];
        }
    }
    const float* nw = is_q ? q_norm : k_norm;
    if (nw) {
        const float ss = block_sum(x * x + y * y, scratch);
        const float scale = 1.0f / sqrtf(ss / (float)hd + eps);
        if (active) {
            x *= scale * nw[a];
            y *= scale * nw[b];
        }
    }
    if (!active) return;
    const int p = *pos + t;
    float s, c;
    sincosf((float)p * inv_freq[i], &s, &c);
    const float rx = x * c - y * s, ry = x * s + y * c;
    if (is_q) {
        h[a] = rx;
        h[b] = ry;
        return;
    }
    const int kh = head - heads;
    float* kc = cache_k + (size_t)p * kv_dim + kh * hd;
    kc[a] = rx;
    kc[b] = ry;
    const float* v = qkv + (size_t)t * tot + q_dim + kv_dim + kh * hd;
    float* vc = cache_v + (size_t)p * kv_dim + kh * hd;
    float va = v[a], vb = v[b];
    if (bias) {
        va += bias[q_dim + kv_dim + kh * hd + a];
        vb += bias[q_dim + kv_dim + kh * hd + b];
    }
    vc[a] = va;
    vc[b] = vb;
}

// Causal attention of token t (blockIdx.y, at position *pos + t) for query
// head blockIdx.x over the cache, the head's output quantized for the
// output projection. Dynamic shared memory: one float per cached position.
// blockDim.x = ATT_THREADS; hd a multiple of 32 (each head's output is
// whole quantization blocks) and at most 256.
//
// Scores: one thread per position, the whole key row in 16-byte loads
// (independent loads, no reduction on the way). Values: warp w sums the
// positions w, w + warps, ..., lane l the dims l, l + 32, ... (coalesced
// rows), and the warps' sums are added at the end. A first version that
// reduced every score across a warp, one position after another, took
// ~50 us a layer on the 8B shape (a third of the decode step).
#define ATT_THREADS 512
extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention(
    const float* __restrict__ qkv, const float* __restrict__ cache_k,
    const float* __restrict__ cache_v, const int* __restrict__ pos, int heads, int kv_heads,
    int hd, float scale, int8_t* __restrict__ aq, float2* __restrict__ as) {
    extern __shared__ float scores[];
    __shared__ __align__(16) float qh[256];
    __shared__ float part[ATT_THREADS / 32][256];
    __shared__ float scratch[32];
    const int t = blockIdx.y, head = blockIdx.x;
    const int q_dim = heads * hd, kv_dim = kv_heads * hd, tot = q_dim + 2 * kv_dim;
    const int kvh = head / (heads / kv_heads);
    const int seen = *pos + t + 1;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qh[i] = qkv[(size_t)t * tot + head * hd + i];
    __syncthreads();
    const float4* q4 = (const float4*)qh;
    for (int p = threadIdx.x; p < seen; p += blockDim.x) {
        const float4* k = (const float4*)(cache_k + (size_t)p * kv_dim + kvh * hd);
        float d = 0.0f;
        for (int i = 0; i < hd / 4; i++) {
            const float4 kv = k[i], qv = q4[i];
            d += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
        }
        scores[p] = d * scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int p = threadIdx.x; p < seen; p += blockDim.x) mx = fmaxf(mx, scores[p]);
    mx = block_max(mx, scratch);
    float sum = 0.0f;
    for (int p = threadIdx.x; p < seen; p += blockDim.x) {
        const float e = expf(scores[p] - mx);
        scores[p] = e;
        sum += e;
    }
    sum = block_sum(sum, scratch);  // its __syncthreads also publishes scores
    const float inv = 1.0f / sum;
    float acc[8];
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j] = 0.0f;
    for (int p = warp; p < seen; p += warps) {
        const float s = scores[p];
        const float* v = cache_v + (size_t)p * kv_dim + kvh * hd;
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (j * 32 < hd) acc[j] += s * v[j * 32 + lane];
    }
#pragma unroll
    for (int j = 0; j < 8; j++)
        if (j * 32 < hd) part[warp][j * 32 + lane] = acc[j];
    __syncthreads();
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < warps; w++) o += part[w][i];
        qh[i] = o * inv;
    }
    __syncthreads();
    const int qblocks = q_dim / QK, hb = hd / QK;
    for (int b = warp; b < hb; b += warps)
        quantize_block(qh[b * QK + lane], aq + ((size_t)t * qblocks + head * hb + b) * QK,
                       as + (size_t)t * qblocks + head * hb + b);
}
