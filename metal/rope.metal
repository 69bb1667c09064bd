// rope: rotary position embedding of each head of T rows at positions n_past + t.
// Reference: csrc/backends/cpu/kernels/rope.cpp, tests/ops/test_rope_attention.py::ref_rope.
//
// One thread per (pair j < head_dim / 2, head, row): grid x = pairs, y = heads, z = rows.
// Pairs j < n_rot / 2 rotate (x[2j], x[2j+1]) (normal) or (x[j], x[j + n_rot/2]) (neox) by
// theta_j = pos * freq_scale * base^(-2j/n_rot) [/ factors[j]]; the other pairs copy the
// unrotated tail. Metal has no double: theta is float (the CPU computes it in double), and
// cos/sin are precise:: so large angles are reduced correctly. head_dim must be even.
//
// Function constant 1 (ROPE_NEOX): 0 normal layout, 1 neox.
#include "strata_args.h"

constant int ROPE_NEOX [[function_constant(1)]];

kernel void kernel_rope_f32(
        constant RopeArgs& args [[buffer(0)]],
        device const float* x [[buffer(1)]],
        device const float* factors [[buffer(2)]],
        device float* y [[buffer(3)]],
        uint3 gid [[thread_position_in_grid]]) {
    const int j = (int)gid.x, h = (int)gid.y, t = (int)gid.z;
    if (j >= args.head_dim / 2 || h >= args.n_head || t >= args.T) return;
    device const float* xr = x + (long)t * args.W + (long)h * args.head_dim;
    device float* yr = y + (long)t * args.W + (long)h * args.head_dim;
    const int half_rot = args.n_rot / 2;
    if (j < half_rot) {
        const float pos = (float)(args.n_past + t) * args.freq_scale;
        float theta = pos * exp2(-2.0f * (float)j / (float)args.n_rot * args.log2_base);
        if (args.has_factors) theta /= factors[j];
        const float c = precise::cos(theta) * args.attn_factor;
        const float s = precise::sin(theta) * args.attn_factor;
        const int a = ROPE_NEOX ? j : 2 * j;
        const int b = ROPE_NEOX ? j + half_rot : 2 * j + 1;
        const float x0 = xr[a], x1 = xr[b];
        yr[a] = x0 * c - x1 * s;
        yr[b] = x0 * s + x1 * c;
    } else {
        const int e = args.n_rot + 2 * (j - half_rot);
        yr[e] = xr[e];
        yr[e + 1] = xr[e + 1];
    }
}
