// GGUF weight blocks on the device: for every supported type, two primitives over one row.
//
//   deq8(row, e, y):   y[0..8) = elements e .. e+7 of the row as f32 (e a multiple of 8).
//                      Used by embedding, the prefill tile loaders and the f32 matvec.
//   dot32(row, c, x, xd, xs): the contribution of elements 32c .. 32c+31 of the row against
//                      one 32-element chunk of an ActQ8 activation (8 words of int8 quants,
//                      scale xd, packed 16-element sums xs), in integers with __dp4a.
//                      Used by the decode matvec; quantized types only.
//
// The formulas transcribe csrc/quants/dequant.h (the scalar reference) element by element,
// and the integer dots follow csrc/backends/cpu/kernels/quant_dot*.cpp: a format's offset
// or minimum is applied through the activation sums. Block layouts come from
// csrc/quants/blocks.h; the static_asserts below pin the byte offsets used here.
//
// Alignment: every weight is uploaded at a 256-byte aligned address, so a block starts at a
// multiple of gcd(256, block bytes): 2 for q4_0, q5_0, q8_0, iq4_nl, q3_K, q6_K; 4 for q4_1,
// q5_1, q2_K; 8 for iq4_xs; 16 for q4_K, q5_K. Word loads are split into 16-bit loads where
// a field is only 2-byte aligned.
#pragma once

#include <cuda_fp16.h>
#include <stddef.h>
#include <stdint.h>

#include "../../core/dtype.h"
#include "../../quants/blocks.h"

