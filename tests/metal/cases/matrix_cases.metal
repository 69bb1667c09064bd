// The harness's model of simdgroup_matrix (include/metal_stdlib), against NumPy and its
// failure modes (tests/metal/test_harness.py). Not shipped, not in kernels.def.
#include "strata_args.h"

// D = op(A) op(B) + C with A float from device memory (elements_per_row 11), B half from
// threadgroup memory, C float; D stored with elements_per_row 9. flags: transpose A, B, D.
kernel void case_matrix_mma(
        device const float* a [[buffer(1)]],
        device const float* b [[buffer(2)]],
        device const float* c [[buffer(3)]],
        device float* d [[buffer(4)]],
        device const int* flags [[buffer(5)]],
        uint lane [[thread_index_in_simdgroup]]) {
    threadgroup half hb[64];
    for (uint i = lane; i < 64; i += 32) hb[i] = (half)b[i];
    simdgroup_barrier(mem_flags::mem_threadgroup);
    simdgroup_float8x8 ma, mc;
    simdgroup_half8x8 mb;
    simdgroup_load(ma, a, 11, 0, flags[0] != 0);
    simdgroup_load(mb, hb, 8, 0, flags[1] != 0);
    simdgroup_load(mc, c);
    simdgroup_multiply_accumulate(mc, ma, mb, mc);  // d aliases c
    simdgroup_store(mc, d, 9, 0, flags[2] != 0);
}

// D = A * diag(2) + ones: the diagonal constructor, make_filled and simdgroup_multiply.
kernel void case_matrix_filled(
        device const float* a [[buffer(1)]],
        device float* d [[buffer(2)]]) {
    simdgroup_float8x8 ma, md;
    simdgroup_load(ma, a);
    const simdgroup_float8x8 two(2.0f);
    simdgroup_multiply(md, ma, two);
    simdgroup_multiply_accumulate(md, make_filled_simdgroup_matrix<float, 8>(1.0f), make_filled_simdgroup_matrix<float, 8>(0.125f), md);
    simdgroup_store(md, d);
}

// A matrix nothing wrote: NaN.
kernel void case_matrix_unset(device float* d [[buffer(1)]]) {
    simdgroup_float8x8 m;
    simdgroup_store(m, d);
}

// The load happens when the whole simdgroup is there: lanes overwriting the source right
// after it must not change what other lanes' parts received.
kernel void case_matrix_lockstep(
        device const float* a [[buffer(1)]],
        device float* d [[buffer(2)]],
        uint lane [[thread_index_in_simdgroup]]) {
    threadgroup float t[64];
    t[lane] = a[lane];
    t[lane + 32] = a[lane + 32];
    simdgroup_barrier(mem_flags::mem_threadgroup);
    simdgroup_float8x8 m;
    simdgroup_load(m, t);
    t[lane] = -1.0f;
    t[lane + 32] = -1.0f;
    simdgroup_store(m, d);
}

// Simdgroup 1 fills the tile simdgroup 0 loads, after a collective of its own (so most of
// its writes come after simdgroup 0's first chance to load). CASE_RACY leaves out the
// threadgroup barrier.
kernel void case_matrix_across_simdgroups(
        device const float* a [[buffer(1)]],
        device float* d [[buffer(2)]],
        uint lane [[thread_index_in_simdgroup]],
        uint sg [[simdgroup_index_in_threadgroup]]) {
    threadgroup float t[64];
    if (sg == 1) {
        const float one = simd_sum(1.0f) / 32.0f;
        t[lane] = a[lane] * one;
        t[lane + 32] = a[lane + 32] * one;
    }
#ifndef CASE_RACY
    threadgroup_barrier(mem_flags::mem_threadgroup);
#endif
    if (sg == 0) {
        simdgroup_float8x8 m;
        simdgroup_load(m, t);
        simdgroup_store(m, d);
    }
}

// Lanes passing different addresses.
kernel void case_matrix_divergent_address(
        device const float* a [[buffer(1)]],
        device float* d [[buffer(2)]],
        uint lane [[thread_index_in_simdgroup]]) {
    simdgroup_float8x8 m;
    simdgroup_load(m, a + (lane & 1));
    simdgroup_store(m, d);
}

// A lane that returned: the matrix has a missing part.
kernel void case_matrix_missing_lane(
        device const float* a [[buffer(1)]],
        device float* d [[buffer(2)]],
        uint lane [[thread_index_in_simdgroup]]) {
    if (lane == 31) return;
    simdgroup_float8x8 m;
    simdgroup_load(m, a);
    simdgroup_store(m, d);
}

// matrix_origin is not modelled: refused rather than guessed.
kernel void case_matrix_origin(
        device const float* a [[buffer(1)]],
        device float* d [[buffer(2)]]) {
    simdgroup_float8x8 m;
    simdgroup_load(m, a, 16, ulong2{8, 0});
    simdgroup_store(m, d);
}
