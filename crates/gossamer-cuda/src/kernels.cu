// gpt-oss on the GPU: every kernel of the forward pass except the cuBLAS products.
//
// Compiled at run time by NVRTC (no nvcc at build time) and written without any header, so
// the same source compiles wherever libnvrtc loads. Activations are f32; weights stay as the
// checkpoint stores them: bf16 (u16 bits) and MXFP4 (nibble blocks + E8M0 scales).
//
// Conventions: `n` tokens in the step, rows of activations are token-major ([n, width]).
// The KV pool is [block][layer][k|v][PAGE positions][kv_dim] f32; a sequence's block table
// maps its position p to block `table[p / PAGE]`, slot `p % PAGE`.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define PAGE 32
#define HEAD_DIM 64
// Small-batch products keep one accumulator per token in registers.
#define NT_MAX 8
#define GEMV_WARPS 8
#define SWIGLU_ALPHA 1.702f
#define INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ float bf(u16 v) { return __uint_as_float(((u32)v) << 16); }

// Round to nearest even, NaN kept quiet (what torch's `.to(bfloat16)` does).
__device__ __forceinline__ u16 to_bf(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}

// E8M0: 2^(s-127); 0 is the subnormal 2^-127 and 255 is inf, as on the CPU.
__device__ __forceinline__ float e8m0(u32 s) {
    return s == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(s << 23);
}

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

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : 0.f;
    return warp_sum(t);
}

// Whether this block is the last of `blocks` to finish a shared piece of work, after its
// writes (every thread's, before the call) are visible device-wide; the counter goes back to
// 0 for the next launch. One fence per block: the barrier orders the block's writes before
// thread 0's fence, which releases them all with the count (fences are cumulative); the last
// block's thread 0 fences again before the barrier lets its threads read the others' writes
// (through L2: __ldcg).
__device__ bool last_to_arrive(int* counter, int blocks) {
    __shared__ int last;
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(counter, 1) == blocks - 1;
        if (last) {
            *counter = 0;
            __threadfence();
        }
    }
    __syncthreads();
    return last;
}

__device__ __forceinline__ float swiglu(float g, float u, float limit) {
    g = fminf(g, limit);
    u = fminf(fmaxf(u, -limit), limit);
    return g / (1.f + expf(-SWIGLU_ALPHA * g)) * (u + 1.f);
}

// ---------------------------------------------------------------------------------------
// Embedding, norms, element-wise

// grid n, any block: x[t] = table[tokens[t]].
extern "C" __global__ void embed(const u16* table, const int* tokens, float* x, int h) {
    int t = blockIdx.x;
    const u16* row = table + (u64)tokens[t] * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) x[(u64)t * h + i] = bf(row[i]);
}

// grid n, block 256: RMSNorm of each row into f32 and/or bf16 outputs (either may be null).
extern "C" __global__ void rmsnorm(const float* x, const u16* gain, float eps, int h,
                                   float* out_f, u16* out_b) {
    __shared__ float scratch[32];
    int t = blockIdx.x;
    const float* xr = x + (u64)t * h;
    float s = 0.f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) s += xr[i] * xr[i];
    s = block_sum(s, scratch);
    float inv = 1.f / sqrtf(s / (float)h + eps);
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float v = xr[i] * inv * bf(gain[i]);
        if (out_f) out_f[(u64)t * h + i] = v;
        if (out_b) out_b[(u64)t * h + i] = to_bf(v);
    }
}

// grid (ceil(n*rows/256)), block 256: y[t, r] = bias[r] (accumulate = 0) or += bias[r].
extern "C" __global__ void add_bias(float* y, const u16* bias, int n, int rows, int accumulate) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (u64)n * rows) return;
    float b = bf(bias[i % rows]);
    y[i] = accumulate ? y[i] + b : b;
}

extern "C" __global__ void f32_to_bf16(const float* x, u16* out, u64 count) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) out[i] = to_bf(x[i]);
}

// grid m, any block: out[i] = x[rows[i]].
extern "C" __global__ void gather_rows(const float* x, const int* rows, float* out, int h) {
    const float* src = x + (u64)rows[blockIdx.x] * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) out[(u64)blockIdx.x * h + i] = src[i];
}

// ---------------------------------------------------------------------------------------
// Small-batch products (decode): one thread per weight row, the block's warps splitting the
// row's columns, so each warp reads 32 rows side by side (full 32-byte sectors per thread)
// and every thread of a warp reads the same inputs (a broadcast). The inputs of the step's
// tokens are staged in shared memory once per block, normalised there when `gain` is given.

// Stages `count` rows of x (row j is x[src_row(j)]) into xs, RMSNorm'd when gain != null.
__device__ void stage_inputs(const float* x, const int* src_rows, int count, int cols,
                             const u16* gain, float eps, float* xs) {
    __shared__ float inv[NT_MAX];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (gain) {
        for (int j = warp; j < count; j += blockDim.x >> 5) {
            const float* xr = x + (u64)(src_rows ? src_rows[j] : j) * cols;
            float s = 0.f;
#pragma unroll 16
            for (int i = lane; i < cols; i += 32) s += xr[i] * xr[i];
            s = warp_sum(s);
            if (lane == 0) inv[j] = 1.f / sqrtf(s / (float)cols + eps);
        }
        __syncthreads();
    }
    for (int j = 0; j < count; j++) {
        const float* xr = x + (u64)(src_rows ? src_rows[j] : j) * cols;
#pragma unroll 8
        for (int i = threadIdx.x; i < cols; i += blockDim.x)
            xs[j * cols + i] = gain ? xr[i] * inv[j] * bf(gain[i]) : xr[i];
    }
    __syncthreads();
}

__device__ __forceinline__ void unpack_bf16x8(uint4 a, float* w) {
    w[0] = __uint_as_float(a.x << 16); w[1] = __uint_as_float(a.x & 0xffff0000u);
    w[2] = __uint_as_float(a.y << 16); w[3] = __uint_as_float(a.y & 0xffff0000u);
    w[4] = __uint_as_float(a.z << 16); w[5] = __uint_as_float(a.z & 0xffff0000u);
    w[6] = __uint_as_float(a.w << 16); w[7] = __uint_as_float(a.w & 0xffff0000u);
}

// Accumulates `count` dot products of 16 weights against xs rows at column c0.
__device__ __forceinline__ void dot16(const float* w, const float* xs, int cols, int c0,
                                      int count, float* acc) {
#pragma unroll
    for (int j = 0; j < NT_MAX; j++) {
        if (j < count) {
            const float4* xv = (const float4*)(xs + j * cols + c0);
            float s = acc[j];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                float4 v = xv[q];
                s += w[4 * q] * v.x + w[4 * q + 1] * v.y + w[4 * q + 2] * v.z + w[4 * q + 3] * v.w;
            }
            acc[j] = s;
        }
    }
}

// One thread's partial dots for row `r` of a bf16 [rows, cols] matrix over chunks of 16
// columns c = first, first + stride, ... < last.
__device__ __forceinline__ void row_dots_bf16(const u16* w_row, const float* xs, int cols,
                                              int first, int last, int stride, int count,
                                              float* acc) {
    const uint4* p = (const uint4*)w_row;
#pragma unroll 4
    for (int c = first; c < last; c += stride) {
        uint4 a = __ldg(p + 2 * c), b = __ldg(p + 2 * c + 1);
        float w[16];
        unpack_bf16x8(a, w);
        unpack_bf16x8(b, w + 8);
        dot16(w, xs, cols, 16 * c, count, acc);
    }
}

// The same for an MXFP4 row (`blocks`: cols/2 bytes, `scales`: cols/32 bytes), chunks of 64
// columns (two 32-value blocks: 32 bytes of nibbles and two scale bytes).
__device__ __forceinline__ void row_dots_mxfp4(const u8* blocks, const u8* scales,
                                               const float* lut, const float* xs, int cols,
                                               int first, int last, int stride, int count,
                                               float* acc) {
    const uint4* p = (const uint4*)blocks;
    const u16* s2 = (const u16*)scales;
#pragma unroll 2
    for (int c = first; c < last; c += stride) {
        uint4 a = __ldg(p + 2 * c), b = __ldg(p + 2 * c + 1);
        u32 sc = __ldg(s2 + c);
        float s0 = e8m0(sc & 0xffu), s1 = e8m0(sc >> 8);
        u32 words[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int q = 0; q < 4; q++) {
            // 16 values: words 2q, 2q+1 (block q/2, values 16(q%2)..+16).
            float w[16];
            float s = q < 2 ? s0 : s1;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                u32 v = words[2 * q + h];
#pragma unroll
                for (int nib = 0; nib < 8; nib++) w[8 * h + nib] = lut[(v >> (4 * nib)) & 15u] * s;
            }
            dot16(w, xs, cols, 64 * c + 16 * q, count, acc);
        }
    }
}

