// rope: rotary position embedding of each head of each row at position n_past + row, as
// csrc/backends/cpu/kernels/rope.cpp: the angle position * freq_scale * base^(-2i/n_rot)
// (divided by the pair's frequency factor, if any) in double, its cos and sin times the
// magnitude factor rounded to f32, then reused for every head. Normal layout rotates
// adjacent pairs, neox the two halves; dimensions past n_rot pass through.
//
// One block per row; n_past comes from device memory (StepParams) so a captured decode
// graph stays valid. In a decode step the rope of q, the rope of k and the KV append of the
// next attention are one launch (rope_qk_append_spread_kernel, a block a head, or with
// STRATA_CUDA_SPREAD=0 rope_qk_append_kernel, one block; or with q/k/v in the matvec launch,
// matvec_wide.cu); every kernel takes its angles and rotations from the same two functions
// (rope.cuh), so the values are the same bit for bit.
#include "rope.cuh"

namespace strata::cuda {

namespace {

__global__ void rope_kernel(RopeArgs a, const float* __restrict__ x, const float* __restrict__ factors,
                            float* __restrict__ y, const StepParams* __restrict__ sp) {
    pdl_begin();
    const int t = blockIdx.x;
    const int hd = a.head_dim, n_rot = a.n_rot, half = n_rot / 2;
    const int64_t base_row = (int64_t)t * a.n_head * hd;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float2 cs = rope_cs(a, sp->n_past + t, i, factors);
        const int ia = a.neox ? i : 2 * i;
        const int ib = a.neox ? i + half : 2 * i + 1;
        for (int h = 0; h < a.n_head; ++h) {
            const int64_t o = base_row + (int64_t)h * hd;
            const float2 r = rope_rotate(x[o + ia], x[o + ib], cs);
            y[o + ia] = r.x;
            y[o + ib] = r.y;
        }
    }
    const int rest = hd - n_rot;
    if (rest > 0)
        for (int k = threadIdx.x; k < a.n_head * rest; k += blockDim.x) {
            const int64_t o = base_row + (int64_t)(k / rest) * hd + n_rot + k % rest;
            y[o] = x[o];
        }
}

constexpr int kFusedThreads = 512;

size_t rope_qk_smem(const RopeArgs& a, int n_head_k) {
    return (size_t)(a.n_rot / 2) * sizeof(float2) + (size_t)(a.n_head + n_head_k) * a.head_dim * sizeof(float);
}

// One block: the angles of the position into shared memory, q and k copied in (v appended
// to the cache), one barrier, then every head of q and k rotated from shared memory: q to qo,
// k to ko and to the cache. q and k are not read after the barrier (ko may share memory with q).
__global__ void __launch_bounds__(kFusedThreads)
    rope_qk_append_kernel(RopeArgs a, int n_head_k, const float* q, const float* k, const float* __restrict__ v,
                          const float* __restrict__ factors, float* qo, float* ko, __half* __restrict__ kc,
                          __half* __restrict__ vc, int64_t capacity, const StepParams* __restrict__ sp) {
    pdl_begin();
    extern __shared__ float2 sm[];
    const int tid = threadIdx.x, nt = blockDim.x;
    const int hd = a.head_dim, n_rot = a.n_rot, half = n_rot / 2;
    const int nq = a.n_head * hd, nk = n_head_k * hd, n = nq + nk;
    float2* cs = sm;
    float* xs = reinterpret_cast<float*>(sm + half);
    const int n_past = sp->n_past;
    const int64_t crow = ((int64_t)n_past % capacity) * nk;  // as kv_append_kernel's row
    for (int i = tid; i < half; i += nt) cs[i] = rope_cs(a, n_past, i, factors);
#pragma unroll 4
    for (int e = tid; e < n; e += nt) xs[e] = e < nq ? q[e] : k[e - nq];
#pragma unroll 4
    for (int e = tid; e < nk; e += nt) vc[crow + e] = __float2half_rn(v[e]);
    __syncthreads();
    const int heads = a.n_head + n_head_k;
    for (int it = tid; it < heads * half; it += nt) {
        const int hh = it / half, i = it - hh * half;
        const int ia = a.neox ? i : 2 * i;
        const int ib = a.neox ? i + half : 2 * i + 1;
        const int o = hh * hd;
        const float2 r = rope_rotate(xs[o + ia], xs[o + ib], cs[i]);
        if (o < nq) {
            qo[o + ia] = r.x;
            qo[o + ib] = r.y;
        } else {
            const int ok = o - nq;
            ko[ok + ia] = r.x;
            ko[ok + ib] = r.y;
            kc[crow + ok + ia] = __float2half_rn(r.x);
            kc[crow + ok + ib] = __float2half_rn(r.y);
        }
    }
    const int rest = hd - n_rot;
    if (rest > 0)
        for (int it = tid; it < heads * rest; it += nt) {
            const int e = (it / rest) * hd + n_rot + it % rest;
            if (e < nq) {
                qo[e] = xs[e];
            } else {
                ko[e - nq] = xs[e];
                kc[crow + e - nq] = __float2half_rn(xs[e]);
            }
        }
}

// Spread: one block per head of q and k, with no shared memory and no barrier; each block
// takes its pairs' angles itself (the same rope_cs, so the same bits) and a k head's block
// also appends that head's v. The one-block kernel above took ~8 us on the H100 (ncu, 8B) and
// sat on the critical path once a layer. Blocks read q and k while others write qo and ko, so
// ko must not share memory with q (the planner keeps a slot one node past its last read).
// early: a thread's first pair's angle (double pow, cos, sin: the kernel's longest chain) is
// taken before pdl_begin, while the kernel before it runs; it reads only n_past and the
// factors, a weight (the PDL exception of common.cuh).
__global__ void rope_qk_append_spread_kernel(RopeArgs a, int n_head_k, const float* __restrict__ q,
                                             const float* __restrict__ k, const float* __restrict__ v,
                                             const float* __restrict__ factors, float* __restrict__ qo,
                                             float* __restrict__ ko, __half* __restrict__ kc, __half* __restrict__ vc,
                                             int64_t capacity, bool early, const StepParams* __restrict__ sp) {
    const int tid = threadIdx.x, nt = blockDim.x;
    const int hd = a.head_dim, n_rot = a.n_rot, half = n_rot / 2;
    const int pos = sp->n_past;  // before pdl_begin, as decode attention reads it (common.cuh)
    const float2 cs_first = early && tid < half ? rope_cs(a, pos, tid, factors) : float2{};
    pdl_begin();
    const int64_t crow = ((int64_t)pos % capacity) * n_head_k * hd;  // as kv_append_kernel's row
    const bool is_q = (int)blockIdx.x < a.n_head;
    const int o = (is_q ? (int)blockIdx.x : (int)blockIdx.x - a.n_head) * hd;  // the head in q or k
    const float* x = is_q ? q + o : k + o;
    for (int i = tid; i < half; i += nt) {
        const int ia = a.neox ? i : 2 * i;
        const int ib = a.neox ? i + half : 2 * i + 1;
        const float2 r = rope_rotate(x[ia], x[ib], early && i == tid ? cs_first : rope_cs(a, pos, i, factors));
        if (is_q) {
            qo[o + ia] = r.x;
            qo[o + ib] = r.y;
        } else {
            ko[o + ia] = r.x;
            ko[o + ib] = r.y;
            kc[crow + o + ia] = __float2half_rn(r.x);
            kc[crow + o + ib] = __float2half_rn(r.y);
        }
    }
    for (int e = n_rot + tid; e < hd; e += nt) {
        if (is_q) {
            qo[o + e] = x[e];
        } else {
            ko[o + e] = x[e];
            kc[crow + o + e] = __float2half_rn(x[e]);
        }
    }
    if (!is_q)
        for (int e = tid; e < hd; e += nt) vc[crow + o + e] = __float2half_rn(v[o + e]);
}

// The angles of the step's position (decode, one row), pair i to table[i]: what the q/k/v
// launch that applies the rope reads (matvec_wide.cu) instead of taking them itself. Taken
// before the PDL wait (they read n_past and the factors, a weight: the exception of
// common.cuh), written after it.
__global__ void rope_angles_kernel(RopeArgs a, const float* __restrict__ factors, float2* __restrict__ table,
                                   const StepParams* __restrict__ sp) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x, half = a.n_rot / 2;
    const float2 cs = i < half ? rope_cs(a, sp->n_past, i, factors) : float2{};
    pdl_begin();
    if (i < half) table[i] = cs;
}

}  // namespace