namespace strata::cuda {

namespace qb = strata::quants;

static_assert(offsetof(qb::block_q4_0, qs) == 2);
static_assert(offsetof(qb::block_q4_1, m) == 2 && offsetof(qb::block_q4_1, qs) == 4);
static_assert(offsetof(qb::block_q5_0, qh) == 2 && offsetof(qb::block_q5_0, qs) == 6);
static_assert(offsetof(qb::block_q5_1, qh) == 4 && offsetof(qb::block_q5_1, qs) == 8);
static_assert(offsetof(qb::block_q8_0, qs) == 2);
static_assert(offsetof(qb::block_iq4_nl, qs) == 2);
static_assert(offsetof(qb::block_q2_K, qs) == 16 && offsetof(qb::block_q2_K, d) == 80 &&
              offsetof(qb::block_q2_K, dmin) == 82);
static_assert(offsetof(qb::block_q3_K, qs) == 32 && offsetof(qb::block_q3_K, scales) == 96 &&
              offsetof(qb::block_q3_K, d) == 108);
static_assert(offsetof(qb::block_q4_K, scales) == 4 && offsetof(qb::block_q4_K, qs) == 16);
static_assert(offsetof(qb::block_q5_K, scales) == 4 && offsetof(qb::block_q5_K, qh) == 16 &&
              offsetof(qb::block_q5_K, qs) == 48);
static_assert(offsetof(qb::block_q6_K, qh) == 128 && offsetof(qb::block_q6_K, scales) == 192 &&
              offsetof(qb::block_q6_K, d) == 208);
static_assert(offsetof(qb::block_iq4_xs, scales_h) == 2 && offsetof(qb::block_iq4_xs, scales_l) == 4 &&
              offsetof(qb::block_iq4_xs, qs) == 8);

// kvalues_iq4nl of blocks.h, as constants the device can use (checked equal at load).
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

// ---- loads -----------------------------------------------------------------------------
__device__ __forceinline__ float h2f(uint32_t h) { return __half2float(__ushort_as_half((unsigned short)h)); }
__device__ __forceinline__ uint32_t ld16(const uint8_t* p) { return *(const uint16_t*)p; }
__device__ __forceinline__ uint32_t ld32(const uint8_t* p) { return *(const uint32_t*)p; }
__device__ __forceinline__ uint32_t ld32a2(const uint8_t* p) { return ld16(p) | (ld16(p + 2) << 16); }
template <int Align>
__device__ __forceinline__ uint32_t ldw(const uint8_t* p) {
    if constexpr (Align >= 4) return ld32(p);
    else return ld32a2(p);
}

// Byte sources of one 32-element block for the dot formulas below (offsets are compile-time
// constants once inlined): the block in device memory (MemBlock, the decode matvec of
// matvec.cu), or its bytes already in registers (RegBlock: v[0] holds bytes 0..3, loaded
// by matvec_wide.cu with 16-byte loads). Same formula, same value, either way.
struct MemBlock {
    const uint8_t* b;
    __device__ __forceinline__ uint32_t u16(int off) const { return ld16(b + off); }
    __device__ __forceinline__ uint32_t u32a2(int off) const { return ld32a2(b + off); }  // 2-byte aligned
    __device__ __forceinline__ uint32_t u32(int off) const { return ld32(b + off); }      // 4-byte aligned
};
template <int N>
struct RegBlock {
    uint32_t v[N];
    __device__ __forceinline__ uint32_t u16(int off) const {
        return (off & 2) ? v[off >> 2] >> 16 : v[off >> 2] & 0xFFFFu;
    }
    __device__ __forceinline__ uint32_t u32(int off) const {
        return (off & 3) ? __funnelshift_r(v[off >> 2], v[(off >> 2) + 1], 8 * (off & 3)) : v[off >> 2];
    }
    __device__ __forceinline__ uint32_t u32a2(int off) const { return u32(off); }
};

// Bits 0..3 of t to bit 0 of bytes 0..3.
__device__ __forceinline__ uint32_t spread4(uint32_t t) { return (t * 0x00204081u) & 0x01010101u; }

// Four iq4_nl indices (one per byte, 0..15) to their four int8 grid values.
__device__ __forceinline__ uint32_t iq4nl_lookup4(uint32_t nib) {
    constexpr auto pack = [](int a, int b, int c, int d) constexpr {
        return (uint32_t)(uint8_t)a | ((uint32_t)(uint8_t)b << 8) | ((uint32_t)(uint8_t)c << 16) |
               ((uint32_t)(uint8_t)d << 24);
    };
    constexpr uint32_t t0 = pack(kIq4nlValues[0], kIq4nlValues[1], kIq4nlValues[2], kIq4nlValues[3]);
    constexpr uint32_t t1 = pack(kIq4nlValues[4], kIq4nlValues[5], kIq4nlValues[6], kIq4nlValues[7]);
    constexpr uint32_t t2 = pack(kIq4nlValues[8], kIq4nlValues[9], kIq4nlValues[10], kIq4nlValues[11]);
    constexpr uint32_t t3 = pack(kIq4nlValues[12], kIq4nlValues[13], kIq4nlValues[14], kIq4nlValues[15]);
    // Selector nibble k = low 3 bits of index k; bit 3 chooses the upper half of the table.
    const uint32_t sel = (nib & 0x7u) | ((nib >> 4) & 0x70u) | ((nib >> 8) & 0x700u) | ((nib >> 12) & 0x7000u);
    const uint32_t lo = __byte_perm(t0, t1, sel);
    const uint32_t hi = __byte_perm(t2, t3, sel);
    const uint32_t m = ((nib >> 3) & 0x01010101u) * 0xFFu;
    return (lo & ~m) | (hi & m);
}

__device__ __forceinline__ int dp4a(uint32_t a, int b, int c) { return __dp4a((int)a, b, c); }

// Activation chunk sums: first and second 16 quants.
__device__ __forceinline__ int sum_lo(int32_t s) { return (int)(int16_t)(s & 0xFFFF); }
__device__ __forceinline__ int sum_hi(int32_t s) { return s >> 16; }

// q4_K / q5_K: scale and minimum of sub-block j (0..7), as get_scale_min_k4.
__device__ __forceinline__ void scale_min_k4(const uint8_t* s, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}
// q3_K: scale i (0..15) without the -32 offset, as get_scales_q3_K.
__device__ __forceinline__ int scale_q3(const uint8_t* s, int i) {
    const int lo = i < 8 ? (s[i] & 0x0F) : (s[i - 8] >> 4);
    const int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    return lo | (hi << 4);
}
// iq4_xs: scale of sub-block j minus 32.
__device__ __forceinline__ int scale_iq4_xs(const uint8_t* b, int j) {
    const uint32_t sh = ld16(b + 2);
    return (((b[4 + (j >> 1)] >> (4 * (j & 1))) & 0x0F) | (((sh >> (2 * j)) & 3) << 4)) - 32;
}

template <DType T>
struct QT;

// ---- float types ---------------------------------------------------------------------
template <>
struct QT<DType::F32> {
    static constexpr bool kFloat = true;
    __device__ static float elem(const uint8_t* row, int e) { return ((const float*)row)[e]; }
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const float* p = (const float*)row + e;
        if (((uintptr_t)p & 15) == 0) {
            const float4 a = ((const float4*)p)[0], b = ((const float4*)p)[1];
            y[0] = a.x; y[1] = a.y; y[2] = a.z; y[3] = a.w;
            y[4] = b.x; y[5] = b.y; y[6] = b.z; y[7] = b.w;
        } else {
#pragma unroll
            for (int k = 0; k < 8; ++k) y[k] = p[k];
        }
    }
};