// Sums the warps' partials: red[warp][j][lane]; returns this thread's (j = threadIdx/32,
// lane) total (only meaningful for j < count).
__device__ __forceinline__ float reduce_warps(float (*red)[NT_MAX][32], const float* acc,
                                              int count) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int j = 0; j < NT_MAX; j++)
        if (j < count) red[warp][j][lane] = acc[j];
    __syncthreads();
    int j = threadIdx.x >> 5;
    float s = 0.f;
    if (j < count)
        for (int w = 0; w < GEMV_WARPS; w++) s += red[w][j][lane];
    return s;
}

// y = W·x (+ bias) for n ≤ NT_MAX tokens; W bf16 [rows, cols], cols % 16 == 0.
// grid (ceil(rows/32), ksplit), block 256, dynamic shared n·cols floats.
// mode 0: y[t, r] = dot + bias; 1: y[t, r] += dot + bias (a residual);
// 2: y[split, t, r] = dot over the split's columns (partial sums, no bias).
extern "C" __global__ void __launch_bounds__(256)
gemv_bf16(const u16* w, const u16* bias, const float* x, const u16* gain, float eps, float* y,
          int rows, int cols, int n, int mode) {
    extern __shared__ float xs[];
    __shared__ float red[GEMV_WARPS][NT_MAX][32];
    stage_inputs(x, 0, n, cols, gain, eps, xs);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int r = blockIdx.x * 32 + lane;
    int chunks = cols / 16, per = (chunks + gridDim.y - 1) / gridDim.y;
    int c0 = blockIdx.y * per, c1 = min(chunks, c0 + per);
    float acc[NT_MAX];
#pragma unroll
    for (int j = 0; j < NT_MAX; j++) acc[j] = 0.f;
    if (r < rows) row_dots_bf16(w + (u64)r * cols, xs, cols, c0 + warp, c1, GEMV_WARPS, n, acc);
    float s = reduce_warps(red, acc, n);
    int t = threadIdx.x >> 5;
    if (t < n && r < rows) {
        if (mode == 2) {
            y[((u64)blockIdx.y * n + t) * rows + r] = s;
        } else {
            float v = s + (bias ? bf(bias[r]) : 0.f);
            u64 o = (u64)t * rows + r;
            y[o] = mode == 1 ? y[o] + v : v;
        }
    }
}

// ---------------------------------------------------------------------------------------
// One token's top-k experts by a whole warp: each lane holds experts lane, lane + 32, ...;
// k rounds of a shuffle argmax (highest logit, lowest index on ties, NaN never wins), then
// a softmax over the chosen logits. Lane 0 writes out_e[j], out_w[j]. k ≤ MAX_TOPK, and
// every array index is a compile-time constant so nothing goes to local memory.
#define MAX_EXPERTS_PER_LANE 8
#define MAX_TOPK 8
__device__ void topk_warp(const float* logits, int experts, int k, int* out_e, float* out_w) {
    int lane = threadIdx.x & 31;
    float v[MAX_EXPERTS_PER_LANE];
#pragma unroll
    for (int q = 0; q < MAX_EXPERTS_PER_LANE; q++) {
        int e = lane + 32 * q;
        v[q] = e < experts ? logits[e] : -INFINITY;
        if (v[q] != v[q]) v[q] = -INFINITY;
    }
    float chosen_v[MAX_TOPK];
    int chosen_e[MAX_TOPK];
    u32 taken = 0;  // bit q: expert lane + 32q already chosen
#pragma unroll
    for (int j = 0; j < MAX_TOPK; j++) {
        chosen_v[j] = -INFINITY;
        chosen_e[j] = 0;
        if (j < k) {
            float bv = -INFINITY;
            int be = 1 << 30;
#pragma unroll
            for (int q = 0; q < MAX_EXPERTS_PER_LANE; q++) {
                int e = lane + 32 * q;
                bool better = v[q] > bv || (v[q] == bv && e < be);
                if (e < experts && !(taken >> q & 1u) && better) { bv = v[q]; be = e; }
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                float ov = __shfl_xor_sync(0xffffffffu, bv, o);
                int oe = __shfl_xor_sync(0xffffffffu, be, o);
                if (ov > bv || (ov == bv && oe < be)) { bv = ov; be = oe; }
            }
            chosen_v[j] = bv;
            chosen_e[j] = be;
            if ((be & 31) == lane) taken |= 1u << (be >> 5);
        }
    }
    if (lane == 0) {
        float mx = chosen_v[0], total = 0.f;
#pragma unroll
        for (int j = 1; j < MAX_TOPK; j++) if (j < k) mx = fmaxf(mx, chosen_v[j]);
#pragma unroll
        for (int j = 0; j < MAX_TOPK; j++)
            if (j < k) { chosen_v[j] = expf(chosen_v[j] - mx); total += chosen_v[j]; }
#pragma unroll
        for (int j = 0; j < MAX_TOPK; j++)
            if (j < k) {
                out_e[j] = chosen_e[j];
                out_w[j] = chosen_v[j] / total;
            }
    }
}

// Routing: the router's logits (summed over `splits` partial sums) → top-k experts with a
// softmax over the chosen logits; then each expert's (token, slot) pairs.
//
// meta: [0] active experts A, [1..1+E) the active experts in order, [1+E..1+2E) pairs per
// expert, [1+2E..1+3E) first sorted index per expert, [1+3E..1+3E+nk) the pairs p = t·k + j
// sorted by expert then p, [1+3E+nk..1+3E+2nk) each pair's sorted index.
// `partial` is overwritten: its first slice becomes the logits. grid 1, block 1024.
extern "C" __global__ void route(float* partial, int splits, const u16* bias, int n,
                                 int experts, int k, int* meta, int* pair_expert,
                                 float* pair_weight) {
    // Logits, every (token, expert) at once.
    for (int i = threadIdx.x; i < n * experts; i += blockDim.x) {
        float s = 0.f;
        for (int q = 0; q < splits; q++) s += partial[(u64)q * n * experts + i];
        partial[i] = s + (bias ? bf(bias[i % experts]) : 0.f);
    }
    __syncthreads();
    // Top-k: one warp per token.
    int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int t = warp; t < n; t += warps)
        topk_warp(partial + (u64)t * experts, experts, k, pair_expert + t * k, pair_weight + t * k);
    __syncthreads();
    int nk = n * k;
    int* active = meta + 1;
    int* count = meta + 1 + experts;
    int* first = meta + 1 + 2 * experts;
    int* sorted = meta + 1 + 3 * experts;
    int* where = sorted + nk;
    for (int e = threadIdx.x; e < experts; e += blockDim.x) {
        int c = 0;
        for (int p = 0; p < nk; p++) c += pair_expert[p] == e;
        count[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int a = 0, off = 0;
        for (int e = 0; e < experts; e++) {
            first[e] = off;
            off += count[e];
            if (count[e]) active[a++] = e;
        }
        meta[0] = a;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < experts; e += blockDim.x) {
        int o = first[e];
        for (int p = 0; p < nk; p++)
            if (pair_expert[p] == e) { sorted[o] = p; where[p] = o; o++; }
    }
}

// ---------------------------------------------------------------------------------------
// Experts for small batches: one block row-group per active expert (grid.y), reading that
// expert's rows once for every pair routed to it (at most NT_MAX: one per token).

// Expert e's row r: MXFP4 (fmt 0, blocks/scales) or bf16 [E, rows, cols] (fmt 1, `blocks`
// is then the bf16 weights).
__device__ __forceinline__ void expert_row_dots(int fmt, const u8* blocks, const u8* scales,
                                                int e, int r, int rows, int cols,
                                                const float* lut, const float* xs, int count,
                                                float* acc) {
    int warp = threadIdx.x >> 5;
    u64 row = (u64)e * rows + r;
    if (fmt == 0) {
        row_dots_mxfp4(blocks + row * (cols / 2), scales + row * (cols / 32), lut, xs, cols,
                       warp, cols / 64, GEMV_WARPS, count, acc);
    } else {
        row_dots_bf16((const u16*)blocks + row * cols, xs, cols, warp, cols / 16, GEMV_WARPS,
                      count, acc);
    }
}

