// Dot products of weight rows (any supported GGUF type) with one activation row.
//
// Quantized weights meet activations quantized to 8 bits and are multiplied in integers,
// as llama.cpp does, but with the activation scale kept in fp32: 32-element block formats
// (q4_0 ... q8_0, iq4_nl) use block_q8_act (int8 values, fp32 scale and scaled sum), the
// 256-element super-block formats (q2_K ... q6_K, iq4_xs; quant_dot_k.cpp) use
// block_q8_256 (int8 values, fp32 scale, int16 sums per 16). Float weights (F32, F16,
// BF16) meet the fp32 activations directly. Each type has a scalar reference and a SIMD
// path where the build's ISA has one; tests compare every path present.
#include "quant_simd.h"

#include "../../../quants/dequant.h"

namespace strata::cpu::STRATA_ISA {

using namespace quants;

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
    switch (t) {
        case DType::F32: memcpy(dst, src, sizeof(float) * n); return;
        case DType::F16: dequantize_row_f16((const uint16_t*)src, dst, n); return;
        case DType::BF16: dequantize_row_bf16((const uint16_t*)src, dst, n); return;
        case DType::Q4_0: dequantize_row_q4_0((const block_q4_0*)src, dst, n); return;
        case DType::Q4_1: dequantize_row_q4_1((const block_q4_1*)src, dst, n); return;
        case DType::Q5_0: dequantize_row_q5_0((const block_q5_0*)src, dst, n); return;
        case DType::Q5_1: dequantize_row_q5_1((const block_q5_1*)src, dst, n); return;
        case DType::Q8_0: dequantize_row_q8_0((const block_q8_0*)src, dst, n); return;
        case DType::Q2_K: dequantize_row_q2_K((const block_q2_K*)src, dst, n); return;
        case DType::Q3_K: dequantize_row_q3_K((const block_q3_K*)src, dst, n); return;
        case DType::Q4_K: dequantize_row_q4_K((const block_q4_K*)src, dst, n); return;
        case DType::Q5_K: dequantize_row_q5_K((const block_q5_K*)src, dst, n); return;
        case DType::Q6_K: dequantize_row_q6_K((const block_q6_K*)src, dst, n); return;
        case DType::IQ4_NL: dequantize_row_iq4_nl((const block_iq4_nl*)src, dst, n); return;
        case DType::IQ4_XS: dequantize_row_iq4_xs((const block_iq4_xs*)src, dst, n); return;
        default: for (int64_t i = 0; i < n; ++i) dst[i] = NAN; return;  // rejected at load
    }
}

ActFormat act_format(DType t) {
    switch (t) {
#if defined(__AVX2__)
        // Every 32-element format takes the lanes format (a superset of q8_32), so weights
        // of different types that read one input (q / k / v) share its quantization.
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::IQ4_NL:
            return ActFormat::Q8_32_Lanes;
#else
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::IQ4_NL:
            return ActFormat::Q8_32;
#endif
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
        case DType::IQ4_XS:
            return ActFormat::Q8_256;
        default: return ActFormat::None;
    }
}

// Bytes of one quantized activation row of n elements (n a multiple of the format's block;
// the executor's buffer allows up to 4 * n + 64 bytes per row).
int64_t act_row_bytes(ActFormat f, int64_t n) {
    switch (f) {
        case ActFormat::Q8_32: return (n / 32) * (int64_t)sizeof(block_q8_act);
        case ActFormat::Q8_256: return (n / QK_K) * (int64_t)sizeof(block_q8_256);
        case ActFormat::Q8_Halves: return (n / 32) * (int64_t)sizeof(block_q8_halves);
        case ActFormat::Q8_32_Lanes: return (n / 32) * (int64_t)(sizeof(block_q8_act) + 32);
        default: return n * (int64_t)sizeof(float);
    }
}

