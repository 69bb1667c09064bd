// add, mul (b broadcast per channel when args.broadcast), scale, activation and glu, one
// thread per element. Reference: csrc/backends/cpu/kernels/elementwise.cpp,
// tests/ops/test_norms_elementwise.py.
//
// Function constant 0 (ACT): the activation of the
// activation and glu kernels, STRATA_ACT_SILU or STRATA_ACT_GELU_TANH. tanh is
// precise::tanh: fast-math tanh overflows to NaN for large |x| on some GPUs.
#include "strata_args.h"

constant int ACT [[function_constant(0)]];

static inline float act_apply(float x) {
    if (ACT == STRATA_ACT_GELU_TANH)
        return 0.5f * x * (1.0f + precise::tanh(0.79788456080286536f * x * (1.0f + 0.044715f * x * x)));
    return x / (1.0f + exp(-x));  // silu
}

kernel void kernel_add_f32(
        constant EltwiseArgs& args [[buffer(0)]],
        device const float* a [[buffer(1)]],
        device const float* b [[buffer(2)]],
        device float* y [[buffer(3)]],
        uint i [[thread_position_in_grid]]) {
    if ((int)i >= args.n) return;
    y[i] = a[i] + b[args.broadcast ? i % (uint)args.W : i];
}

kernel void kernel_mul_f32(
        constant EltwiseArgs& args [[buffer(0)]],
        device const float* a [[buffer(1)]],
        device const float* b [[buffer(2)]],
        device float* y [[buffer(3)]],
        uint i [[thread_position_in_grid]]) {
    if ((int)i >= args.n) return;
    y[i] = a[i] * b[args.broadcast ? i % (uint)args.W : i];
}

kernel void kernel_scale_f32(
        constant EltwiseArgs& args [[buffer(0)]],
        device const float* a [[buffer(1)]],
        device float* y [[buffer(3)]],
        uint i [[thread_position_in_grid]]) {
    if ((int)i >= args.n) return;
    y[i] = a[i] * args.scale;
}

kernel void kernel_activation_f32(
        constant EltwiseArgs& args [[buffer(0)]],
        device const float* a [[buffer(1)]],
        device float* y [[buffer(3)]],
        uint i [[thread_position_in_grid]]) {
    if ((int)i >= args.n) return;
    y[i] = act_apply(a[i]);
}

// y = act(gate) * up
kernel void kernel_glu_f32(
        constant EltwiseArgs& args [[buffer(0)]],
        device const float* gate [[buffer(1)]],
        device const float* up [[buffer(2)]],
        device float* y [[buffer(3)]],
        uint i [[thread_position_in_grid]]) {
    if ((int)i >= args.n) return;
    y[i] = act_apply(gate[i]) * up[i];
}
