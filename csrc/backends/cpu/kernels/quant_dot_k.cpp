// Dot products of 256-element super-block weights (q2_K, q3_K, q4_K, q5_K, q6_K, iq4_xs)
// with activations quantized to block_q8_256 (fp32 scale, int8 quants, int16 sums per 16).
//
// Within a super-block everything is integer: the sub-block scales (and mins) are small
// integers, so sum_j sc_j * sum_l q_l * x_l is exact in int32, and a format's minimum or
// offset is applied through the activation's sums per 16. Two fp32 multiplies per
// super-block remain (d * xd and dmin * xd), which is as close to exact as llama.cpp's q8_K
// path, with the activation scale kept in fp32. Each type has a scalar reference and an
// AVX2 path, which the AVX-512 build compiles too; the AVX2 path also serves prefill four
// tokens at a time (dot_*_x4, see quant_dot_x4.cpp). Products are u8 * s8 pairs summed to
// int16 (maddubs) and weighted by the sub-block scales to int32 (madd): the unsigned
// quants stay below 64 (iq4_xs: |kvalue| <= 127 via the sign trick), so nothing saturates.
// The NEON path (arm64) sums each 16 or 32 products in int32 (vdotq_s32, or vmull + vpadal
// without dotprod) and weights them with the sub-block scales by vmlaq_n_s32.
#include <stddef.h>

#include "quant_simd.h"

namespace strata::cpu::STRATA_ISA {

using namespace quants;

void quantize_row_q8_256(const float* x, block_q8_256* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
#if defined(__AVX2__)
        const float d = act_scale(amax_f32(x, QK_K));
        const __m256 id = _mm256_set1_ps(act_inv_scale(d));
        for (int g = 0; g < QK_K / 32; ++g)
            _mm256_storeu_si256((__m256i*)(y[b].qs + 32 * g), quantize32(x + 32 * g, id));
#elif defined(STRATA_NEON)
        const float d = act_scale(amax_f32(x, QK_K));
        const float32x4_t id = vdupq_n_f32(act_inv_scale(d));
        for (int g = 0; g < QK_K / 16; ++g) vst1q_s8(y[b].qs + 16 * g, quantize16(x + 16 * g, id));
#else
        float amax = 0.0f;
        for (int j = 0; j < QK_K; ++j) amax = fmaxf(amax, fabsf(x[j]));
        const float d = act_scale(amax), id = act_inv_scale(d);
        for (int j = 0; j < QK_K; ++j) y[b].qs[j] = (int8_t)(int)nearbyintf(x[j] * id);
#endif
        y[b].d = d;
        for (int g = 0; g < QK_K / 16; ++g) {
            int s = 0;
            for (int l = 0; l < 16; ++l) s += y[b].qs[16 * g + l];
            y[b].bsums[g] = (int16_t)s;
        }
    }
}

// q4_K / q5_K scales: bytes 0..7 of the result are the 8 scales, bytes 8..15 the 8 mins.
// The 12 packed bytes are three little-endian words: u0 holds sc0..3 (low 6 bits) and the
// top 2 bits of sc4..7, u1 the same for the mins, u2 the low 4 bits of sc4..7 (low
// nibbles) and of m4..7 (high nibbles).
static inline void unpack_k4_scales(const uint8_t* s, uint32_t out[4]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    out[0] = u0 & 0x3F3F3F3Fu;
    out[1] = (u2 & 0x0F0F0F0Fu) | ((u0 >> 2) & 0x30303030u);
    out[2] = u1 & 0x3F3F3F3Fu;
    out[3] = ((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 2) & 0x30303030u);
}

