// Tensor-core building blocks shared by the prefill GEMM (gemm_f16.cu) and prefill
// attention (attention.cu): shared-memory addresses, cp.async, ldmatrix and the
// mma.sync m16n8k16 f16 -> f32 instruction (sm_80 and later).
//
// Fragments of m16n8k16, for lane = 4 g + q (g = lane / 4, q = lane % 4); each 32-bit
// register holds two f16, the lower column (or k) in the low half:
//   A (16 x 16, row major): a0 (row g, cols 2q, 2q+1), a1 (row g+8), a2 (row g, cols 2q+8..),
//                           a3 (row g+8, cols 2q+8..)
//   B (16 x 8, k x n):      b0 (k 2q, 2q+1; n g), b1 (k 2q+8, 2q+9; n g)
//   C (16 x 8, f32):        c0, c1 (row g, cols 2q, 2q+1), c2, c3 (row g+8)
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace strata::cuda {

// tools/attention_mma_host_check.cpp defines STRATA_MMA_HOST_EMULATION and its own versions of
// the warp-collective functions below (ldmatrix, mma, shuffles, barriers), lane by lane.
#ifndef STRATA_MMA_HOST_EMULATION

__device__ __forceinline__ void block_sync() { __syncthreads(); }
__device__ __forceinline__ float shfl_xor(float v, int lane_mask) {
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 f16 matrices; lane 8 i + r gives the address of row r of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
// The same, each matrix transposed: from a row-major [k][n] tile, B fragments.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c += a (16x16, row major) * b (16x8, column major), f32 accumulators.
__device__ __forceinline__ void mma_16816(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

#endif  // STRATA_MMA_HOST_EMULATION

// Two floats as an f16 pair, x in the low half.
__device__ __forceinline__ uint32_t pack_half2(float x, float y) {
    const __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
}

}  // namespace strata::cuda
