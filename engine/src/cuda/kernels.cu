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

// Programmatic dependent launch (sm_90; forward.rs sets the launch
// attribute where the GPU has it). A kernel launched with it may start
// while the kernel before it in the stream still runs, so every kernel
// here touches nothing but its own weights (L2 prefetches, which have no
// effect on results) before pdl_wait(), which returns once the kernel
// before it has finished and its writes are visible; without the
// attribute, or before sm_90, it returns at once. pdl_launch_next() then
// lets the next kernel be launched into the SMs this one frees, so its
// weight prefetches overlap this kernel's last wave instead of following
// it (a decode step is ~260 launches, most of them a few microseconds).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 for the 128-byte lines of [p, p + n), the warp's lanes taking
// one line each in turn. A hint with no result: it puts more of the
// memory system's bandwidth to work without holding registers.
__device__ __forceinline__ void prefetch_span(const void* p, size_t n) {
    const int lane = threadIdx.x & 31;
    const char* first = (const char*)((uintptr_t)p & ~(uintptr_t)127);
    const char* end = (const char*)p + n;
    for (const char* c = first + lane * 128; c < end; c += 32 * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c));
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

// One weight block as loaded, still packed: 16 bytes of nibbles (Q4_0,
// Q4_1) or 32 bytes of int8 (Q8_0, `hi` the second 16), and the scale as
// bits (a half d, or Q4_1's half2 (d, m)). Held packed, a block takes 5
// registers (Q8_0 9) instead of 10 unpacked: more blocks in flight per
// lane for the same registers.
template <int K>
struct Raw {
    uint4 lo, hi;
    uint32_t s;
};

template <int K>
__device__ __forceinline__ void load_raw(const uint8_t* __restrict__ qs,
                                         const void* __restrict__ sc, size_t wb, Raw<K>& r) {
    if (K == Q8_0) {
        r.lo = __ldg((const uint4*)qs + wb * 2);
        r.hi = __ldg((const uint4*)qs + wb * 2 + 1);
    } else {
        r.lo = __ldg((const uint4*)qs + wb);
    }
    if (K == Q4_1)
        r.s = __ldg((const unsigned int*)sc + wb);
    else
        r.s = __ldg((const unsigned short*)sc + wb);
}

// A packed block's values as eight words of four int8 (or four nibbles,
// values 0..15, for the 4-bit kinds) and its scale(s).
template <int K>
__device__ __forceinline__ void unpack(const Raw<K>& r, int w[8], float& d, float& m) {
    if (K == Q8_0) {
        w[0] = r.lo.x; w[1] = r.lo.y; w[2] = r.lo.z; w[3] = r.lo.w;
        w[4] = r.hi.x; w[5] = r.hi.y; w[6] = r.hi.z; w[7] = r.hi.w;
    } else {
        // Byte j holds value j (low nibble) and value j + 16 (high).
        const uint4 p = r.lo;
        w[0] = p.x & 0x0f0f0f0f; w[1] = p.y & 0x0f0f0f0f;
        w[2] = p.z & 0x0f0f0f0f; w[3] = p.w & 0x0f0f0f0f;
        w[4] = (p.x >> 4) & 0x0f0f0f0f; w[5] = (p.y >> 4) & 0x0f0f0f0f;
        w[6] = (p.z >> 4) & 0x0f0f0f0f; w[7] = (p.w >> 4) & 0x0f0f0f0f;
    }
    if (K == Q4_1) {
        __half2 h;
        memcpy(&h, &r.s, sizeof h);
        const float2 dm = __half22float2(h);
        d = dm.x;
        m = dm.y;
    } else {
        d = __half2float(__ushort_as_half((unsigned short)r.s));
        m = 0.0f;
    }
}

// One weight block, loaded and unpacked.
template <int K>
__device__ __forceinline__ void load_block(const uint8_t* __restrict__ qs,
                                           const void* __restrict__ sc, size_t wb, int w[8],
                                           float& d, float& m) {
    Raw<K> r;
    load_raw<K>(qs, sc, wb, r);
    unpack<K>(r, w, d, m);
}

