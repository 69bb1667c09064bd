// The activations of the CPU's elementwise.cpp on the device, shared by the elementwise kernels
// and the decode gate/up launch that applies its glu itself (matvec_wide.cu), so both give
// the same bits. Device code only.
#pragma once

#include "common.cuh"

namespace strata::cuda {

__device__ __forceinline__ float act_apply(Activation a, float x) {
    switch (a) {
        case Activation::Silu: return x / (1.0f + expf(-x));
        case Activation::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case Activation::GeluTanh:
            return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * x * (1.0f + 0.044715f * x * x)));
    }
    return x;
}

}  // namespace strata::cuda