static void quantize_row_q8_32(const float* x, block_q8_act* y, int64_t n) {
    for (int64_t b = 0; b < n / 32; ++b, x += 32) {
#if defined(__AVX2__)
        const float d = act_scale(amax_f32(x, 32));
        _mm256_storeu_si256((__m256i*)y[b].qs, quantize32(x, _mm256_set1_ps(act_inv_scale(d))));
#elif defined(STRATA_NEON)
        const float d = act_scale(amax_f32(x, 32));
        const float32x4_t id = vdupq_n_f32(act_inv_scale(d));
        const int8x16_t q0 = quantize16(x, id), q1 = quantize16(x + 16, id);
        vst1q_s8(y[b].qs, q0);
        vst1q_s8(y[b].qs + 16, q1);
#else
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(x[j]));
        const float d = act_scale(amax), id = act_inv_scale(d);
        for (int j = 0; j < 32; ++j) y[b].qs[j] = (int8_t)(int)nearbyintf(x[j] * id);
#endif
        int sum = 0;
        for (int j = 0; j < 32; ++j) sum += y[b].qs[j];
        y[b].d = d;
        y[b].s = d * (float)sum;
    }
}

// The same bytes and scale as q8_32, with the scaled sums of each half.
static void quantize_row_q8_halves(const float* x, block_q8_halves* y, int64_t n) {
    for (int64_t b = 0; b < n / 32; ++b, x += 32) {
        block_q8_act a;
        quantize_row_q8_32(x, &a, 32);
        int lo = 0, hi = 0;
        for (int j = 0; j < 16; ++j) {
            lo += a.qs[j];
            hi += a.qs[j + 16];
        }
        y[b].d = a.d;
        y[b].s = a.s;
        y[b].s_half[0] = a.d * (float)lo;
        y[b].s_half[1] = a.d * (float)hi;
        memcpy(y[b].qs, a.qs, 32);
    }
}

#if defined(__AVX2__)
// q8_32 blocks, then per block the negated sums of each 4 quants (the int32 lanes of a
// 256-bit u8 x s8 dot): the offset formats start their integer dot from these, shifted by
// log2 of the offset, so q - offset is applied exactly in integers.
static void quantize_row_q8_32_lanes(const float* x, uint8_t* dst, int64_t n) {
    const int64_t nb = n / 32;
    block_q8_act* y = (block_q8_act*)dst;
    quantize_row_q8_32(x, y, n);
    __m256i* lanes = (__m256i*)(dst + nb * (int64_t)sizeof(block_q8_act));
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i q = _mm256_loadu_si256((const __m256i*)y[b].qs);
        const __m256i sums = dot_u8_s8(_mm256_set1_epi8(1), q);
        _mm256_storeu_si256(lanes + b, _mm256_sub_epi32(_mm256_setzero_si256(), sums));
    }
}
#endif

void quantize_act_row(ActFormat f, const float* x, uint8_t* dst, int64_t n) {
    switch (f) {
#if defined(__AVX2__)
        case ActFormat::Q8_32_Lanes: quantize_row_q8_32_lanes(x, dst, n); return;
#endif
        case ActFormat::Q8_32: quantize_row_q8_32(x, (block_q8_act*)dst, n); return;
        case ActFormat::Q8_Halves: quantize_row_q8_halves(x, (block_q8_halves*)dst, n); return;
        case ActFormat::Q8_256: quantize_row_q8_256(x, (block_q8_256*)dst, n); return;
        default: memcpy(dst, x, sizeof(float) * n); return;
    }
}

// ---- per-type dot of one weight row with one q8 activation row -------------------------
// Offset formats (q4_0: q-8, q5_0: q-16) are computed as unsigned q times x (the integer
// part stays u8*s8), minus offset * sum(x): on AVX2 in integers, starting from the
// activation's lane sums (Q8_32_Lanes); on NEON and scalar with the block's scaled sum.

