// Prefill matmul on AVX-512 VNNI (and on AVX2 for the formats of up to 6 bits per weight:
// tile_tokens_half): 16 weight rows at a time against every token.
//
// The 4-token dots (quant_dot_x4.cpp) keep one weight row in a vector and reduce it
// horizontally per block and token, so each 32-element block costs about five vector
// instructions per token for 32 products. Here 16 weight rows are first unpacked into a
// per-thread tile in which the rows are interleaved four bytes at a time: one 512-bit
// vector holds four consecutive elements of each of the 16 rows, so vpdpbusd against the
// token's four int8 values (broadcast) adds 64 products into 16 row lanes, with no
// horizontal sum. A 32-element block is 8 such instructions for 512 products, then one
// float multiply-add per sub-block by the rows' scales. The unpacking is done once per tile
// and matmul (for all tokens), which is why this runs only for longer prompts.
//
// Every weight format is unpacked to the same shape: unsigned 8-bit values u per element
// and, per sub-block of 32 (or of 16, for q2_K / q3_K / q6_K), a scale and an offset such
// that w = scale * u + offset. With activations x = d * q (block_q8_halves), a sub-block
// contributes scale * d * sum(u * q) + offset * d * sum(q): the integer sum, then two fused
// multiply-adds over the 16 rows at once.
#include "quant_k_scales.h"

namespace strata::cpu::STRATA_ISA {

using namespace quants;

#if defined(__AVX2__)  // AVX-512 builds too
namespace {

constexpr int kRows = kGemmTileRows;

// A group of one row (a 32-element block, or a 256-element super-block) unpacked: u, and
// per sub-block of 16 or 32 (SB per 32 elements) a scale and an offset.
struct Unpacked {
    alignas(32) uint8_t u[QK_K];
    float scale[16], offset[16];
};

static inline float h2f(uint16_t h) { return fp16_to_f32(h); }
static inline void store32(uint8_t* u, __m256i v) { _mm256_store_si256((__m256i*)u, v); }
static inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
static inline __m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
static inline __m256i high_nibbles(__m256i v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
}
// Bits 2s..2s+1 of each byte (s constant after unrolling).
static inline __m256i crumbs(__m256i v, int s) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), _mm256_set1_epi8(3));
}
// Bit j of each byte, moved to bit `to`.
static inline __m256i bit_to(__m256i v, int j, int to) {
    const __m256i b = j >= to ? _mm256_srli_epi16(v, j - to) : _mm256_slli_epi16(v, to - j);
    return _mm256_and_si256(b, _mm256_set1_epi8((char)(1 << to)));
}
// 4-bit indices to kvalues_iq4nl + 128 (unsigned).
static inline __m256i iq4_u8(__m256i idx) {
    return _mm256_add_epi8(_mm256_shuffle_epi8(iq4nl_table(), idx), _mm256_set1_epi8((char)0x80));
}

template <DType T> struct Format;

// ---- 32-element block formats: block g of a row --------------------------------------
template <> struct Format<DType::Q4_0> {
    static constexpr int SB = 1, kGroup = 32;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q4_0& b = ((const block_q4_0*)row)[g];
        store32(o->u, unpack_nibbles(b.qs));
        o->scale[0] = h2f(b.d);
        o->offset[0] = -8.0f * o->scale[0];
    }
};
template <> struct Format<DType::Q4_1> {
    static constexpr int SB = 1, kGroup = 32;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q4_1& b = ((const block_q4_1*)row)[g];
        store32(o->u, unpack_nibbles(b.qs));
        o->scale[0] = h2f(b.d);
        o->offset[0] = h2f(b.m);
    }
};
template <> struct Format<DType::Q5_0> {
    static constexpr int SB = 1, kGroup = 32;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q5_0& b = ((const block_q5_0*)row)[g];
        store32(o->u, _mm256_or_si256(unpack_nibbles(b.qs), fifth_bits(b.qh)));
        o->scale[0] = h2f(b.d);
        o->offset[0] = -16.0f * o->scale[0];
    }
};
template <> struct Format<DType::Q5_1> {
    static constexpr int SB = 1, kGroup = 32;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q5_1& b = ((const block_q5_1*)row)[g];
        store32(o->u, _mm256_or_si256(unpack_nibbles(b.qs), fifth_bits(b.qh)));
        o->scale[0] = h2f(b.d);
        o->offset[0] = h2f(b.m);
    }
};
template <> struct Format<DType::Q8_0> {
    static constexpr int SB = 1, kGroup = 32;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q8_0& b = ((const block_q8_0*)row)[g];
        store32(o->u, _mm256_xor_si256(load32((const uint8_t*)b.qs), _mm256_set1_epi8((char)0x80)));
        o->scale[0] = h2f(b.d);
        o->offset[0] = -128.0f * o->scale[0];
    }
};
template <> struct Format<DType::IQ4_NL> {
    static constexpr int SB = 1, kGroup = 32;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_iq4_nl& b = ((const block_iq4_nl*)row)[g];
        store32(o->u, iq4_u8(unpack_nibbles(b.qs)));
        o->scale[0] = h2f(b.d);
        o->offset[0] = -128.0f * o->scale[0];
    }
};