// q3_K scales minus 32, as 16 int8: low 4 bits from bytes 0..7 (low nibbles first), the
// high 2 bits from bytes 8..11 (2 bits of each byte per group of four scales).
static inline void q3_K_scale_words(const uint8_t* s, uint32_t r[4]) {
    uint32_t a0, a1, a2;
    memcpy(&a0, s, 4);
    memcpy(&a1, s + 4, 4);
    memcpy(&a2, s + 8, 4);
    r[0] = (a0 & 0x0F0F0F0Fu) | ((a2 & 0x03030303u) << 4);
    r[1] = (a1 & 0x0F0F0F0Fu) | (((a2 >> 2) & 0x03030303u) << 4);
    r[2] = ((a0 >> 4) & 0x0F0F0F0Fu) | (((a2 >> 4) & 0x03030303u) << 4);
    r[3] = ((a1 >> 4) & 0x0F0F0F0Fu) | (((a2 >> 6) & 0x03030303u) << 4);
}
static inline void unpack_q3_K_scales(const uint8_t* s, int8_t out[16]) {
    uint32_t r[4];
    q3_K_scale_words(s, r);
    uint8_t u[16];
    memcpy(u, r, 16);
    for (int i = 0; i < 16; ++i) out[i] = (int8_t)(u[i] - 32);
}

// iq4_xs scales minus 32, as 8 int8.
static inline void unpack_iq4_xs_scales(const block_iq4_xs& b, int8_t out[8]) {
    for (int j = 0; j < 8; ++j)
        out[j] = (int8_t)((((b.scales_l[j / 2] >> (4 * (j & 1))) & 0x0F) | (((b.scales_h >> (2 * j)) & 3) << 4)) - 32);
}
// The same as one 64-bit word (byte j = scale j + 32), by spreading bit fields: nibble j of
// scales_l to byte j, and 2-bit field j of scales_h to bits 4..5 of byte j.
static inline uint64_t iq4_xs_scale_word(const block_iq4_xs& b) {
    uint32_t l32;
    memcpy(&l32, b.scales_l, 4);
    uint64_t l = l32;
    l = (l | (l << 16)) & 0x0000FFFF0000FFFFull;
    l = (l | (l << 8)) & 0x00FF00FF00FF00FFull;
    l = (l | (l << 4)) & 0x0F0F0F0F0F0F0F0Full;
    uint64_t h = b.scales_h;
    h = (h | (h << 24)) & 0x000000FF000000FFull;
    h = (h | (h << 12)) & 0x000F000F000F000Full;
    h = (h | (h << 6)) & 0x0303030303030303ull;
    return l | (h << 4);
}

// q4_K and q5_K start with d, dmin, scales[12]; q5_K then has qh[32] before qs.
template <bool Q5>
constexpr size_t q45_K_qs_offset = Q5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);

// Sub-block loops are unrolled so that shift counts and scale selectors are constants.
#define STRATA_UNROLL _Pragma("GCC unroll 8")

#if defined(__AVX2__)
static inline __m256i load256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }

// The AVX2 kernels take N activation rows (xq + j * xrb) against one weight row and write
// out[j * ldo]: N = 1 backs the single-row dots below, N = 4 the prefill micro-kernel, which
// unpacks each weight super-block once for four tokens. Per activation row the integer
// sums and the float expression of each super-block are the same for every N, so the two
// give the same bits.
// An empty asm that needs v in a register at this point. Without it GCC sinks the adds
// into the per-token sums of N > 1 rows to the end of the super-block, keeping every
// product of the four tokens live at once, and spills them. (N = 1 keeps its schedule.)
template <int N>
static inline void keep_in_register(__m256i& v) {
    if constexpr (N > 1) asm("" : "+x"(v));
}

template <int N>
static inline void rows_init(const uint8_t* xq, int64_t xrb, const block_q8_256* x[N], __m256 acc[N]) {
    for (int j = 0; j < N; ++j) {
        x[j] = (const block_q8_256*)(xq + j * xrb);
        acc[j] = _mm256_setzero_ps();
    }
}
template <int N>
static inline void rows_store(const __m256 acc[N], float* out, int64_t ldo) {
    for (int j = 0; j < N; ++j) out[j * ldo] = hsum_ps256(acc[j]);
}

