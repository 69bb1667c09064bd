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

// strata's own activation format for integer dot products against 32-element weight
// blocks. Unlike ggml's q8_0/q8_1 activations it keeps the scale and the scaled sum in
// fp32, which removes one rounding step (strata aims to be closer to exact math).
struct block_q8_act {
    float d;               // scale: x ~= d * qs
    float s;               // d * sum(qs), used by weight formats with a minimum (q4_1, q5_1)
    int8_t qs[32];
};
static_assert(sizeof(block_q8_act) == 40, "q8_act layout");

}  // namespace strata::quants