// ---- 256-element super-block formats: super-block g of a row --------------------------
// q4_K / q5_K: element 64c + 32h + l is nibble h of qs[32c + l] (sub-block j = 2c + h),
// q5_K's 5th bit of element 32j + l is bit j of qh[l].
template <bool Q5>
static void unpack_q45_K(const uint8_t* blk, Unpacked* o) {
    uint16_t d16, dmin16;
    uint32_t w[4];
    read_q45_K_header(blk, &d16, &dmin16, w);
    uint8_t sm[16];
    memcpy(sm, w, 16);
    const float d = h2f(d16), dmin = h2f(dmin16);
    const uint8_t* qs = blk + q45_K_qs_offset<Q5>;
    [[maybe_unused]] __m256i qh;
    if constexpr (Q5) qh = load32(blk + offsetof(block_q5_K, qh));
    STRATA_UNROLL
    for (int c = 0; c < 4; ++c) {
        const __m256i q = load32(qs + 32 * c);
        __m256i lo = low_nibbles(q), hi = high_nibbles(q);
        if constexpr (Q5) {
            lo = _mm256_or_si256(lo, bit_to(qh, 2 * c, 4));
            hi = _mm256_or_si256(hi, bit_to(qh, 2 * c + 1, 4));
        }
        store32(o->u + 64 * c, lo);
        store32(o->u + 64 * c + 32, hi);
    }
    for (int j = 0; j < 8; ++j) {
        o->scale[j] = d * (float)sm[j];
        o->offset[j] = -dmin * (float)sm[8 + j];
    }
}
template <> struct Format<DType::Q4_K> {
    static constexpr int SB = 1, kGroup = QK_K;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        unpack_q45_K<false>(row + g * (int64_t)sizeof(block_q4_K), o);
    }
};
template <> struct Format<DType::Q5_K> {
    static constexpr int SB = 1, kGroup = QK_K;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        unpack_q45_K<true>(row + g * (int64_t)sizeof(block_q5_K), o);
    }
};
template <> struct Format<DType::IQ4_XS> {
    static constexpr int SB = 1, kGroup = QK_K;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_iq4_xs& b = ((const block_iq4_xs*)row)[g];
        int8_t ls[8];
        unpack_iq4_xs_scales(b, ls);
        const float d = h2f(b.d);
        for (int j = 0; j < 8; ++j) {
            store32(o->u + 32 * j, iq4_u8(unpack_nibbles(b.qs + 16 * j)));
            o->scale[j] = d * (float)ls[j];
            o->offset[j] = -128.0f * o->scale[j];
        }
    }
};
// q6_K: element 128h + 32s + l has low bits nibble (s / 2) of ql[64h + 32(s % 2) + l] and
// high bits crumb s of qh[32h + l]; x = d * sc * (q - 32) per 16.
template <> struct Format<DType::Q6_K> {
    static constexpr int SB = 2, kGroup = QK_K;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q6_K& b = ((const block_q6_K*)row)[g];
        const float d = h2f(b.d);
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load32(b.ql + 64 * h), ql1 = load32(b.ql + 64 * h + 32);
            const __m256i qh = load32(b.qh + 32 * h);
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s) {
                const __m256i ql = s % 2 ? ql1 : ql0;
                const __m256i lo = s / 2 ? high_nibbles(ql) : low_nibbles(ql);
                store32(o->u + 128 * h + 32 * s, _mm256_or_si256(lo, _mm256_slli_epi16(crumbs(qh, s), 4)));
            }
        }
        for (int i = 0; i < 16; ++i) {
            o->scale[i] = d * (float)b.scales[i];
            o->offset[i] = -32.0f * o->scale[i];
        }
    }
};
// q2_K and q3_K: element 128h + 32s + l has low bits crumb s of qs[32h + l]; q3_K's high
// bit of element 32j + l is bit j of hmask[l].
template <> struct Format<DType::Q3_K> {
    static constexpr int SB = 2, kGroup = QK_K;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q3_K& b = ((const block_q3_K*)row)[g];
        const __m256i hm = load32(b.hmask);
        // x = d * sc * (q - 4 * !hbit) = d * sc * (u - 4) with u = q + 4 * hbit.
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const __m256i q = load32(b.qs + 32 * h);
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s)
                store32(o->u + 128 * h + 32 * s, _mm256_or_si256(crumbs(q, s), bit_to(hm, 4 * h + s, 2)));
        }
        int8_t sc[16];
        unpack_q3_K_scales(b.scales, sc);
        const float d = h2f(b.d);
        for (int i = 0; i < 16; ++i) {
            o->scale[i] = d * (float)sc[i];
            o->offset[i] = -4.0f * o->scale[i];
        }
    }
};
template <> struct Format<DType::Q2_K> {
    static constexpr int SB = 2, kGroup = QK_K;
    static void unpack(const uint8_t* row, int64_t g, Unpacked* o) {
        const block_q2_K& b = ((const block_q2_K*)row)[g];
        STRATA_UNROLL
        for (int h = 0; h < 2; ++h) {
            const __m256i q = load32(b.qs + 32 * h);
            STRATA_UNROLL
            for (int s = 0; s < 4; ++s) store32(o->u + 128 * h + 32 * s, crumbs(q, s));
        }
        const float d = h2f(b.d), dmin = h2f(b.dmin);
        for (int i = 0; i < 16; ++i) {
            o->scale[i] = d * (float)(b.scales[i] & 15);
            o->offset[i] = -dmin * (float)(b.scales[i] >> 4);
        }
    }
};