// ---- q2_K: x = d * sc * q - dmin * m, q in 0..3, per 16 -------------------------------
template <int N>
static void q2_K_avx2(const block_q2_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const block_q8_256* x[N];
    __m256 acc[N];
    rows_init<N>(xq, xrb, x, acc);
    for (int64_t i = 0; i < nb; ++i) {
        const __m128i sc = _mm_loadu_si128((const __m128i*)w[i].scales);
        const __m128i scl = _mm_and_si128(sc, _mm_set1_epi8(0x0F));
        const __m128i mins = _mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0x0F));
        __m256i sumi[N];
        for (int j = 0; j < N; ++j) sumi[j] = _mm256_setzero_si256();
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const __m256i qv = load256(w[i].qs + 32 * h);
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s) {  // elements 128h + 32s + l: bits 2s of qs[32h + l]
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * s), m3);
                const int g = 8 * h + 2 * s;
                const __m256i scale = scale_pair(scl, g, g + 1);
                for (int j = 0; j < N; ++j) {
                    sumi[j] = dot_u8_s8_scaled_acc(sumi[j], q, load256(x[j][i].qs + 128 * h + 32 * s), scale);
                    keep_in_register<N>(sumi[j]);
                }
            }
        }
        const __m256i mins16 = _mm256_cvtepu8_epi16(mins);
        const float d = fp16_to_f32(w[i].d), dmin = fp16_to_f32(w[i].dmin);
        for (int j = 0; j < N; ++j) {
            const __m256i msum = _mm256_madd_epi16(load256(x[j][i].bsums), mins16);
            const float xd = x[j][i].d;
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * xd), _mm256_cvtepi32_ps(msum), acc[j]);
        }
    }
    rows_store<N>(acc, out, ldo);
}

// ---- q3_K: x = d * (sc - 32) * (q - 4), q in 0..7 (2 low bits + high bit), per 16 -----
template <int N>
static void q3_K_avx2(const block_q3_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const block_q8_256* x[N];
    __m256 acc[N];
    rows_init<N>(xq, xrb, x, acc);
    for (int64_t i = 0; i < nb; ++i) {
        uint32_t r[4];
        q3_K_scale_words(w[i].scales, r);
        const __m128i sc = _mm_sub_epi8(_mm_setr_epi32((int)r[0], (int)r[1], (int)r[2], (int)r[3]), _mm_set1_epi8(32));
        __m256i hm = load256(w[i].hmask);
        __m256i sumi[N];
        for (int j = 0; j < N; ++j) sumi[j] = _mm256_setzero_si256();
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const __m256i qv = load256(w[i].qs + 32 * h);
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s) {
                const int k = 4 * h + s;
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * s), m3);
                const __m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm, one), 2);
                hm = _mm256_srli_epi16(hm, 1);
                const __m256i q = _mm256_or_si256(lo, hb);
                const __m256i scale = scale_pair(sc, 2 * k, 2 * k + 1);
                for (int j = 0; j < N; ++j) {
                    sumi[j] = dot_u8_s8_scaled_acc(sumi[j], q, load256(x[j][i].qs + 32 * k), scale);
                    keep_in_register<N>(sumi[j]);
                }
            }
        }
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
        const float d = fp16_to_f32(w[i].d);
        for (int j = 0; j < N; ++j) {
            // The -4 offset: 4 * sum_g sc_g * bsum_g.
            const __m256i off = _mm256_madd_epi16(load256(x[j][i].bsums), sc16);
            const __m256i isum = _mm256_sub_epi32(sumi[j], _mm256_slli_epi32(off, 2));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j][i].d), _mm256_cvtepi32_ps(isum), acc[j]);
        }
    }
    rows_store<N>(acc, out, ldo);
}

