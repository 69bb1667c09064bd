// Host check of the wide decode matvec (matvec_wide.cuh) without a GPU: the per-lane device
// code compiled as host C++, every lane of every warp of a launch walked in turn (rows per warp
// NR, K splits S and steps in flight U: every combination), the lanes' partial sums added
// in double, and each row compared with a float64 dot of the dequantized weights
// (csrc/quants/dequant.h) and the activations (for quantized weights: the int8 activations
// times their scales, the numbers the int8 path multiplies). Weights sit in a 256-byte
// aligned allocation of exactly the size the backend gives them (rows x row bytes rounded up
// to 256), so AddressSanitizer reports a load past the end and -fsanitize=alignment a
// misaligned 16-byte load. Not built by CMake; from the repository root:
//   g++ -std=c++20 -O1 -fsanitize=address,alignment,undefined -fno-sanitize-recover=all \
//       -I/usr/local/cuda/include csrc/backends/cuda/tools/wide_host_check.cpp \
//       csrc/core/dtype.cpp -o /tmp/wide_host_check && /tmp/wide_host_check
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>
// The intrinsics the device code uses, as the PTX ISA defines them (warp shuffles: unused
// stubs, the reductions are done here).
static inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 4; ++k) c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
}
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint8_t b[8];
    memcpy(b, &x, 4);
    memcpy(b + 4, &y, 4);
    unsigned r = 0;
    for (int k = 0; k < 4; ++k) {
        unsigned sel = (s >> (4 * k)) & 0xF;
        uint8_t v = b[sel & 7];
        if (sel & 8) v = (v & 0x80) ? 0xFF : 0;
        r |= (unsigned)v << (8 * k);
    }
    return r;
}
static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned sh) {
    return (unsigned)((((uint64_t)hi << 32) | lo) >> (sh & 31));
}
template <class T>
static inline T __shfl_xor_sync(unsigned, T v, int) { return v; }
#include "../matvec_wide.cuh"
#include "../../../quants/dequant.h"
using namespace strata;
using namespace strata::cuda;

template <DType T>
void ref_deq(const uint8_t* w, float* y, int n);
#define REF(T, fn, B) \
    template <>       \
    void ref_deq<DType::T>(const uint8_t* w, float* y, int n) { quants::fn((const B*)w, y, n); }
REF(Q4_0, dequantize_row_q4_0, quants::block_q4_0)
REF(Q4_1, dequantize_row_q4_1, quants::block_q4_1)
REF(Q5_0, dequantize_row_q5_0, quants::block_q5_0)
REF(Q5_1, dequantize_row_q5_1, quants::block_q5_1)
REF(Q8_0, dequantize_row_q8_0, quants::block_q8_0)
REF(IQ4_NL, dequantize_row_iq4_nl, quants::block_iq4_nl)
REF(Q4_K, dequantize_row_q4_K, quants::block_q4_K)
REF(Q6_K, dequantize_row_q6_K, quants::block_q6_K)
template <>
void ref_deq<DType::F16>(const uint8_t* w, float* y, int n) { quants::dequantize_row_f16((const uint16_t*)w, y, n); }
template <>
void ref_deq<DType::BF16>(const uint8_t* w, float* y, int n) { quants::dequantize_row_bf16((const uint16_t*)w, y, n); }

std::mt19937 rng(1);
int fails = 0;

static void put_half(uint8_t* p, float v) {
    const uint16_t h = quants::fp32_to_fp16(v);
    memcpy(p, &h, 2);
}