// ---- the tile: per 32-element block, the 16 rows' values interleaved by 4 bytes (512
// bytes: vector g holds elements 4g..4g+3 of rows 0..15), then SB vectors of scales and
// SB of offsets (16 floats each).
template <int SB>
constexpr int64_t kBlockBytes = 512 + SB * 2 * 64;

template <DType T>
void repack_tile(const uint8_t* w, int64_t row_bytes, int64_t K, int64_t r0, uint8_t* tile) {
    using F = Format<T>;
    constexpr int SB = F::SB, kSub = F::kGroup / 32;
    const int64_t ng = K / F::kGroup;
    Unpacked un;
    for (int r = 0; r < kRows; ++r) {
        const uint8_t* row = w + (r0 + r) * row_bytes;
        for (int64_t g = 0; g < ng; ++g) {
            F::unpack(row, g, &un);
            for (int j = 0; j < kSub; ++j) {
                uint8_t* tb = tile + (g * kSub + j) * kBlockBytes<SB>;
                uint32_t v[8];
                memcpy(v, un.u + 32 * j, 32);
                for (int k = 0; k < 8; ++k) memcpy(tb + 64 * k + 4 * r, &v[k], 4);
                float* sc = (float*)(tb + 512);
                for (int h = 0; h < SB; ++h) {
                    sc[16 * h + r] = un.scale[SB * j + h];
                    sc[16 * (SB + h) + r] = un.offset[SB * j + h];
                }
            }
        }
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// NT tokens (x: rows xrb bytes apart) against a repacked tile of nb blocks; 16 outputs per
// token to y[j * ldy ..]. Two integer accumulators per token halve the vpdpbusd chain.
// (kSigned: the AVX2 kernel's choice for 8-bit u; vpdpbusd takes any u.)
template <int SB, int NT, bool kSigned>
void tile_tokens(const uint8_t* tile, int64_t nb, const uint8_t* x, int64_t xrb, float* y, int64_t ldy) {
    __m512 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* tb = tile + b * kBlockBytes<SB>;
        __m512i w[8];
        for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512((const void*)(tb + 64 * k));
        const float* sc = (const float*)(tb + 512);
        for (int j = 0; j < NT; ++j) {
            const block_q8_halves& xb = ((const block_q8_halves*)(x + j * xrb))[b];
            int32_t q[8];
            memcpy(q, xb.qs, 32);
            __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
            a0 = _mm512_dpbusd_epi32(a0, w[0], _mm512_set1_epi32(q[0]));
            a1 = _mm512_dpbusd_epi32(a1, w[1], _mm512_set1_epi32(q[1]));
            a0 = _mm512_dpbusd_epi32(a0, w[2], _mm512_set1_epi32(q[2]));
            a1 = _mm512_dpbusd_epi32(a1, w[3], _mm512_set1_epi32(q[3]));
            if constexpr (SB == 1) {
                a0 = _mm512_dpbusd_epi32(a0, w[4], _mm512_set1_epi32(q[4]));
                a1 = _mm512_dpbusd_epi32(a1, w[5], _mm512_set1_epi32(q[5]));
                a0 = _mm512_dpbusd_epi32(a0, w[6], _mm512_set1_epi32(q[6]));
                a1 = _mm512_dpbusd_epi32(a1, w[7], _mm512_set1_epi32(q[7]));
                const __m512 p = _mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1));
                const __m512 sd = _mm512_mul_ps(_mm512_load_ps(sc), _mm512_set1_ps(xb.d));
                acc[j] = _mm512_fmadd_ps(sd, p, acc[j]);
                acc[j] = _mm512_fmadd_ps(_mm512_load_ps(sc + 16), _mm512_set1_ps(xb.s), acc[j]);
            } else {
                __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
                c0 = _mm512_dpbusd_epi32(c0, w[4], _mm512_set1_epi32(q[4]));
                c1 = _mm512_dpbusd_epi32(c1, w[5], _mm512_set1_epi32(q[5]));
                c0 = _mm512_dpbusd_epi32(c0, w[6], _mm512_set1_epi32(q[6]));
                c1 = _mm512_dpbusd_epi32(c1, w[7], _mm512_set1_epi32(q[7]));
                const __m512 dv = _mm512_set1_ps(xb.d);
                const __m512 p0 = _mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1));
                const __m512 p1 = _mm512_cvtepi32_ps(_mm512_add_epi32(c0, c1));
                acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(sc), dv), p0, acc[j]);
                acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(sc + 16), dv), p1, acc[j]);
                acc[j] = _mm512_fmadd_ps(_mm512_load_ps(sc + 32), _mm512_set1_ps(xb.s_half[0]), acc[j]);
                acc[j] = _mm512_fmadd_ps(_mm512_load_ps(sc + 48), _mm512_set1_ps(xb.s_half[1]), acc[j]);
            }
        }
    }
    for (int j = 0; j < NT; ++j) _mm512_storeu_ps(y + j * ldy, acc[j]);
}
#else
// AVX2 without VNNI: the same tiles, each group of four elements of the 16 rows read as two
// 256-bit halves (rows 0-7, rows 8-15), one half at a time (16 ymm registers). vpmaddubsw
// multiplies the unsigned u by the token's int8 values and adds pairs into int16, then
// vpmaddwd against ones adds pairs into int32. int16 must not saturate: with u <= 63 and
// |q| <= 127 a pair is at most 16002, and two groups' pairs added before widening 32004 <
// 32767. So the formats whose u fits in 6 bits take tile_tokens_half: its integer sums are
// exact and its float steps those of the AVX-512 kernel in the same order, so both give the
// same numbers. The 8-bit formats (q8_0, iq4_nl, iq4_xs: u up to 255, SB = 1) take
// tile_tokens_half_signed.
template <int SB, int NT>
void tile_tokens_half(const uint8_t* tile, int64_t nb, int half, const uint8_t* x, int64_t xrb, float* y,
                      int64_t ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* tb = tile + b * kBlockBytes<SB> + 32 * half;
        const float* sc = (const float*)(tile + b * kBlockBytes<SB> + 512) + 8 * half;
        for (int j = 0; j < NT; ++j) {
            const block_q8_halves& xb = ((const block_q8_halves*)(x + j * xrb))[b];
            int32_t q[8];
            memcpy(q, xb.qs, 32);
            // Elements 4k .. 4k + 7 of the block (groups k and k + 1), summed into int32.
            auto groups = [&](int k) {
                const __m256i p0 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i*)(tb + 64 * k)),
                                                        _mm256_set1_epi32(q[k]));
                const __m256i p1 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i*)(tb + 64 * (k + 1))),
                                                        _mm256_set1_epi32(q[k + 1]));
                return _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones);
            };
            const __m256i lo = _mm256_add_epi32(groups(0), groups(2));  // elements 0 .. 15
            const __m256i hi = _mm256_add_epi32(groups(4), groups(6));  // elements 16 .. 31
            if constexpr (SB == 1) {
                const __m256 p = _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi));
                const __m256 sd = _mm256_mul_ps(_mm256_load_ps(sc), _mm256_set1_ps(xb.d));
                acc[j] = _mm256_fmadd_ps(sd, p, acc[j]);
                acc[j] = _mm256_fmadd_ps(_mm256_load_ps(sc + 16), _mm256_set1_ps(xb.s), acc[j]);
            } else {
                const __m256 dv = _mm256_set1_ps(xb.d);
                acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(sc), dv), _mm256_cvtepi32_ps(lo), acc[j]);
                acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(sc + 16), dv), _mm256_cvtepi32_ps(hi), acc[j]);
                acc[j] = _mm256_fmadd_ps(_mm256_load_ps(sc + 32), _mm256_set1_ps(xb.s_half[0]), acc[j]);
                acc[j] = _mm256_fmadd_ps(_mm256_load_ps(sc + 48), _mm256_set1_ps(xb.s_half[1]), acc[j]);
            }
        }
    }
    for (int j = 0; j < NT; ++j) _mm256_storeu_ps(y + j * ldy + 8 * half, acc[j]);
}