// ---- q4_K / q5_K: x = d * sc * q - dmin * m, per 32 -----------------------------------
template <bool Q5, int N>
static void q45_K_avx2(const uint8_t* blocks, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    constexpr size_t stride = Q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const block_q8_256* x[N];
    __m256 acc[N];
    rows_init<N>(xq, xrb, x, acc);
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = blocks + i * stride;
        uint16_t d16, dmin16;
        memcpy(&d16, b, 2);
        memcpy(&dmin16, b + 2, 2);
        uint32_t u[4];
        unpack_k4_scales(b + 4, u);
        const __m128i sm = _mm_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3]);  // 8 scales, 8 mins
        const uint8_t* qs = b + q45_K_qs_offset<Q5>;
        __m256i hm = _mm256_setzero_si256();
        if constexpr (Q5) hm = load256(b + offsetof(block_q5_K, qh));
        __m256i sumi[N];
        for (int j = 0; j < N; ++j) sumi[j] = _mm256_setzero_si256();
        STRATA_UNROLL
        for (int c = 0; c < 4; ++c) {
            const __m256i qv = load256(qs + 32 * c);
            __m256i lo = _mm256_and_si256(qv, m4), hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);
            if constexpr (Q5) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hm, one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 1), one), 4));
                hm = _mm256_srli_epi16(hm, 2);
            }
            const __m256i slo = scale_pair(sm, 2 * c, 2 * c), shi = scale_pair(sm, 2 * c + 1, 2 * c + 1);
            for (int j = 0; j < N; ++j) {
                const int8_t* xs = x[j][i].qs + 64 * c;
                sumi[j] = dot_u8_s8_scaled_acc(sumi[j], lo, load256(xs), slo);
                sumi[j] = dot_u8_s8_scaled_acc(sumi[j], hi, load256(xs + 32), shi);
                keep_in_register<N>(sumi[j]);
            }
        }
        // Mins: sum_j m_j * (bsum_2j + bsum_2j+1), each min paired with two sums of 16.
        const __m128i mdup = _mm_shuffle_epi8(sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
        const __m256i mins16 = _mm256_cvtepu8_epi16(mdup);
        const float d = fp16_to_f32(d16), dmin = fp16_to_f32(dmin16);
        for (int j = 0; j < N; ++j) {
            const __m256i msum = _mm256_madd_epi16(load256(x[j][i].bsums), mins16);
            const float xd = x[j][i].d;
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * xd), _mm256_cvtepi32_ps(msum), acc[j]);
        }
    }
    rows_store<N>(acc, out, ldo);
}

// ---- q6_K: x = d * sc * (q - 32), q in 0..63, per 16 ----------------------------------
template <int N>
static void q6_K_avx2(const block_q6_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const block_q8_256* x[N];
    __m256 acc[N];
    rows_init<N>(xq, xrb, x, acc);
    for (int64_t i = 0; i < nb; ++i) {
        const __m128i sc = _mm_loadu_si128((const __m128i*)w[i].scales);
        __m256i sumi[N];
        for (int j = 0; j < N; ++j) sumi[j] = _mm256_setzero_si256();
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load256(w[i].ql + 64 * h), ql1 = load256(w[i].ql + 64 * h + 32);
            const __m256i qh = load256(w[i].qh + 32 * h);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)),
            };
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s) {  // elements 128h + 32s + l: groups 8h + 2s, 8h + 2s + 1
                const int g = 8 * h + 2 * s;
                const __m256i scale = scale_pair(sc, g, g + 1);
                for (int j = 0; j < N; ++j) {
                    sumi[j] = dot_u8_s8_scaled_acc(sumi[j], q[s], load256(x[j][i].qs + 128 * h + 32 * s), scale);
                    keep_in_register<N>(sumi[j]);
                }
            }
        }
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
        const float d = fp16_to_f32(w[i].d);
        for (int j = 0; j < N; ++j) {
            // The -32 offset: 32 * sum_g sc_g * bsum_g.
            const __m256i off = _mm256_madd_epi16(load256(x[j][i].bsums), sc16);
            const __m256i isum = _mm256_sub_epi32(sumi[j], _mm256_slli_epi32(off, 5));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j][i].d), _mm256_cvtepi32_ps(isum), acc[j]);
        }
    }
    rows_store<N>(acc, out, ldo);
}

// ---- iq4_xs: x = d * (ls - 32) * kvalues_iq4nl[q], per 32 ----------------------------
template <int N>
static void iq4_xs_avx2(const block_iq4_xs* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    const __m256i table = iq4nl_table();
    const block_q8_256* x[N];
    __m256 acc[N];
    rows_init<N>(xq, xrb, x, acc);
    for (int64_t i = 0; i < nb; ++i) {
        const __m128i sc = _mm_sub_epi8(_mm_cvtsi64_si128((long long)iq4_xs_scale_word(w[i])), _mm_set1_epi8(32));
        __m256i sumi[N];
        for (int j = 0; j < N; ++j) sumi[j] = _mm256_setzero_si256();
        STRATA_UNROLL
        for (int k = 0; k < 8; ++k) {
            // Signed weights: the sign moves onto the activations (|w| <= 127).
            const __m256i wv = _mm256_shuffle_epi8(table, unpack_nibbles(w[i].qs + 16 * k));
            const __m256i aw = _mm256_sign_epi8(wv, wv), scale = scale_pair(sc, k, k);
            for (int j = 0; j < N; ++j) {
                const __m256i y = _mm256_sign_epi8(load256(x[j][i].qs + 32 * k), wv);
                sumi[j] = dot_u8_s8_scaled_acc(sumi[j], aw, y, scale);
                keep_in_register<N>(sumi[j]);
            }
        }
        const float d = fp16_to_f32(w[i].d);
        for (int j = 0; j < N; ++j)
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j][i].d), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
    }
    rows_store<N>(acc, out, ldo);
}
#endif

