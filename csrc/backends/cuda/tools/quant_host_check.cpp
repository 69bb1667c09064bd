// Host check of csrc/backends/cuda/quant.cuh without a GPU: the device functions compiled as
// host C++ (the few CUDA intrinsics they use emulated below), every weight type's deq8
// against csrc/quants/dequant.h bit for bit, and dot32 against a float64 sum over the same
// int8 activations. With -fsanitize=alignment a misaligned word load is reported too
// (weights sit at 256-byte aligned addresses, as the backend uploads them). Not built by
// CMake; from the repository root:
//   g++ -std=c++20 -O1 -fsanitize=alignment,undefined -fno-sanitize-recover=all \
//       -I/usr/local/cuda/include csrc/backends/cuda/tools/quant_host_check.cpp \
//       csrc/core/dtype.cpp -o /tmp/quant_host_check && /tmp/quant_host_check
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <random>
#include <vector>
#include <cstdint>
// The intrinsics quant.cuh uses, as the PTX ISA defines them.
static inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 4; ++k) c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
}
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint8_t b[8]; memcpy(b, &x, 4); memcpy(b + 4, &y, 4);
    unsigned r = 0;
    for (int k = 0; k < 4; ++k) { unsigned sel = (s >> (4 * k)) & 0xF; uint8_t v = b[sel & 7];
        if (sel & 8) v = (v & 0x80) ? 0xFF : 0; r |= (unsigned)v << (8 * k); }
    return r;
}
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned sh) {
    return (unsigned)((((uint64_t)hi << 32) | lo) >> (sh & 31));
}
#include "../quant.cuh"
#include "../weight_split.cuh"
#include "../../../quants/dequant.h"
using namespace strata;
using namespace strata::cuda;

template <DType T> void ref_deq(const uint8_t* w, float* y, int n);
#define REF(T, fn, B) template <> void ref_deq<DType::T>(const uint8_t* w, float* y, int n) { quants::fn((const B*)w, y, n); }
REF(Q4_0, dequantize_row_q4_0, quants::block_q4_0) REF(Q4_1, dequantize_row_q4_1, quants::block_q4_1)
REF(Q5_0, dequantize_row_q5_0, quants::block_q5_0) REF(Q5_1, dequantize_row_q5_1, quants::block_q5_1)
REF(Q8_0, dequantize_row_q8_0, quants::block_q8_0) REF(IQ4_NL, dequantize_row_iq4_nl, quants::block_iq4_nl)
REF(Q2_K, dequantize_row_q2_K, quants::block_q2_K) REF(Q3_K, dequantize_row_q3_K, quants::block_q3_K)
REF(Q4_K, dequantize_row_q4_K, quants::block_q4_K) REF(Q5_K, dequantize_row_q5_K, quants::block_q5_K)
REF(Q6_K, dequantize_row_q6_K, quants::block_q6_K) REF(IQ4_XS, dequantize_row_iq4_xs, quants::block_iq4_xs)
template <> void ref_deq<DType::F16>(const uint8_t* w, float* y, int n) { quants::dequantize_row_f16((const uint16_t*)w, y, n); }
template <> void ref_deq<DType::BF16>(const uint8_t* w, float* y, int n) { quants::dequantize_row_bf16((const uint16_t*)w, y, n); }
template <> void ref_deq<DType::F32>(const uint8_t* w, float* y, int n) { memcpy(y, w, 4 * n); }

std::mt19937 rng(1);
int fails = 0;

