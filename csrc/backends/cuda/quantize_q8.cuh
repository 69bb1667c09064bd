// The activation quantization of the int8 decode matvec, one 32-element chunk per warp: shared
// by every kernel that writes an ActQ8 (device code only; the host checks do not include it).
#pragma once

#include "common.cuh"

namespace strata::cuda {

// Quantizes one 32-element chunk held one element per lane (v: lane l's element) into
// chunk c of `out`, exactly as the CPU's block_q8_act: d = amax / 127, q = round-to-nearest-
// even(v / d), and the sums of the first and second 16 quants. Every kernel that writes an
// ActQ8 (the stand-alone quantize, and the norm, glu and attention merge that quantize their
// own output in a decode step) calls this, so their bytes are the same. Whole warps only.
__device__ __forceinline__ void quantize_chunk32(float v, int64_t c, const ActQ8& out) {
    const int lane = threadIdx.x & 31;
    const float amax = warp_max(fabsf(v));
    const float dd = amax / 127.0f;  // the CPU's act_scale / act_inv_scale
    const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const int qi = __float2int_rn(v * id);  // round to nearest even, |qi| <= 127
    out.q[c * 32 + lane] = (int8_t)qi;
    int part = qi;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);  // per 16 lanes
    const int lo = __shfl_sync(0xffffffffu, part, 0), hi = __shfl_sync(0xffffffffu, part, 16);
    if (lane == 0) {
        out.d[c] = dd;
        out.s[c] = (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
    }
}

}  // namespace strata::cuda