// ---- q2_K: x = d * sc * q - dmin * m, q in 0..3, per 16 -------------------------------
float dot_q2_K(const block_q2_K* w, const block_q8_256* x, int64_t nb) {
#if defined(__AVX2__)
    float r;
    q2_K_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
#elif defined(STRATA_NEON)
    const uint8x16_t m3 = vdupq_n_u8(3);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* sc = w[i].scales;
        int32x4_t sumi = vdupq_n_s32(0);
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(w[i].qs + 32 * h), q1 = vld1q_u8(w[i].qs + 32 * h + 16);
            const int8_t* xs = x[i].qs + 128 * h;
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s) {  // elements 128h + 32s + l: bits 2s of qs[32h + l]
                const int g = 8 * h + 2 * s;
                const int8x16_t a = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, vdupq_n_s8(-2 * s)), m3));
                const int8x16_t b = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, vdupq_n_s8(-2 * s)), m3));
                sumi = vmlaq_n_s32(sumi, dot_s8x16(vdupq_n_s32(0), a, vld1q_s8(xs + 32 * s)), sc[g] & 0x0F);
                sumi = vmlaq_n_s32(sumi, dot_s8x16(vdupq_n_s32(0), b, vld1q_s8(xs + 32 * s + 16)), sc[g + 1] & 0x0F);
            }
        }
        const int msum = dot_bsums16(x[i].bsums, vreinterpretq_s8_u8(vshrq_n_u8(vld1q_u8(sc), 4)));
        acc += x[i].d * (fp16_scale(w[i].d) * (float)vaddvq_s32(sumi) - fp16_scale(w[i].dmin) * (float)msum);
    }
    return acc;
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0, msum = 0;
        for (int g = 0; g < 16; ++g) {  // group g: elements 16g.., 2-bit field s of qs[32h + l]
            const int h = g / 8, sh = 2 * ((g / 2) & 3), l0 = 16 * (g & 1);
            const uint8_t* q = w[i].qs + 32 * h;
            const int8_t* xs = x[i].qs + 16 * g - l0;
            int s = 0;
            for (int l = l0; l < l0 + 16; ++l) s += ((q[l] >> sh) & 3) * xs[l];
            isum += (w[i].scales[g] & 0x0F) * s;
            msum += (w[i].scales[g] >> 4) * x[i].bsums[g];
        }
        acc += x[i].d * (fp16_to_f32(w[i].d) * (float)isum - fp16_to_f32(w[i].dmin) * (float)msum);
    }
    return acc;
#endif
}