template <DType T> void check(const char* name, int K) {
    const DTypeTraits* tr = dtype_traits((uint32_t)T);
    const int64_t rb = K / tr->block_size * tr->type_size;
    const int R = 5;
    // 256-aligned buffer, rows contiguous (as uploaded)
    std::vector<uint8_t> buf(R * rb + 512);
    uint8_t* w = (uint8_t*)(((uintptr_t)buf.data() + 255) & ~(uintptr_t)255);
    for (int64_t i = 0; i < R * rb; ++i) w[i] = rng() & 0xFF;
    // sane fp16 scales: overwrite all 2-byte fields that are scales
    auto put_half = [&](uint8_t* p, float v) { uint16_t h = quants::fp32_to_fp16(v); memcpy(p, &h, 2); };
    std::uniform_real_distribution<float> U(1e-3f, 1e-1f);
    const int nb = R * K / tr->block_size;
    for (int b = 0; b < nb; ++b) {
        uint8_t* blk = w + (int64_t)b * tr->type_size;
        switch (T) {
            case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL: case DType::IQ4_XS: put_half(blk, U(rng)); break;
            case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: put_half(blk, U(rng)); put_half(blk + 2, U(rng)); break;
            case DType::Q2_K: put_half(blk + 80, U(rng)); put_half(blk + 82, U(rng)); break;
            case DType::Q3_K: put_half(blk + 108, U(rng)); break;
            case DType::Q6_K: put_half(blk + 208, U(rng)); break;
            default: break;
        }
    }
    if (T == DType::F32) for (int i = 0; i < R * K; ++i) { float f = std::normal_distribution<float>()(rng); memcpy(w + 4 * i, &f, 4); }
    if (T == DType::F16) for (int i = 0; i < R * K; ++i) put_half(w + 2 * i, std::normal_distribution<float>()(rng));
    int bad = 0;
    std::vector<float> ref(K), got(K + 8);
    for (int r = 0; r < R; ++r) {
        const uint8_t* row = w + r * rb;
        ref_deq<T>(row, ref.data(), K);
        for (int e = 0; e < K; e += 8) load_w8<T>(row, e, K, got.data() + e);
        for (int i = 0; i < K; ++i) if (!(ref[i] == got[i] || (std::isnan(ref[i]) && std::isnan(got[i])))) { if (bad < 3) printf("  %s deq row %d elem %d: ref %g got %g\n", name, r, i, ref[i], got[i]); ++bad; }
    }
    // the same rows in split rows (weight_split.cuh), read by load_w8_split: the same numbers
    if constexpr (split_qs_bytes(T) > 0) {
        std::vector<uint8_t> sbuf(R * rb + 512);
        uint8_t* ws = (uint8_t*)(((uintptr_t)sbuf.data() + 255) & ~(uintptr_t)255);
        split_rows_host(w, ws, R, K, split_qs_bytes(T));
        for (int r = 0; r < R; ++r) {
            ref_deq<T>(w + r * rb, ref.data(), K);
            for (int e = 0; e < K; e += 8) load_w8_split<T>(ws + r * rb, e, K, got.data() + e);
            for (int i = 0; i < K; ++i) if (!(ref[i] == got[i])) { if (bad < 3) printf("  %s split deq row %d elem %d: ref %g got %g\n", name, r, i, ref[i], got[i]); ++bad; }
        }
    }
    // dot32
    double maxrel = 0;
    if constexpr (!QT<T>::kFloat) {
        std::vector<float> x(K); for (auto& v : x) v = std::normal_distribution<float>()(rng);
        std::vector<int8_t> xq(K + 32); std::vector<float> xd(K / 32); std::vector<int32_t> xs(K / 32);
        int8_t* xqa = (int8_t*)(((uintptr_t)xq.data() + 15) & ~(uintptr_t)15);
        std::vector<int8_t> xq2(K);
        for (int c = 0; c < K / 32; ++c) {
            float amax = 0; for (int l = 0; l < 32; ++l) amax = fmaxf(amax, fabsf(x[32 * c + l]));
            float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) { int q = (int)nearbyintf(x[32 * c + l] * id); xqa[32 * c + l] = (int8_t)q; (l < 16 ? lo : hi) += q; }
            xd[c] = d; xs[c] = (int32_t)(((uint32_t)lo & 0xFFFF) | ((uint32_t)hi << 16));
        }
        for (int r = 0; r < R; ++r) {
            const uint8_t* row = w + r * rb;
            ref_deq<T>(row, ref.data(), K);
            double want = 0, mag = 0; for (int i = 0; i < K; ++i) { want += (double)ref[i] * xd[i / 32] * xqa[i]; mag += fabs((double)ref[i] * xd[i / 32] * xqa[i]); }
            double gotd = 0;
            for (int c = 0; c < K / 32; ++c) {
                int xv[8]; memcpy(xv, xqa + 32 * c, 32);
                gotd += QT<T>::dot32(row, c, xv, xd[c], xs[c]);
            }
            double rel = fabs(gotd - want) / mag; if (rel > maxrel) maxrel = rel;
        }
        if (maxrel > 1e-5) { printf("  %s dot32 rel err %g\n", name, maxrel); ++bad; }
    }
    printf("%-7s K=%d %s (dot rel %.2g)\n", name, K, bad ? "FAIL" : "ok", maxrel);
    fails += bad != 0;
}

int main() {
    check<DType::F32>("F32", 300); check<DType::F16>("F16", 296); check<DType::BF16>("BF16", 304);
    check<DType::Q4_0>("Q4_0", 512); check<DType::Q4_1>("Q4_1", 512); check<DType::Q5_0>("Q5_0", 512);
    check<DType::Q5_1>("Q5_1", 512); check<DType::Q8_0>("Q8_0", 512); check<DType::Q4_0>("Q4_0", 2304); check<DType::Q8_0>("Q8_0", 2304); check<DType::IQ4_NL>("IQ4_NL", 512);
    check<DType::Q2_K>("Q2_K", 768); check<DType::Q3_K>("Q3_K", 768); check<DType::Q4_K>("Q4_K", 768);
    check<DType::Q5_K>("Q5_K", 768); check<DType::Q6_K>("Q6_K", 768); check<DType::IQ4_XS>("IQ4_XS", 768);
    printf("%d failing\n", fails);
    return fails != 0;
}