#if defined(__AVX2__)
// The AVX2 dot before its horizontal sum: 8 float lanes, and the scalar term (the minimum
// times the activation sums, q4_1 / q5_1) in *scalar; the value is
// hsum_ps256(lanes) + *scalar (dot_rows sums 8 rows' lanes at once, in the same order).
template <typename Block, int Offset, bool HasMin, bool Has5thBit>
static inline __m256 dot_q_nibbles_lanes(const Block* w, const block_q8_act* x, int64_t nb, float* scalar) {
    static_assert(HasMin || Offset == 8 || Offset == 16, "offsets are shifts of the lanes");
    // Even and odd blocks in two accumulators: one chain of fused multiply-adds would
    // bound a row at a block per 4 cycles (row_x4_nibbles sums the same way). The offset
    // formats (HasMin false) start each block's integer dot from its activation lanes
    // times -Offset (Q8_32_Lanes), so q - Offset is exact and no float term is needed.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float acc_s0 = 0.0f, acc_s1 = 0.0f;
    [[maybe_unused]] const __m256i* lanes = (const __m256i*)(x + nb);
    auto block = [&](int64_t i, __m256& acc, float& acc_s) {
        __m256i q = unpack_nibbles(w[i].qs);
        if constexpr (Has5thBit) q = _mm256_or_si256(q, fifth_bits(w[i].qh));
        const __m256i y = _mm256_loadu_si256((const __m256i*)x[i].qs);
        __m256i d;
        if constexpr (HasMin) d = dot_u8_s8(q, y);
        else d = dot_u8_s8_acc(_mm256_slli_epi32(_mm256_loadu_si256(lanes + i), Offset == 8 ? 3 : 4), q, y);
        const __m256 p = _mm256_cvtepi32_ps(d);
        const float dw = fp16_to_f32(w[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[i].d), p, acc);
        if constexpr (HasMin) acc_s += fp16_to_f32(w[i].m) * x[i].s;
    };
    int64_t i = 0;
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    // Two blocks per 512-bit vector: block i in the low half and i + 1 in the high half, each
    // half with exactly the lanes and operations of block() (so acc0 and acc1 are the
    // halves, bit for bit) at about two thirds of the instructions: single-threaded decode
    // of q4_0 is bound by them, not by memory.
    if (nb >= 2) {
        const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        __m512 acc = _mm512_setzero_ps();
        for (; i + 2 <= nb; i += 2) {
            const Block& a = w[i];
            const Block& b = w[i + 1];
            const __m256i ab = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)a.qs)),
                                                       _mm_loadu_si128((const __m128i*)b.qs), 1);
            const __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(ab), _mm256_srli_epi16(ab, 4), 1);
            // [a, b, a >> 4, b >> 4] -> [a, a >> 4, b, b >> 4]: unpack_nibbles of each block.
            __m512i q = _mm512_and_si512(_mm512_shuffle_i64x2(t, t, _MM_SHUFFLE(3, 1, 2, 0)), _mm512_set1_epi8(0x0F));
            if constexpr (Has5thBit)
                q = _mm512_or_si512(q, _mm512_inserti64x4(_mm512_castsi256_si512(fifth_bits(a.qh)), fifth_bits(b.qh), 1));
            const __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)x[i].qs)),
                                                 _mm256_loadu_si256((const __m256i*)x[i + 1].qs), 1);
            __m512i d;
            if constexpr (HasMin) {
                d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y);
            } else {
                const __m512i l = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(lanes + i)),
                                                     _mm256_loadu_si256(lanes + i + 1), 1);
                d = _mm512_dpbusd_epi32(_mm512_slli_epi32(l, Offset == 8 ? 3 : 4), q, y);
            }
            const __m128 dw = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(a.d), b.d, 1));
            const __m128 s2 = _mm_mul_ps(dw, _mm_setr_ps(x[i].d, x[i + 1].d, 0.0f, 0.0f));
            acc = _mm512_fmadd_ps(_mm512_permutexvar_ps(halves, _mm512_castps128_ps512(s2)), _mm512_cvtepi32_ps(d), acc);
            if constexpr (HasMin) {
                acc_s0 += fp16_to_f32(a.m) * x[i].s;
                acc_s1 += fp16_to_f32(b.m) * x[i + 1].s;
            }
        }
        acc0 = _mm512_castps512_ps256(acc);
        acc1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    }
#endif
    for (; i + 2 <= nb; i += 2) {
        block(i, acc0, acc_s0);
        block(i + 1, acc1, acc_s1);
    }
    if (i < nb) block(i, acc0, acc_s0);
    *scalar = acc_s0 + acc_s1;
    return _mm256_add_ps(acc0, acc1);
}
#endif

