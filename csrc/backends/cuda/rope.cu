// rope: rotary position embedding of each head of each row at position n_past + row, as
// csrc/backends/cpu/kernels/rope.cpp: the angle position * freq_scale * base^(-2i/n_rot)
// (divided by the pair's frequency factor, if any) in double, its cos and sin times the
// magnitude factor rounded to f32, then reused for every head. Normal layout rotates
// adjacent pairs, neox the two halves; dimensions past n_rot pass through.
//
// One block per row; n_past comes from device memory (StepParams) so a captured decode
// graph stays valid.
#include "common.cuh"

namespace strata::cuda {

namespace {

__global__ void rope_kernel(RopeArgs a, const float* __restrict__ x, const float* __restrict__ factors,
                            float* __restrict__ y, const StepParams* __restrict__ sp) {
    const int t = blockIdx.x;
    const int hd = a.head_dim, n_rot = a.n_rot, half = n_rot / 2;
    const int64_t base_row = (int64_t)t * a.n_head * hd;
    const double pos = (double)(sp->n_past + t) * (double)a.freq_scale;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double theta = pos * pow((double)a.base, -2.0 * (double)i / (double)n_rot);
        if (factors) theta /= (double)factors[i];
        const float c = (float)(cos(theta) * (double)a.attn_factor);
        const float s = (float)(sin(theta) * (double)a.attn_factor);
        const int ia = a.neox ? i : 2 * i;
        const int ib = a.neox ? i + half : 2 * i + 1;
        for (int h = 0; h < a.n_head; ++h) {
            const int64_t o = base_row + (int64_t)h * hd;
            const float x0 = x[o + ia], x1 = x[o + ib];
            y[o + ia] = x0 * c - x1 * s;
            y[o + ib] = x0 * s + x1 * c;
        }
    }
    const int rest = hd - n_rot;
    if (rest > 0)
        for (int k = threadIdx.x; k < a.n_head * rest; k += blockDim.x) {
            const int64_t o = base_row + (int64_t)(k / rest) * hd + n_rot + k % rest;
            y[o] = x[o];
        }
}

}  // namespace

void launch_rope(const RopeArgs& a, const float* x, const float* factors, float* y, int64_t rows,
                 const StepParams* sp, cudaStream_t s) {
    const int half = a.n_rot / 2;
    const int threads = half >= 128 ? 128 : half > 32 ? 64 : 32;
    rope_kernel<<<(unsigned)rows, threads, 0, s>>>(a, x, factors, y, sp);
}

}  // namespace strata::cuda
