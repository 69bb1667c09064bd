// GGUF/GGML quantized block layouts and scalar fp16/bf16 conversion.
//
// Plain C-compatible structs: this one header is meant to be included by every backend
// (CPU C++, CUDA .cu, and — through the same field layout — Metal shaders), so the byte
// layout of a block is written down exactly once. Layouts match ggml-common.h byte for byte.
#pragma once

#include <stdint.h>
#include <string.h>

namespace strata::quants {

// ---- scalar half / bfloat16 conversion (reference; SIMD paths use F16C etc.) ----------

static inline float fp16_to_fp32(uint16_t h) {
    // Handles subnormals, infinities and NaN exactly (IEEE 754 binary16 -> binary32).
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                --exp;
            }
            mant &= 0x3FFu;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t fp32_to_fp16(float f) {
    // Round to nearest even, as F16C's _mm_cvtps_ph(…, 0) and ggml's reference do.
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t absx = x & 0x7FFFFFFFu;
    if (absx > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);  // NaN
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); // overflow -> inf
    if (absx < 0x38800000u) {                                   // subnormal or zero
        if (absx < 0x33000000u) return (uint16_t)sign;
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126 - e;  // 14 + (113 - e)
        uint32_t r = m >> (shift);
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000u;  // rebias exponent 127 -> 15 (<<23 vs <<10)
    const uint32_t rem = r & 0x1FFFu;
    r >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
}

static inline float bf16_to_fp32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// ---- block formats --------------------------------------------------------------------

constexpr int QK4_0 = 32;
struct block_q4_0 {
    uint16_t d;              // fp16 scale
    uint8_t qs[QK4_0 / 2];   // nibbles: low nibble = element j, high nibble = element j+16
};
static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");

constexpr int QK4_1 = 32;
struct block_q4_1 {
    uint16_t d;  // fp16 scale
    uint16_t m;  // fp16 minimum
    uint8_t qs[QK4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");

constexpr int QK5_0 = 32;
struct block_q5_0 {
    uint16_t d;
    uint8_t qh[4];  // 5th bit of each of the 32 elements
    uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");

constexpr int QK5_1 = 32;
struct block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");

constexpr int QK8_0 = 32;
struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");

// ---- super-block ("K") formats: 256 elements per block ---------------------------------
// Scales of sub-blocks are themselves quantized and multiplied by the fp16 super-block
// scale(s) d (and dmin for formats with a minimum).

constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

// 16 sub-blocks of 16: x = d * (scales[i] & 15) * q - dmin * (scales[i] >> 4), q in 0..3.
struct block_q2_K {
    uint8_t scales[QK_K / 16];  // low nibble: scale, high nibble: min, per 16 elements
    uint8_t qs[QK_K / 4];       // 2-bit quants: element 128*h + 32*s + l is (qs[32*h + l] >> 2s) & 3
    uint16_t d;                 // fp16 super-block scale of the scales
    uint16_t dmin;              // fp16 super-block scale of the mins
};
static_assert(sizeof(block_q2_K) == 84, "q2_K layout");

// 16 sub-blocks of 16: x = d * (sc[i] - 32) * (q - 4 * !hbit), q the low 2 bits.
struct block_q3_K {
    uint8_t hmask[QK_K / 8];  // high bit: element 32*j + l is bit j of hmask[l]
    uint8_t qs[QK_K / 4];     // low 2 bits, laid out as q2_K's
    uint8_t scales[12];       // 16 6-bit scales: low 4 bits in bytes 0..7, high 2 in 8..11
    uint16_t d;               // fp16 super-block scale
};
static_assert(sizeof(block_q3_K) == 110, "q3_K layout");

// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], q in 0..15, 6-bit sc and m.
struct block_q4_K {
    uint16_t d;                     // fp16 super-block scale of the scales
    uint16_t dmin;                  // fp16 super-block scale of the mins
    uint8_t scales[K_SCALE_SIZE];   // 8 scales + 8 mins, 6 bits each (see get_scale_min_k4)
    uint8_t qs[QK_K / 2];           // element 64*c + 32*h + l is (qs[32*c + l] >> 4h) & 15
};
static_assert(sizeof(block_q4_K) == 144, "q4_K layout");

// As q4_K with a 5th bit: element 32*j + l has bit j of qh[l] as bit 4 of q.
struct block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 176, "q5_K layout");

// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q in 0..63.
struct block_q6_K {
    uint8_t ql[QK_K / 2];      // low 4 bits: element 128*h + 64*s + l is (ql[64*h + l] >> 4s) & 15
    uint8_t qh[QK_K / 4];      // high 2 bits: element 128*h + 32*s + l is (qh[32*h + l] >> 2s) & 3
    int8_t scales[QK_K / 16];  // 8-bit signed scales
    uint16_t d;                // fp16 super-block scale
};
static_assert(sizeof(block_q6_K) == 210, "q6_K layout");

// ---- non-linear 4-bit formats ---------------------------------------------------------
// A 4-bit index into kvalues_iq4nl (a fixed non-uniform grid) times a scale.
static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

constexpr int QK4_NL = 32;
struct block_iq4_nl {
    uint16_t d;               // fp16 scale
    uint8_t qs[QK4_NL / 2];   // indices, nibble layout as q4_0
};
static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl layout");

// 8 sub-blocks of 32 with 6-bit signed scales (ls - 32) under one fp16 d.
struct block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;          // high 2 bits of scale j at bits 2j..2j+1
    uint8_t scales_l[QK_K / 64];// low 4 bits of scale j: nibble (j & 1) of byte j / 2
    uint8_t qs[QK_K / 2];       // sub-block j: nibble layout as q4_0 over qs[16*j .. 16*j+15]
};
static_assert(sizeof(block_iq4_xs) == 136, "iq4_xs layout");

// strata's own activation format for integer dot products against 32-element weight
// blocks. Unlike ggml's q8_0/q8_1 activations it keeps the scale and the scaled sum in
// fp32, which removes one rounding step (strata aims to be closer to exact math).
struct block_q8_act {
    float d;               // scale: x ~= d * qs
    float s;               // d * sum(qs), used by weight formats with a minimum (q4_1, q5_1)
    int8_t qs[32];
};
static_assert(sizeof(block_q8_act) == 40, "q8_act layout");

// strata's activation format for the prefill tile matmul (CPU, kernels/gemm_vnni.cpp):
// block_q8_act's numbers plus the scaled sums of each half, for weight formats whose
// scales change every 16 elements (q2_K, q3_K, q6_K). 48 bytes keep qs 16-byte aligned.
struct block_q8_halves {
    float d;         // scale: x ~= d * qs
    float s;         // d * sum(qs)
    float s_half[2]; // d * sum(qs[0..15]), d * sum(qs[16..31])
    int8_t qs[32];
};
static_assert(sizeof(block_q8_halves) == 48, "q8_halves layout");

// strata's activation format for integer dot products against 256-element super-blocks
// (like ggml's block_q8_K: one fp32 scale and the sums of each 16 quants, used by the
// formats with a minimum or an offset).
struct block_q8_256 {
    float d;                   // scale: x ~= d * qs
    int16_t bsums[QK_K / 16];  // sum of qs[16*i .. 16*i+15]
    int8_t qs[QK_K];
};
static_assert(sizeof(block_q8_256) == 292, "q8_256 layout");

}  // namespace strata::quants