__device__ __forceinline__ void load_lut(float* lut) {
    if (threadIdx.x < 16) {
        const float v[8] = {0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
        lut[threadIdx.x] = threadIdx.x < 8 ? v[threadIdx.x] : -v[threadIdx.x - 8];
    }
}

// act[p, i] = SwiGLU of expert e's gate/up rows (2i, 2i+1) for every pair p routed to e, on
// x normalised with `gain`. grid (ceil(2I/32), max active experts), block 256, dynamic
// shared NT_MAX·h floats.
extern "C" __global__ void __launch_bounds__(256)
moe_gate_up(int fmt, const u8* blocks, const u8* scales, const u16* bias, const float* x,
            const u16* gain, float eps, const int* meta, float* act, int h, int inter,
            int experts, int k, int n, float limit) {
    extern __shared__ float xs[];
    __shared__ float red[GEMV_WARPS][NT_MAX][32];
    __shared__ float lut[16];
    __shared__ int toks[NT_MAX];
    if ((int)blockIdx.y >= meta[0]) return;
    int e = meta[1 + blockIdx.y];
    int count = meta[1 + experts + e], first = meta[1 + 2 * experts + e];
    const int* pairs = meta + 1 + 3 * experts + first;
    if (threadIdx.x < count) toks[threadIdx.x] = pairs[threadIdx.x] / k;
    load_lut(lut);
    __syncthreads();
    stage_inputs(x, toks, count, h, gain, eps, xs);
    int lane = threadIdx.x & 31;
    int rows = 2 * inter, r = blockIdx.x * 32 + lane;
    float acc[NT_MAX];
#pragma unroll
    for (int j = 0; j < NT_MAX; j++) acc[j] = 0.f;
    if (r < rows) expert_row_dots(fmt, blocks, scales, e, r, rows, h, lut, xs, count, acc);
    float s = reduce_warps(red, acc, count);
    int j = threadIdx.x >> 5;
    if (r < rows) s += bf(bias[(u64)e * rows + r]);
    float up = __shfl_down_sync(0xffffffffu, s, 1);
    if (j < count && r < rows && (r & 1) == 0)
        act[(u64)pairs[j] * inter + r / 2] = swiglu(s, up, limit);
}

// y[p, r] = expert e's down row r · act[p] + bias, for the pairs routed to e.
// grid (ceil(h/32), max active experts), block 256, dynamic shared NT_MAX·inter floats.
extern "C" __global__ void __launch_bounds__(256)
moe_down(int fmt, const u8* blocks, const u8* scales, const u16* bias, const float* act,
         const int* meta, float* y, int h, int inter, int experts) {
    extern __shared__ float xs[];
    __shared__ float red[GEMV_WARPS][NT_MAX][32];
    __shared__ float lut[16];
    if ((int)blockIdx.y >= meta[0]) return;
    int e = meta[1 + blockIdx.y];
    int count = meta[1 + experts + e], first = meta[1 + 2 * experts + e];
    const int* pairs = meta + 1 + 3 * experts + first;
    load_lut(lut);
    stage_inputs(act, pairs, count, inter, 0, 0.f, xs);
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * 32 + lane;
    float acc[NT_MAX];
#pragma unroll
    for (int j = 0; j < NT_MAX; j++) acc[j] = 0.f;
    if (r < h) expert_row_dots(fmt, blocks, scales, e, r, h, inter, lut, xs, count, acc);
    float s = reduce_warps(red, acc, count);
    int j = threadIdx.x >> 5;
    if (j < count && r < h) y[(u64)pairs[j] * h + r] = s + bf(bias[(u64)e * h + r]);
}

// x[t] += Σ_j weight[t·k+j] · (y[row(t·k+j)] + bias[expert]) in routing order; `where`
// (null: identity) maps a pair to its row of y, `bias` may be null (already added).
// grid n, block 256.
extern "C" __global__ void moe_combine(float* x, const float* y, const int* where,
                                       const u16* bias, const int* pair_expert,
                                       const float* pair_weight, int h, int k) {
    int t = blockIdx.x;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float s = 0.f;
        for (int j = 0; j < k; j++) {
            int p = t * k + j;
            int row = where ? where[p] : p;
            float v = y[(u64)row * h + i];
            if (bias) v += bf(bias[(u64)pair_expert[p] * h + i]);
            s += pair_weight[p] * v;
        }
        x[(u64)t * h + i] += s;
    }
}

// ---------------------------------------------------------------------------------------
// Experts for large batches (prefill): the pairs sorted by expert, each expert's weights
// widened to bf16 once and multiplied by cuBLAS; these kernels move rows around it.

// out[i] = xb[sorted[i] / k] (bf16 rows). grid n·k, any block.
extern "C" __global__ void gather_pairs_bf16(const u16* xb, const int* meta, u16* out, int h,
                                             int experts, int k) {
    int i = blockIdx.x;
    int p = meta[1 + 3 * experts + i];
    const u16* src = xb + (u64)(p / k) * h;
    for (int c = threadIdx.x; c < h; c += blockDim.x) out[(u64)i * h + c] = src[c];
}

// act[i, j] = SwiGLU(gu[i, 2j] + bias, gu[i, 2j+1] + bias) as bf16, row i's expert from
// the sorted pairs. grid n·k, block 256.
extern "C" __global__ void swiglu_sorted(const float* gu, const u16* bias, const int* meta,
                                         const int* pair_expert, u16* act, int inter,
                                         int experts, float limit) {
    int i = blockIdx.x;
    int e = pair_expert[meta[1 + 3 * experts + i]];
    const float* row = gu + (u64)i * 2 * inter;
    const u16* b = bias + (u64)e * 2 * inter;
    for (int j = threadIdx.x; j < inter; j += blockDim.x)
        act[(u64)i * inter + j] =
            to_bf(swiglu(row[2 * j] + bf(b[2 * j]), row[2 * j + 1] + bf(b[2 * j + 1]), limit));
}

// Expert e's MXFP4 [rows, cols] widened to bf16. grid ceil(rows·cols/2/256), block 256.
extern "C" __global__ void mxfp4_to_bf16(const u8* blocks, const u8* scales, u16* out,
                                         u64 rows_cols) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;  // byte index
    if (2 * i >= rows_cols) return;
    const float v[8] = {0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
    u8 b = blocks[i];
    float s = e8m0(scales[i / 16]);
    u32 lo = b & 15u, hi = b >> 4;
    float a = (lo & 8u ? -v[lo & 7u] : v[lo & 7u]) * s;
    float c = (hi & 8u ? -v[hi & 7u] : v[hi & 7u]) * s;
    out[2 * i] = to_bf(a);
    out[2 * i + 1] = to_bf(c);
}

// [E, a, b] → [E, b, a] for bf16 (the Hugging Face in/out expert layout to rows of inputs).
// grid (ceil(b/32), ceil(a/32), E), block (32, 8).
extern "C" __global__ void transpose_bf16(const u16* in, u16* out, int a, int b) {
    __shared__ u16 tile[32][33];
    u64 base = (u64)blockIdx.z * a * b;
    int bx = blockIdx.x * 32, ay = blockIdx.y * 32;
    for (int i = threadIdx.y; i < 32; i += 8) {
        int r = ay + i, c = bx + threadIdx.x;
        if (r < a && c < b) tile[i][threadIdx.x] = in[base + (u64)r * b + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8) {
        int r = bx + i, c = ay + threadIdx.x;
        if (r < b && c < a) out[base + (u64)r * a + c] = tile[threadIdx.x][i];
    }
}

// ---------------------------------------------------------------------------------------
// Attention

// Rotates q and k of each new token (YaRN-scaled RoPE, NeoX halves) and writes k and v into
// the paged cache. qkv: [n, (heads + 2·kv_heads)·64]; q_out: [n, heads·64].
// grid n, block 256.
extern "C" __global__ void rope_store(const float* qkv, const int* pos, const int* table_at,
                                      const int* tables, float* pool, const float* inv_freq,
                                      float concentration, int layer, int layers, int heads,
                                      int kv_heads, float* q_out) {
    int t = blockIdx.x;
    int p = pos[t];
    int qd = heads * HEAD_DIM, kvd = kv_heads * HEAD_DIM;
    const float* row = qkv + (u64)t * (qd + 2 * kvd);
    int blk = tables[table_at[t] + p / PAGE], slot = p % PAGE;
    float* kdst = pool + (((u64)blk * layers + layer) * 2) * PAGE * kvd + (u64)slot * kvd;
    float* vdst = kdst + (u64)PAGE * kvd;
    const int half = HEAD_DIM / 2;
    for (int i = threadIdx.x; i < (heads + kv_heads) * half; i += blockDim.x) {
        int hh = i / half, f = i % half;
        float angle = (float)p * inv_freq[f];
        float c = cosf(angle) * concentration, s = sinf(angle) * concentration;
        const float* src = hh < heads ? row + hh * HEAD_DIM : row + qd + (hh - heads) * HEAD_DIM;
        float x1 = src[f], x2 = src[f + half];
        float a = x1 * c - x2 * s, b = x2 * c + x1 * s;
        if (hh < heads) {
            q_out[(u64)t * qd + hh * HEAD_DIM + f] = a;
            q_out[(u64)t * qd + hh * HEAD_DIM + f + half] = b;
        } else {
            kdst[(hh - heads) * HEAD_DIM + f] = a;
            kdst[(hh - heads) * HEAD_DIM + f + half] = b;
        }
    }
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) vdst[i] = row[qd + kvd + i];
}