template <>
struct QT<DType::F16> {
    static constexpr bool kFloat = true;
    __device__ static float elem(const uint8_t* row, int e) { return h2f(((const uint16_t*)row)[e]); }
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint16_t* p = (const uint16_t*)row + e;
        if (((uintptr_t)p & 15) == 0) {
            const uint4 v = *(const uint4*)p;
            const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                y[2 * k] = h2f(w[k] & 0xFFFFu);
                y[2 * k + 1] = h2f(w[k] >> 16);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 8; ++k) y[k] = h2f(p[k]);
        }
    }
};

template <>
struct QT<DType::BF16> {
    static constexpr bool kFloat = true;
    __device__ static float elem(const uint8_t* row, int e) {
        return __uint_as_float((uint32_t)((const uint16_t*)row)[e] << 16);
    }
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint16_t* p = (const uint16_t*)row + e;
        if (((uintptr_t)p & 15) == 0) {
            const uint4 v = *(const uint4*)p;
            const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                y[2 * k] = __uint_as_float(w[k] << 16);
                y[2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 8; ++k) y[k] = __uint_as_float((uint32_t)p[k] << 16);
        }
    }
};

// ---- 32-element block types ------------------------------------------------------------
// Elements j < 16 of a block are the low nibbles of qs[j], elements j >= 16 the high
// nibbles of qs[j - 16]: 8 elements from e (j = e % 32 in {0, 8, 16, 24}) are bytes
// qs[j % 16 ..] shifted by 0 or 4.

template <>
struct QT<DType::Q4_0> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 18;
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 5) * kBytes;
        deq8_qs<2>(h2f(ld16(b)), b + 2, e & 31, y);
    }
    // Elements j .. j+7 of a block from its scale and its quants (Align: qs's alignment).
    template <int Align>
    __device__ static void deq8_qs(float d, const uint8_t* qs, int j, float* y) {
        const int sh = (j >> 4) * 4;
        const uint32_t w0 = ldw<Align>(qs + (j & 15)), w1 = ldw<Align>(qs + 4 + (j & 15));
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            y[k] = (float)((int)((w0 >> (8 * k + sh)) & 15) - 8) * d;
            y[4 + k] = (float)((int)((w1 >> (8 * k + sh)) & 15) - 8) * d;
        }
    }
    template <class B>
    __device__ static float dotb(const B& b, const int* x, float xd, int32_t xs) {
        const float d = h2f(b.u16(0));
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = b.u32a2(2 + 4 * k);
            sumi = dp4a(w & 0x0F0F0F0Fu, x[k], sumi);
            sumi = dp4a((w >> 4) & 0x0F0F0F0Fu, x[4 + k], sumi);
        }
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi - 8.0f * d * s;
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        return dotb(MemBlock{row + c * kBytes}, x, xd, xs);
    }
};

