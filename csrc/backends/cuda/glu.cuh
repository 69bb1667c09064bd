// The gated activation of a decode step's feed-forward, y = act(gate) * up, as the CPU's
// elementwise.cpp: shared by the unfused binary kernel, the glu + quantize kernel
// (elementwise.cu) and the gate/up matvec that finishes its own glu (matvec_tail.cuh), so all
// three give the same bits. Device code only.
#pragma once

#include "common.cuh"
#include "quantize_q8.cuh"

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

// Chunk c (32 elements, one a lane) of y = act(g) * u, and its int8 copy when q8.q is set.
// g and u are read through L2 (__ldcg): the matvec tail reads them right after other SMs
// wrote them in the same kernel, where this SM's L1 could hold an older line. Whole warps.
__device__ __forceinline__ void glu_chunk32(Activation act, const float* g, const float* u, float* y, int64_t c,
                                            const ActQ8& q8) {
    const int64_t i = c * 32 + (threadIdx.x & 31);
    const float v = act_apply(act, __ldcg(g + i)) * __ldcg(u + i);
    y[i] = v;
    if (q8.q) quantize_chunk32(v, c, q8);
}

}  // namespace strata::cuda
