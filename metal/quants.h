// Block decoding shared by the shaders (MSL only; the host never includes it): the iq4_nl
// value grid and the unpacking of the K formats' sub-block scales. matvec.metal multiplies
// in integers with these; embedding.metal and matmul.metal dequantize with them.
// Reference: csrc/quants/dequant.h (get_scale_min_k4, get_scales_q3_K, dequantize_row_*).
//
// Like strata_args.h this is inlined once into the embedded source (embed_metal.cmake), so
// every name here exists once in the whole library.
#pragma once

#include "strata_args.h"

constant int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

// Six-bit scale and min of sub-block j (0..7) of q4_K / q5_K.
static inline void scale_min_k4(device const uint8_t* s, int j, thread int& sc, thread int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Scale i (0..15, one per 16 elements) of q3_K, with its offset: sc - 32.
static inline int scale_q3_K(device const uint8_t* s, int i) {
    const int lo = i < 8 ? (s[i] & 0x0F) : (s[i - 8] >> 4);
    const int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

// Scale of sub-block j (0..7) of iq4_xs, with its offset: ls - 32.
static inline int scale_iq4_xs(device const block_iq4_xs& b, int j) {
    const int lo = (b.scales_l[j >> 1] >> (4 * (j & 1))) & 0x0F;
    const int hi = (b.scales_h >> (2 * j)) & 3;
    return (lo | (hi << 4)) - 32;
}

// bfloat16 (the upper half of an IEEE float) to float: exact.
static inline float bf16_to_f32(ushort b) { return as_type<float>((uint)b << 16); }