template <>
struct QT<DType::Q4_1> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 20;
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 5) * kBytes;
        const int j = e & 31, sh = (j >> 4) * 4;
        const float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
        const uint32_t w0 = ld32(b + 4 + (j & 15)), w1 = ld32(b + 8 + (j & 15));
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            y[k] = (float)((w0 >> (8 * k + sh)) & 15) * d + m;
            y[4 + k] = (float)((w1 >> (8 * k + sh)) & 15) * d + m;
        }
    }
    template <class B>
    __device__ static float dotb(const B& b, const int* x, float xd, int32_t xs) {
        const float d = h2f(b.u16(0)), m = h2f(b.u16(2));
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = b.u32(4 + 4 * k);
            sumi = dp4a(w & 0x0F0F0F0Fu, x[k], sumi);
            sumi = dp4a((w >> 4) & 0x0F0F0F0Fu, x[4 + k], sumi);
        }
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi + m * s;
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        return dotb(MemBlock{row + c * kBytes}, x, xd, xs);
    }
};

// q5_0 / q5_1: bit i of qh is the 5th bit of block element i.
template <>
struct QT<DType::Q5_0> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 22;
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 5) * kBytes;
        const int j = e & 31, sh = (j >> 4) * 4;
        const float d = h2f(ld16(b));
        const uint32_t qh = ld32a2(b + 2);
        const uint32_t w0 = ld32a2(b + 6 + (j & 15)), w1 = ld32a2(b + 10 + (j & 15));
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const int q0 = (int)(((w0 >> (8 * k + sh)) & 15) | (((qh >> (j + k)) & 1) << 4));
            const int q1 = (int)(((w1 >> (8 * k + sh)) & 15) | (((qh >> (j + 4 + k)) & 1) << 4));
            y[k] = (float)(q0 - 16) * d;
            y[4 + k] = (float)(q1 - 16) * d;
        }
    }
    template <class B>
    __device__ static float dotb(const B& b, const int* x, float xd, int32_t xs) {
        const float d = h2f(b.u16(0));
        const uint32_t qh = b.u32a2(2);
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = b.u32a2(6 + 4 * k);
            const uint32_t lo = (w & 0x0F0F0F0Fu) | (spread4((qh >> (4 * k)) & 15) << 4);
            const uint32_t hi = ((w >> 4) & 0x0F0F0F0Fu) | (spread4((qh >> (16 + 4 * k)) & 15) << 4);
            sumi = dp4a(lo, x[k], sumi);
            sumi = dp4a(hi, x[4 + k], sumi);
        }
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi - 16.0f * d * s;
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        return dotb(MemBlock{row + c * kBytes}, x, xd, xs);
    }
};

template <>
struct QT<DType::Q5_1> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 24;
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 5) * kBytes;
        const int j = e & 31, sh = (j >> 4) * 4;
        const float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
        const uint32_t qh = ld32(b + 4);
        const uint32_t w0 = ld32(b + 8 + (j & 15)), w1 = ld32(b + 12 + (j & 15));
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t q0 = ((w0 >> (8 * k + sh)) & 15) | (((qh >> (j + k)) & 1) << 4);
            const uint32_t q1 = ((w1 >> (8 * k + sh)) & 15) | (((qh >> (j + 4 + k)) & 1) << 4);
            y[k] = (float)q0 * d + m;
            y[4 + k] = (float)q1 * d + m;
        }
    }
    template <class B>
    __device__ static float dotb(const B& b, const int* x, float xd, int32_t xs) {
        const float d = h2f(b.u16(0)), m = h2f(b.u16(2));
        const uint32_t qh = b.u32(4);
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = b.u32(8 + 4 * k);
            const uint32_t lo = (w & 0x0F0F0F0Fu) | (spread4((qh >> (4 * k)) & 15) << 4);
            const uint32_t hi = ((w >> 4) & 0x0F0F0F0Fu) | (spread4((qh >> (16 + 4 * k)) & 15) << 4);
            sumi = dp4a(lo, x[k], sumi);
            sumi = dp4a(hi, x[4 + k], sumi);
        }
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi + m * s;
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        return dotb(MemBlock{row + c * kBytes}, x, xd, xs);
    }
};

