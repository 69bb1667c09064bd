// add, mul (b broadcast per channel when args.broadcast), scale, activation and glu, one
// thread per element. Reference: csrc/backends/cpu/kernels/elementwise.cpp,
// tests/ops/test_norms_elementwise.py.
//
// Function constant 0 (ACT): the activation of the activation and glu kernels,
// STRATA_ACT_SILU, STRATA_ACT_GELU (erf) or STRATA_ACT_GELU_TANH. tanh is precise::tanh:
// fast-math tanh overflows to NaN for large |x| on some GPUs.
//
// gelu (erf) = 0.5 x (1 + erf(x / sqrt 2)). MSL has no erf, so erfc is computed here:
// Numerical Recipes' erfcc (a Chebyshev fit, fractional error below 1.2e-7 for every z >= 0),
// with 1 + erf(x / sqrt 2) = erfc(|x| / sqrt 2) for x < 0, so the negative tail keeps its
// relative precision instead of cancelling in 1 + erf (the CPU's 1 + erff(x) does cancel
// there: both are within ~1e-7 absolute of the float64 reference).
#include "strata_args.h"

constant int ACT [[function_constant(0)]];

static inline float strata_erfc_nonneg(float z) {  // erfc(z), z >= 0
    const float t = 1.0f / (1.0f + 0.5f * z);
    const float p =
        -1.26551223f +
        t * (1.00002368f +
             t * (0.37409196f +
                  t * (0.09678418f +
                       t * (-0.18628806f +
                            t * (0.27886807f +
                                 t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    return t * precise::exp(p - z * z);
}

static inline float act_apply(float x) {
    if (ACT == STRATA_ACT_GELU_TANH)
        return 0.5f * x * (1.0f + precise::tanh(0.79788456080286536f * x * (1.0f + 0.044715f * x * x)));
    if (ACT == STRATA_ACT_GELU) {
        const float c = strata_erfc_nonneg(fabs(x) * 0.70710678118654752f);  // erfc(|x| / sqrt 2)
        return 0.5f * x * (x < 0.0f ? c : 2.0f - c);
    }
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
