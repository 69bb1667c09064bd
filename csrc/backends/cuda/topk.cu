// Top-k sampling's candidates on the device (Backend::device_top_k): the k best logits of a
// decode step's row, best first, so that the host draws from k pairs (Sampler::sample_top)
// instead of copying the vocabulary back and sorting it (~0.2 ms a token for 128k logits).
//
// The order is the host sampler's (csrc/core/sampler.cpp, by_logit): larger value first,
// equal values by smaller index (-0 == +0), a total order on (value, index) pairs, so the
// selection does not depend on which thread meets which pair first. NaN compares false and
// is never taken (the host's sort is undefined on NaN rows: broken logits either way).
//
// Two launches of one kernel. Stage 1: block b takes elements [b * kChunk, (b + 1) * kChunk)
// into registers (16 per thread) and picks its k best by k rounds of a block-wide "best pair
// after the last one taken" (no marking: the pairs taken so far are exactly those before the
// last one in the order). Stage 2: one block does the same over the blocks' k-lists (at most
// kChunk pairs), giving the row's k best. Unfilled slots are (NaN, -1).
#include <climits>

#include "common.cuh"

namespace strata::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 16;
constexpr int kChunk = kThreads * kPerThread;  // 4096
static_assert(kChunk == kTopKScratch, "stage 2 reads the stage-1 lists in one block's chunk");
constexpr int kWarps = kThreads / 32;

// Whether (v, i) comes before (bv, bi): the host's by_logit.
__device__ __forceinline__ bool before(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// ids == nullptr: the pairs are (x[j], j); otherwise (x[j], ids[j]) with ids[j] < 0 unused.
__global__ void __launch_bounds__(kThreads)
    top_k_kernel(const float* __restrict__ x, const int32_t* __restrict__ ids, int n, int k,
                 float* __restrict__ out_v, int32_t* __restrict__ out_i) {
    pdl_begin();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int begin = blockIdx.x * kChunk;
    float xv[kPerThread];
    int xi[kPerThread];
#pragma unroll
    for (int u = 0; u < kPerThread; ++u) {
        const int j = begin + u * kThreads + tid;
        xi[u] = j >= n ? -1 : ids ? ids[j] : j;
        xv[u] = xi[u] >= 0 ? x[j] : __int_as_float(0x7fc00000);  // past the end or unused: NaN, never taken
    }
    __shared__ float wv[2][kWarps];
    __shared__ int wi[2][kWarps];
    float lv = 0.0f;
    int li = -1;
    bool first = true;
    float* ov = out_v + (int64_t)blockIdx.x * k;
    int32_t* oi = out_i + (int64_t)blockIdx.x * k;
    for (int r = 0; r < k; ++r) {
        // the best pair after (lv, li); -inf with index INT_MAX stands for none yet
        float bv = -INFINITY;
        int bi = INT_MAX;
#pragma unroll
        for (int u = 0; u < kPerThread; ++u)
            if ((first || before(lv, li, xv[u], xi[u])) && before(xv[u], xi[u], bv, bi)) {
                bv = xv[u];
                bi = xi[u];
            }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, bv, o);
            const int i = __shfl_xor_sync(0xffffffffu, bi, o);
            if (before(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
        // Two buffers by round parity: a round's writes never meet the reads of the round
        // before, which every thread finished before this round's barrier.
        if (lane == 0) {
            wv[r & 1][warp] = bv;
            wi[r & 1][warp] = bi;
        }
        __syncthreads();
        bv = wv[r & 1][0];
        bi = wi[r & 1][0];
#pragma unroll
        for (int w = 1; w < kWarps; ++w)
            if (before(wv[r & 1][w], wi[r & 1][w], bv, bi)) {
                bv = wv[r & 1][w];
                bi = wi[r & 1][w];
            }
        if (bi == INT_MAX) {  // nothing left (every thread sees the same): fill and stop
            for (int s = r + tid; s < k; s += kThreads) {
                ov[s] = __int_as_float(0x7fc00000);
                oi[s] = -1;
            }
            return;
        }
        if (tid == 0) {
            ov[r] = bv;
            oi[r] = bi;
        }
        lv = bv;
        li = bi;
        first = false;
    }
}

}  // namespace

int top_k_blocks(int64_t n) { return (int)((n + kChunk - 1) / kChunk); }

bool top_k_fits(int64_t n, int k) { return k >= 1 && (int64_t)top_k_blocks(n) * k <= kChunk; }

void launch_top_k(const float* x, int64_t n, int k, float* scratch_v, int32_t* scratch_i, float* out_v,
                  int32_t* out_i, cudaStream_t s) {
    const int blocks = top_k_blocks(n);
    launch_kernel(top_k_kernel, dim3(blocks), dim3(kThreads), 0, Launch(s), x, (const int32_t*)nullptr, (int)n, k,
                  scratch_v, scratch_i);
    launch_kernel(top_k_kernel, dim3(1), dim3(kThreads), 0, Launch(s), (const float*)scratch_v,
                  (const int32_t*)scratch_i, blocks * k, k, out_v, out_i);
}

}  // namespace strata::cuda
