// rms_norm: y = x / sqrt(mean(x^2) + eps) * w over groups of W floats (a row, or one head of
// a row for per-head q/k norms). Reference: csrc/backends/cpu/kernels/norm.cpp,
// tests/ops/test_norms_elementwise.py::ref_rms_norm.
//
// One threadgroup per group. Threads stride the group summing squares in float, simd_sum
// reduces each simdgroup, and simdgroup 0 reduces the per-simdgroup partials from
// threadgroup memory. (The CPU sums in double; float sums of a few thousand squares stay
// within ~1e-6 relative.)
#include "strata_args.h"

kernel void kernel_rms_norm_f32(
        constant RmsNormArgs& args [[buffer(0)]],
        device const float* x [[buffer(1)]],
        device const float* w [[buffer(2)]],
        device float* y [[buffer(3)]],
        uint g [[threadgroup_position_in_grid]],
        uint tid [[thread_index_in_threadgroup]],
        uint ntg [[threads_per_threadgroup]],
        uint lane [[thread_index_in_simdgroup]],
        uint sg [[simdgroup_index_in_threadgroup]],
        uint nsg [[simdgroups_per_threadgroup]]) {
    threadgroup float partial[32];  // one per simdgroup (<= 1024 threads)
    if ((int)g >= args.n_groups) return;  // whole threadgroups only
    const uint W = (uint)args.W;
    device const float* xr = x + (long)g * W;
    device float* yr = y + (long)g * W;

    float ss = 0.0f;
    for (uint i = tid; i < W; i += ntg) ss += xr[i] * xr[i];
    ss = simd_sum(ss);
    if (lane == 0) partial[sg] = ss;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (sg == 0) {
        float v = lane < nsg ? partial[lane] : 0.0f;
        v = simd_sum(v);
        if (lane == 0) partial[0] = v;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const float scale = 1.0f / sqrt(partial[0] / (float)W + args.eps);
    if (args.has_weight) {
        for (uint i = tid; i < W; i += ntg) yr[i] = xr[i] * scale * w[i];
    } else {
        for (uint i = tid; i < W; i += ntg) yr[i] = xr[i] * scale;
    }
}
