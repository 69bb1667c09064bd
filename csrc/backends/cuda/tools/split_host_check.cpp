// Host check of csrc/backends/cuda/matvec_split.cuh without a GPU (as quant_host_check.cpp
// does for quant.cuh): for q4_0, q4_1, q5_0, q5_1, q8_0 and q6_K, the four quarter-chunk
// integer sums of Split<T> added up and passed to value() must give quant.cuh's dot32 bit for
// bit, chunk by chunk; and a walk of matvec_split_kernel's lanes (slots of 8 chunks, the
// clamp of slots past the row's end, the xor-1/xor-2 shuffles, the lanes that add) must sum
// a row to the sum of its dot32s. Not built by CMake; from the repository root:
//   g++ -std=c++20 -O1 -fsanitize=alignment,undefined -fno-sanitize-recover=all \
//       -I/usr/local/cuda/include csrc/backends/cuda/tools/split_host_check.cpp \
//       csrc/core/dtype.cpp -o /tmp/split_host_check && /tmp/split_host_check
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <random>
#include <vector>
#include <cstdint>
#include <algorithm>
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
#include "../matvec_split.cuh"
#include "../../../quants/dequant.h"
using namespace strata; using namespace strata::cuda;
std::mt19937 rng(5);
template <DType T> struct QTB { static constexpr int kElems = T == DType::Q6_K ? 256 : 32; };
int fails = 0;
template <DType T> void check(const char* name, int K) {
    using S = Split<T>;
    const int nc = K / 32; const int64_t rb = (int64_t)K / QTB<T>::kElems * S::kBytes; const int R = 3;
    std::vector<uint8_t> buf(R * rb + 512);
    uint8_t* w = (uint8_t*)(((uintptr_t)buf.data() + 255) & ~(uintptr_t)255);
    for (int64_t i = 0; i < R * rb; ++i) w[i] = rng() & 0xFF;
    std::uniform_real_distribution<float> U(1e-3f, 1e-1f);
    auto put_half = [&](uint8_t* p, float v) { uint16_t h = quants::fp32_to_fp16(v); memcpy(p, &h, 2); };
    for (int b = 0; b < R * K / QTB<T>::kElems; ++b) { uint8_t* blk = w + (int64_t)b * S::kBytes;
        if (T == DType::Q6_K) { put_half(blk + 208, U(rng)); continue; }
        put_half(blk, U(rng));
        if (T == DType::Q4_1 || T == DType::Q5_1) put_half(blk + 2, U(rng)); }
    std::vector<int8_t> xqv(K + 64); int8_t* xq = (int8_t*)(((uintptr_t)xqv.data() + 15) & ~(uintptr_t)15);
    std::vector<float> xd(nc); std::vector<int32_t> xs(nc);
    for (int i = 0; i < K; ++i) xq[i] = (int8_t)((int)(rng() % 255) - 127);
    for (int c = 0; c < nc; ++c) { int lo = 0, hi = 0; for (int l = 0; l < 32; ++l) (l < 16 ? lo : hi) += xq[32 * c + l];
        xs[c] = (int32_t)(((uint32_t)lo & 0xFFFF) | ((uint32_t)hi << 16)); xd[c] = U(rng); }
    for (int r = 0; r < R; ++r) {
        const uint8_t* row = w + r * rb;
        // per-block values: split vs dot32, bit for bit
        for (int c = 0; c < nc; ++c) {
            int xv[8]; memcpy(xv, xq + 32 * c, 32);
            float want = QT<T>::dot32(row, c, xv, xd[c], xs[c]);
            int tot = 0;
            for (int p = 0; p < 4; ++p) { int xw[S::kWords]; for (int k = 0; k < S::kWords; ++k) xw[k] = *(const int*)(xq + 32 * c + 4 * S::xi(p, k)); tot += S::sumi(row, c, p, xw); }
            float got = S::value(S::head(row, c), tot, xd[c], xs[c]);
            if (memcmp(&got, &want, 4) != 0) { if (fails < 5) printf("%s r%d c%d: %g vs %g\n", name, r, c, got, want); ++fails; }
        }
        // kernel walk: lanes, slots, clamp, take
        double want = 0, got = 0;
        for (int c = 0; c < nc; ++c) { int xv[8]; memcpy(xv, xq + 32 * c, 32); want += QT<T>::dot32(row, c, xv, xd[c], xs[c]); }
        const int kU = 4;
        for (int c0 = 0; c0 < nc; c0 += 8 * kU) for (int u = 0; u < kU; ++u) {
            int si[32], cc[32];
            for (int lane = 0; lane < 32; ++lane) { int p = lane & 3, sub = lane >> 2; cc[lane] = std::min(c0 + 8 * u + sub, nc - 1);
                int xw[S::kWords]; for (int k = 0; k < S::kWords; ++k) xw[k] = *(const int*)(xq + 32 * cc[lane] + 4 * S::xi(p, k));
                si[lane] = S::sumi(row, cc[lane], p, xw); }
            int v1[32], v2[32]; for (int l = 0; l < 32; ++l) v1[l] = si[l] + si[l ^ 1]; for (int l = 0; l < 32; ++l) v2[l] = v1[l] + v1[l ^ 2];
            for (int lane = 0; lane < 32; ++lane) { int p = lane & 3, sub = lane >> 2;
                if (p == 0 && c0 + 8 * u + sub < nc) got += S::value(S::head(row, cc[lane]), v2[lane], xd[cc[lane]], xs[cc[lane]]); }
        }
        if (fabs(got - want) > 1e-4 * (1 + fabs(want))) { printf("%s row %d walk: %g vs %g\n", name, r, got, want); ++fails; }
    }
    printf("%s K=%d done, fails so far %d\n", name, K, fails);
}
int main() {
    for (int K : {256, 768, 2048, 4352}) check<DType::Q6_K>("Q6_K", K);
    for (int K : {32, 96, 512, 1024, 2080}) {
        check<DType::Q4_0>("Q4_0", K); check<DType::Q4_1>("Q4_1", K); check<DType::Q5_0>("Q5_0", K);
        check<DType::Q5_1>("Q5_1", K); check<DType::Q8_0>("Q8_0", K);
    }
    printf("%d failing\n", fails); return fails != 0;
}