// The L2 prefetch of weight row `row` (values and scales).
template <int K>
__device__ __forceinline__ void prefetch_row(const uint8_t* qs, const void* sc, int row,
                                             int blocks) {
    const int vb = K == Q8_0 ? 32 : 16, sb = K == Q4_1 ? 4 : 2;
    const size_t base = (size_t)row * blocks;
    prefetch_span(qs + base * vb, (size_t)blocks * vb);
    prefetch_span((const uint8_t*)sc + base * sb, (size_t)blocks * sb);
}

// The L2 prefetch of row `row` of both gate and up.
template <int K>
__device__ __forceinline__ void prefetch_gate_up(const uint8_t* gq, const void* gs,
                                                 const uint8_t* uq, const void* us, int row,
                                                 int blocks) {
    prefetch_row<K>(gq, gs, row, blocks);
    prefetch_row<K>(uq, us, row, blocks);
}

// U weight blocks of a row, as one lane holds them: blocks b0, b0 + 32,
// ..., b0 + 32 (U - 1) (those before `blocks`).
template <int K, int U>
struct Chunk {
    int w[U][8];
    float d[U], m[U];
};

template <int K, int U>
__device__ __forceinline__ void load_chunk(const uint8_t* __restrict__ qs,
                                           const void* __restrict__ sc, size_t base, int b0,
                                           int blocks, Chunk<K, U>& c) {
#pragma unroll
    for (int u = 0; u < U; u++)
        if (b0 + 32 * u < blocks) load_block<K>(qs, sc, base + b0 + 32 * u, c.w[u], c.d[u], c.m[u]);
}

// Block b's product with activation row t, as the CPU engine computes
// it: an integer dot product, then one float step.
//   aq: rows of `blocks * 32` int8, as: rows of `blocks` (d, s)
template <int K>
__device__ __forceinline__ float block_dot(const int w[8], float d, float m,
                                           const int8_t* __restrict__ aq,
                                           const float2* __restrict__ as, int t, int blocks,
                                           int b) {
    const int4* a = (const int4*)(aq + ((size_t)t * blocks + b) * QK);
    const int4 a0 = a[0], a1 = a[1];
    int s = __dp4a(w[0], a0.x, 0);
    s = __dp4a(w[1], a0.y, s);
    s = __dp4a(w[2], a0.z, s);
    s = __dp4a(w[3], a0.w, s);
    s = __dp4a(w[4], a1.x, s);
    s = __dp4a(w[5], a1.y, s);
    s = __dp4a(w[6], a1.z, s);
    s = __dp4a(w[7], a1.w, s);
    const float2 ads = as[(size_t)t * blocks + b];
    if (K == Q4_0) return d * (ads.x * (float)s - 8.0f * ads.y);
    if (K == Q4_1) return d * ads.x * (float)s + m * ads.y;
    return d * ads.x * (float)s;
}

// A chunk's products with `nt` (up to NT) activation rows, added to acc.
template <int K, int NT, int U>
__device__ __forceinline__ void chunk_dots(const Chunk<K, U>& c, int b0, int blocks,
                                           const int8_t* __restrict__ aq,
                                           const float2* __restrict__ as, int nt,
                                           float acc[NT]) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int b = b0 + 32 * u;
        if (b >= blocks) break;
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (NT == 1 || t < nt) acc[t] += block_dot<K>(c.w[u], c.d[u], c.m[u], aq, as, t, blocks, b);
    }
}

