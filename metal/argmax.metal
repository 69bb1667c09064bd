// argmax over each row of logits (greedy decoding on the GPU: one int32 per row instead of
// reading back the vocabulary). Reference: csrc/core/sampler.cpp argmax: the first index
// of the largest value. NaN never wins here (the CPU returns 0 when x[0] is NaN; here the
// largest non-NaN value wins, 0 when the whole row is NaN).
//
// One threadgroup per row; threads stride the row keeping (value, index), simdgroups
// reduce with simd_shuffle_xor butterflies, simdgroup 0 reduces the per-simdgroup winners
// from threadgroup memory.
#include "strata_args.h"

static inline bool better(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

kernel void kernel_argmax_f32(
        constant ArgmaxArgs& args [[buffer(0)]],
        device const float* x [[buffer(1)]],
        device int* out [[buffer(2)]],
        uint row [[threadgroup_position_in_grid]],
        uint tid [[thread_index_in_threadgroup]],
        uint ntg [[threads_per_threadgroup]],
        uint lane [[thread_index_in_simdgroup]],
        uint sg [[simdgroup_index_in_threadgroup]],
        uint nsg [[simdgroups_per_threadgroup]]) {
    threadgroup float tg_v[32];
    threadgroup int tg_i[32];
    if ((int)row >= args.T) return;
    device const float* xr = x + (long)row * args.n;

    float bv = -INFINITY;
    int bi = 0x7FFFFFFF;
    for (int i = (int)tid; i < args.n; i += (int)ntg) {
        const float v = xr[i];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    for (ushort o = 16; o > 0; o >>= 1) {
        const float ov = simd_shuffle_xor(bv, o);
        const int oi = simd_shuffle_xor(bi, o);
        if (better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    if (lane == 0) {
        tg_v[sg] = bv;
        tg_i[sg] = bi;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (sg != 0) return;
    bv = lane < nsg ? tg_v[lane] : -INFINITY;
    bi = lane < nsg ? tg_i[lane] : 0x7FFFFFFF;
    for (ushort o = 16; o > 0; o >>= 1) {
        const float ov = simd_shuffle_xor(bv, o);
        const int oi = simd_shuffle_xor(bi, o);
        if (better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    if (lane == 0) out[row] = bi == 0x7FFFFFFF ? 0 : bi;
}