template <typename Block, int Offset, bool HasMin, bool Has5thBit>
static inline float dot_q_nibbles(const Block* w, const block_q8_act* x, int64_t nb) {
#if defined(__AVX2__)
    float scalar;
    const __m256 v = dot_q_nibbles_lanes<Block, Offset, HasMin, Has5thBit>(w, x, nb, &scalar);
    return hsum_ps256(v) + scalar;
#elif defined(STRATA_NEON)
    float32x4_t acc = vdupq_n_f32(0.0f);
    float acc_s = 0.0f;
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
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(dot_s8x32(lo, hi, x[i].qs)), dw * x[i].d);
        if constexpr (HasMin) acc_s += fp16_scale(w[i].m) * x[i].s;
        else acc_s -= Offset * dw * x[i].s;
    }
    return vaddvq_f32(acc) + acc_s;
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        uint32_t qh = 0;
        if constexpr (Has5thBit) memcpy(&qh, w[i].qh, 4);
        int sum = 0;
        for (int j = 0; j < 16; ++j) {
            int lo = w[i].qs[j] & 0x0F, hi = w[i].qs[j] >> 4;
            if constexpr (Has5thBit) {
                lo |= ((qh >> j) & 1) << 4;
                hi |= ((qh >> (j + 16)) & 1) << 4;
            }
            sum += lo * x[i].qs[j] + hi * x[i].qs[j + 16];
        }
        const float dw = fp16_to_f32(w[i].d);
        acc += dw * x[i].d * (float)sum;
        if constexpr (HasMin) acc += fp16_to_f32(w[i].m) * x[i].s;
        else acc -= Offset * dw * x[i].s;
    }
    return acc;
#endif
}

#if defined(__AVX2__)
static inline __m256 dot_q8_0_lanes(const block_q8_0* w, const block_q8_act* x, int64_t nb, float* scalar) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();  // even / odd blocks
    auto block = [&](int64_t i, __m256& acc) {
        const __m256i q = _mm256_loadu_si256((const __m256i*)w[i].qs);
        const __m256i y = _mm256_loadu_si256((const __m256i*)x[i].qs);
        // u8*s8 trick: |q| * (y with q's sign).
        const __m256i p = dot_u8_s8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(w[i].d) * x[i].d), _mm256_cvtepi32_ps(p), acc);
    };
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        block(i, acc0);
        block(i + 1, acc1);
    }
    if (i < nb) block(i, acc0);
    *scalar = 0.0f;
    return _mm256_add_ps(acc0, acc1);
}
#endif

static inline float dot_q8_0(const block_q8_0* w, const block_q8_act* x, int64_t nb) {
#if defined(__AVX2__)
    float scalar;
    return hsum_ps256(dot_q8_0_lanes(w, x, nb, &scalar));
#elif defined(STRATA_NEON)
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < nb; ++i) {
        const int32x4_t p = dot_s8x32(vld1q_s8(w[i].qs), vld1q_s8(w[i].qs + 16), x[i].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), fp16_scale(w[i].d) * x[i].d);
    }
    return vaddvq_f32(acc);
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int sum = 0;
        for (int j = 0; j < 32; ++j) sum += w[i].qs[j] * x[i].qs[j];
        acc += fp16_to_f32(w[i].d) * x[i].d * (float)sum;
    }
    return acc;
#endif
}

static inline float dot_iq4_nl(const block_iq4_nl* w, const block_q8_act* x, int64_t nb) {
#if defined(__AVX2__)
    const __m256i table = iq4nl_table();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        const __m256i q = _mm256_shuffle_epi8(table, unpack_nibbles(w[i].qs));
        const __m256i p = dot_s8_s8(q, _mm256_loadu_si256((const __m256i*)x[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(w[i].d) * x[i].d), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps256(acc);
#elif defined(STRATA_NEON)
    const int8x16_t table = vld1q_s8(kvalues_iq4nl);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < nb; ++i) {
        int8x16_t lo, hi;
        unpack_nibbles_neon(w[i].qs, &lo, &hi);
        lo = vqtbl1q_s8(table, vreinterpretq_u8_s8(lo));
        hi = vqtbl1q_s8(table, vreinterpretq_u8_s8(hi));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(dot_s8x32(lo, hi, x[i].qs)), fp16_scale(w[i].d) * x[i].d);
    }
    return vaddvq_f32(acc);
#else
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int sum = 0;
        for (int j = 0; j < 16; ++j)
            sum += kvalues_iq4nl[w[i].qs[j] & 0x0F] * x[i].qs[j] + kvalues_iq4nl[w[i].qs[j] >> 4] * x[i].qs[j + 16];
        acc += fp16_to_f32(w[i].d) * x[i].d * (float)sum;
    }
    return acc;
