// Dot products of 256-element super-block weights (q2_K, q3_K, q4_K, q5_K, q6_K, iq4_xs)
// with activations quantized to block_q8_256 (fp32 scale, int8 quants, int16 sums per 16).
//
// Within a super-block everything is integer: the sub-block scales (and mins) are small
// integers, so sum_j sc_j * sum_l q_l * x_l is exact in int32, and a format's minimum or
// offset is applied through the activation's sums per 16. Two fp32 multiplies per
// super-block remain (d * xd and dmin * xd), which is as close to exact as llama.cpp's q8_K
// path, with the activation scale kept in fp32. Each type has a scalar reference here and
// an AVX2 path in quant_dot_k_avx2.cpp. The NEON path (arm64) sums each 16 or 32 products
// in int32 (vdotq_s32, or vmull + vpadal without dotprod) and weights them with the
// sub-block scales by vmlaq_n_s32.
#include "quant_k_scales.h"

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

#if !defined(__AVX2__)
// ---- q2_K: x = d * sc * q - dmin * m, q in 0..3, per 16 -------------------------------
float dot_q2_K(const block_q2_K* w, const block_q8_256* x, int64_t nb) {
#if defined(STRATA_NEON)
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
#if defined(STRATA_NEON)
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
#if defined(STRATA_NEON)
    const uint8x16_t m4 = vdupq_n_u8(0x0F), one = vdupq_n_u8(1);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = blocks + i * stride;
        uint16_t d16, dmin16;
        uint32_t u[4];
        read_q45_K_header(b, &d16, &dmin16, u);
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
        uint32_t u[4];
        read_q45_K_header(b, &d16, &dmin16, u);
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
#if defined(STRATA_NEON)
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
#if defined(STRATA_NEON)
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
#endif

}  // namespace strata::cpu::STRATA_ISA