template <>
struct QT<DType::Q8_0> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 34;
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 5) * kBytes;
        deq8_qs<2>(h2f(ld16(b)), b + 2, e & 31, y);
    }
    template <int Align>
    __device__ static void deq8_qs(float d, const uint8_t* qs, int j, float* y) {
        const uint32_t w0 = ldw<Align>(qs + j), w1 = ldw<Align>(qs + 4 + j);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            y[k] = (float)(int8_t)(w0 >> (8 * k)) * d;
            y[4 + k] = (float)(int8_t)(w1 >> (8 * k)) * d;
        }
    }
    template <class B>
    __device__ static float dotb(const B& b, const int* x, float xd, int32_t) {
        const float d = h2f(b.u16(0));
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) sumi = dp4a(b.u32a2(2 + 4 * k), x[k], sumi);
        return d * xd * (float)sumi;
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        return dotb(MemBlock{row + c * kBytes}, x, xd, xs);
    }
};

template <>
struct QT<DType::IQ4_NL> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 18;
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 5) * kBytes;
        const int j = e & 31, sh = (j >> 4) * 4;
        const float d = h2f(ld16(b));
        const uint32_t v0 = iq4nl_lookup4((ld32a2(b + 2 + (j & 15)) >> sh) & 0x0F0F0F0Fu);
        const uint32_t v1 = iq4nl_lookup4((ld32a2(b + 6 + (j & 15)) >> sh) & 0x0F0F0F0Fu);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            y[k] = d * (float)(int8_t)(v0 >> (8 * k));
            y[4 + k] = d * (float)(int8_t)(v1 >> (8 * k));
        }
    }
    template <class B>
    __device__ static float dotb(const B& b, const int* x, float xd, int32_t) {
        const float d = h2f(b.u16(0));
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = b.u32a2(2 + 4 * k);
            sumi = dp4a(iq4nl_lookup4(w & 0x0F0F0F0Fu), x[k], sumi);
            sumi = dp4a(iq4nl_lookup4((w >> 4) & 0x0F0F0F0Fu), x[4 + k], sumi);
        }
        return d * xd * (float)sumi;
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        return dotb(MemBlock{row + c * kBytes}, x, xd, xs);
    }
};

// ---- 256-element super-block types -------------------------------------------------------
// Element i (0..255) of a super-block; a 32-element chunk c (0..7) covers i = 32c .. 32c+31.

template <>
struct QT<DType::Q2_K> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 84;
    // x = d * (sc & 15) * q - dmin * (sc >> 4), q = (qs[32h + l] >> 2s) & 3, i = 128h + 32s + l.
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 8) * kBytes;
        const int i = e & 255, h = i >> 7, s = (i >> 5) & 3, l = i & 31;
        const float d = h2f(ld16(b + 80)), dmin = h2f(ld16(b + 82));
        const int sc = b[i >> 4];
        const float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
        const uint32_t w0 = ld32(b + 16 + 32 * h + l), w1 = ld32(b + 20 + 32 * h + l);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            y[k] = dl * (float)((w0 >> (8 * k + 2 * s)) & 3) - ml;
            y[4 + k] = dl * (float)((w1 >> (8 * k + 2 * s)) & 3) - ml;
        }
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        const uint8_t* b = row + (c >> 3) * kBytes;
        const int cc = c & 7, h = cc >> 2, s = cc & 3;
        const uint8_t* q = b + 16 + 32 * h;
        int sa = 0, sb = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) sa = dp4a((ld32(q + 4 * k) >> (2 * s)) & 0x03030303u, x[k], sa);
#pragma unroll
        for (int k = 4; k < 8; ++k) sb = dp4a((ld32(q + 4 * k) >> (2 * s)) & 0x03030303u, x[k], sb);
        const int sca = b[2 * cc], scb = b[2 * cc + 1];
        const float d = h2f(ld16(b + 80)), dmin = h2f(ld16(b + 82));
        const int isc = (sca & 15) * sa + (scb & 15) * sb;
        const int imin = (sca >> 4) * sum_lo(xs) + (scb >> 4) * sum_hi(xs);
        return d * xd * (float)isc - dmin * xd * (float)imin;
    }
};

