// Prefill micro-kernel: one weight row against four activation rows at a time.
//
// In prefill the same weight block meets every token; unpacking its nibbles once and
// multiplying it with four tokens' int8 blocks quarters the unpack work and the weight
// loads per product. For the 32-element block formats where the ISA has 8-bit integer dot
// products (AVX2 and up, NEON), for the 256-element super-block formats on AVX2 (kernels
// in quant_dot_k_avx2.cpp, shared with the single-token dots), and for F32/F16/BF16 weights on
// AVX2 (each weight vector widened once for four tokens); dot_rows_x4 returns false
// otherwise and the caller falls back to one token at a time.
#include "quant_simd.h"

namespace strata::cpu::STRATA_ISA {

using namespace quants;

#if defined(__AVX2__)
namespace {

// Unsigned-nibble formats (q4_0, q4_1, q5_0, q5_1): see dot_q_nibbles in quant_dot.cpp.
template <typename Block, int Offset, bool HasMin, bool Has5thBit>
void row_x4_nibbles(const Block* w, const uint8_t* xq, int64_t xrb, int64_t nb, float* out, int64_t ldo) {
    // Even and odd blocks in separate accumulators, and the offset formats' q - Offset
    // started from the activation lanes, as the single-row dot.
    __m256 acc0[4], acc1[4];
    float acc_s0[4], acc_s1[4];
    for (int j = 0; j < 4; ++j) acc0[j] = acc1[j] = _mm256_setzero_ps(), acc_s0[j] = acc_s1[j] = 0.0f;
    const block_q8_act* x[4];
    for (int j = 0; j < 4; ++j) x[j] = (const block_q8_act*)(xq + j * xrb);
    auto block = [&](int64_t i, __m256* acc, float* acc_s) {
        __m256i q = unpack_nibbles(w[i].qs);
        if constexpr (Has5thBit) q = _mm256_or_si256(q, fifth_bits(w[i].qh));
        const float dw = fp16_to_f32(w[i].d);
        float m = 0.0f;
        if constexpr (HasMin) m = fp16_to_f32(w[i].m);
        for (int j = 0; j < 4; ++j) {
            const __m256i y = _mm256_loadu_si256((const __m256i*)x[j][i].qs);
            __m256i d;
            if constexpr (HasMin) {
                d = dot_u8_s8(q, y);
            } else {
                const __m256i* lanes = (const __m256i*)(x[j] + nb);
                d = dot_u8_s8_acc(_mm256_slli_epi32(_mm256_loadu_si256(lanes + i), Offset == 8 ? 3 : 4), q, y);
            }
            const __m256 p = _mm256_cvtepi32_ps(d);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[j][i].d), p, acc[j]);
            if constexpr (HasMin) acc_s[j] += m * x[j][i].s;
        }
    };
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        block(i, acc0, acc_s0);
        block(i + 1, acc1, acc_s1);
    }
    if (i < nb) block(i, acc0, acc_s0);
    for (int j = 0; j < 4; ++j) out[j * ldo] = hsum_ps256(_mm256_add_ps(acc0[j], acc1[j])) + (acc_s0[j] + acc_s1[j]);
}

void row_x4_q8_0(const block_q8_0* w, const uint8_t* xq, int64_t xrb, int64_t nb, float* out, int64_t ldo) {
    __m256 acc0[4], acc1[4];  // even / odd blocks, as dot_q8_0
    for (int j = 0; j < 4; ++j) acc0[j] = acc1[j] = _mm256_setzero_ps();
    const block_q8_act* x[4];
    for (int j = 0; j < 4; ++j) x[j] = (const block_q8_act*)(xq + j * xrb);
    auto block = [&](int64_t i, __m256* acc) {
        const __m256i q = _mm256_loadu_si256((const __m256i*)w[i].qs);
        const __m256i aq = _mm256_sign_epi8(q, q);
        const float dw = fp16_to_f32(w[i].d);
        for (int j = 0; j < 4; ++j) {
            const __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i*)x[j][i].qs), q);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[j][i].d), _mm256_cvtepi32_ps(dot_u8_s8(aq, y)), acc[j]);
        }
    };
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        block(i, acc0);
        block(i + 1, acc1);
    }
    if (i < nb) block(i, acc0);
    for (int j = 0; j < 4; ++j) out[j * ldo] = hsum_ps256(_mm256_add_ps(acc0[j], acc1[j]));
}

