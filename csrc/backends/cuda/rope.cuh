// The rotary embedding's per-pair math, shared by the rope kernels (rope.cu) and the q/k/v
// matvec launch that applies it (matvec_wide.cu), so that every path gives the same bits.
#pragma once

#include "common.cuh"

namespace strata::cuda {

// cos and sin (times the magnitude factor) of pair i at position `position`: the angle in
// double, as csrc/backends/cpu/kernels/rope.cpp takes it.
__device__ __forceinline__ float2 rope_cs(const RopeArgs& a, int position, int i, const float* factors) {
    const double pos = (double)position * (double)a.freq_scale;
    double theta = pos * pow((double)a.base, -2.0 * (double)i / (double)a.n_rot);
    if (factors) theta /= (double)factors[i];
    return make_float2((float)(cos(theta) * (double)a.attn_factor), (float)(sin(theta) * (double)a.attn_factor));
}

// (x0, x1) rotated by (c, s); explicit roundings, so no kernel contracts it differently.
__device__ __forceinline__ float2 rope_rotate(float x0, float x1, float2 cs) {
    return make_float2(__fmaf_rn(x0, cs.x, -__fmul_rn(x1, cs.y)), __fmaf_rn(x0, cs.y, __fmul_rn(x1, cs.x)));
}

}  // namespace strata::cuda