void launch_rope_angles(const RopeArgs& a, const float* factors, float2* table, const StepParams* sp, Launch s) {
    const int half = a.n_rot / 2;
    launch_kernel(rope_angles_kernel, (unsigned)ceil_div(half, 64), 64, 0, s, a, factors, table, sp);
}

void launch_rope(const RopeArgs& a, const float* x, const float* factors, float* y, int64_t rows,
                 const StepParams* sp, Launch s) {
    const int half = a.n_rot / 2;
    const int threads = half >= 128 ? 128 : half > 32 ? 64 : 32;
    launch_kernel(rope_kernel, (unsigned)rows, threads, 0, s, a, x, factors, y, sp);
}

bool rope_qk_append_fits(const RopeArgs& a, int n_head_k) { return rope_qk_smem(a, n_head_k) <= 48 * 1024; }

void launch_rope_qk_append(const RopeArgs& a, int n_head_k, const float* q, const float* k, const float* v,
                           const float* factors, float* qo, float* ko, __half* kc, __half* vc, int64_t capacity,
                           bool spread, bool early, const StepParams* sp, Launch s) {
    if (spread) {
        const int half = a.n_rot / 2;
        const int threads = half >= 128 ? 128 : half > 32 ? 64 : 32;  // as launch_rope
        launch_kernel(rope_qk_append_spread_kernel, (unsigned)(a.n_head + n_head_k), threads, 0, s, a, n_head_k, q, k,
                      v, factors, qo, ko, kc, vc, capacity, early, sp);
        return;
    }
    launch_kernel(rope_qk_append_kernel, 1, kFusedThreads, rope_qk_smem(a, n_head_k), s, a, n_head_k, q, k, v, factors,
                  qo, ko, kc, vc, capacity, sp);
}

}  // namespace strata::cuda
