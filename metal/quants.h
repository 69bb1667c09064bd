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

// ---- dequantization, 16 elements at a time ---------------------------------------------
// dequant16_<type>(row, g, v): elements 16*g .. 16*g + 15 of a row of blocks into v[0..15],
// with csrc/quants/dequant.h's float operations in its order (d * sc first, then times the
// quant, then minus the min), so the values are bit-identical to the CPU's and the gguf
// package's. Sixteen is the finest granularity every format shares (half a 32-block; one
// scale of q2_K / q3_K / q6_K). Used by embedding.metal (token rows) and matmul.metal
// (weight tiles).

static inline void dequant16_q8_0(device const uchar* row, int g, thread float* v) {
    device const block_q8_0& b = ((device const block_q8_0*)row)[g >> 1];
    const float d = (float)b.d;
    device const int8_t* q = b.qs + 16 * (g & 1);
    for (int i = 0; i < 16; ++i) v[i] = (float)q[i] * d;
}

// Nibble layout of q4_0 / q4_1 / q5_* / iq4_nl: element i < 16 is the low nibble of qs[i],
// element i + 16 the high one; group g & 1 picks the nibble.
static inline void dequant16_q4_0(device const uchar* row, int g, thread float* v) {
    device const block_q4_0& b = ((device const block_q4_0*)row)[g >> 1];
    const float d = (float)b.d;
    const int sh = 4 * (g & 1);
    for (int i = 0; i < 16; ++i) v[i] = (float)((int)((b.qs[i] >> sh) & 0x0F) - 8) * d;
}

static inline void dequant16_q4_1(device const uchar* row, int g, thread float* v) {
    device const block_q4_1& b = ((device const block_q4_1*)row)[g >> 1];
    const float d = (float)b.d, m = (float)b.m;
    const int sh = 4 * (g & 1);
    for (int i = 0; i < 16; ++i) v[i] = (float)((b.qs[i] >> sh) & 0x0F) * d + m;
}

// The 5th bit of element j of a q5_0 / q5_1 block: bit j of the little-endian uint32 qh.
static inline int q5_high_bit(device const uint8_t* qh, int j) { return ((qh[j >> 3] >> (j & 7)) & 1) << 4; }

static inline void dequant16_q5_0(device const uchar* row, int g, thread float* v) {
    device const block_q5_0& b = ((device const block_q5_0*)row)[g >> 1];
    const float d = (float)b.d;
    const int h = g & 1, sh = 4 * h;
    for (int i = 0; i < 16; ++i)
        v[i] = (float)(((int)((b.qs[i] >> sh) & 0x0F) | q5_high_bit(b.qh, 16 * h + i)) - 16) * d;
}

static inline void dequant16_q5_1(device const uchar* row, int g, thread float* v) {
    device const block_q5_1& b = ((device const block_q5_1*)row)[g >> 1];
    const float d = (float)b.d, m = (float)b.m;
    const int h = g & 1, sh = 4 * h;
    for (int i = 0; i < 16; ++i)
        v[i] = (float)((int)((b.qs[i] >> sh) & 0x0F) | q5_high_bit(b.qh, 16 * h + i)) * d + m;
}

static inline void dequant16_iq4_nl(device const uchar* row, int g, thread float* v) {
    device const block_iq4_nl& b = ((device const block_iq4_nl*)row)[g >> 1];
    const float d = (float)b.d;
    const int sh = 4 * (g & 1);
    for (int i = 0; i < 16; ++i) v[i] = d * (float)kvalues_iq4nl[(b.qs[i] >> sh) & 0x0F];
}

// Super-block formats: group g is 16-element group g & 15 of super-block g >> 4; element
// e = 16 * (g & 15) + i lies in 32-element sub-block j = e / 32 at l = e % 32.
static inline void dequant16_q2_K(device const uchar* row, int g, thread float* v) {
    device const block_q2_K& b = ((device const block_q2_K*)row)[g >> 4];
    const int gi = g & 15, j = gi >> 1, l0 = 16 * (gi & 1);
    const int sc = b.scales[gi];
    const float dl = (float)b.d * (float)(sc & 0x0F), ml = (float)b.dmin * (float)(sc >> 4);
    device const uint8_t* q = b.qs + 32 * (j >> 2) + l0;
    const int sh = 2 * (j & 3);
    for (int i = 0; i < 16; ++i) v[i] = dl * (float)((q[i] >> sh) & 3) - ml;
}