// The 8-bit formats: s = u - 128 is a signed int8, and vpmaddubsw(|s|, sign(q, s)) forms
// s * q pairwise without saturating (2 * 128 * 127 = 32512), one group at a time. The
// sub-block then contributes scale * d * sum(s * q) + (offset + 128 * scale) * d * sum(q).
template <int NT>
void tile_tokens_half_signed(const uint8_t* tile, int64_t nb, int half, const uint8_t* x, int64_t xrb, float* y,
                             int64_t ldy) {
    const __m256i ones = _mm256_set1_epi16(1), bias = _mm256_set1_epi8((char)0x80);
    __m256 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* tb = tile + b * kBlockBytes<1> + 32 * half;
        const float* sc = (const float*)(tile + b * kBlockBytes<1> + 512) + 8 * half;
        const block_q8_halves* xb[NT];
        __m256i sum[NT];
        for (int j = 0; j < NT; ++j) {
            xb[j] = (const block_q8_halves*)(x + j * xrb) + b;
            sum[j] = _mm256_setzero_si256();
        }
        for (int k = 0; k < 8; ++k) {  // group k: s and |s| once, then every token
            const __m256i sw = _mm256_xor_si256(_mm256_load_si256((const __m256i*)(tb + 64 * k)), bias);
            const __m256i aw = _mm256_abs_epi8(sw);
            for (int j = 0; j < NT; ++j) {
                int32_t q4;
                memcpy(&q4, xb[j]->qs + 4 * k, 4);
                const __m256i qs = _mm256_sign_epi8(_mm256_set1_epi32(q4), sw);
                sum[j] = _mm256_add_epi32(sum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, qs), ones));
            }
        }
        const __m256 scale = _mm256_load_ps(sc);
        const __m256 offset = _mm256_fmadd_ps(scale, _mm256_set1_ps(128.0f), _mm256_load_ps(sc + 16));
        for (int j = 0; j < NT; ++j) {
            const __m256 sd = _mm256_mul_ps(scale, _mm256_set1_ps(xb[j]->d));
            acc[j] = _mm256_fmadd_ps(sd, _mm256_cvtepi32_ps(sum[j]), acc[j]);
            acc[j] = _mm256_fmadd_ps(offset, _mm256_set1_ps(xb[j]->s), acc[j]);
        }
    }
    for (int j = 0; j < NT; ++j) _mm256_storeu_ps(y + j * ldy + 8 * half, acc[j]);
}