// Float weights (f32, f16, bf16): weight vectors widened to f32 as they are loaded.
static inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
static inline __m256 load8(const uint16_t* w, bool bf16) {
    const __m128i h = _mm_loadu_si128((const __m128i*)w);
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}
static inline float scalar_weight(const float* w, int64_t i) { return w[i]; }
static inline float scalar_weight(const uint16_t* w, int64_t i, bool bf16) {
    return bf16 ? bf16_to_fp32(w[i]) : fp16_to_f32(w[i]);
}

// NR weight rows x 4 activation rows per pass: each activation vector is loaded once for
// NR rows and each weight vector once for 4 tokens (NR = 4 where AVX-512 gives 32 vector
// registers for the 16 accumulators, else 2). Every output keeps its own accumulator, summed
// in the same order as with NR = 1, so the result does not depend on NR.
#if defined(__AVX512F__)
constexpr int kFloatRows = 4;
#else
constexpr int kFloatRows = 2;
#endif

template <typename W, bool BF16, int NR>
void rows_x4_float(const W* w, int64_t n, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    __m256 acc[NR][4];
    for (int r = 0; r < NR; ++r)
        for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
    const float* x[4];
    for (int j = 0; j < 4; ++j) x[j] = (const float*)(xq + j * xrb);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[NR];
        for (int r = 0; r < NR; ++r) {
            if constexpr (sizeof(W) == 4) wv[r] = load8((const float*)w + r * n + i);
            else wv[r] = load8((const uint16_t*)w + r * n + i, BF16);
        }
        for (int j = 0; j < 4; ++j) {
            const __m256 xv = _mm256_loadu_ps(x[j] + i);
            for (int r = 0; r < NR; ++r) acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    for (int r = 0; r < NR; ++r)
        for (int j = 0; j < 4; ++j) {
            float s = hsum_ps256(acc[r][j]);
            for (int64_t k = i; k < n; ++k) {
                if constexpr (sizeof(W) == 4) s += scalar_weight((const float*)w + r * n, k) * x[j][k];
                else s += scalar_weight((const uint16_t*)w + r * n, k, BF16) * x[j][k];
            }
            out[j * ldo + r] = s;
        }
}

template <typename W, bool BF16>
void float_rows_x4(const W* w, int64_t n, int64_t r0, int64_t r1, const uint8_t* xq, int64_t xrb, float* out,
                   int64_t ldo) {
    int64_t r = r0;
    for (; r + kFloatRows <= r1; r += kFloatRows)
        rows_x4_float<W, BF16, kFloatRows>(w + r * n, n, xq, xrb, out + (r - r0), ldo);
    for (; r < r1; ++r) rows_x4_float<W, BF16, 1>(w + r * n, n, xq, xrb, out + (r - r0), ldo);
}

}  // namespace
#elif defined(STRATA_NEON)
namespace {

// Unsigned-nibble formats: as dot_q_nibbles in quant_dot.cpp, four activation rows.
template <typename Block, int Offset, bool HasMin, bool Has5thBit>
void row_x4_nibbles(const Block* w, const uint8_t* xq, int64_t xrb, int64_t nb, float* out, int64_t ldo) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    float acc_s[4] = {0, 0, 0, 0};
    const block_q8_act* x[4];
    for (int j = 0; j < 4; ++j) x[j] = (const block_q8_act*)(xq + j * xrb);
    for (int64_t i = 0; i < nb; ++i) {
        int8x16_t lo, hi;
        unpack_nibbles_neon(w[i].qs, &lo, &hi);
        if constexpr (Has5thBit) {
            int8x16_t h0, h1;
            fifth_bits_neon(w[i].qh, &h0, &h1);
            lo = vorrq_s8(lo, h0);
            hi = vorrq_s8(hi, h1);
        }
        const float dw = fp16_scale(w[i].d);
        float m = 0.0f;
        if constexpr (HasMin) m = fp16_scale(w[i].m);
        for (int j = 0; j < 4; ++j) {
            acc[j] = vfmaq_n_f32(acc[j], vcvtq_f32_s32(dot_s8x32(lo, hi, x[j][i].qs)), dw * x[j][i].d);
            if constexpr (HasMin) acc_s[j] += m * x[j][i].s;
            else acc_s[j] -= Offset * dw * x[j][i].s;
        }
    }
    for (int j = 0; j < 4; ++j) out[j * ldo] = vaddvq_f32(acc[j]) + acc_s[j];
}

