// The decode matvec's split-block primitives (matvec.cu: matvec_split_kernel): four lanes
// share one 32-element chunk of a weight row, each taking a quarter of its quants. Kept
// in a header so that tools/split_host_check.cpp can check them on the host against
// quant.cuh's dot32 (bit for bit per chunk), as tools/quant_host_check.cpp checks quant.cuh.
#pragma once

#include "quant.cuh"

namespace strata::cuda {

// ---- split blocks: a quarter block per lane --------------------------------------------
// Part p (0..3) of a block: kWords words of quants and the activation words they meet
// (xw[0..kWords) = activation words xi(p, 0..kWords)); sumi() is the integer dot of that
// part, head() the block's scale (and minimum) halves, value() the block's float
// contribution from those and the whole block's integer dot, written exactly as
// QT<T>::dot32 writes it.
template <DType T>
struct Split;

template <>
struct Split<DType::Q4_0> {
    static constexpr int kBytes = 18, kWords = 2;
    __device__ static int xi(int p, int k) { return k == 0 ? p : 4 + p; }
    __device__ static int sumi(const uint8_t* row, int c, int p, const int* xw) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        const uint32_t w = ld32a2(b + 2 + 4 * p);
        int s = dp4a(w & 0x0F0F0F0Fu, xw[0], 0);
        return dp4a((w >> 4) & 0x0F0F0F0Fu, xw[1], s);
    }
    __device__ static uint32_t head(const uint8_t* row, int c) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        return ld16(b);
    }
    __device__ static float value(uint32_t h, int sumi, float xd, int32_t xs) {
        const float d = h2f(h);
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi - 8.0f * d * s;
    }
};

template <>
struct Split<DType::Q4_1> {
    static constexpr int kBytes = 20, kWords = 2;
    __device__ static int xi(int p, int k) { return k == 0 ? p : 4 + p; }
    __device__ static int sumi(const uint8_t* row, int c, int p, const int* xw) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        const uint32_t w = ld32(b + 4 + 4 * p);
        int s = dp4a(w & 0x0F0F0F0Fu, xw[0], 0);
        return dp4a((w >> 4) & 0x0F0F0F0Fu, xw[1], s);
    }
    __device__ static uint32_t head(const uint8_t* row, int c) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        return ld32(b);
    }
    __device__ static float value(uint32_t h, int sumi, float xd, int32_t xs) {
        const float d = h2f(h & 0xFFFFu), m = h2f(h >> 16);
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi + m * s;
    }
};

template <>
struct Split<DType::Q5_0> {
    static constexpr int kBytes = 22, kWords = 2;
    __device__ static int xi(int p, int k) { return k == 0 ? p : 4 + p; }
    __device__ static int sumi(const uint8_t* row, int c, int p, const int* xw) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        const uint32_t qh = ld32a2(b + 2);
        const uint32_t w = ld32a2(b + 6 + 4 * p);
        const uint32_t lo = (w & 0x0F0F0F0Fu) | (spread4((qh >> (4 * p)) & 15) << 4);
        const uint32_t hi = ((w >> 4) & 0x0F0F0F0Fu) | (spread4((qh >> (16 + 4 * p)) & 15) << 4);
        return dp4a(hi, xw[1], dp4a(lo, xw[0], 0));
    }
    __device__ static uint32_t head(const uint8_t* row, int c) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        return ld16(b);
    }
    __device__ static float value(uint32_t h, int sumi, float xd, int32_t xs) {
        const float d = h2f(h);
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi - 16.0f * d * s;
    }
};

template <>
struct Split<DType::Q5_1> {
    static constexpr int kBytes = 24, kWords = 2;
    __device__ static int xi(int p, int k) { return k == 0 ? p : 4 + p; }
    __device__ static int sumi(const uint8_t* row, int c, int p, const int* xw) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        const uint32_t qh = ld32(b + 4);
        const uint32_t w = ld32(b + 8 + 4 * p);
        const uint32_t lo = (w & 0x0F0F0F0Fu) | (spread4((qh >> (4 * p)) & 15) << 4);
        const uint32_t hi = ((w >> 4) & 0x0F0F0F0Fu) | (spread4((qh >> (16 + 4 * p)) & 15) << 4);
        return dp4a(hi, xw[1], dp4a(lo, xw[0], 0));
    }
    __device__ static uint32_t head(const uint8_t* row, int c) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        return ld32(b);
    }
    __device__ static float value(uint32_t h, int sumi, float xd, int32_t xs) {
        const float d = h2f(h & 0xFFFFu), m = h2f(h >> 16);
        const float s = xd * (float)(sum_lo(xs) + sum_hi(xs));
        return d * xd * (float)sumi + m * s;
    }
};

template <>
struct Split<DType::Q8_0> {
    static constexpr int kBytes = 34, kWords = 2;
    __device__ static int xi(int p, int k) { return 2 * p + k; }
    __device__ static int sumi(const uint8_t* row, int c, int p, const int* xw) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        return dp4a(ld32a2(b + 6 + 8 * p), xw[1], dp4a(ld32a2(b + 2 + 8 * p), xw[0], 0));
    }
    __device__ static uint32_t head(const uint8_t* row, int c) {
        const uint8_t* b = row + (int64_t)c * kBytes;
        return ld16(b);
    }
    __device__ static float value(uint32_t h, int sumi, float xd, int32_t) {
        const float d = h2f(h);
        return d * xd * (float)sumi;
    }
};

// q6_K (256-element blocks of 210 bytes, 8 chunks each): part p takes quant words 2p, 2p + 1
// of the chunk, the first two parts meeting scale sca, the last two scb. Each lane scales
// its integer sum, so the four-lane total is sca * sa + scb * sb and the block value
// d * xd * (total - 32 (sca lo + scb hi)) is dot32's integer isum, exactly.
template <>
struct Split<DType::Q6_K> {
    static constexpr int kBytes = 210, kWords = 2;
    __device__ static int xi(int p, int k) { return 2 * p + k; }
    __device__ static uint32_t head(const uint8_t* row, int c) {  // sca, scb bytes; d
        const uint8_t* b = row + (int64_t)(c >> 3) * kBytes;
        return ld16(b + 192 + 2 * (c & 7)) | (ld16(b + 208) << 16);
    }
    __device__ static int sumi(const uint8_t* row, int c, int p, const int* xw) {
        const uint8_t* b = row + (int64_t)(c >> 3) * kBytes;
        const int cc = c & 7, h = cc >> 2, s = cc & 3;
        const uint8_t* ql = b + 64 * h + 32 * (s & 1) + 8 * p;
        const uint8_t* qh = b + 128 + 32 * h + 8 * p;
        const int lsh = 4 * (s >> 1), hsh = 2 * s;
        int acc = 0;
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const uint32_t v = ((ld32a2(ql + 4 * k) >> lsh) & 0x0F0F0F0Fu) |
                               (((ld32a2(qh + 4 * k) >> hsh) & 0x03030303u) << 4);
            acc = dp4a(v, xw[k], acc);
        }
        const int sc = (int)(int8_t)(ld16(b + 192 + 2 * cc) >> (p < 2 ? 0 : 8));
        return sc * acc;
    }
    __device__ static float value(uint32_t h, int sumi, float xd, int32_t xs) {
        const int sca = (int)(int8_t)(h & 0xFFu), scb = (int)(int8_t)((h >> 8) & 0xFFu);
        const int isum = sumi - 32 * (sca * sum_lo(xs) + scb * sum_hi(xs));
        return h2f(h >> 16) * xd * (float)isum;
    }
};

}  // namespace strata::cuda
