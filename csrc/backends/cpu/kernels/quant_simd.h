// Building blocks shared by the quantized dot products (quant_dot.cpp for the 32-element
// block formats, quant_dot_k.cpp for the 256-element super-block formats), and the
// super-block dots that quant_dot.cpp dispatches to. Internal linkage throughout (this is
// compiled into every ISA build, see kernel_common.h).
#pragma once

#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

using quants::block_q8_256;

// ---- super-block dots (quant_dot_k.cpp): one weight row of nb blocks . one activation row
void quantize_row_q8_256(const float* x, block_q8_256* y, int64_t n);
float dot_q2_K(const quants::block_q2_K* w, const block_q8_256* x, int64_t nb);
float dot_q3_K(const quants::block_q3_K* w, const block_q8_256* x, int64_t nb);
float dot_q4_K(const quants::block_q4_K* w, const block_q8_256* x, int64_t nb);
float dot_q5_K(const quants::block_q5_K* w, const block_q8_256* x, int64_t nb);
float dot_q6_K(const quants::block_q6_K* w, const block_q8_256* x, int64_t nb);
float dot_iq4_xs(const quants::block_iq4_xs* w, const block_q8_256* x, int64_t nb);

// ---- activation quantization: 8 bits, symmetric, round to nearest even ----------------
// Scalar and SIMD paths give identical bytes (same amax, same fp32 reciprocal, same
// rounding), so every ISA multiplies the same integers.
static inline float act_scale(float amax) { return amax / 127.0f; }
static inline float act_inv_scale(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

#if defined(__AVX2__)
// Largest |x| over n floats (n a multiple of 32).
static inline float amax_f32(const float* x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
        m1 = _mm256_max_ps(m1, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i + 8)));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(_mm256_max_ps(m0, m1)),
                          _mm256_extractf128_ps(_mm256_max_ps(m0, m1), 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
// 32 floats times id, rounded to nearest even, to 32 int8 in order.
static inline __m256i quantize32(const float* x, __m256 id) {
    const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    const __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    // packs work per 128-bit lane: the result is in dword order 0 2 4 6 1 3 5 7.
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
#endif

// ---- integer dot products ------------------------------------------------------------
#if defined(__AVX2__)
// 8 int32 partial sums of u8 * s8 over 32 byte pairs.
static inline __m256i dot_u8_s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// 8 int32 partial sums of u8 * s8 times a per-16-byte scale: `scale16` holds int16 scales,
// the low 8 for bytes 0..15, the high 8 for bytes 16..31 (see scales16()). Needs
// |u8 * s8 + u8 * s8| < 2^15, true for u <= 127 with |s| <= 127 (quantized activations).
static inline __m256i dot_u8_s8_scaled(__m256i u, __m256i s, __m256i scale16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}
// Same for s8 * s8 (|w| <= 127): sign moved onto the activation.
static inline __m256i dot_s8_s8_scaled(__m256i w, __m256i x, __m256i scale16) {
    return dot_u8_s8_scaled(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w), scale16);
}
static inline __m256i dot_s8_s8(__m256i w, __m256i x) {
    return dot_u8_s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}
// Scale vector for dot_u8_s8_scaled from 16 int8 scales `sc8`: scale `lo` for bytes
// 0..15, scale `hi` for bytes 16..31 (constants after unrolling: one pshufb + one widen).
static inline __m256i scale_pair(__m128i sc8, int lo, int hi) {
    const __m128i sel = _mm_set_epi64x((long long)(0x0101010101010101ull * (unsigned)hi),
                                       (long long)(0x0101010101010101ull * (unsigned)lo));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
}
static inline int hsum_i32_256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}
// 32 nibbles -> 32 bytes (0..15): low nibbles are elements 0..15, high ones 16..31.
static inline __m256i unpack_nibbles(const uint8_t* qs) {
    const __m128i t = _mm_loadu_si128((const __m128i*)qs);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}
// 32 bits -> 32 bytes, 0x10 where the bit is set (the 5th bit of q5 values).
static inline __m256i fifth_bits(const uint8_t* qh) {
    uint32_t x;
    memcpy(&x, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    bytes = _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
    return _mm256_and_si256(bytes, _mm256_set1_epi8(0x10));
}
// kvalues_iq4nl in both 128-bit lanes, for _mm256_shuffle_epi8 lookups.
static inline __m256i iq4nl_table() {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)quants::kvalues_iq4nl));
}
#endif

}  // namespace strata::cpu::STRATA_ISA
