// Greedy decoding on the device (Backend::device_argmax): the first index of the largest
// logit of the step's last row, so that a greedy decode step copies 4 bytes back instead of
// the vocabulary. The host's argmax (csrc/core/sampler.cpp) scans with `>` from index 0; here
// each thread scans its strided share in increasing order and the shares are merged by a
// rule that is a total order on (value, index) pairs, so the result is the same whatever the
// order the pairs meet in: larger value wins, equal values the smaller index (-0 == +0 as
// for the host). NaN compares false, so it never wins; a row of NaN only gives -1 (the engine
// then samples from the logits on the host, whose argmax returns 0 for it). A row starting
// with NaN is the one place the two differ (the host keeps index 0): broken logits either way.
#include <climits>

#include "common.cuh"

namespace strata::cuda {

namespace {

constexpr int kThreads = 1024;  // one block: a vocabulary is a few hundred KB, read from L2

__device__ __forceinline__ void take_better(float v, int i, float& bv, int& bi) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

__global__ void __launch_bounds__(kThreads)
    argmax_kernel(const float* __restrict__ x, int n, int32_t* __restrict__ out) {
    pdl_begin();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float bv = -INFINITY;
    int bi = INT_MAX;  // nothing yet: any value but NaN (-inf included) takes its place
    int i = tid;
    for (; i < n - 3 * kThreads; i += 4 * kThreads) {  // four loads in flight, then in index order
        const float v0 = x[i], v1 = x[i + kThreads], v2 = x[i + 2 * kThreads], v3 = x[i + 3 * kThreads];
        take_better(v0, i, bv, bi);
        take_better(v1, i + kThreads, bv, bi);
        take_better(v2, i + 2 * kThreads, bv, bi);
        take_better(v3, i + 3 * kThreads, bv, bi);
    }
    for (; i < n; i += kThreads) take_better(x[i], i, bv, bi);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        take_better(ov, oi, bv, bi);
    }
    __shared__ float wv[kThreads / 32];
    __shared__ int wi[kThreads / 32];
    if (lane == 0) {
        wv[warp] = bv;
        wi[warp] = bi;
    }
    __syncthreads();
    if (warp != 0) return;
    bv = wv[lane];  // kThreads / 32 == 32: one warp's worth
    bi = wi[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        take_better(ov, oi, bv, bi);
    }
    if (lane == 0) *out = bi == INT_MAX ? -1 : bi;
}

static_assert(kThreads == 32 * 32, "the second reduction is one warp over the warps' results");

}  // namespace

void launch_argmax(const float* x, int64_t n, int32_t* out, Launch s) {
    launch_kernel(argmax_kernel, dim3(1), dim3(kThreads), 0, s, x, (int)n, out);
}

}  // namespace strata::cuda
