// Sub-block scale unpacking of the 256-element super-block formats, shared by their dot
// products (quant_dot_k.cpp: scalar and NEON; quant_dot_k_avx2.cpp: AVX2 and up). Internal
// linkage, as quant_simd.h.
#pragma once

#include <stddef.h>

#include "quant_simd.h"

namespace strata::cpu::STRATA_ISA {

using namespace quants;

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

// The header of a q4_K / q5_K super-block at b (the two layouts share it): the fp16 d and
// dmin, and the scales and mins unpacked as above.
static inline void read_q45_K_header(const uint8_t* b, uint16_t* d16, uint16_t* dmin16, uint32_t u[4]) {
    memcpy(d16, b, 2);
    memcpy(dmin16, b + 2, 2);
    unpack_k4_scales(b + 4, u);
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

}  // namespace strata::cpu::STRATA_ISA