void row_x4_q8_0(const block_q8_0* w, const uint8_t* xq, int64_t xrb, int64_t nb, float* out, int64_t ldo) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    const block_q8_act* x[4];
    for (int j = 0; j < 4; ++j) x[j] = (const block_q8_act*)(xq + j * xrb);
    for (int64_t i = 0; i < nb; ++i) {
        const int8x16_t q0 = vld1q_s8(w[i].qs), q1 = vld1q_s8(w[i].qs + 16);
        const float dw = fp16_scale(w[i].d);
        for (int j = 0; j < 4; ++j)
            acc[j] = vfmaq_n_f32(acc[j], vcvtq_f32_s32(dot_s8x32(q0, q1, x[j][i].qs)), dw * x[j][i].d);
    }
    for (int j = 0; j < 4; ++j) out[j * ldo] = vaddvq_f32(acc[j]);
}

}  // namespace
#endif

bool dot_rows_x4(DType t, const uint8_t* w, int64_t width, int64_t r0, int64_t r1, const uint8_t* xq,
                 int64_t xrb, float* out, int64_t ldo) {
#if defined(__AVX2__) || defined(STRATA_NEON)
    const int64_t nb = width / 32;
    [[maybe_unused]] const int64_t nbk = width / QK_K;
    switch (t) {
#define STRATA_X4(BLOCK, CALL)                                                       \
    for (int64_t r = r0; r < r1; ++r) {                                              \
        const BLOCK* wr = (const BLOCK*)(w + r * (int64_t)sizeof(BLOCK) * nb);       \
        CALL(wr, xq, xrb, nb, out + (r - r0), ldo);                                  \
    }                                                                                \
    return true;
        case DType::Q4_0: STRATA_X4(block_q4_0, (row_x4_nibbles<block_q4_0, 8, false, false>))
        case DType::Q4_1: STRATA_X4(block_q4_1, (row_x4_nibbles<block_q4_1, 0, true, false>))
        case DType::Q5_0: STRATA_X4(block_q5_0, (row_x4_nibbles<block_q5_0, 16, false, true>))
        case DType::Q5_1: STRATA_X4(block_q5_1, (row_x4_nibbles<block_q5_1, 0, true, true>))
        case DType::Q8_0: STRATA_X4(block_q8_0, row_x4_q8_0)
#if defined(__AVX2__)
#define STRATA_X4_K(BLOCK, FN)                                                       \
    for (int64_t r = r0; r < r1; ++r)                                                \
        FN((const BLOCK*)w + r * nbk, nbk, xq, xrb, out + (r - r0), ldo);            \
    return true;
        case DType::Q2_K: STRATA_X4_K(block_q2_K, dot_q2_K_x4)
        case DType::Q3_K: STRATA_X4_K(block_q3_K, dot_q3_K_x4)
        case DType::Q4_K: STRATA_X4_K(block_q4_K, dot_q4_K_x4)
        case DType::Q5_K: STRATA_X4_K(block_q5_K, dot_q5_K_x4)
        case DType::Q6_K: STRATA_X4_K(block_q6_K, dot_q6_K_x4)
        case DType::IQ4_XS: STRATA_X4_K(block_iq4_xs, dot_iq4_xs_x4)
#undef STRATA_X4_K
        case DType::F32: float_rows_x4<float, false>((const float*)w, width, r0, r1, xq, xrb, out, ldo); return true;
        case DType::F16: float_rows_x4<uint16_t, false>((const uint16_t*)w, width, r0, r1, xq, xrb, out, ldo); return true;
        case DType::BF16: float_rows_x4<uint16_t, true>((const uint16_t*)w, width, r0, r1, xq, xrb, out, ldo); return true;
#endif
#undef STRATA_X4
        default: return false;
    }
#else
    (void)t, (void)w, (void)width, (void)r0, (void)r1, (void)xq, (void)xrb, (void)out, (void)ldo;
    return false;
#endif
}

}  // namespace strata::cpu::STRATA_ISA