// Causal attention with sinks over the paged cache: one block per (token, kv head, split),
// one warp per query head of the group, keys in tiles of one page with an online softmax.
// With one split the block writes the output; with several (long contexts at small
// batches: more blocks than kv heads) each split covers a share of the key tiles and writes
// its running max, denominator and unnormalised sum to `partial` ([n, heads, splits, 66]),
// merged with the sink by `attention_combine`.
// grid (n, kv_heads, splits), block 32·(heads / kv_heads).
extern "C" __global__ void attention(const float* q, const float* pool, const int* pos,
                                     const int* table_at, const int* tables, const u16* sinks,
                                     float* out, float* partial, int layer, int layers,
                                     int heads, int kv_heads, int window, float scale) {
    __shared__ float ks[PAGE][HEAD_DIM + 1];
    __shared__ float vs[PAGE][HEAD_DIM];
    __shared__ float qs[32][HEAD_DIM];
    int t = blockIdx.x, g = blockIdx.y;
    int group = heads / kv_heads;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int hq = g * group + warp;
    int qd = heads * HEAD_DIM, kvd = kv_heads * HEAD_DIM;
    int p = pos[t];
    int lo = window > 0 ? max(0, p - window + 1) : 0;
    int first_tile = lo / PAGE, tiles = p / PAGE - first_tile + 1;
    int per = (tiles + gridDim.z - 1) / gridDim.z;
    int t0 = first_tile + blockIdx.z * per, t1 = min(first_tile + tiles, t0 + per);
    const int* table = tables + table_at[t];
    qs[warp][lane] = q[(u64)t * qd + hq * HEAD_DIM + lane];
    qs[warp][lane + 32] = q[(u64)t * qd + hq * HEAD_DIM + lane + 32];
    float m = -INFINITY, l = 0.f, acc0 = 0.f, acc1 = 0.f;
    for (int tile = t0; tile < t1; tile++) {
        int base = tile * PAGE;
        __syncthreads();
        const float* kp = pool + (((u64)table[tile] * layers + layer) * 2) * PAGE * kvd +
                          g * HEAD_DIM;
        const float* vp = kp + (u64)PAGE * kvd;
#pragma unroll 8
        for (int i = threadIdx.x; i < PAGE * HEAD_DIM; i += blockDim.x) {
            int s = i / HEAD_DIM, d = i % HEAD_DIM;
            ks[s][d] = kp[(u64)s * kvd + d];
            vs[s][d] = vp[(u64)s * kvd + d];
        }
        __syncthreads();
        int key = base + lane;
        bool ok = key >= lo && key <= p;
        float sc = -INFINITY;
        if (ok) {
            float d = 0.f;
#pragma unroll 16
            for (int i = 0; i < HEAD_DIM; i++) d += qs[warp][i] * ks[lane][i];
            sc = d * scale;
        }
        float m_new = fmaxf(m, warp_max(sc));
        float e = ok ? expf(sc - m_new) : 0.f;
        float alpha = expf(m - m_new);
        l = l * alpha + warp_sum(e);
        acc0 *= alpha;
        acc1 *= alpha;
#pragma unroll 8
        for (int j = 0; j < PAGE; j++) {
            float pj = __shfl_sync(0xffffffffu, e, j);
            acc0 += pj * vs[j][lane];
            acc1 += pj * vs[j][lane + 32];
        }
        m = m_new;
    }
    if (gridDim.z > 1) {
        float* o = partial + (((u64)t * heads + hq) * gridDim.z + blockIdx.z) * (HEAD_DIM + 2);
        if (lane == 0) { o[0] = m; o[1] = l; }
        o[2 + lane] = acc0;
        o[2 + lane + 32] = acc1;
        return;
    }
    float sink = bf(sinks[hq]);
    float mx = fmaxf(m, sink);
    float f = expf(m - mx);
    float total = l * f + expf(sink - mx);
    out[(u64)t * qd + hq * HEAD_DIM + lane] = acc0 * f / total;
    out[(u64)t * qd + hq * HEAD_DIM + lane + 32] = acc1 * f / total;
}

// Merges the splits of `attention` with the sink. grid (n, heads), block 64.
extern "C" __global__ void attention_combine(const float* partial, const u16* sinks,
                                             float* out, int heads, int splits) {
    int t = blockIdx.x, hq = blockIdx.y, d = threadIdx.x;
    const float* pp = partial + ((u64)t * heads + hq) * splits * (HEAD_DIM + 2);
    float sink = bf(sinks[hq]);
    float mx = sink;
    for (int z = 0; z < splits; z++) mx = fmaxf(mx, pp[z * (HEAD_DIM + 2)]);
    float total = expf(sink - mx), acc = 0.f;
    for (int z = 0; z < splits; z++) {
        const float* o = pp + z * (HEAD_DIM + 2);
        float f = expf(o[0] - mx);  // an empty split has m = -inf: f = 0
        total += o[1] * f;
        acc += o[2 + d] * f;
    }
    out[(u64)t * heads * HEAD_DIM + hq * HEAD_DIM + d] = acc / total;
}

// ---------------------------------------------------------------------------------------
// Batch-1 decode: one token, every weight read once at full width. A warp reads a whole
// row with 16-byte loads (512 contiguous bytes per instruction) while each lane keeps its
// share of the input in registers for every row it does, so the input costs nothing per
// row; the block stages the (normalised) input in shared memory once.

// Streaming loads: weights are read once per step, so they skip L1.
__device__ __forceinline__ uint4 ld_stream(const void* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// Asks L2 for share `part` of `parts` of [p, p + bytes): a batch-1 kernel fetches the next
// kernel's weights this way, so that memory keeps streaming across the gap between kernels
// and the next kernel's loads find L2 (Hopper's bulk prefetch; nothing before sm_90).
__device__ __forceinline__ void prefetch_share(const u8* p, u64 bytes, u64 part, u64 parts) {
#if __CUDA_ARCH__ >= 900
    if (!p || bytes == 0) return;
    const u64 chunk = 16384;
    u64 per = ((bytes + parts - 1) / parts + chunk - 1) / chunk * chunk;
    u64 start = part * per;
    if (start >= bytes) return;
    u64 len = min(per, bytes - start);
    for (u64 off = threadIdx.x * chunk; off < len; off += (u64)blockDim.x * chunk) {
        u32 n = (u32)min(chunk, len - off) & ~15u;
        if (n)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + start + off), "r"(n)
                         : "memory");
    }
#endif
}

// This block's share of a prefetch spread over the whole grid.
__device__ __forceinline__ void prefetch_grid(const u8* p, u64 bytes) {
    u64 parts = (u64)gridDim.x * gridDim.y * gridDim.z;
    u64 part = ((u64)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    prefetch_share(p, bytes, part, parts);
}

// xs = x (RMSNorm'd with `gain` when given) for one token. Ends with a barrier. Every
// value a thread needs (cols ≤ STAGE_PER_THREAD · blockDim: 4096 with 128 threads) is loaded at once, so staging
// costs one memory round trip rather than one per loop iteration.
// `swizzle`: lay each 32-value block's eight 4-float groups out as group ^ (block & 7), so
// lanes that each read a whole block hit distinct banks (the MXFP4 kernels).
#define STAGE_PER_THREAD 32
__device__ void stage1(const float* x, const u16* gain, float eps, int cols, float* xs,
                       bool swizzle) {
    __shared__ float scratch[32];
    float v[STAGE_PER_THREAD], gn[STAGE_PER_THREAD];
#pragma unroll
    for (int j = 0; j < STAGE_PER_THREAD; j++) {
        int i = threadIdx.x + j * blockDim.x;
        v[j] = i < cols ? x[i] : 0.f;
        gn[j] = gain && i < cols ? bf(gain[i]) : 1.f;
    }
    if (gain) {
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < STAGE_PER_THREAD; j++) s += v[j] * v[j];
        s = block_sum(s, scratch);
        float inv = 1.f / sqrtf(s / (float)cols + eps);
#pragma unroll
        for (int j = 0; j < STAGE_PER_THREAD; j++) v[j] = v[j] * inv * gn[j];
    }
#pragma unroll
    for (int j = 0; j < STAGE_PER_THREAD; j++) {
        int i = threadIdx.x + j * blockDim.x;
        if (i < cols) {
            int at = i;
            if (swizzle) {
                int b = i >> 5, g = (i >> 2) & 7;
                at = (b << 5) | ((g ^ (b & 7)) << 2) | (i & 3);
            }
            xs[at] = v[j];
        }
    }
    __syncthreads();
}

