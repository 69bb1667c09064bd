// Scalar dequantization of one row: the reference every SIMD path and every backend is
// tested against (and the `gguf` package's NumPy dequantizers are the reference for this).
//
// Functions are `static inline` on purpose: this header is compiled into kernels built
// for several instruction sets, and internal linkage keeps each build's copy its own.
#pragma once

#include <stdint.h>

#include "blocks.h"

namespace strata::quants {

static inline void dequantize_row_q4_0(const block_q4_0* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK4_0; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; ++j) {
            y[i * QK4_0 + j] = ((b[i].qs[j] & 0x0F) - 8) * d;
            y[i * QK4_0 + j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static inline void dequantize_row_q4_1(const block_q4_1* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK4_1; ++i) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int j = 0; j < QK4_1 / 2; ++j) {
            y[i * QK4_1 + j] = (b[i].qs[j] & 0x0F) * d + m;
            y[i * QK4_1 + j + QK4_1 / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void dequantize_row_q5_0(const block_q5_0* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK5_0; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        const uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < QK5_0 / 2; ++j) {
            const int lo = (b[i].qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
            const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            y[i * QK5_0 + j] = (lo - 16) * d;
            y[i * QK5_0 + j + QK5_0 / 2] = (hi - 16) * d;
        }
    }
}

static inline void dequantize_row_q5_1(const block_q5_1* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK5_1; ++i) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        const uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < QK5_1 / 2; ++j) {
            const int lo = (b[i].qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
            const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            y[i * QK5_1 + j] = lo * d + m;
            y[i * QK5_1 + j + QK5_1 / 2] = hi * d + m;
        }
    }
}

static inline void dequantize_row_q8_0(const block_q8_0* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK8_0; ++j) y[i * QK8_0 + j] = b[i].qs[j] * d;
    }
}

static inline void dequantize_row_iq4_nl(const block_iq4_nl* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK4_NL; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK4_NL / 2; ++j) {
            y[i * QK4_NL + j] = d * kvalues_iq4nl[b[i].qs[j] & 0x0F];
            y[i * QK4_NL + j + QK4_NL / 2] = d * kvalues_iq4nl[b[i].qs[j] >> 4];
        }
    }
}

// ---- super-block formats --------------------------------------------------------------
// The arithmetic follows gguf.quants (and ggml) operation by operation: sub-block scale
// first (d * sc), then times the quant, then minus the sub-block minimum, all in fp32, so
// the results are identical bit for bit. A compiler may fuse `dl * q - ml` (q2_K, q4_K,
// q5_K) into an FMA; that changes nothing, because dl * q is exact in fp32 (an fp16 d has
// at most 11 significant bits, sc at most 6 and q at most 5: 22 in all), so the single
// rounding is the same. The other formats only multiply.

// Unpack the 8 six-bit scales and 8 six-bit mins of a q4_K / q5_K block.
static inline void get_scale_min_k4(const uint8_t* s, uint8_t* sc, uint8_t* m) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

// Unpack the 16 six-bit scales of a q3_K block (without the -32 offset).
static inline void get_scales_q3_K(const uint8_t* s, uint8_t* sc) {
    for (int i = 0; i < 16; ++i) {
        const int lo = i < 8 ? (s[i] & 0x0F) : (s[i - 8] >> 4);
        const int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        sc[i] = (uint8_t)(lo | (hi << 4));
    }
}

static inline void dequantize_row_q2_K(const block_q2_K* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, s = (e / 32) & 3, l = e & 31;
            const uint8_t sc = b[i].scales[e / 16];
            const float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
            const int q = (b[i].qs[32 * h + l] >> (2 * s)) & 3;
            y[e] = dl * (float)q - ml;
        }
    }
}

static inline void dequantize_row_q3_K(const block_q3_K* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_fp32(b[i].d);
        uint8_t sc[16];
        get_scales_q3_K(b[i].scales, sc);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, s = (e / 32) & 3, l = e & 31;
            const float dl = d * (float)((int)sc[e / 16] - 32);
            const int lo = (b[i].qs[32 * h + l] >> (2 * s)) & 3;
            const int hbit = (b[i].hmask[l] >> (e / 32)) & 1;
            y[e] = dl * (float)(lo - (hbit ? 0 : 4));
        }
    }
}

static inline void dequantize_row_q4_K(const block_q4_K* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
        uint8_t sc[8], m[8];
        get_scale_min_k4(b[i].scales, sc, m);
        for (int j = 0; j < 8; ++j) {
            const float dl = d * (float)sc[j], ml = dmin * (float)m[j];
            const uint8_t* q = b[i].qs + 32 * (j / 2);
            const int shift = 4 * (j & 1);
            for (int l = 0; l < 32; ++l) y[32 * j + l] = dl * (float)((q[l] >> shift) & 0x0F) - ml;
        }
    }
}

static inline void dequantize_row_q5_K(const block_q5_K* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
        uint8_t sc[8], m[8];
        get_scale_min_k4(b[i].scales, sc, m);
        for (int j = 0; j < 8; ++j) {
            const float dl = d * (float)sc[j], ml = dmin * (float)m[j];
            const uint8_t* q = b[i].qs + 32 * (j / 2);
            const int shift = 4 * (j & 1);
            for (int l = 0; l < 32; ++l) {
                const int v = ((q[l] >> shift) & 0x0F) | (((b[i].qh[l] >> j) & 1) << 4);
                y[32 * j + l] = dl * (float)v - ml;
            }
        }
    }
}

static inline void dequantize_row_q6_K(const block_q6_K* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_fp32(b[i].d);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, k = e & 127;
            const int lo = (b[i].ql[64 * h + (k & 63)] >> (4 * (k / 64))) & 0x0F;
            const int hi = (b[i].qh[32 * h + (k & 31)] >> (2 * (k / 32))) & 3;
            const float dl = d * (float)b[i].scales[e / 16];
            y[e] = dl * (float)((lo | (hi << 4)) - 32);
        }
    }
}

static inline void dequantize_row_iq4_xs(const block_iq4_xs* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < 8; ++j) {
            const int ls = ((b[i].scales_l[j / 2] >> (4 * (j & 1))) & 0x0F) |
                           (((b[i].scales_h >> (2 * j)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            const uint8_t* q = b[i].qs + 16 * j;
            for (int l = 0; l < 16; ++l) {
                y[32 * j + l] = dl * (float)kvalues_iq4nl[q[l] & 0x0F];
                y[32 * j + l + 16] = dl * (float)kvalues_iq4nl[q[l] >> 4];
            }
        }
    }
}

static inline void dequantize_row_f16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

static inline void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

}  // namespace strata::quants