#endif
}

static inline float dot_f32(const float* w, const float* x, int64_t n) {
    int64_t i = 0;
    float acc = 0.0f;
#if defined(__AVX2__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    acc = hsum_ps256(_mm256_add_ps(a0, a1));
#elif defined(STRATA_NEON)
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
    }
    acc = vaddvq_f32(vaddq_f32(a0, a1));
#endif
    for (; i < n; ++i) acc += w[i] * x[i];
    return acc;
}

static inline float dot_f16(const uint16_t* w, const float* x, int64_t n) {
    int64_t i = 0;
    float acc = 0.0f;
#if defined(__AVX2__) && defined(__F16C__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + i)));
        const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + i + 8)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    acc = hsum_ps256(_mm256_add_ps(a0, a1));
#elif defined(STRATA_NEON)
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(w + i));
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(h)), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vcvt_high_f32_f16(h), vld1q_f32(x + i + 4));
    }
    acc = vaddvq_f32(vaddq_f32(a0, a1));
#endif
    for (; i < n; ++i) acc += fp16_to_f32(w[i]) * x[i];
    return acc;
}

static inline float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
    int64_t i = 0;
    float acc = 0.0f;
#if defined(__AVX2__)
    __m256 a0 = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256i wi = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(w + i)));
        const __m256 wf = _mm256_castsi256_ps(_mm256_slli_epi32(wi, 16));
        a0 = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i), a0);
    }
    acc = hsum_ps256(a0);
#elif defined(STRATA_NEON)
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t b = vld1q_u16(w + i);
        a0 = vfmaq_f32(a0, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(b), 16)), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vreinterpretq_f32_u32(vshll_high_n_u16(b, 16)), vld1q_f32(x + i + 4));
    }
    acc = vaddvq_f32(vaddq_f32(a0, a1));
#endif
    for (; i < n; ++i) acc += bf16_to_fp32(w[i]) * x[i];
    return acc;
}

#if defined(__AVX2__)
// Rows [r0, r1) of a 32-element format through a *_lanes dot, the horizontal sums of 8 rows
// at a time in one reduce8 (same order as hsum_ps256, so the same values as the single-row
// dot): with 576-wide rows (18 blocks) a row's own horizontal sum was a quarter of its time.
template <typename Block, typename LanesFn>
static inline void rows_reduced8(const uint8_t* w, int64_t nb, int64_t r0, int64_t r1, const block_q8_act* x,
                                 float* out, int64_t out_stride, LanesFn lanes_of) {
    const Block* wb = (const Block*)w;
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
        __m256 v[8];
        alignas(32) float scalar[8], sum[8];
        for (int k = 0; k < 8; ++k) v[k] = lanes_of(wb + (r + k) * nb, x, nb, &scalar[k]);
        _mm256_store_ps(sum, reduce8(v));
        static constexpr int kLane[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // reduce8's row order
        for (int k = 0; k < 8; ++k) out[(r + k - r0) * out_stride] = sum[kLane[k]] + scalar[k];
    }
    for (; r < r1; ++r) {
        float scalar;
        out[(r - r0) * out_stride] = hsum_ps256(lanes_of(wb + r * nb, x, nb, &scalar)) + scalar;
    }
}
#endif