template <int SB, int NT, bool kSigned>
void tile_tokens(const uint8_t* tile, int64_t nb, const uint8_t* x, int64_t xrb, float* y, int64_t ldy) {
    for (int half = 0; half < 2; ++half) {
        if constexpr (kSigned)
            tile_tokens_half_signed<NT>(tile, nb, half, x, xrb, y, ldy);
        else
            tile_tokens_half<SB, NT>(tile, nb, half, x, xrb, y, ldy);
    }
}
#endif

template <DType T>
void gemm_tiles(const uint8_t* w, int64_t K, int64_t r0, int64_t r1, const uint8_t* x, int64_t xrb, int64_t n_tok,
                float* y, int64_t ldy, uint8_t* tile) {
    constexpr int SB = Format<T>::SB;
    constexpr bool kS = T == DType::Q8_0 || T == DType::IQ4_NL || T == DType::IQ4_XS;  // u up to 255
    static_assert(!kS || SB == 1);
    const int64_t row_bytes = strata::row_bytes(T, K), nb = K / 32;
    for (int64_t rt = r0; rt + kRows <= r1; rt += kRows) {
        repack_tile<T>(w, row_bytes, K, rt, tile);
        int64_t t = 0;
        for (; t + 4 <= n_tok; t += 4) tile_tokens<SB, 4, kS>(tile, nb, x + t * xrb, xrb, y + t * ldy + rt, ldy);
        for (; t < n_tok; ++t) tile_tokens<SB, 1, kS>(tile, nb, x + t * xrb, xrb, y + t * ldy + rt, ldy);
    }
}

}  // namespace
#endif