// One lane's share of `nt` (up to NT) dot products of weight row `row`
// with activation rows, from block `from` on: the lane takes blocks from,
// from + 32, ..., U at a time, all U loaded before any is used (batch-1
// decode is bound by memory latency and bandwidth, not arithmetic). The
// same arithmetic as chunk_dots, on arrays of its own: with a Chunk here
// the one-row SwiGLU spilled to local memory.
//   qs: the row-major blocks' 4-bit (16 bytes) or 8-bit (32 bytes) values
//   sc: per block a half d (Q4_0, Q8_0) or a half2 (d, m) (Q4_1)
template <int K, int NT, int U>
__device__ __forceinline__ void row_dots(const uint8_t* __restrict__ qs,
                                         const void* __restrict__ sc, int row, int from,
                                         int blocks, const int8_t* __restrict__ aq,
                                         const float2* __restrict__ as, int nt, float acc[NT]) {
    const size_t base = (size_t)row * blocks;
    for (int b0 = from; b0 < blocks; b0 += 32 * U) {
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
            for (int t = 0; t < NT; t++)
                if (NT == 1 || t < nt) acc[t] += block_dot<K>(w[u], d[u], m[u], aq, as, t, blocks, b);
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
    const int lane = threadIdx.x & 31;
    // The row's first chunk in registers and the rest asked of L2 while
    // the kernel before still runs.
    Chunk<K, U> first;
    if (row < rows) {
        load_chunk<K, U>(qs, sc, (size_t)row * blocks, lane, blocks, first);
        prefetch_row<K>(qs, sc, row, blocks);
    }
    pdl_wait();
    pdl_launch_next();
    if (row >= rows) return;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    chunk_dots<K, NT, U>(first, lane, blocks, aq, as, nt, acc);
    row_dots<K, NT, U>(qs, sc, row, lane + 32 * U, blocks, aq, as, nt, acc);
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
    constexpr int U = NT == 1 ? 4 : 2;
    // A warp's first rows come into L2 while the kernel before runs; each
    // next one while the warp works on the one before.
    prefetch_gate_up<K>(gq, gs, uq, us, blockIdx.x * QK + warp, blocks);
    pdl_wait();
    pdl_launch_next();
    for (int k = warp; k < QK; k += warps) {
        const int row = blockIdx.x * QK + k;
        if (k + warps < QK) prefetch_gate_up<K>(gq, gs, uq, us, row + warps, blocks);
        float g[NT], u[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) g[t] = u[t] = 0.0f;
        row_dots<K, NT, U>(gq, gs, row, lane, blocks, aq, as, nt, g);
        row_dots<K, NT, U>(uq, us, row, lane, blocks, aq, as, nt, u);
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

// The decode step's matrix kernel for large matrices (one activation row,
// two weight rows a warp): a lane keeps its blocks packed (Raw) and loads
// both rows' U blocks before using any, so a warp has 2 * U * 512 bytes
// of weights in flight (Q4) instead of U * 512, the two rows share each
// activation block's loads, and half as many blocks make the waves. On
// the 8B shape (H200, ncu) the 128k-row output matrix went from 69 % of
// DRAM bandwidth to 86 % and q|k|v (6144 rows: one wave where one row a
// warp needed one and a half) from 8.7 to 8.3 us; but a matrix whose
// one-row blocks fit in one wave lost (the output projection 6.3 -> 8.0
// us: half the warps, each waiting longer), so forward.rs launches this
// one only where one row a warp would need more than a wave. (Eight
// blocks a lane in flight on the down projection's long rows, one row a
// warp, was slower too: 19.9 against 16.1 us.) Each row's blocks are
// added in the same order as matvec's (lane, lane + 32, ...), so the
// results are the same bits (engine/tests/cuda.rs holds them to it).
template <int K, int R, int U>
__device__ __forceinline__ void load_rows_raw(const uint8_t* __restrict__ qs,
                                              const void* __restrict__ sc, int row0, int rows,
                                              int b0, int blocks, Raw<K> (&c)[R][U]) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int u = 0; u < U; u++)
            if (row0 + r < rows && b0 + 32 * u < blocks)
                load_raw<K>(qs, sc, (size_t)(row0 + r) * blocks + b0 + 32 * u, c[r][u]);
}

template <int K, int R, int U>
__device__ __forceinline__ void rows_dots_raw(const Raw<K> (&c)[R][U], int b0, int blocks,
                                              const int8_t* __restrict__ aq,
                                              const float2* __restrict__ as, float acc[R]) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int b = b0 + 32 * u;
        if (b >= blocks) break;
#pragma unroll
        for (int r = 0; r < R; r++) {
            int w[8];
            float d, m;
            unpack<K>(c[r][u], w, d, m);
            acc[r] += block_dot<K>(w, d, m, aq, as, 0, blocks, b);
        }
    }
}