// ---- q3_K: x = d * (sc - 32) * (q - 4), q in 0..7 (2 low bits + high bit), per 16 -----
float dot_q3_K(const block_q3_K* w, const block_q8_256* x, int64_t nb) {
#if defined(__AVX2__)
    float r;
    q3_K_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
#elif defined(STRATA_NEON)
    const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int8_t sc[16];
        unpack_q3_K_scales(w[i].scales, sc);
        uint8x16_t hm0 = vld1q_u8(w[i].hmask), hm1 = vld1q_u8(w[i].hmask + 16);
        int32x4_t sumi = vdupq_n_s32(0);
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(w[i].qs + 32 * h), q1 = vld1q_u8(w[i].qs + 32 * h + 16);
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s) {  // as q2_K, plus bit j of hmask[l] as bit 2
                const int j = 4 * h + s;
                const uint8x16_t l0 = vandq_u8(vshlq_u8(q0, vdupq_n_s8(-2 * s)), m3);
                const uint8x16_t l1 = vandq_u8(vshlq_u8(q1, vdupq_n_s8(-2 * s)), m3);
                const int8x16_t a = vreinterpretq_s8_u8(vorrq_u8(l0, vshlq_n_u8(vandq_u8(hm0, one), 2)));
                const int8x16_t b = vreinterpretq_s8_u8(vorrq_u8(l1, vshlq_n_u8(vandq_u8(hm1, one), 2)));
                hm0 = vshrq_n_u8(hm0, 1);
                hm1 = vshrq_n_u8(hm1, 1);
                sumi = vmlaq_n_s32(sumi, dot_s8x16(vdupq_n_s32(0), a, vld1q_s8(x[i].qs + 32 * j)), sc[2 * j]);
                sumi = vmlaq_n_s32(sumi, dot_s8x16(vdupq_n_s32(0), b, vld1q_s8(x[i].qs + 32 * j + 16)), sc[2 * j + 1]);
            }
        }
        // The -4 offset: 4 * sum_g sc_g * bsum_g.
        const int isum = vaddvq_s32(sumi) - 4 * dot_bsums16(x[i].bsums, vld1q_s8(sc));
        acc += fp16_scale(w[i].d) * x[i].d * (float)isum;
    }
    return acc;
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int8_t sc[16];
        unpack_q3_K_scales(w[i].scales, sc);
        int isum = 0;
        for (int g = 0; g < 16; ++g) {  // as q2_K, plus bit j = g / 2 of hmask[l]
            const int h = g / 8, j = g / 2, sh = 2 * (j & 3), l0 = 16 * (g & 1);
            const uint8_t* q = w[i].qs + 32 * h;
            const int8_t* xs = x[i].qs + 16 * g - l0;
            int s = 0;
            for (int l = l0; l < l0 + 16; ++l)
                s += (((q[l] >> sh) & 3) | (((w[i].hmask[l] >> j) & 1) << 2)) * xs[l];
            isum += sc[g] * (s - 4 * x[i].bsums[g]);
        }
        acc += fp16_to_f32(w[i].d) * x[i].d * (float)isum;
    }
    return acc;
#endif
}