// ---------------------------------------------------------------------------------------
// Batch-1 experts on tensor cores (the default; `moe1_gate_up` / `moe1_down` below are the
// SIMT kernels, ~6.7 instructions per weight decoding nibbles through a table). Here a warp
// multiplies 16 rows at a time with `mma.m16n8k16` (f16 inputs, f32 sums) and a nibble
// costs about one and a half integer instructions: E2M1 is exact in f16 once its bits are
// moved into place, scaled by 2^-14 (fp16 subnormals for ±0.5), and each 32-value block's
// E8M0 scale multiplies the block's f32 sums afterwards. The input goes in as two f16 columns, hi = f16(x·σ) and
// lo = f16(x·σ − hi) (σ a power of two putting max|x| near 2^14), so the products are those
// of a 22-bit input: as close to the f32 path as makes no difference, at no extra cost (the
// MMA's other six columns are zeros anyway).
//
// Fragment mapping (PTX ISA, m16n8k16, A row-major): lane (g = lane/4, t = lane%4) holds A
// rows g and g+8, k = 2t, 2t+1, 2t+8, 2t+9 of each MMA; B column g, the same k; C rows g, g+8,
// columns 2t, 2t+1. For block b of a row, lane t reads the row's bytes 4t..4t+3 (values
// 8t..8t+7) and two MMAs cover the block: the first takes values (0,2 | 4,6), the second
// (1,3 | 5,7) of each lane's eight, and the input is stored pre-permuted the same way
// ("prepared": per block, [hi|lo][t][x0 x2 x4 x6 x1 x3 x5 x7] as f16, 128 bytes).

#define TC_MAX_SPLITS 8

__device__ __forceinline__ u16 f16_rn(float v) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float v;
    asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(h));
    return v;
}

// Where value i's hi (part 0) or lo (part 1) half goes in a prepared input.
__device__ __forceinline__ int prep_index(int i, int part) {
    int w = i & 7;
    return (i >> 5) * 64 + part * 32 + ((i >> 3) & 3) * 8 + (w & 1) * 4 + (w >> 1);
}
__device__ __forceinline__ void prep_store(u16* prep, int i, float v, float sigma) {
    float s = v * sigma;
    u16 hi = f16_rn(s);
    prep[prep_index(i, 0)] = hi;
    prep[prep_index(i, 1)] = f16_rn(s - f16_to_f32(hi));
}

// σ for an input whose largest magnitude is `amax`: the power of two taking it to
// [2^14, 2^15), and 2^14/σ, what the MMA sums are multiplied by at the end.
__device__ __forceinline__ void prep_sigma(float amax, float* sigma, float* unscale) {
    int e = (int)((__float_as_uint(amax) >> 23) & 255u);
    if (e == 0 || e == 255) e = 127;  // zeros (or inf/NaN, which propagate anyway)
    e = max(e, 15);
    *sigma = __uint_as_float((u32)(268 - e) << 23);  // 2^(141 - e)
    *unscale = __uint_as_float((u32)e << 23);        // 2^14 / σ = 2^(e - 127)
}

// Eight E2M1 values (one u32 of a row) as four f16 pairs, each value times 2^-14:
// h[0] = (v0, v2), h[1] = (v4, v6), h[2] = (v1, v3), h[3] = (v5, v7).
__device__ __forceinline__ void e2m1x8_f16(u32 q, u32* h) {
    // An f16's high byte is s·eeeee·mm; E2M1 s·e1e0·m becomes s·000e1e0·m0.
    u32 even = ((q << 4) & 0x80808080u) | ((q << 1) & 0x0e0e0e0eu);
    u32 odd = (q & 0x80808080u) | ((q >> 3) & 0x0e0e0e0eu);
    h[0] = __byte_perm(even, 0, 0x1404);
    h[1] = __byte_perm(even, 0, 0x3424);
    h[2] = __byte_perm(odd, 0, 0x1404);
    h[3] = __byte_perm(odd, 0, 0x3424);
}

__device__ __forceinline__ void mma16816(const u32* a, u32 b0, u32 b1, float* c) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint4 ld_nc_v4(const void* p) {
    uint4 v;
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

__device__ __forceinline__ u32 smem_addr(const void* p) {
    u64 a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (u32)a;
}
// 16 bytes global → shared without registers; bytes past `src_bytes` are zero-filled.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int pending>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(pending) : "memory");
}

// Each warp streams its rows through a ring of TC_STAGES stages in shared memory, TC_S
// blocks of all 16 rows a stage (rows padded so the fragment reads hit 32 distinct banks),
// TC_STAGES - 1 stages in flight while it computes one: the loads are asynchronous copies
// of whole 32-byte sectors and cost no registers.
#define TC_S 4
#define TC_STAGES 4
#define TC_ROW (TC_S * 16 + 16)
#define TC_STAGE (16 * TC_ROW)

// Queues blocks [bs, bs + TC_S) ∩ [.., b1) of the 16 rows from row0 into `slot` (blocks
// past b1 are zero-filled).
__device__ __forceinline__ void tc_issue(const u8* blocks, u64 row0, int nb, int bs, int b1,
                                         u8* slot) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int q = 0; q < 16 * TC_S / 32; q++) {
        int c = lane + 32 * q, row = c / TC_S, j = c % TC_S, b = bs + j;
        bool ok = b < b1;
        const u8* src = blocks + (row0 + row) * (u64)(nb * 16) + (u64)(ok ? b : bs) * 16;
        cp_async16(slot + row * TC_ROW + j * 16, src, ok ? 16 : 0);
    }
}

// The MMAs of one stage: blocks bs.. of rows g, g + 8 against the prepared input. Only the
// last stage of a range (`tail`) can hold blocks past b1 (zero-filled; counted for nothing).
template <bool tail>
__device__ __forceinline__ void tc_compute(const u8* slot, const u8* tile_scales, int nb,
                                           const u8* xp, bool has_x, int bs, int b1,
                                           float* a0, float* a1) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const u8* w = slot + g * TC_ROW + 4 * t;
    const u8* sc = tile_scales + g * nb + bs;
    const u8* x = xp + 128 * bs;
#pragma unroll
    for (int j = 0; j < TC_S; j++) {
        bool live = !tail || bs + j < b1;
        int jc = tail && !live ? 0 : j;  // a block in range, for the input and scales
        u32 w0 = *(const u32*)(w + j * 16);
        u32 w1 = *(const u32*)(w + 8 * TC_ROW + j * 16);
        u32 s0 = sc[jc], s1 = sc[8 * nb + jc];
        uint4 xv = has_x ? ld_nc_v4(x + 128 * jc) : make_uint4(0, 0, 0, 0);
        u32 h0[4], h1[4];
        e2m1x8_f16(w0, h0);
        e2m1x8_f16(w1, h1);
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        u32 a[4] = {h0[0], h1[0], h0[1], h1[1]};
        mma16816(a, xv.x, xv.y, c);
        u32 a2[4] = {h0[2], h1[2], h0[3], h1[3]};
        mma16816(a2, xv.z, xv.w, c);
        // E8M0 as f32 bits (a zero scale gives 0 rather than 2^-127: no block's sum is
        // changed by that beyond f32 resolution).
        float f0 = __uint_as_float(live ? s0 << 23 : 0u);
        float f1 = __uint_as_float(live ? s1 << 23 : 0u);
        *a0 = fmaf(c[0] + c[1], f0, *a0);
        *a1 = fmaf(c[2] + c[3], f1, *a1);
    }
}

// Dynamic shared memory of the tensor-core expert kernels: the tile's scales (16·nb bytes,
// rounded to 16), then each warp's ring.
__device__ __forceinline__ u8* tc_ring(u8* smem, int nb) {
    return smem + ((16 * nb + 15) & ~15) + (threadIdx.x >> 5) * TC_STAGES * TC_STAGE;
}

// Rows row0 + g and row0 + g + 8 of an MXFP4 matrix (nb blocks a row) dotted with a
// prepared input over blocks [b0, b1) of this warp; lane (g, 0) ends with the sums (before
// 2^-14 and σ are undone) in acc[0] (row g) and acc[1] (row g + 8). Every thread of the
// block calls it (it has a block barrier): the block's warps split one tile's blocks.
__device__ void mxfp4_tile_tc(const u8* blocks, const u8* scales, u64 row0, int nb,
                              const u16* prep, int b0, int b1, u8* smem, float* acc) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    // The tile's scales: 16 rows of nb bytes, contiguous (16-aligned: row0 % 16 == 0).
    for (int c = threadIdx.x; c < nb; c += blockDim.x)
        cp_async16(smem + 16 * c, scales + row0 * nb + 16 * (u64)c, 16);
    cp_async_commit();
    u8* ring = tc_ring(smem, nb);
    int stages = (b1 - b0 + TC_S - 1) / TC_S;
