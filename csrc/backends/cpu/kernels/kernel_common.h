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
