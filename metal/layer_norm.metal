// layer_norm: y = (x - mean) / sqrt(var + eps) (* w) (+ b) over each row of W floats
// (gpt2). Reference: csrc/backends/cpu/kernels/norm.cpp op_layer_norm,
// tests/reference/numpy_ops.py::ref_layer_norm.
//
// One threadgroup per row, two passes as the CPU: the mean, then the sum of squared
// deviations from it (never E[x^2] - mean^2, which cancels for rows far from zero). Each
// sum: threads stride the row in float, simd_sum per simdgroup, the per-simdgroup partials
// through threadgroup memory, summed by every thread in the same order. (The CPU sums in
// double; float sums of a few thousand terms stay within ~1e-6 relative.)
#include "strata_args.h"

kernel void kernel_layer_norm_f32(
        constant LayerNormArgs& args [[buffer(0)]],
        device const float* x [[buffer(1)]],
        device const float* w [[buffer(2)]],
        device const float* b [[buffer(3)]],
        device float* y [[buffer(4)]],
        uint row [[threadgroup_position_in_grid]],
        uint tid [[thread_index_in_threadgroup]],
        uint ntg [[threads_per_threadgroup]],
        uint lane [[thread_index_in_simdgroup]],
        uint sg [[simdgroup_index_in_threadgroup]],
        uint nsg [[simdgroups_per_threadgroup]]) {
    threadgroup float partial_sum[32];  // one per simdgroup (<= 1024 threads)
    threadgroup float partial_dev[32];
    if ((int)row >= args.n_rows) return;  // whole threadgroups only
    const uint W = (uint)args.W;
    device const float* xr = x + (long)row * W;
    device float* yr = y + (long)row * W;

    float s = 0.0f;
    for (uint i = tid; i < W; i += ntg) s += xr[i];
    s = simd_sum(s);
    if (lane == 0) partial_sum[sg] = s;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float total = 0.0f;
    for (uint k = 0; k < nsg; ++k) total += partial_sum[k];
    const float mean = total / (float)W;

    float ss = 0.0f;
    for (uint i = tid; i < W; i += ntg) {
        const float d = xr[i] - mean;
        ss += d * d;
    }
    ss = simd_sum(ss);
    if (lane == 0) partial_dev[sg] = ss;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float dev = 0.0f;
    for (uint k = 0; k < nsg; ++k) dev += partial_dev[k];
    const float scale = 1.0f / sqrt(dev / (float)W + args.eps);

    for (uint i = tid; i < W; i += ntg) {
        float v = (xr[i] - mean) * scale;
        if (args.has_weight) v *= w[i];
        if (args.has_bias) v += b[i];
        yr[i] = v;
    }
}