#pragma unroll
    for (int st = 0; st < TC_STAGES - 1; st++) {
        if (st < stages) tc_issue(blocks, row0, nb, b0 + st * TC_S, b1, ring + st * TC_STAGE);
        cp_async_commit();
    }
    cp_async_wait<TC_STAGES - 1>();  // the scales
    __syncthreads();
    const u8* xp = (const u8*)prep + g * 64 + t * 16;
    bool has_x = g < 2;  // B columns 0 (hi) and 1 (lo); the others are zeros
    float a0 = 0.f, a1 = 0.f;
    for (int i = 0; i < stages; i++) {
        cp_async_wait<TC_STAGES - 2>();  // stage i is in (this lane's copies)
        __syncwarp();                    // and every lane's; slot i - 1 is free again
        int next = i + TC_STAGES - 1;
        if (next < stages)
            tc_issue(blocks, row0, nb, b0 + next * TC_S, b1,
                     ring + (next % TC_STAGES) * TC_STAGE);
        cp_async_commit();
        const u8* slot = ring + (i % TC_STAGES) * TC_STAGE;
        int bs = b0 + i * TC_S;
        if (bs + TC_S <= b1)
            tc_compute<false>(slot, smem, nb, xp, has_x, bs, b1, &a0, &a1);
        else
            tc_compute<true>(slot, smem, nb, xp, has_x, bs, b1, &a0, &a1);
    }
    acc[0] = a0;
    acc[1] = a1;
}

// Sums the block's warps' tile partials (warps split the blocks of one 16-row tile) into
// warp 0; returns lane (g, 0)'s totals for rows g and g + 8 through acc.
__device__ __forceinline__ void tc_reduce(float* acc) {
    __shared__ float red[TC_MAX_SPLITS][8][2];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, splits = blockDim.x >> 5;
    if (splits == 1) return;
    if ((lane & 3) == 0) {
        red[warp][lane >> 2][0] = acc[0];
        red[warp][lane >> 2][1] = acc[1];
    }
    __syncthreads();
    if (warp == 0) {
        float s0 = 0.f, s1 = 0.f;
        for (int w = 0; w < splits; w++) {
            s0 += red[w][lane >> 2][0];
            s1 += red[w][lane >> 2][1];
        }
        acc[0] = s0;
        acc[1] = s1;
    }
}

// The input of the experts for one token: RMSNorm'd x (staged in xs by the caller) as a
// prepared f16 input, with 2^14/σ in *unscale.
__device__ void prep_input(const float* xs, int cols, u16* prep, float* unscale) {
    __shared__ float scratch[32];
    __shared__ float sig;
    float m = 0.f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, fabsf(xs[i]));
    m = warp_max(m);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = (int)threadIdx.x < (int)(blockDim.x >> 5) ? scratch[threadIdx.x] : 0.f;
        v = warp_max(v);
        if (threadIdx.x == 0) {
            float s, un;
            prep_sigma(v, &s, &un);
            sig = s;
            if (blockIdx.x == 0) *unscale = un;
        }
    }
    __syncthreads();
    // Every block normalised the whole input (the same σ everywhere); each writes a share.
    float s = sig;
    int per = (cols + gridDim.x - 1) / gridDim.x, i1 = min(cols, (int)(blockIdx.x + 1) * per);
    for (int i = blockIdx.x * per + threadIdx.x; i < i1; i += blockDim.x)
        prep_store(prep, i, xs[i], s);
}

// y[r] (=, or += when accumulate) W[r]·xs + bias[r] for rows [r0, r1) of a bf16 matrix,
// CH chunks of 256 columns (lane l takes columns 256c + 8l .. +8). The input is read from
// shared memory (registers stay few, so many warps hide the latency) and the products go
// to four independent sums (no single long dependency chain).
template <int CH>
__device__ __forceinline__ void load_row_bf16(const u16* row, int cols, uint4* wv) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        int col = 256 * c + 8 * lane;
        wv[c] = col < cols ? ld_stream(row + col) : make_uint4(0, 0, 0, 0);
    }
}

// (`first`: row r0's weights, already loaded.)
template <int CH>
__device__ void rows_bf16(const u16* w, const u16* bias, const float* xs, float* y, int cols,
                          int r0, int r1, int accumulate, const uint4* first) {
    int lane = threadIdx.x & 31;
    uint4 wv[CH];
#pragma unroll
    for (int c = 0; c < CH; c++) wv[c] = first[c];
#pragma unroll 1
    for (int r = r0; r < r1; r++) {
        // The next row's loads go out before this row's arithmetic: two rows in flight.
        uint4 next[CH];
        if (r + 1 < r1) load_row_bf16<CH>(w + (u64)(r + 1) * cols, cols, next);
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int c = 0; c < CH; c++) {
            int col = 256 * c + 8 * lane;
            if (col < cols) {
                float4 a = *(const float4*)(xs + col), b = *(const float4*)(xs + col + 4);
                float f[8];
                unpack_bf16x8(wv[c], f);
                acc[(2 * c) & 3] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w;
                acc[(2 * c + 1) & 3] += f[4] * b.x + f[5] * b.y + f[6] * b.z + f[7] * b.w;
            }
        }
        float v = warp_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
        if (lane == 0) {
            v += bias ? bf(bias[r]) : 0.f;
            y[r] = accumulate ? y[r] + v : v;
        }
#pragma unroll
        for (int c = 0; c < CH; c++) wv[c] = next[c];
    }
}

// y = W·x (+ bias) for one token; grid ceil(rows / (4·rows_per_warp)), block 128, dynamic
// shared cols floats. CH = ceil(cols / 256). [pf, pf + pf_bytes) is prefetched into L2.
#define GEMV1(CH)                                                                          \
    extern "C" __global__ void __launch_bounds__(128) gemv1_bf16_##CH(                     \
        const u16* w, const u16* bias, const float* x, const u16* gain, float eps, float* y, \
        int rows, int cols, int accumulate, int rows_per_warp, const u8* pf, u64 pf_bytes,   \
        u16* prep, float* prep_unscale) {                                                   \
        extern __shared__ float xs[];                                                       \
        prefetch_grid(pf, pf_bytes);                                                        \
        int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);                       \
        int r0 = gw * rows_per_warp, r1 = min(rows, r0 + rows_per_warp);                    \
        uint4 first[CH];                                                                    \
        if (r0 < r1) load_row_bf16<CH>(w + (u64)r0 * cols, cols, first);                    \
        stage1(x, gain, eps, cols, xs, false);                                              \
        if (prep) prep_input(xs, cols, prep, prep_unscale);                                 \
        rows_bf16<CH>(w, bias, xs, y, cols, r0, r1, accumulate, first);                     \
    }
GEMV1(12)
GEMV1(16)

// MXFP4 blocks per lane in the batch-1 expert kernels: inputs up to 3·32·32 = 3072 wide.
#define MB 3

// Loads lane l's share of a swizzled input: blocks l, l + 32, l + 64 (32 values each).
__device__ __forceinline__ void load_blocks(const float* xs, int nb, float (*xr)[32]) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int c = 0; c < MB; c++) {
        int b = lane + 32 * c;
#pragma unroll
        for (int g = 0; g < 8; g++) {
            float4 v = b < nb ? *(const float4*)(xs + (b << 5) + ((g ^ (b & 7)) << 2))
                              : make_float4(0.f, 0.f, 0.f, 0.f);
            xr[c][4 * g] = v.x;
            xr[c][4 * g + 1] = v.y;
            xr[c][4 * g + 2] = v.z;
            xr[c][4 * g + 3] = v.w;
        }
    }
}