static inline void dequant16_q3_K(device const uchar* row, int g, thread float* v) {
    device const block_q3_K& b = ((device const block_q3_K*)row)[g >> 4];
    const int gi = g & 15, j = gi >> 1, l0 = 16 * (gi & 1);
    const float dl = (float)b.d * (float)scale_q3_K(b.scales, gi);
    device const uint8_t* q = b.qs + 32 * (j >> 2) + l0;
    const int sh = 2 * (j & 3);
    for (int i = 0; i < 16; ++i) {
        const int lo = (q[i] >> sh) & 3, hbit = (b.hmask[l0 + i] >> j) & 1;
        v[i] = dl * (float)(lo - (hbit ? 0 : 4));
    }
}

static inline void dequant16_q4_K(device const uchar* row, int g, thread float* v) {
    device const block_q4_K& b = ((device const block_q4_K*)row)[g >> 4];
    const int gi = g & 15, j = gi >> 1, l0 = 16 * (gi & 1);
    int sc, m;
    scale_min_k4(b.scales, j, sc, m);
    const float dl = (float)b.d * (float)sc, ml = (float)b.dmin * (float)m;
    device const uint8_t* q = b.qs + 32 * (j >> 1) + l0;
    const int sh = 4 * (j & 1);
    for (int i = 0; i < 16; ++i) v[i] = dl * (float)((q[i] >> sh) & 0x0F) - ml;
}

static inline void dequant16_q5_K(device const uchar* row, int g, thread float* v) {
    device const block_q5_K& b = ((device const block_q5_K*)row)[g >> 4];
    const int gi = g & 15, j = gi >> 1, l0 = 16 * (gi & 1);
    int sc, m;
    scale_min_k4(b.scales, j, sc, m);
    const float dl = (float)b.d * (float)sc, ml = (float)b.dmin * (float)m;
    device const uint8_t* q = b.qs + 32 * (j >> 1) + l0;
    const int sh = 4 * (j & 1);
    for (int i = 0; i < 16; ++i)
        v[i] = dl * (float)((int)((q[i] >> sh) & 0x0F) | (((b.qh[l0 + i] >> j) & 1) << 4)) - ml;
}

static inline void dequant16_q6_K(device const uchar* row, int g, thread float* v) {
    device const block_q6_K& b = ((device const block_q6_K*)row)[g >> 4];
    const int gi = g & 15, e0 = 16 * gi, h = e0 >> 7, k0 = e0 & 127;  // k0 % 16 == 0
    const float dl = (float)b.d * (float)b.scales[gi];
    device const uint8_t* ql = b.ql + 64 * h + (k0 & 63);
    device const uint8_t* qh = b.qh + 32 * h + (k0 & 31);
    const int lsh = 4 * (k0 >> 6), hsh = 2 * (k0 >> 5);
    for (int i = 0; i < 16; ++i) {
        const int q = (int)((ql[i] >> lsh) & 0x0F) | (int)(((qh[i] >> hsh) & 3) << 4);
        v[i] = dl * (float)(q - 32);
    }
}

static inline void dequant16_iq4_xs(device const uchar* row, int g, thread float* v) {
    device const block_iq4_xs& b = ((device const block_iq4_xs*)row)[g >> 4];
    const int gi = g & 15, j = gi >> 1;
    const float dl = (float)b.d * (float)scale_iq4_xs(b, j);
    device const uint8_t* q = b.qs + 16 * j;
    const int sh = 4 * (gi & 1);
    for (int i = 0; i < 16; ++i) v[i] = dl * (float)kvalues_iq4nl[(q[i] >> sh) & 0x0F];
}