bool gemm_supported(DType t) {
#if defined(__AVX2__)  // AVX-512 VNNI builds, and AVX2 (tile_tokens_half / _signed)
    switch (t) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::IQ4_NL: case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K:
        case DType::Q6_K: case DType::IQ4_XS:
            return true;
        default: return false;
    }
#else
    (void)t;
    return false;
#endif
}

void gemm_rows(DType t, const uint8_t* w, int64_t K, int64_t r0, int64_t r1, const uint8_t* x, int64_t xrb,
               int64_t n_tok, float* y, int64_t ldy, uint8_t* tile) {
#if defined(__AVX2__)
    switch (t) {
#define STRATA_GEMM(T) case DType::T: gemm_tiles<DType::T>(w, K, r0, r1, x, xrb, n_tok, y, ldy, tile); return;
        STRATA_GEMM(Q4_0) STRATA_GEMM(Q4_1) STRATA_GEMM(Q5_0) STRATA_GEMM(Q5_1) STRATA_GEMM(Q8_0)
        STRATA_GEMM(IQ4_NL) STRATA_GEMM(Q2_K) STRATA_GEMM(Q3_K) STRATA_GEMM(Q4_K) STRATA_GEMM(Q5_K)
        STRATA_GEMM(Q6_K) STRATA_GEMM(IQ4_XS)
#undef STRATA_GEMM
        default: return;
    }
#else
    (void)t, (void)w, (void)K, (void)r0, (void)r1, (void)x, (void)xrb, (void)n_tok, (void)y, (void)ldy, (void)tile;
#endif
}

}  // namespace strata::cpu::STRATA_ISA