// Partial dots of two MXFP4 rows (nb blocks each) with the lane's input blocks, to be
// warp-summed: both rows' loads are issued before any arithmetic.
__device__ __forceinline__ void mxfp4_rows2_lane(const u8* blocks0, const u8* scales0,
                                                 const u8* blocks1, const u8* scales1, int nb,
                                                 const float* lut, float (*xr)[32],
                                                 float* out0, float* out1) {
    int lane = threadIdx.x & 31;
    uint4 wv[2][MB];
    u32 sc[2][MB];
#pragma unroll
    for (int c = 0; c < MB; c++) {
        int b = lane + 32 * c;
        bool in = b < nb;
        wv[0][c] = in ? ld_stream(blocks0 + 16 * b) : make_uint4(0, 0, 0, 0);
        wv[1][c] = in && blocks1 ? ld_stream(blocks1 + 16 * b) : make_uint4(0, 0, 0, 0);
        sc[0][c] = in ? scales0[b] : 0u;
        sc[1][c] = in && blocks1 ? scales1[b] : 0u;
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float acc = 0.f;
#pragma unroll
        for (int c = 0; c < MB; c++) {
            u32 words[4] = {wv[r][c].x, wv[r][c].y, wv[r][c].z, wv[r][c].w};
            float part[4] = {0.f, 0.f, 0.f, 0.f};  // independent chains
#pragma unroll
            for (int q = 0; q < 4; q++)
#pragma unroll
                for (int nib = 0; nib < 8; nib++)
                    part[q] += lut[(words[q] >> (4 * nib)) & 15u] * xr[c][8 * q + nib];
            acc += ((part[0] + part[1]) + (part[2] + part[3])) * e8m0(sc[r][c]);
        }
        if (r == 0) *out0 = acc; else *out1 = acc;
    }
}

// Top-k of the token's router logits into shared sel_e/sel_w (warp 0), and the E2M1 table.
__device__ __forceinline__ void route1(const float* logits, int experts, int k, int* sel_e,
                                       float* sel_w, float* lut) {
    if (threadIdx.x < 32) topk_warp(logits, experts, k, sel_e, sel_w);
    load_lut(lut);
    __syncthreads();
}

// act[j, i] = SwiGLU of routed expert j's gate/up rows (2i, 2i+1) on the normalised token.
// grid (ceil(inter / (4·pairs_per_warp)), k), block 128.
extern "C" __global__ void __launch_bounds__(128)
moe1_gate_up(const u8* blocks, const u8* scales, const u16* bias, const float* x,
             const u16* gain, float eps, const float* router_logits, int experts, int k,
             float* act, int h, int inter, float limit, int pairs_per_warp,
             const u8* down_blocks, const u8* down_scales) {
    extern __shared__ float xs[];
    __shared__ int sel_e[32];
    __shared__ float sel_w[32];
    __shared__ float lut[16];
    route1(router_logits, experts, k, sel_e, sel_w, lut);
    {
        // The down kernel's rows of this expert, shared among this expert's blocks.
        u64 e = sel_e[blockIdx.y], rows = (u64)h * inter;
        if (down_blocks) {
            prefetch_share(down_blocks + e * rows / 2, rows / 2, blockIdx.x, gridDim.x);
            prefetch_share(down_scales + e * rows / 32, rows / 32, blockIdx.x, gridDim.x);
        }
    }
    stage1(x, gain, eps, h, xs, true);
    float xr[MB][32];
    load_blocks(xs, h / 32, xr);
    int j = blockIdx.y, e = sel_e[j];
    int nb = h / 32, lane = threadIdx.x & 31;
    int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int i0 = gw * pairs_per_warp, i1 = min(inter, i0 + pairs_per_warp);
    u64 rows = 2 * (u64)inter;
    for (int i = i0; i < i1; i++) {
        u64 r = (u64)e * rows + 2 * i;
        float g, u;
        mxfp4_rows2_lane(blocks + r * (h / 2), scales + r * nb, blocks + (r + 1) * (h / 2),
                         scales + (r + 1) * nb, nb, lut, xr, &g, &u);
        g = warp_sum(g);
        u = warp_sum(u);
        if (lane == 0)
            act[(u64)j * inter + i] = swiglu(g + bf(bias[r]), u + bf(bias[r + 1]), limit);
    }
}