// ---- q4_K / q5_K: x = d * sc * q - dmin * m, per 32 -----------------------------------
template <bool Q5>
static inline float dot_q45_K(const uint8_t* blocks, size_t stride, const block_q8_256* x, int64_t nb) {
#if defined(__AVX2__)
    float r;
    q45_K_avx2<Q5, 1>(blocks, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
#elif defined(STRATA_NEON)
    const uint8x16_t m4 = vdupq_n_u8(0x0F), one = vdupq_n_u8(1);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = blocks + i * stride;
        uint16_t d16, dmin16;
        memcpy(&d16, b, 2);
        memcpy(&dmin16, b + 2, 2);
        uint32_t u[4];
        unpack_k4_scales(b + 4, u);
        uint8_t sm[16];  // 8 scales, 8 mins
        memcpy(sm, u, 16);
        const uint8_t* qs = b + q45_K_qs_offset<Q5>;
        uint8x16_t h0 = vdupq_n_u8(0), h1 = vdupq_n_u8(0);
        if constexpr (Q5) {
            h0 = vld1q_u8(b + offsetof(block_q5_K, qh));
            h1 = vld1q_u8(b + offsetof(block_q5_K, qh) + 16);
        }
        int32x4_t sumi = vdupq_n_s32(0);
        STRATA_UNROLL
        for (int c = 0; c < 4; ++c) {  // sub-blocks 2c (low nibbles) and 2c + 1 (high)
            const uint8x16_t q0 = vld1q_u8(qs + 32 * c), q1 = vld1q_u8(qs + 32 * c + 16);
            uint8x16_t lo0 = vandq_u8(q0, m4), lo1 = vandq_u8(q1, m4);
            uint8x16_t hi0 = vshrq_n_u8(q0, 4), hi1 = vshrq_n_u8(q1, 4);
            if constexpr (Q5) {
                lo0 = vorrq_u8(lo0, vshlq_n_u8(vandq_u8(h0, one), 4));
                lo1 = vorrq_u8(lo1, vshlq_n_u8(vandq_u8(h1, one), 4));
                hi0 = vorrq_u8(hi0, vshlq_n_u8(vandq_u8(vshrq_n_u8(h0, 1), one), 4));
                hi1 = vorrq_u8(hi1, vshlq_n_u8(vandq_u8(vshrq_n_u8(h1, 1), one), 4));
                h0 = vshrq_n_u8(h0, 2);
                h1 = vshrq_n_u8(h1, 2);
            }
            const int8_t* xs = x[i].qs + 64 * c;
            const int32x4_t plo = dot_s8x32(vreinterpretq_s8_u8(lo0), vreinterpretq_s8_u8(lo1), xs);
            const int32x4_t phi = dot_s8x32(vreinterpretq_s8_u8(hi0), vreinterpretq_s8_u8(hi1), xs + 32);
            sumi = vmlaq_n_s32(sumi, plo, sm[2 * c]);
            sumi = vmlaq_n_s32(sumi, phi, sm[2 * c + 1]);
        }
        // Mins: sum_j m_j * (bsum_2j + bsum_2j+1).
        const int16x8_t bs = vpaddq_s16(vld1q_s16(x[i].bsums), vld1q_s16(x[i].bsums + 8));
        const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sm + 8)));
        const int32x4_t ms = vmlal_high_s16(vmull_s16(vget_low_s16(bs), vget_low_s16(mins)), bs, mins);
        acc += x[i].d * (fp16_scale(d16) * (float)vaddvq_s32(sumi) - fp16_scale(dmin16) * (float)vaddvq_s32(ms));
    }
    return acc;
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = blocks + i * stride;
        uint16_t d16, dmin16;
        memcpy(&d16, b, 2);
        memcpy(&dmin16, b + 2, 2);
        uint32_t u[4];
        unpack_k4_scales(b + 4, u);
        uint8_t sm[16];
        memcpy(sm, u, 16);
        const uint8_t* qs = b + q45_K_qs_offset<Q5>;
        const uint8_t* qh = b + (Q5 ? offsetof(block_q5_K, qh) : 0);
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; ++j) {
            int s = 0;
            for (int l = 0; l < 32; ++l) {
                int q = (qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0x0F;
                if constexpr (Q5) q |= ((qh[l] >> j) & 1) << 4;
                s += q * x[i].qs[32 * j + l];
            }
            isum += sm[j] * s;
            msum += sm[8 + j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        acc += x[i].d * (fp16_to_f32(d16) * (float)isum - fp16_to_f32(dmin16) * (float)msum);
    }
    return acc;
#endif
}

float dot_q4_K(const block_q4_K* w, const block_q8_256* x, int64_t nb) {
    return dot_q45_K<false>((const uint8_t*)w, sizeof(block_q4_K), x, nb);
}
float dot_q5_K(const block_q5_K* w, const block_q8_256* x, int64_t nb) {
    return dot_q45_K<true>((const uint8_t*)w, sizeof(block_q5_K), x, nb);
}

// ---- q6_K: x = d * sc * (q - 32), q in 0..63, per 16 ----------------------------------
float dot_q6_K(const block_q6_K* w, const block_q8_256* x, int64_t nb) {
#if defined(__AVX2__)
    float r;
    q6_K_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
#elif defined(STRATA_NEON)
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const int8_t* sc = w[i].scales;
        int32x4_t sumi = vdupq_n_s32(0);
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = w[i].ql + 64 * h;
            const int8_t* xs = x[i].qs + 128 * h;
            STRATA_UNROLL
            for (int k = 0; k < 2; ++k) {  // bytes l = 16k .. 16k + 15 of each 32
                const uint8x16_t l0 = vld1q_u8(ql + 16 * k), l1 = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t qh = vld1q_u8(w[i].qh + 32 * h + 16 * k);
                const uint8x16_t q[4] = {
                    vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(qh, 4), m30)),
                    vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(qh, 2), m30)),
                    vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(qh, m30)),
                    vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(qh, 2), m30)),
                };
                STRATA_UNROLL
                for (int s = 0; s < 4; ++s) {  // elements 128h + 32s + 16k + (0..15): group 8h + 2s + k
                    const int32x4_t p = dot_s8x16(vdupq_n_s32(0), vreinterpretq_s8_u8(q[s]), vld1q_s8(xs + 32 * s + 16 * k));
                    sumi = vmlaq_n_s32(sumi, p, sc[8 * h + 2 * s + k]);
                }
            }
        }
        // The -32 offset: 32 * sum_g sc_g * bsum_g.
        const int isum = vaddvq_s32(sumi) - 32 * dot_bsums16(x[i].bsums, vld1q_s8(sc));
        acc += fp16_scale(w[i].d) * x[i].d * (float)isum;
    }
    return acc;
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0;
        for (int g = 0; g < 16; ++g) {
            // Element 128h + 32s + l: low 4 bits from ql[64h + 32(s & 1) + l] (nibble s / 2),
            // high 2 bits from qh[32h + l] (field s).
            const int h = g / 8, sq = (g / 2) & 3, l0 = 16 * (g & 1);
            const uint8_t* ql = w[i].ql + 64 * h + 32 * (sq & 1);
            const uint8_t* qh = w[i].qh + 32 * h;
            const int shl = 4 * (sq >> 1), shh = 2 * sq;
            const int8_t* xs = x[i].qs + 16 * g - l0;
            int s = 0;
            for (int l = l0; l < l0 + 16; ++l) s += (((ql[l] >> shl) & 0x0F) | (((qh[l] >> shh) & 3) << 4)) * xs[l];
            isum += w[i].scales[g] * (s - 32 * x[i].bsums[g]);
        }
        acc += fp16_to_f32(w[i].d) * x[i].d * (float)isum;
    }
    return acc;
