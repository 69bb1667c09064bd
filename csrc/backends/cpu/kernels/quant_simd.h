// Building blocks shared by the quantized dot products (quant_dot.cpp for the 32-element
// block formats, quant_dot_k.cpp for the 256-element super-block formats), and the
// super-block dots that quant_dot.cpp dispatches to. Internal linkage throughout (this is
// compiled into every ISA build, see kernel_common.h).
#pragma once

#include "kernel_common.h"

// NEON paths (AArch64, where Advanced SIMD is baseline): the `neon` build has the 8-bit dot
// product instructions (armv8.2-a+dotprod), the baseline arm64 build (`scalar`, for CPUs
// without them) widens with vmull/vpadal instead. STRATA_SCALAR_REFERENCE compiles only
// the scalar reference (the kernel self-test builds one to compare both against).
#if defined(__ARM_NEON) && defined(__aarch64__) && !defined(STRATA_SCALAR_REFERENCE)
#define STRATA_NEON 1
#endif

namespace strata::cpu::STRATA_ISA {

using quants::block_q8_256;

// ---- super-block dots (quant_dot_k*.cpp): one weight row of nb blocks . one activation row
void quantize_row_q8_256(const float* x, block_q8_256* y, int64_t n);
float dot_q2_K(const quants::block_q2_K* w, const block_q8_256* x, int64_t nb);
float dot_q3_K(const quants::block_q3_K* w, const block_q8_256* x, int64_t nb);
float dot_q4_K(const quants::block_q4_K* w, const block_q8_256* x, int64_t nb);
float dot_q5_K(const quants::block_q5_K* w, const block_q8_256* x, int64_t nb);
float dot_q6_K(const quants::block_q6_K* w, const block_q8_256* x, int64_t nb);
float dot_iq4_xs(const quants::block_iq4_xs* w, const block_q8_256* x, int64_t nb);
#if defined(__AVX2__)
// The same, one weight row of nb blocks . four activation rows xrb bytes apart, to
// out[j * ldo]; bit-identical to the single-row dots (dot_rows_x4 in prefill).
void dot_q2_K_x4(const quants::block_q2_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo);
void dot_q3_K_x4(const quants::block_q3_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo);
void dot_q4_K_x4(const quants::block_q4_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo);
void dot_q5_K_x4(const quants::block_q5_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo);
void dot_q6_K_x4(const quants::block_q6_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo);
void dot_iq4_xs_x4(const quants::block_iq4_xs* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo);
#endif

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

#if defined(STRATA_NEON)
// Largest |x| over n floats (n a multiple of 32).
static inline float amax_f32(const float* x, int64_t n) {
    float32x4_t m0 = vdupq_n_f32(0.0f), m1 = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n; i += 8) {
        m0 = vmaxq_f32(m0, vabsq_f32(vld1q_f32(x + i)));
        m1 = vmaxq_f32(m1, vabsq_f32(vld1q_f32(x + i + 4)));
    }
    return vmaxvq_f32(vmaxq_f32(m0, m1));
}
// 16 floats times id, rounded to nearest even (as nearbyintf), to 16 int8 in order.
static inline int8x16_t quantize16(const float* x, float32x4_t id) {
    const int32x4_t a = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x), id));
    const int32x4_t b = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 4), id));
    const int32x4_t c = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 8), id));
    const int32x4_t d = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 12), id));
    const int16x8_t ab = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    const int16x8_t cd = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}
// fp16 -> fp32 of one block scale (exact, as fp16_to_f32; FCVT is baseline AArch64).
static inline float fp16_scale(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}
#endif

// ---- integer dot products ------------------------------------------------------------
#if defined(STRATA_NEON)
// acc + 4 int32 partial sums of 16 s8 * s8 products (which lane holds which products
// differs between the two paths; only their total is meant).
static inline int32x4_t dot_s8x16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}
// Two 16-byte halves of a 32-element block against 32 activation quants.
static inline int32x4_t dot_s8x32(int8x16_t a0, int8x16_t a1, const int8_t* x) {
    return dot_s8x16(dot_s8x16(vdupq_n_s32(0), a0, vld1q_s8(x)), a1, vld1q_s8(x + 16));
}
// 16 nibbles -> low nibbles (elements 0..15) and high nibbles (16..31), as int8 0..15.
static inline void unpack_nibbles_neon(const uint8_t* qs, int8x16_t* lo, int8x16_t* hi) {
    const uint8x16_t v = vld1q_u8(qs);
    *lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
}
// 32 bits -> 32 bytes, 0x10 where the bit is set (the 5th bit of q5 values): bits 0..15
// to `lo`, 16..31 to `hi`.
static inline void fifth_bits_neon(const uint8_t* qh, int8x16_t* lo, int8x16_t* hi) {
    uint32_t x;
    memcpy(&x, qh, 4);
    const uint8x16_t bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
    const uint8x16_t b0 = vcombine_u8(vdup_n_u8((uint8_t)x), vdup_n_u8((uint8_t)(x >> 8)));
    const uint8x16_t b1 = vcombine_u8(vdup_n_u8((uint8_t)(x >> 16)), vdup_n_u8((uint8_t)(x >> 24)));
    const uint8x16_t m = vdupq_n_u8(0x10);
    *lo = vreinterpretq_s8_u8(vandq_u8(vtstq_u8(b0, bit), m));
    *hi = vreinterpretq_s8_u8(vandq_u8(vtstq_u8(b1, bit), m));
}
// sum_g s[g] * bsums[g] over 16 groups (int16 sums of 16 activation quants, int8 scales).
static inline int dot_bsums16(const int16_t* bsums, int8x16_t s) {
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    int32x4_t r = vmull_s16(vget_low_s16(b0), vget_low_s16(vmovl_s8(vget_low_s8(s))));
    r = vmlal_high_s16(r, b0, vmovl_s8(vget_low_s8(s)));
    r = vmlal_s16(r, vget_low_s16(b1), vget_low_s16(vmovl_high_s8(s)));
    r = vmlal_high_s16(r, b1, vmovl_high_s8(s));
    return vaddvq_s32(r);
}
#endif

#if defined(__AVX2__)
// 8 int32 partial sums of u8 * s8 over 32 byte pairs.
static inline __m256i dot_u8_s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// acc + dot_u8_s8(u, s) (VNNI adds into acc in the same instruction).
static inline __m256i dot_u8_s8_acc(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}
// 8 int32 partial sums of u8 * s8 times a per-16-byte scale: `scale16` holds int16 scales,
// the low 8 for bytes 0..15, the high 8 for bytes 16..31 (see scales16()). Needs
// |u8 * s8 + u8 * s8| < 2^15, true for u <= 127 with |s| <= 127 (quantized activations).
static inline __m256i dot_u8_s8_scaled(__m256i u, __m256i s, __m256i scale16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}
// acc + dot_u8_s8_scaled(u, s, scale16): VNNI adds the scaled pairs into acc in the same
// instruction (exact in int32 either way).
static inline __m256i dot_u8_s8_scaled_acc(__m256i acc, __m256i u, __m256i s, __m256i scale16) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), scale16);
#else
    return _mm256_add_epi32(acc, dot_u8_s8_scaled(u, s, scale16));
#endif
}
// Same for s8 * s8 (|w| <= 127): sign moved onto the activation.
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