void dot_rows(DType t, const uint8_t* w, int64_t width, int64_t r0, int64_t r1, const void* xq,
              float* out, int64_t out_stride) {
    const int64_t nb = width / 32, nbk = width / QK_K;
    const block_q8_act* xa = (const block_q8_act*)xq;
    const block_q8_256* xk = (const block_q8_256*)xq;
    const float* xf = (const float*)xq;
#if defined(__AVX2__)
    switch (t) {
#define STRATA_ROWS8(BLOCK, FN) rows_reduced8<BLOCK>(w, nb, r0, r1, xa, out, out_stride, FN); return;
        case DType::Q4_0: STRATA_ROWS8(block_q4_0, (dot_q_nibbles_lanes<block_q4_0, 8, false, false>))
        case DType::Q4_1: STRATA_ROWS8(block_q4_1, (dot_q_nibbles_lanes<block_q4_1, 0, true, false>))
        case DType::Q5_0: STRATA_ROWS8(block_q5_0, (dot_q_nibbles_lanes<block_q5_0, 16, false, true>))
        case DType::Q5_1: STRATA_ROWS8(block_q5_1, (dot_q_nibbles_lanes<block_q5_1, 0, true, true>))
        case DType::Q8_0: STRATA_ROWS8(block_q8_0, dot_q8_0_lanes)
#undef STRATA_ROWS8
        default: break;
    }
#endif
    switch (t) {
#define STRATA_ROWS_N(BLOCK, NB, EXPR)                                             \
    for (int64_t r = r0; r < r1; ++r) {                                            \
        const BLOCK* wr = (const BLOCK*)(w + r * (int64_t)sizeof(BLOCK) * (NB));   \
        out[(r - r0) * out_stride] = EXPR;                                         \
    }                                                                              \
    return;
#define STRATA_ROWS(BLOCK, EXPR) STRATA_ROWS_N(BLOCK, nb, EXPR)
        case DType::Q4_0: STRATA_ROWS(block_q4_0, (dot_q_nibbles<block_q4_0, 8, false, false>(wr, xa, nb)))
        case DType::Q4_1: STRATA_ROWS(block_q4_1, (dot_q_nibbles<block_q4_1, 0, true, false>(wr, xa, nb)))
        case DType::Q5_0: STRATA_ROWS(block_q5_0, (dot_q_nibbles<block_q5_0, 16, false, true>(wr, xa, nb)))
        case DType::Q5_1: STRATA_ROWS(block_q5_1, (dot_q_nibbles<block_q5_1, 0, true, true>(wr, xa, nb)))
        case DType::Q8_0: STRATA_ROWS(block_q8_0, dot_q8_0(wr, xa, nb))
        case DType::IQ4_NL: STRATA_ROWS(block_iq4_nl, dot_iq4_nl(wr, xa, nb))
        case DType::Q2_K: STRATA_ROWS_N(block_q2_K, nbk, dot_q2_K(wr, xk, nbk))
        case DType::Q3_K: STRATA_ROWS_N(block_q3_K, nbk, dot_q3_K(wr, xk, nbk))
        case DType::Q4_K: STRATA_ROWS_N(block_q4_K, nbk, dot_q4_K(wr, xk, nbk))
        case DType::Q5_K: STRATA_ROWS_N(block_q5_K, nbk, dot_q5_K(wr, xk, nbk))
        case DType::Q6_K: STRATA_ROWS_N(block_q6_K, nbk, dot_q6_K(wr, xk, nbk))
        case DType::IQ4_XS: STRATA_ROWS_N(block_iq4_xs, nbk, dot_iq4_xs(wr, xk, nbk))
#undef STRATA_ROWS
#undef STRATA_ROWS_N
        case DType::F32:
            for (int64_t r = r0; r < r1; ++r) out[(r - r0) * out_stride] = dot_f32((const float*)w + r * width, xf, width);
            return;
        case DType::F16:
            for (int64_t r = r0; r < r1; ++r) out[(r - r0) * out_stride] = dot_f16((const uint16_t*)w + r * width, xf, width);
            return;
        case DType::BF16:
            for (int64_t r = r0; r < r1; ++r) out[(r - r0) * out_stride] = dot_bf16((const uint16_t*)w + r * width, xf, width);
            return;
        default:
            for (int64_t r = r0; r < r1; ++r) out[(r - r0) * out_stride] = NAN;  // rejected at load
            return;
    }
}

void matvec(DType t, const uint8_t* w, int64_t width, int64_t r0, int64_t r1, const float* x,
            float* out, uint8_t* act_scratch) {
    const ActFormat f = act_format(t);
    const void* xq = x;
    if (f != ActFormat::None) {
        quantize_act_row(f, x, act_scratch, width);
        xq = act_scratch;
    }
    dot_rows(t, w, width, r0, r1, xq, out, 1);
}

}  // namespace strata::cpu::STRATA_ISA