// y[j, r] = routed expert j's down row r · act[j] + bias; the last of the k blocks of a row
// group then adds Σ_j weight_j · y[j, r] to the residual x in routing order (so the sum is
// the same whichever block finishes last). grid (ceil(h / (4·rows_per_warp)), k), block
// 128; `counters` (one per row group) start and end at 0.
extern "C" __global__ void __launch_bounds__(128)
moe1_down(const u8* blocks, const u8* scales, const u16* bias, const float* act,
          const float* router_logits, int experts, int k, float* y, float* x, int* counters,
          int h, int inter, int rows_per_warp, const u8* pf, u64 pf_bytes) {
    extern __shared__ float xs[];
    __shared__ int sel_e[32];
    __shared__ float sel_w[32];
    __shared__ float lut[16];
    __shared__ int last;
    prefetch_grid(pf, pf_bytes);
    route1(router_logits, experts, k, sel_e, sel_w, lut);
    int j = blockIdx.y, e = sel_e[j];
    stage1(act + (u64)j * inter, 0, 0.f, inter, xs, true);
    float xr[MB][32];
    load_blocks(xs, inter / 32, xr);
    int nb = inter / 32, lane = threadIdx.x & 31;
    int per_block = (blockDim.x >> 5) * rows_per_warp;
    int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int r0 = gw * rows_per_warp, r1 = min(h, r0 + rows_per_warp);
    for (int r = r0; r < r1; r += 2) {
        u64 row = (u64)e * h + r;
        bool two = r + 1 < r1;
        float v0, v1;
        mxfp4_rows2_lane(blocks + row * (inter / 2), scales + row * nb,
                         two ? blocks + (row + 1) * (inter / 2) : 0, scales + (row + 1) * nb,
                         nb, lut, xr, &v0, &v1);
        v0 = warp_sum(v0);
        v1 = warp_sum(v1);
        if (lane == 0) {
            y[(u64)j * h + r] = v0 + bf(bias[row]);
            if (two) y[(u64)j * h + r + 1] = v1 + bf(bias[row + 1]);
        }
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(&counters[blockIdx.x], 1) == k - 1;
        if (last) counters[blockIdx.x] = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    int b0 = blockIdx.x * per_block, b1 = min(h, b0 + per_block);
    for (int r = b0 + threadIdx.x; r < b1; r += blockDim.x) {
        float s = 0.f;
        for (int q = 0; q < k; q++) s += sel_w[q] * __ldcg(&y[(u64)q * h + r]);
        x[r] += s;
    }
}


// act[j] = SwiGLU of routed expert j's gate/up rows on the token, written as a prepared
// input for the down kernel with the fixed σ `act_sigma` (|act| ≤ limit·(limit + 1)).
// grid (2·inter / 16, k), block 32·splits: the block's warps split one 16-row tile's blocks.
extern "C" __global__ void __launch_bounds__(256)
moe1_tc_gate_up(const u8* blocks, const u8* scales, const u16* bias, const u16* xprep,
                const float* xunscale, const float* router_logits, int experts, int k,
                u16* act_prep, int h, int inter, float limit, float act_sigma,
                const u8* down_blocks, const u8* down_scales) {
    __shared__ int sel_e[32];
    __shared__ float sel_w[32];
    if (threadIdx.x < 32) topk_warp(router_logits, experts, k, sel_e, sel_w);
    __syncthreads();
    int j = blockIdx.y, e = sel_e[j];
    {
        // The down kernel's rows of this expert, shared among this expert's blocks.
        u64 rows = (u64)h * inter;
        if (down_blocks) {
            prefetch_share(down_blocks + e * rows / 2, rows / 2, blockIdx.x, gridDim.x);
            prefetch_share(down_scales + e * rows / 32, rows / 32, blockIdx.x, gridDim.x);
        }
    }
    int nb = h / 32, splits = blockDim.x >> 5, warp = threadIdx.x >> 5;
    int per = (nb + splits - 1) / splits;
    int b0 = min(nb, warp * per), b1 = min(nb, b0 + per);
    u64 row0 = (u64)e * 2 * inter + 16 * (u64)blockIdx.x;
    extern __shared__ __align__(16) u8 tc_smem[];
    float acc[2];
    mxfp4_tile_tc(blocks, scales, row0, nb, xprep, b0, b1, tc_smem, acc);
    tc_reduce(acc);
    if (warp != 0) return;
    int lane = threadIdx.x & 31, g = lane >> 2;
    float un = *xunscale;
    float y0 = acc[0] * un + bf(bias[row0 + g]), y1 = acc[1] * un + bf(bias[row0 + g + 8]);
    // Rows 2i (gate) and 2i + 1 (up) sit in lanes 4g and 4g + 4.
    float u0 = __shfl_down_sync(0xffffffffu, y0, 4), u1 = __shfl_down_sync(0xffffffffu, y1, 4);
    if ((lane & 7) == 0) {
        int unit = 8 * blockIdx.x + (g >> 1);
        u16* out = act_prep + (u64)j * inter * 2;
        prep_store(out, unit, swiglu(y0, u0, limit), act_sigma);
        prep_store(out, unit + 4, swiglu(y1, u1, limit), act_sigma);
    }
}

// y[j, r] = routed expert j's down row r · act[j] + bias, 16 rows a block; the last of the k
// blocks of a row tile then adds Σ_j weight_j · y[j, r] to the residual x in routing order.
// grid (h / 16, k), block 32·splits; `counters` (h / 16) start and end at 0.
extern "C" __global__ void __launch_bounds__(256)
moe1_tc_down(const u8* blocks, const u8* scales, const u16* bias, const u16* act_prep,
             float act_unscale, const float* router_logits, int experts, int k, float* y,
             float* x, int* counters, int h, int inter, const u8* pf, u64 pf_bytes) {
    __shared__ int sel_e[32];
    __shared__ float sel_w[32];
    prefetch_grid(pf, pf_bytes);
    if (threadIdx.x < 32) topk_warp(router_logits, experts, k, sel_e, sel_w);
    __syncthreads();
    int j = blockIdx.y, e = sel_e[j];
    int nb = inter / 32, splits = blockDim.x >> 5, warp = threadIdx.x >> 5;
    int per = (nb + splits - 1) / splits;
    int b0 = min(nb, warp * per), b1 = min(nb, b0 + per);
    u64 row0 = (u64)e * h + 16 * (u64)blockIdx.x;
    extern __shared__ __align__(16) u8 tc_smem[];
    float acc[2];
    mxfp4_tile_tc(blocks, scales, row0, nb, act_prep + (u64)j * inter * 2, b0, b1, tc_smem,
                  acc);
    tc_reduce(acc);
    int lane = threadIdx.x & 31, g = lane >> 2;
    int r = 16 * blockIdx.x + g;
    if (warp == 0 && (lane & 3) == 0) {
        y[(u64)j * h + r] = acc[0] * act_unscale + bf(bias[row0 + g]);
        y[(u64)j * h + r + 8] = acc[1] * act_unscale + bf(bias[row0 + g + 8]);
    }
    if (!last_to_arrive(&counters[blockIdx.x], k)) return;
    if (threadIdx.x < 16) {
        int rr = 16 * blockIdx.x + threadIdx.x;
        float s = 0.f;
        for (int q = 0; q < k; q++) s += sel_w[q] * __ldcg(&y[(u64)q * h + rr]);
        x[rr] += s;
    }
}

// Attention for steps whose sequences each add one token: RoPE, the KV write and the split
// merge folded in. Block (t, g, z) rotates its group's query heads itself; the block whose
// key range ends at the new position writes that position's key and value first (no other
// block reads it); the last split of (t, g) to finish merges the splits with the sinks.
// grid (n, kv_heads, splits), block 32·group; `counters` [n·kv_heads] start and end at 0.
extern "C" __global__ void attention_decode(const float* qkv, float* pool, const int* pos,
                                            const int* table_at, const int* tables,
                                            const u16* sinks, const float* inv_freq,
                                            float concentration, float* out, float* partial,
                                            int* counters, int layer, int layers, int heads,
                                            int kv_heads, int window, float scale,
                                            const u8* pf, u64 pf_bytes) {
    __shared__ float ks[PAGE][HEAD_DIM + 1];
    __shared__ float vs[PAGE][HEAD_DIM];
    __shared__ float qs[32][HEAD_DIM];
    __shared__ float cs[HEAD_DIM / 2], sn[HEAD_DIM / 2];
    prefetch_grid(pf, pf_bytes);
    int t = blockIdx.x, g = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
    int group = heads / kv_heads;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int hq = g * group + warp;
    int qd = heads * HEAD_DIM, kvd = kv_heads * HEAD_DIM;
    const float* row = qkv + (u64)t * (qd + 2 * kvd);
    int p = pos[t];
    const int* table = tables + table_at[t];
    if (threadIdx.x < HEAD_DIM / 2) {
        float angle = (float)p * inv_freq[threadIdx.x];
        cs[threadIdx.x] = cosf(angle) * concentration;
        sn[threadIdx.x] = sinf(angle) * concentration;
    }
    __syncthreads();
    {
        const float* src = row + hq * HEAD_DIM;
        float x1 = src[lane], x2 = src[lane + 32];
        qs[warp][lane] = x1 * cs[lane] - x2 * sn[lane];
        qs[warp][lane + 32] = x2 * cs[lane] + x1 * sn[lane];
    }
    int lo = window > 0 ? max(0, p - window + 1) : 0;
    int first_tile = lo / PAGE, tiles = p / PAGE - first_tile + 1;
    int per = (tiles + splits - 1) / splits;
    int t0 = first_tile + z * per, t1 = min(first_tile + tiles, t0 + per);
    if (t0 < t1 && t1 == first_tile + tiles && warp == 0) {
        float* kdst = pool + (((u64)table[p / PAGE] * layers + layer) * 2) * PAGE * kvd +
                      (u64)(p % PAGE) * kvd + g * HEAD_DIM;
        const float* ksrc = row + qd + g * HEAD_DIM;
        float x1 = ksrc[lane], x2 = ksrc[lane + 32];
        kdst[lane] = x1 * cs[lane] - x2 * sn[lane];
        kdst[lane + 32] = x2 * cs[lane] + x1 * sn[lane];
        float* vdst = kdst + (u64)PAGE * kvd;
        vdst[lane] = row[qd + kvd + g * HEAD_DIM + lane];
        vdst[lane + 32] = row[qd + kvd + g * HEAD_DIM + lane + 32];
    }
    float m = -INFINITY, l = 0.f, acc0 = 0.f, acc1 = 0.f;
    for (int tile = t0; tile < t1; tile++) {
        int base = tile * PAGE;
        __syncthreads();
        const float* kp = pool + (((u64)table[tile] * layers + layer) * 2) * PAGE * kvd +
                          g * HEAD_DIM;
        const float* vp = kp + (u64)PAGE * kvd;
#pragma unroll 8
        for (int i = threadIdx.x; i < PAGE * HEAD_DIM; i += blockDim.x) {
            int s = i / HEAD_DIM, d = i % HEAD_DIM;
            ks[s][d] = __ldcg(kp + (u64)s * kvd + d);
            vs[s][d] = __ldcg(vp + (u64)s * kvd + d);
        }
        __syncthreads();
        int key = base + lane;
        bool ok = key >= lo && key <= p;
        float sc = -INFINITY;
        if (ok) {
            float d = 0.f;
#pragma unroll 16
            for (int i = 0; i < HEAD_DIM; i++) d += qs[warp][i] * ks[lane][i];
            sc = d * scale;
        }
        float m_new = fmaxf(m, warp_max(sc));
        float e = ok ? expf(sc - m_new) : 0.f;
        float alpha = expf(m - m_new);
        l = l * alpha + warp_sum(e);
        acc0 *= alpha;
        acc1 *= alpha;
#pragma unroll 8
        for (int j = 0; j < PAGE; j++) {
            float pj = __shfl_sync(0xffffffffu, e, j);
            acc0 += pj * vs[j][lane];
            acc1 += pj * vs[j][lane + 32];
        }
        m = m_new;
    }
    float* o = partial + (((u64)t * heads + hq) * splits + z) * (HEAD_DIM + 2);
    if (lane == 0) { o[0] = m; o[1] = l; }
    o[2 + lane] = acc0;
    o[2 + lane + 32] = acc1;
    if (!last_to_arrive(counters + t * kv_heads + g, splits)) return;
    // Merge: warp = query head, lane = dims lane and lane + 32.
    const float* pp = partial + ((u64)t * heads + hq) * splits * (HEAD_DIM + 2);
    float sink = bf(sinks[hq]);
    float mx = sink;
#pragma unroll 16
    for (int q = 0; q < splits; q++) mx = fmaxf(mx, __ldcg(pp + q * (HEAD_DIM + 2)));
    float total = expf(sink - mx), a0 = 0.f, a1 = 0.f;
#pragma unroll 16
    for (int q = 0; q < splits; q++) {
        const float* oq = pp + q * (HEAD_DIM + 2);
        float f = expf(__ldcg(oq) - mx);
        total += __ldcg(oq + 1) * f;
        a0 += __ldcg(oq + 2 + lane) * f;
        a1 += __ldcg(oq + 2 + lane + 32) * f;
    }
    out[(u64)t * qd + hq * HEAD_DIM + lane] = a0 / total;
    out[(u64)t * qd + hq * HEAD_DIM + lane + 32] = a1 / total;
}

// ---------------------------------------------------------------------------------------
// Bandwidth probe: dst = src, 16 bytes per thread per step (the copy ceiling the decode
// bandwidth is measured against). grid any, block 256.
extern "C" __global__ void copy16(const uint4* src, uint4* dst, u64 count) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (u64)gridDim.x * blockDim.x)
        dst[i] = src[i];
}
