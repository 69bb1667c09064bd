// Helpers shared by the CPU kernels of one instruction-set build.
//
// Every kernel source is compiled once per ISA (scalar, avx2, avx512 on x86-64; neon on
// arm64) with STRATA_ISA naming the namespace, so the same source yields several kernel
// tables and cpu_backend.cpp picks one at run time. Everything here has internal linkage.
#pragma once

#include <stdint.h>
#include <string.h>

#include <cmath>

#if defined(__AVX2__) || defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "../../../quants/blocks.h"
#include "../exec.h"

#ifndef STRATA_ISA
#error "STRATA_ISA must name the instruction set this kernel build targets"
#endif

namespace strata::cpu::STRATA_ISA {

using quants::block_q8_act;

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

// Thread ith's share [*begin, *end) of n items.
static inline void split_range(int64_t n, int ith, int nth, int64_t* begin, int64_t* end) {
    *begin = n * ith / nth;
    *end = n * (ith + 1) / nth;
}

static inline int64_t rows_of(const Exec& ex, int32_t v) {
    return (ex.single_row[v] && !ex.all_rows) ? 1 : ex.n_rows;
}
static inline float* f32_of(const Exec& ex, int32_t v) { return reinterpret_cast<float*>(ex.data[v]); }

static inline float fp16_to_f32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return quants::fp16_to_fp32(h);
#endif
}
static inline uint16_t f32_to_fp16(float f) {
#if defined(__F16C__)
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    return quants::fp32_to_fp16(f);
#endif
}

#if defined(__AVX2__)
static inline float hsum_ps256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

// The lane sums of 8 vectors, all added in one fixed order (lanes i and i + 4, then
// i and i + 2, then i and i + 1: hsum_ps256's order, so each sum is bit-identical to it),
// in the order a[0], a[2], a[4], a[6], a[1], a[3], a[5], a[7].
static inline __m256 reduce8(const __m256* a) {
    __m256 h[4];
    for (int i = 0; i < 4; ++i)
        h[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20),
                             _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
    const __m256 w0 = _mm256_add_ps(_mm256_shuffle_ps(h[0], h[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm256_shuffle_ps(h[0], h[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 w1 = _mm256_add_ps(_mm256_shuffle_ps(h[2], h[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm256_shuffle_ps(h[2], h[3], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(w0, w1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(w0, w1, _MM_SHUFFLE(3, 1, 3, 1)));
}
#endif

// ---- kernels of this ISA (one file each) ----------------------------------------------
void op_embedding(Exec& ex, const Node& n, int ith, int nth);
void op_rms_norm(Exec& ex, const Node& n, int ith, int nth);
void op_layer_norm(Exec& ex, const Node& n, int ith, int nth);
void op_matmul(Exec& ex, const Node& n, int ith, int nth);
void op_add(Exec& ex, const Node& n, int ith, int nth);
void op_mul(Exec& ex, const Node& n, int ith, int nth);
void op_scale(Exec& ex, const Node& n, int ith, int nth);
void op_activation(Exec& ex, const Node& n, int ith, int nth);
void op_glu(Exec& ex, const Node& n, int ith, int nth);
void op_rope(Exec& ex, const Node& n, int ith, int nth);
void op_attention(Exec& ex, const Node& n, int ith, int nth);
void op_last_row(Exec& ex, const Node& n, int ith, int nth);
void op_slice(Exec& ex, const Node& n, int ith, int nth);

// quant_dot.cpp
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
ActFormat act_format(DType t);
int64_t act_row_bytes(ActFormat f, int64_t n);
void quantize_act_row(ActFormat f, const float* x, uint8_t* dst, int64_t n);
// out[r - r0] for rows [r0, r1) of W against one activation row `xq` (format per type).
void dot_rows(DType t, const uint8_t* w, int64_t width, int64_t r0, int64_t r1,
              const void* xq, float* out, int64_t out_stride);
// Four activation rows (xrb bytes apart) against rows [r0, r1): out[j * ldo + r - r0].
// Returns false where this ISA has no such kernel for the type.
bool dot_rows_x4(DType t, const uint8_t* w, int64_t width, int64_t r0, int64_t r1, const uint8_t* xq,
                 int64_t xrb, float* out, int64_t ldo);
// gemm_vnni.cpp: the prefill tile matmul, where this ISA has it (AVX-512 VNNI) for type t.
// Rows [r0, r1) in whole tiles of kGemmTileRows (r1 - r0 a multiple of it) against n_tok
// block_q8_halves activation rows xrb bytes apart: y[t * ldy + r].
bool gemm_supported(DType t);
void gemm_rows(DType t, const uint8_t* w, int64_t K, int64_t r0, int64_t r1, const uint8_t* x, int64_t xrb,
               int64_t n_tok, float* y, int64_t ldy, uint8_t* tile);
// gemm_float.cpp: the same for float weights (AVX-512), in tiles of kGemmFloatTileRows
// rows, against n_tok fp32 activation rows K floats apart.
bool gemm_float_supported(DType t);
void gemm_float_rows(DType t, const uint8_t* w, int64_t K, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                     float* y, int64_t ldy, uint8_t* tile);
void matvec(DType t, const uint8_t* w, int64_t width, int64_t r0, int64_t r1, const float* x,
            float* out, uint8_t* act_scratch);

}  // namespace strata::cpu::STRATA_ISA
