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

static inline void dequantize_row_f16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

static inline void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

}  // namespace strata::quants