// out[row] (+)= W[row] . act for the R rows from warp * R: eight warps a
// block of 256 threads, 8 * R rows a block. (Rows past `rows` are loaded
// as nothing and stored nowhere; the R rows of the last warp may straddle
// the end.)
template <int K, int R, int U>
__device__ void matvec_rows(const uint8_t* __restrict__ qs, const void* __restrict__ sc,
                            int rows, int blocks, const int8_t* __restrict__ aq,
                            const float2* __restrict__ as, float* __restrict__ out, int add) {
    const int row0 = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R;
    const int lane = threadIdx.x & 31;
    // The first chunk in registers while the kernel before still runs
    // (rows longer than 32 * U blocks load the rest as they go: with the
    // L2 prefetch of matvec, ptxas spilled).
    Raw<K> c[R][U];
    load_rows_raw<K, R, U>(qs, sc, row0, rows, lane, blocks, c);
    pdl_wait();
    pdl_launch_next();
    if (row0 >= rows) return;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    rows_dots_raw<K, R, U>(c, lane, blocks, aq, as, acc);
    for (int b0 = lane + 32 * U; b0 < blocks; b0 += 32 * U) {
        load_rows_raw<K, R, U>(qs, sc, row0, rows, b0, blocks, c);
        rows_dots_raw<K, R, U>(c, b0, blocks, aq, as, acc);
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0 && row0 + r < rows) out[row0 + r] = add ? out[row0 + r] + v : v;
    }
}

// swiglu_quant<K, 1> with each row's gate and up blocks loaded together
// (U of each, packed: 4 KB in flight a warp for Q4 instead of 2 KB, one
// round trip a row instead of two) and the first row's before the wait:
// 27.5 us against 31.6 on the 8B shape (H200, ncu). The same additions in
// the same order: the same bits.
template <int K, int U>
__device__ void swiglu_pair(const uint8_t* __restrict__ gq, const void* __restrict__ gs,
                            const uint8_t* __restrict__ uq, const void* __restrict__ us,
                            int rows, int blocks, const int8_t* __restrict__ aq,
                            const float2* __restrict__ as, int8_t* __restrict__ hq,
                            float2* __restrict__ hs) {
    __shared__ float h[QK];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    Raw<K> g[1][U], u[1][U];
    const int first = blockIdx.x * QK + warp;
    load_rows_raw<K, 1, U>(gq, gs, first, rows, lane, blocks, g);
    load_rows_raw<K, 1, U>(uq, us, first, rows, lane, blocks, u);
    pdl_wait();
    pdl_launch_next();
    for (int k = warp; k < QK; k += warps) {
        const int row = blockIdx.x * QK + k;
        // The next row into L2 while this one is worked on.
        if (k + warps < QK) prefetch_gate_up<K>(gq, gs, uq, us, row + warps, blocks);
        float gv = 0.0f, uv = 0.0f;
        for (int b0 = lane;;) {
            rows_dots_raw<K, 1, U>(g, b0, blocks, aq, as, &gv);
            rows_dots_raw<K, 1, U>(u, b0, blocks, aq, as, &uv);
            b0 += 32 * U;
            if (b0 >= blocks) break;
            load_rows_raw<K, 1, U>(gq, gs, row, rows, b0, blocks, g);
            load_rows_raw<K, 1, U>(uq, us, row, rows, b0, blocks, u);
        }
        if (k + warps < QK) {
            load_rows_raw<K, 1, U>(gq, gs, row + warps, rows, lane, blocks, g);
            load_rows_raw<K, 1, U>(uq, us, row + warps, rows, lane, blocks, u);
        }
        gv = warp_sum(gv);
        uv = warp_sum(uv);
        if (lane == 0) h[k] = gv / (1.0f + expf(-gv)) * uv;
    }
    __syncthreads();
    if (warp == 0)
        quantize_block(h[lane], hq + (size_t)blockIdx.x * QK, hs + blockIdx.x);
}

// Two rows a warp, four blocks each in flight, for the 4-bit formats
// (Q8_0's blocks are twice the bytes: its decode keeps matvec's one row).
// At most 64 registers: four blocks of 256 threads an SM. The parameters
// are MATVEC's, so that forward.rs launches either the same way; nt (1)
// and out_stride go unused (one activation row).
#define MATVEC_ROWS(K, R, U, NAME)                                                                \
    extern "C" __global__ void __launch_bounds__(256, 4) NAME(                                   \
        const uint8_t* qs, const void* sc, int rows, int blocks, const int8_t* aq,               \
        const float2* as, int nt, float* out, int out_stride, int add) {                         \
        matvec_rows<K, R, U>(qs, sc, rows, blocks, aq, as, out, add);                            \
    }
