// AVX2 dot products of the 256-element super-block formats (the arithmetic and the scalar
// reference are in quant_dot_k.cpp), which the AVX-512 build compiles too. Products are
// u8 * s8 pairs summed to int16 (maddubs) and weighted by the sub-block scales to int32
// (madd, or vpdpwssd with VNNI): the unsigned quants stay below 64 (iq4_xs: |kvalue| <= 127
// via the sign trick), so nothing saturates.
//
// Each kernel takes N activation rows (xq + j * xrb) against one weight row and writes
// out[j * ldo]: N = 1 is the single-row dot (decode), N = 4 the prefill micro-kernel
// (dot_rows_x4), which unpacks each weight super-block once for four tokens. Per
// activation row the integer sums and the float expression of each super-block are the
// same for every N, so prefill and decode give the same bits.
#include "quant_k_scales.h"

namespace strata::cpu::STRATA_ISA {

#if defined(__AVX2__)
static inline __m256i load256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }

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

// Super-block i's contribution for formats with mins (q2_K, q4_K, q5_K):
// d * xd * sumi - dmin * xd * sum_g m_g * bsum_g, per activation row.
template <int N>
static inline void add_with_mins(__m256 acc[N], const block_q8_256* const x[N], int64_t i, const __m256i sumi[N],
                                 __m256i mins16, float d, float dmin) {
    for (int j = 0; j < N; ++j) {
        const __m256i msum = _mm256_madd_epi16(load256(x[j][i].bsums), mins16);
        const float xd = x[j][i].d;
        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * xd), _mm256_cvtepi32_ps(msum), acc[j]);
    }
}

// ... for formats whose quants carry an offset of 2^Shift (q3_K: 4, q6_K: 32), taken off in
// integers: d * xd * (sumi - 2^Shift * sum_g sc_g * bsum_g).
template <int Shift, int N>
static inline void add_with_offset(__m256 acc[N], const block_q8_256* const x[N], int64_t i, const __m256i sumi[N],
                                   __m256i sc16, float d) {
    for (int j = 0; j < N; ++j) {
        const __m256i off = _mm256_madd_epi16(load256(x[j][i].bsums), sc16);
        const __m256i isum = _mm256_sub_epi32(sumi[j], _mm256_slli_epi32(off, Shift));
        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j][i].d), _mm256_cvtepi32_ps(isum), acc[j]);
    }
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
        add_with_mins<N>(acc, x, i, sumi, mins16, d, dmin);
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
        add_with_offset<2, N>(acc, x, i, sumi, sc16, d);
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
        uint32_t u[4];
        read_q45_K_header(b, &d16, &dmin16, u);
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
        add_with_mins<N>(acc, x, i, sumi, mins16, d, dmin);
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
        add_with_offset<5, N>(acc, x, i, sumi, sc16, d);
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

float dot_q2_K(const block_q2_K* w, const block_q8_256* x, int64_t nb) {
    float r;
    q2_K_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
}
float dot_q3_K(const block_q3_K* w, const block_q8_256* x, int64_t nb) {
    float r;
    q3_K_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
}
float dot_q4_K(const block_q4_K* w, const block_q8_256* x, int64_t nb) {
    float r;
    q45_K_avx2<false, 1>((const uint8_t*)w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
}
float dot_q5_K(const block_q5_K* w, const block_q8_256* x, int64_t nb) {
    float r;
    q45_K_avx2<true, 1>((const uint8_t*)w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
}
float dot_q6_K(const block_q6_K* w, const block_q8_256* x, int64_t nb) {
    float r;
    q6_K_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
}
float dot_iq4_xs(const block_iq4_xs* w, const block_q8_256* x, int64_t nb) {
    float r;
    iq4_xs_avx2<1>(w, nb, (const uint8_t*)x, 0, &r, 0);
    return r;
}

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
