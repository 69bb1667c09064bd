// Shaders that are wrong on purpose, to show that the harness catches each kind of bug it
// claims to (tests/metal/test_harness.py). Not shipped, not in kernels.def.
#include "strata_args.h"

// Reverse n floats through threadgroup memory. CASE_RACY leaves out the barrier between
// the write and the read of another thread's element.
kernel void case_reverse(
        device const float* x [[buffer(1)]],
        device float* y [[buffer(2)]],
        uint tid [[thread_index_in_threadgroup]],
        uint n [[threads_per_threadgroup]]) {
    threadgroup float sh[1024];
    sh[tid] = x[tid];
#ifndef CASE_RACY
    threadgroup_barrier(mem_flags::mem_threadgroup);
#endif
    y[tid] = sh[n - 1 - tid];
}

// Half of the lanes reach one simd_sum, the other half another.
kernel void case_divergent_simd(
        device float* y [[buffer(1)]],
        uint lane [[thread_index_in_simdgroup]]) {
    float v;
    if (lane < 16) v = simd_sum(1.0f);
    else v = simd_sum(2.0f);
    y[lane] = v;
}

// Lanes that returned early do not take part in a later simd_sum (Metal's active lanes).
kernel void case_early_exit_sum(
        device float* y [[buffer(1)]],
        uint lane [[thread_index_in_simdgroup]]) {
    if (lane >= 20) return;
    const float v = simd_sum((float)lane);
    y[lane] = v;
}

// A barrier only some threads reach.
kernel void case_barrier_in_branch(
        device float* y [[buffer(1)]],
        uint tid [[thread_index_in_threadgroup]]) {
    if (tid < 16) threadgroup_barrier(mem_flags::mem_threadgroup);
    y[tid] = 1.0f;
}

// Reading threadgroup memory nothing wrote: garbage, different per seed.
kernel void case_uninitialised(
        device float* y [[buffer(1)]],
        uint tid [[thread_index_in_threadgroup]]) {
    threadgroup float sh[64];
    y[tid] = sh[tid];
}

// simd_shuffle_xor / shuffle_down / broadcast / max against their definitions.
kernel void case_shuffles(
        device float* y [[buffer(1)]],
        uint lane [[thread_index_in_simdgroup]],
        uint w [[threads_per_simdgroup]]) {
    const float v = (float)(lane * lane);
    y[lane] = simd_shuffle_xor(v, 5);
    y[w + lane] = simd_shuffle_down(v, 3);
    y[2 * w + lane] = simd_broadcast(v, 7);
    y[3 * w + lane] = simd_max(v);
}

// Half the lanes wait at a simd_sum, the other half at a threadgroup barrier: on a GPU
// this hangs or is undefined; the harness reports a deadlock.
kernel void case_deadlock(
        device float* y [[buffer(1)]],
        uint lane [[thread_index_in_simdgroup]]) {
    if (lane < 16) y[lane] = simd_sum(1.0f);
    else threadgroup_barrier(mem_flags::mem_threadgroup);
}