MATVEC_ROWS(Q4_0, 2, 4, matvec_q4_0_r2)
MATVEC_ROWS(Q4_1, 2, 4, matvec_q4_1_r2)

// SWIGLU's parameters (nt, 1, unused), as MATVEC_ROWS has MATVEC's.
#define SWIGLU_PAIR(K, U, NAME)                                                                   \
    extern "C" __global__ void __launch_bounds__(256, 4) NAME(                                   \
        const uint8_t* gq, const void* gs, const uint8_t* uq, const void* us, int rows,          \
        int blocks, const int8_t* aq, const float2* as, int nt, int8_t* hq, float2* hs) {        \
        swiglu_pair<K, U>(gq, gs, uq, us, rows, blocks, aq, as, hq, hs);                         \
    }
SWIGLU_PAIR(Q4_0, 4, swiglu_q4_0_pair)
SWIGLU_PAIR(Q4_1, 4, swiglu_q4_1_pair)
SWIGLU_PAIR(Q8_0, 2, swiglu_q8_0_pair)

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
    pdl_wait();
    pdl_launch_next();
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
    const int lane = threadIdx.x & 31;
    const int blocks = dim / QK;
    const int b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int i = b * QK + lane;
    // The norm's weight before the wait: it never changes.
    const float wi = b < blocks ? weight[i] : 0.0f;
    pdl_wait();
    pdl_launch_next();
    const float* row = x + (size_t)blockIdx.y * dim;
    float ss = 0.0f;
    const float4* r4 = (const float4*)row;
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
        const float4 v = r4[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = block_sum(ss, scratch);
    const float scale = 1.0f / sqrtf(ss / (float)dim + eps);
    if (b >= blocks) return;
    quantize_block(row[i] * scale * wi, aq + ((size_t)blockIdx.y * blocks + b) * QK,
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
    // The rotation before the wait: the position comes from the host's
    // copy before the step, which no kernel writes.
    const int p = *pos + t;
    float s = 0.0f, c = 1.0f;
    if (active) sincosf((float)p * inv_freq[i], &s, &c);
    pdl_wait();
    pdl_launch_next();
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
// blockDim.x = ATT_THREADS; the head size is E * 32 (E = 1..8: each
// head's output is whole quantization blocks), one instance per E.
//
// A warp takes ATT_ROWS consecutive positions at a time and lane l the
// values l * E .. l * E + E - 1 of each: a position's key (or value) row
// is one coalesced read by the warp, and the ATT_ROWS rows' reads are all
// in flight before any is used. The cache rows the head will read are
// asked of L2 before pdl_wait(), while the kernels before still run.
// (A thread per position reading its whole key row took 16.8 us a layer
// on the 8B shape at ~190 positions: 32 blocks, each thread waiting on
// one load after another; before that, one warp reducing every score in
// turn took ~50 us.)
#define ATT_THREADS 512
#define ATT_ROWS 8
// Positions of the cache prefetched into L2 at most (the rest is read
// from memory as it comes): 1024 positions of an 8B llama's eight key
// and value heads are 8 MiB.
#define ATT_PREFETCH 1024

// E consecutive floats at p (p aligned to 4 * E bytes when E is 2 or a
// multiple of 4), in as few loads as that allows.
template <int E>
__device__ __forceinline__ void load_floats(const float* __restrict__ p, float v[E]) {
    if constexpr (E % 4 == 0) {
#pragma unroll
        for (int i = 0; i < E; i += 4) {
            const float4 f = *(const float4*)(p + i);
            v[i] = f.x; v[i + 1] = f.y; v[i + 2] = f.z; v[i + 3] = f.w;
        }
    } else if constexpr (E == 2) {
        const float2 f = *(const float2*)p;
        v[0] = f.x; v[1] = f.y;
    } else {
#pragma unroll
        for (int i = 0; i < E; i++) v[i] = p[i];
    }
}

// The ATT_ROWS cache rows from position p0 (those before `seen`), lane's
// share of each: all loads issued before any value is used.
template <int E>
__device__ __forceinline__ void load_rows(const float* __restrict__ base, int p0, int seen,
                                          int kv_dim, float rows[ATT_ROWS][E]) {
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++)
        if (p0 + r < seen) load_floats<E>(base + (size_t)(p0 + r) * kv_dim, rows[r]);
}

template <int E>
__device__ void attention(const float* __restrict__ qkv, const float* __restrict__ cache_k,
                          const float* __restrict__ cache_v, const int* __restrict__ pos,
                          int heads, int kv_heads, float scale, int8_t* __restrict__ aq,
                          float2* __restrict__ as) {
    constexpr int hd = E * 32;
    extern __shared__ float scores[];
    __shared__ float part[ATT_THREADS / 32][hd];
    __shared__ float out[hd];
    __shared__ float scratch[32];
    const int t = blockIdx.y, head = blockIdx.x;
    const int q_dim = heads * hd, kv_dim = kv_heads * hd, tot = q_dim + 2 * kv_dim;
    const int kvh = head / (heads / kv_heads);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    // The position comes from the host's copy before the step, which no
    // kernel writes: it can be read before the wait.
    const int seen = *pos + t + 1;
    {
        const int n = min(seen, ATT_PREFETCH);
        const size_t row_bytes = hd * sizeof(float);
        for (int p = warp; p < n; p += warps) {
            prefetch_span(cache_k + (size_t)p * kv_dim + kvh * hd, row_bytes);
            prefetch_span(cache_v + (size_t)p * kv_dim + kvh * hd, row_bytes);
        }
    }
    pdl_wait();
    pdl_launch_next();
    float q[E];
    load_floats<E>(qkv + (size_t)t * tot + head * hd + lane * E, q);
    const float* kbase = cache_k + kvh * hd + lane * E;
    const float* vbase = cache_v + kvh * hd + lane * E;

    // Scores.
    for (int p0 = warp * ATT_ROWS; p0 < seen; p0 += warps * ATT_ROWS) {
        float k[ATT_ROWS][E];
        load_rows<E>(kbase, p0, seen, kv_dim, k);
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            if (p0 + r >= seen) break;
            float d = 0.0f;
#pragma unroll
            for (int e = 0; e < E; e++) d += q[e] * k[r][e];
            d = warp_sum(d);
            if (lane == 0) scores[p0 + r] = d * scale;
        }
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

    // Values: each warp's weighted sum of its positions' rows, then the
    // warps' sums added.
    float acc[E];
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] = 0.0f;
    for (int p0 = warp * ATT_ROWS; p0 < seen; p0 += warps * ATT_ROWS) {
        float v[ATT_ROWS][E];
        load_rows<E>(vbase, p0, seen, kv_dim, v);
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            if (p0 + r >= seen) break;
            const float w = scores[p0 + r];
#pragma unroll
            for (int e = 0; e < E; e++) acc[e] += w * v[r][e];
        }
    }
#pragma unroll
    for (int e = 0; e < E; e++) part[warp][lane * E + e] = acc[e];
    __syncthreads();
    const float inv = 1.0f / sum;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < warps; w++) o += part[w][i];
        out[i] = o * inv;
    }
    __syncthreads();
    const int qblocks = q_dim / QK;
    for (int b = warp; b < E; b += warps)
        quantize_block(out[b * QK + lane], aq + ((size_t)t * qblocks + head * E + b) * QK,
                       as + (size_t)t * qblocks + head * E + b);
}

#define ATTENTION(E)                                                                              \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention_##E(                     \
        const float* qkv, const float* cache_k, const float* cache_v, const int* pos, int heads,  \
        int kv_heads, float scale, int8_t* aq, float2* as) {                                      \
        attention<E>(qkv, cache_k, cache_v, pos, heads, kv_heads, scale, aq, as);                 \
    }
ATTENTION(1)
ATTENTION(2)
ATTENTION(3)
ATTENTION(4)
ATTENTION(5)
ATTENTION(6)
ATTENTION(7)
ATTENTION(8)