template <>
struct QT<DType::Q3_K> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 110;
    // x = d * (sc - 32) * (lo - 4 * !hbit), lo = (qs[32h + l] >> 2s) & 3, hbit = bit i/32 of hmask[l].
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 8) * kBytes;
        const int i = e & 255, h = i >> 7, s = (i >> 5) & 3, l = i & 31, c = i >> 5;
        const float d = h2f(ld16(b + 108));
        const float dl = d * (float)(scale_q3(b + 96, i >> 4) - 32);
        const uint32_t q0 = ld32a2(b + 32 + 32 * h + l), q1 = ld32a2(b + 36 + 32 * h + l);
        const uint32_t m0 = ld32a2(b + l), m1 = ld32a2(b + 4 + l);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const int lo0 = (int)((q0 >> (8 * k + 2 * s)) & 3), hb0 = (int)((m0 >> (8 * k + c)) & 1);
            const int lo1 = (int)((q1 >> (8 * k + 2 * s)) & 3), hb1 = (int)((m1 >> (8 * k + c)) & 1);
            y[k] = dl * (float)(lo0 - (hb0 ? 0 : 4));
            y[4 + k] = dl * (float)(lo1 - (hb1 ? 0 : 4));
        }
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        const uint8_t* b = row + (c >> 3) * kBytes;
        const int cc = c & 7, h = cc >> 2, s = cc & 3;
        const uint8_t* q = b + 32 + 32 * h;
        int sa = 0, sb = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t lo = (ld32a2(q + 4 * k) >> (2 * s)) & 0x03030303u;
            const uint32_t hb = (ld32a2(b + 4 * k) >> cc) & 0x01010101u;
            const uint32_t v = lo | (hb << 2);  // lo + 4 * hbit, 0..7; the value is v - 4
            if (k < 4) sa = dp4a(v, x[k], sa);
            else sb = dp4a(v, x[k], sb);
        }
        const int sca = scale_q3(b + 96, 2 * cc) - 32, scb = scale_q3(b + 96, 2 * cc + 1) - 32;
        const int isum = sca * (sa - 4 * sum_lo(xs)) + scb * (sb - 4 * sum_hi(xs));
        return h2f(ld16(b + 108)) * xd * (float)isum;
    }
};

template <>
struct QT<DType::Q4_K> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 144;
    // x = d * sc_j * q - dmin * m_j, q = (qs[32 (j/2) + l] >> 4 (j&1)) & 15, i = 32j + l.
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 8) * kBytes;
        const int i = e & 255, j = i >> 5, l = i & 31;
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        const float dl = h2f(ld16(b)) * (float)sc, ml = h2f(ld16(b + 2)) * (float)m;
        const int sh = 4 * (j & 1);
        const uint32_t w0 = ld32(b + 16 + 32 * (j >> 1) + l), w1 = ld32(b + 20 + 32 * (j >> 1) + l);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            y[k] = dl * (float)((w0 >> (8 * k + sh)) & 15) - ml;
            y[4 + k] = dl * (float)((w1 >> (8 * k + sh)) & 15) - ml;
        }
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        const uint8_t* b = row + (c >> 3) * kBytes;
        const int j = c & 7, sh = 4 * (j & 1);
        const uint8_t* q = b + 16 + 32 * (j >> 1);
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) sumi = dp4a((ld32(q + 4 * k) >> sh) & 0x0F0F0F0Fu, x[k], sumi);
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        return h2f(ld16(b)) * xd * (float)(sc * sumi) -
               h2f(ld16(b + 2)) * xd * (float)(m * (sum_lo(xs) + sum_hi(xs)));
    }
};