#endif
}

// ---- iq4_xs: x = d * (ls - 32) * kvalues_iq4nl[q], per 32 ----------------------------
float dot_iq4_xs(const block_iq4_xs* w, const block_q8_256* x, int64_t nb) {
#if defined(__AVX2__)
    float r;
    iq4_xs_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
#elif defined(STRATA_NEON)
    const int8x16_t table = vld1q_s8(kvalues_iq4nl);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int8_t ls[8];
        unpack_iq4_xs_scales(w[i], ls);
        int32x4_t sumi = vdupq_n_s32(0);
        STRATA_UNROLL
        for (int j = 0; j < 8; ++j) {
            int8x16_t lo, hi;
            unpack_nibbles_neon(w[i].qs + 16 * j, &lo, &hi);
            lo = vqtbl1q_s8(table, vreinterpretq_u8_s8(lo));
            hi = vqtbl1q_s8(table, vreinterpretq_u8_s8(hi));
            sumi = vmlaq_n_s32(sumi, dot_s8x32(lo, hi, x[i].qs + 32 * j), ls[j]);
        }
        acc += fp16_scale(w[i].d) * x[i].d * (float)vaddvq_s32(sumi);
    }
    return acc;
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int8_t ls[8];
        unpack_iq4_xs_scales(w[i], ls);
        int isum = 0;
        for (int j = 0; j < 8; ++j) {
            int s = 0;
            for (int l = 0; l < 16; ++l) {
                const uint8_t q = w[i].qs[16 * j + l];
                s += kvalues_iq4nl[q & 0x0F] * x[i].qs[32 * j + l] + kvalues_iq4nl[q >> 4] * x[i].qs[32 * j + l + 16];
            }
            isum += ls[j] * s;
        }
        acc += fp16_to_f32(w[i].d) * x[i].d * (float)isum;
    }
    return acc;
#endif
}

#if defined(__AVX2__)
void dot_q2_K_x4(const block_q2_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    q2_K_avx2<4>(w, nb, xq, xrb, out, ldo);
}
void dot_q3_K_x4(const block_q3_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    q3_K_avx2<4>(w, nb, xq, xrb, out, ldo);
}
void dot_q4_K_x4(const block_q4_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    q45_K_avx2<false, 4>((const uint8_t*)w, nb, xq, xrb, out, ldo);
}
void dot_q5_K_x4(const block_q5_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    q45_K_avx2<true, 4>((const uint8_t*)w, nb, xq, xrb, out, ldo);
}
void dot_q6_K_x4(const block_q6_K* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    q6_K_avx2<4>(w, nb, xq, xrb, out, ldo);
}
void dot_iq4_xs_x4(const block_iq4_xs* w, int64_t nb, const uint8_t* xq, int64_t xrb, float* out, int64_t ldo) {
    iq4_xs_avx2<4>(w, nb, xq, xrb, out, ldo);
}
#endif

}  // namespace strata::cpu::STRATA_ISA