template <DType T>
void check(const char* name, int R, int K) {
    using Op = typename WideOp<T>::type;
    const DTypeTraits* tr = dtype_traits((uint32_t)T);
    const int64_t rb = K / tr->block_size * tr->type_size;
    const size_t bytes = (size_t)((R * rb + 255) / 256 * 256);
    uint8_t* w = (uint8_t*)std::aligned_alloc(256, bytes);
    for (int64_t i = 0; i < R * rb; ++i) w[i] = rng() & 0xFF;
    std::uniform_real_distribution<float> U(1e-3f, 1e-1f);
    std::normal_distribution<float> N;
    const int nb = R * K / tr->block_size;
    for (int b = 0; b < nb; ++b) {
        uint8_t* blk = w + (int64_t)b * tr->type_size;
        switch (T) {
            case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL: put_half(blk, U(rng)); break;
            case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: put_half(blk, U(rng)); put_half(blk + 2, U(rng)); break;
            case DType::Q6_K: put_half(blk + 208, U(rng)); break;
            default: break;
        }
    }
    if (T == DType::F16)
        for (int i = 0; i < R * K; ++i) put_half(w + 2 * i, N(rng));
    if (T == DType::BF16)
        for (int i = 0; i < R * K; ++i) {
            const float f = N(rng);
            uint32_t u;
            memcpy(&u, &f, 4);
            const uint16_t h = (uint16_t)(u >> 16);
            memcpy(w + 2 * i, &h, 2);
        }
    std::vector<float> x(K);
    for (auto& v : x) v = N(rng);
    // activations: f32 (x, 16-byte aligned) or ActQ8 as launch_quantize_q8 makes them
    auto al = [](size_t n) { return (n + 255) / 256 * 256; };
    float* xf = (float*)std::aligned_alloc(256, al(4 * K));
    memcpy(xf, x.data(), 4 * K);
    int8_t* xq = (int8_t*)std::aligned_alloc(256, al(K));
    float* xd = (float*)std::aligned_alloc(256, al(4 * (K / 32)));
    int32_t* xs = (int32_t*)std::aligned_alloc(256, al(4 * (K / 32)));
    for (int c = 0; c < K / 32; ++c) {
        float amax = 0;
        for (int l = 0; l < 32; ++l) amax = fmaxf(amax, fabsf(x[32 * c + l]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
        int lo = 0, hi = 0;
        for (int l = 0; l < 32; ++l) {
            const int q = (int)nearbyintf(x[32 * c + l] * id);
            xq[32 * c + l] = (int8_t)q;
            (l < 16 ? lo : hi) += q;
        }
        xd[c] = d;
        xs[c] = (int32_t)(((uint32_t)lo & 0xFFFF) | ((uint32_t)hi << 16));
    }
    // float64 references and magnitudes per row
    std::vector<double> want(R), mag(R);
    std::vector<float> deq(K);
    for (int r = 0; r < R; ++r) {
        ref_deq<T>(w + r * rb, deq.data(), K);
        double s = 0, m = 0;
        for (int i = 0; i < K; ++i) {
            const double xv = Op::kElems == 8 ? (double)x[i] : (double)xd[i / 32] * xq[i];
            s += (double)deq[i] * xv;
            m += fabs((double)deq[i] * xv);
        }
        want[r] = s;
        mag[r] = m;
    }
    typename Op::XArg xa;
    if constexpr (Op::kElems == 8) xa = xf;
    else xa = ActQ8{xq, xd, xs};
    // q4_0 / q8_0 at K % 256 == 0: the same weights in split rows (weight_split.cuh) through
    // WideSplit must give every lane's sums bit for bit.
    using SplitOp = typename WideSplitOp<T>::type;
    constexpr bool kSplit = !std::is_void_v<SplitOp>;
    uint8_t* ws = nullptr;
    if (kSplit && K % 256 == 0) {
        ws = (uint8_t*)std::aligned_alloc(256, bytes);
        split_rows_host(w, ws, R, K, split_qs_bytes(T));
    }
    int bad = 0;
    double worst = 0;
    auto run = [&]<int NR, int UU>() {
        for (int S : {1, 2, 4}) {
            std::vector<double> got(R, 0.0);
            const int groups = (R + NR - 1) / NR;
            for (int g = 0; g < groups; ++g)
                for (int slice = 0; slice < S; ++slice) {
                    int i0, i1;
                    wide_steps(K / Op::kElems, slice, S, &i0, &i1);
                    for (int lane = 0; lane < 32; ++lane) {
                        float acc[NR];
                        // odd lanes with their first weight loads before the wait (the same loads)
                        wide_lane_sums<Op, NR, UU>(w, rb, K, R, g * NR, xa, i0, i1, lane, acc, lane & 1);
                        if constexpr (kSplit) {
                            if (ws) {
                                float acc_split[NR];
                                wide_lane_sums<SplitOp, NR, UU>(ws, rb, K, R, g * NR, xa, i0, i1, lane, acc_split);
                                for (int r = 0; r < NR; ++r)
                                    if (g * NR + r < R && memcmp(&acc[r], &acc_split[r], 4) != 0) {
                                        if (bad < 3)
                                            printf("  %s split R=%d K=%d NR=%d S=%d U=%d row %d lane %d: %.9g vs %.9g\n",
                                                   name, R, K, NR, S, UU, g * NR + r, lane, acc_split[r], acc[r]);
                                        ++bad;
                                    }
                            }
                        }
                        for (int r = 0; r < NR; ++r)
                            if (g * NR + r < R) got[g * NR + r] += acc[r];
                    }
                }
            for (int r = 0; r < R; ++r) {
                const double rel = fabs(got[r] - want[r]) / (mag[r] > 0 ? mag[r] : 1.0);
                if (rel > worst) worst = rel;
                if (!(rel <= 2e-6)) {
                    if (bad < 3)
                        printf("  %s R=%d K=%d NR=%d S=%d U=%d row %d: got %.9g want %.9g (rel %.3g)\n", name, R, K, NR,
                               S, UU, r, got[r], want[r], rel);
                    ++bad;
                }
            }
        }
    };
    run.template operator()<1, 1>(); run.template operator()<1, 2>(); run.template operator()<1, 4>();
    run.template operator()<2, 1>(); run.template operator()<2, 2>(); run.template operator()<2, 4>();
    run.template operator()<4, 1>(); run.template operator()<4, 2>(); run.template operator()<4, 4>();
    printf("%-7s R=%-3d K=%-5d %s (worst rel %.2g)%s\n", name, R, K, bad ? "FAIL" : "ok", worst,
           ws ? ", split rows identical" : "");
    fails += bad != 0;
    std::free(w);
    std::free(ws);
    std::free(xf);
    std::free(xq);
    std::free(xd);
    std::free(xs);
}

int main() {
    // K: one partial step (512), several with a partial last one (2304 = 9 x 256), one exact (1024);
    // R: below, at and past the rows of a warp.
    for (int R : {1, 6, 37}) {
        for (int K : {512, 1024, 2304}) {
            check<DType::F16>("F16", R, K);
            check<DType::BF16>("BF16", R, K);
            check<DType::Q4_0>("Q4_0", R, K);
            check<DType::Q4_1>("Q4_1", R, K);
            check<DType::Q5_0>("Q5_0", R, K);
            check<DType::Q5_1>("Q5_1", R, K);
            check<DType::Q8_0>("Q8_0", R, K);
            check<DType::IQ4_NL>("IQ4_NL", R, K);
            check<DType::Q4_K>("Q4_K", R, K);
            check<DType::Q6_K>("Q6_K", R, K);
        }
    }
    check<DType::F16>("F16", 5, 136);  // K % 256 != 0: a partial step of 17 units
    check<DType::Q8_0>("Q8_0", 5, 96);
    printf("%d failing\n", fails);
    return fails != 0;
}