template <>
struct QT<DType::Q5_K> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 176;
    // As q4_K with bit j of qh[l] as bit 4 of q.
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 8) * kBytes;
        const int i = e & 255, j = i >> 5, l = i & 31;
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        const float dl = h2f(ld16(b)) * (float)sc, ml = h2f(ld16(b + 2)) * (float)m;
        const int sh = 4 * (j & 1);
        const uint32_t w0 = ld32(b + 48 + 32 * (j >> 1) + l), w1 = ld32(b + 52 + 32 * (j >> 1) + l);
        const uint32_t h0 = ld32(b + 16 + l), h1 = ld32(b + 20 + l);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t q0 = ((w0 >> (8 * k + sh)) & 15) | (((h0 >> (8 * k + j)) & 1) << 4);
            const uint32_t q1 = ((w1 >> (8 * k + sh)) & 15) | (((h1 >> (8 * k + j)) & 1) << 4);
            y[k] = dl * (float)q0 - ml;
            y[4 + k] = dl * (float)q1 - ml;
        }
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        const uint8_t* b = row + (c >> 3) * kBytes;
        const int j = c & 7, sh = 4 * (j & 1);
        const uint8_t* q = b + 48 + 32 * (j >> 1);
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t lo = (ld32(q + 4 * k) >> sh) & 0x0F0F0F0Fu;
            const uint32_t v = lo | (((ld32(b + 16 + 4 * k) >> j) & 0x01010101u) << 4);
            sumi = dp4a(v, x[k], sumi);
        }
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        return h2f(ld16(b)) * xd * (float)(sc * sumi) -
               h2f(ld16(b + 2)) * xd * (float)(m * (sum_lo(xs) + sum_hi(xs)));
    }
};

template <>
struct QT<DType::Q6_K> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 210;
    // x = d * sc[i/16] * (q - 32), i = 128h + k: q = lo | hi << 4 with
    // lo = (ql[64h + (k & 63)] >> 4 (k/64)) & 15, hi = (qh[32h + (k & 31)] >> 2 (k/32)) & 3.
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 8) * kBytes;
        const int i = e & 255, h = i >> 7, kk = i & 127;
        const float dl = h2f(ld16(b + 208)) * (float)(int8_t)b[192 + (i >> 4)];
        const int lsh = 4 * (kk >> 6), hsh = 2 * (kk >> 5);
        const uint8_t* ql = b + 64 * h + (kk & 63);
        const uint8_t* qh = b + 128 + 32 * h + (kk & 31);
        const uint32_t l0 = ld32a2(ql), l1 = ld32a2(ql + 4), g0 = ld32a2(qh), g1 = ld32a2(qh + 4);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const int q0 = (int)(((l0 >> (8 * k + lsh)) & 15) | (((g0 >> (8 * k + hsh)) & 3) << 4));
            const int q1 = (int)(((l1 >> (8 * k + lsh)) & 15) | (((g1 >> (8 * k + hsh)) & 3) << 4));
            y[k] = dl * (float)(q0 - 32);
            y[4 + k] = dl * (float)(q1 - 32);
        }
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t xs) {
        const uint8_t* b = row + (c >> 3) * kBytes;
        const int cc = c & 7, h = cc >> 2, s = cc & 3;
        const uint8_t* ql = b + 64 * h + 32 * (s & 1);
        const uint8_t* qh = b + 128 + 32 * h;
        const int lsh = 4 * (s >> 1), hsh = 2 * s;
        int sa = 0, sb = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t v = ((ld32a2(ql + 4 * k) >> lsh) & 0x0F0F0F0Fu) |
                               (((ld32a2(qh + 4 * k) >> hsh) & 0x03030303u) << 4);
            if (k < 4) sa = dp4a(v, x[k], sa);
            else sb = dp4a(v, x[k], sb);
        }
        const int sca = (int8_t)b[192 + 2 * cc], scb = (int8_t)b[192 + 2 * cc + 1];
        const int isum = sca * (sa - 32 * sum_lo(xs)) + scb * (sb - 32 * sum_hi(xs));
        return h2f(ld16(b + 208)) * xd * (float)isum;
    }
};

template <>
struct QT<DType::IQ4_XS> {
    static constexpr bool kFloat = false;
    static constexpr int kBytes = 136;
    // Sub-block j (32 elements): nibble layout as q4_0 over qs[16j .. 16j+15].
    __device__ static void deq8(const uint8_t* row, int e, float* y) {
        const uint8_t* b = row + (e >> 8) * kBytes;
        const int i = e & 255, j = i >> 5, l = i & 31, sh = 4 * (l >> 4);
        const float dl = h2f(ld16(b)) * (float)scale_iq4_xs(b, j);
        const uint8_t* q = b + 8 + 16 * j + (l & 15);
        const uint32_t v0 = iq4nl_lookup4((ld32(q) >> sh) & 0x0F0F0F0Fu);
        const uint32_t v1 = iq4nl_lookup4((ld32(q + 4) >> sh) & 0x0F0F0F0Fu);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            y[k] = dl * (float)(int8_t)(v0 >> (8 * k));
            y[4 + k] = dl * (float)(int8_t)(v1 >> (8 * k));
        }
    }
    __device__ static float dot32(const uint8_t* row, int c, const int* x, float xd, int32_t) {
        const uint8_t* b = row + (c >> 3) * kBytes;
        const int j = c & 7;
        const uint8_t* q = b + 8 + 16 * j;
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = ld32(q + 4 * k);
            sumi = dp4a(iq4nl_lookup4(w & 0x0F0F0F0Fu), x[k], sumi);
            sumi = dp4a(iq4nl_lookup4((w >> 4) & 0x0F0F0F0Fu), x[4 + k], sumi);
        }
        return h2f(ld16(b)) * xd * (float)(scale_iq4_xs(b, j) * sumi);
    }
};

// Elements e .. e+7 of a row of K elements, zero past the end (only float types can have
// K % 8 != 0; quantized rows are whole blocks). e must be < K for quantized types.
template <DType T>
__device__ __forceinline__ void load_w8(const uint8_t* row, int e, int K, float* y) {
    if constexpr (QT<T>::kFloat) {
        if (e + 8 <= K) {
            QT<T>::deq8(row, e, y);
        } else {
#pragma unroll
            for (int k = 0; k < 8; ++k) y[k] = e + k < K ? QT<T>::elem(row, e + k) : 0.0f;
        }
    } else {
        QT<T>::deq8(row, e, y);
    }
}

// load_w8 for a weight in split rows (weight_split.cuh; q4_0 and q8_0): the block's quants
// at qs + kQ b (16-byte aligned), its scale among the nb scales after all the quants.
template <DType T>
__device__ __forceinline__ void load_w8_split(const uint8_t* row, int e, int K, float* y) {
    constexpr int kQ = QT<T>::kBytes - 2;
    const int b = e >> 5;
    QT<T>::template deq8_qs<4>(h2f(ld16(row + kQ * (K >> 5) + 2 * b)), row + kQ * b, e & 31, y);
}

// Calls f.template operator()<T>() for the weight type t; returns false if unsupported.
template <typename F>
bool dispatch_type(DType t, F&& f) {
    switch (t) {
        case DType::F32: f.template operator()<DType::F32>(); return true;
        case DType::F16: f.template operator()<DType::F16>(); return true;
        case DType::BF16: f.template operator()<DType::BF16>(); return true;
        case DType::Q4_0: f.template operator()<DType::Q4_0>(); return true;
        case DType::Q4_1: f.template operator()<DType::Q4_1>(); return true;
        case DType::Q5_0: f.template operator()<DType::Q5_0>(); return true;
        case DType::Q5_1: f.template operator()<DType::Q5_1>(); return true;
        case DType::Q8_0: f.template operator()<DType::Q8_0>(); return true;
        case DType::Q2_K: f.template operator()<DType::Q2_K>(); return true;
        case DType::Q3_K: f.template operator()<DType::Q3_K>(); return true;
        case DType::Q4_K: f.template operator()<DType::Q4_K>(); return true;
        case DType::Q5_K: f.template operator()<DType::Q5_K>(); return true;
        case DType::Q6_K: f.template operator()<DType::Q6_K>(); return true;
        case DType::IQ4_NL: f.template operator()<DType::IQ4_NL>(); return true;
        case DType::IQ4_XS: f.template operator()<DType::IQ4_XS>(); return true;
        default: return false;
    }
}

}  // namespace strata::cuda
