// Host check of the tensor-core prefill attention (attention_mma.cuh) without a GPU: the
// block's code compiled as host C++ and run by 128 host threads, one per CUDA thread, with
// the warp-collective instructions emulated as the PTX ISA defines them (ldmatrix with and
// without .trans: which lane's row address feeds which fragment element; mma.sync m16n8k16:
// the A / B / C fragment layouts of mma.cuh; shuffles; __syncthreads as a barrier). Each
// query row's output is compared with a float64 softmax over the f16 K / V cache: what the
// kernel rounds (Q and the probabilities to f16) moves it by ~5e-4, a mask one key off by
// 0.1 or more. Shared-memory addresses are checked 16-byte aligned and in bounds; under
// AddressSanitizer Q, the cache and the output are allocations of exactly their size, so a
// read of a row past the step or a write past the output is reported. Cases: head_dim 64
// and 128, GQA, sliding windows with the ring-buffer cache wrapping, steps that start after
// earlier ones (n_past > 0), row counts that leave partial query and key tiles.
// Not built by CMake; from the repository root:
//   g++ -std=c++20 -O1 -pthread -fsanitize=address,undefined -fno-sanitize-recover=all \
//       -I/usr/local/cuda/include -Icsrc csrc/backends/cuda/tools/attention_mma_host_check.cpp \
//       -o /tmp/attention_mma_host_check && /tmp/attention_mma_host_check
#define STRATA_MMA_HOST_EMULATION
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

using std::max;
using std::min;

// common.cuh's warp reductions name this intrinsic; the attention block does not use them.
template <class T>
static inline T __shfl_xor_sync(unsigned, T, int) {
    std::abort();
}

namespace strata::cuda {

// One block runs at a time: its shared memory, its barrier, one exchange area per warp.
struct WarpExchange {
    uint32_t u[32][4];
    float f[32][4];
    std::barrier<> bar{32};
};
static WarpExchange g_warp[4];
static std::barrier<>* g_block = nullptr;
static const char* g_smem = nullptr;
static size_t g_smem_bytes = 0;
static thread_local int t_tid = 0;

static void fail(const char* what) {
    std::fprintf(stderr, "FAIL: %s (thread %d)\n", what, t_tid);
    std::abort();
}

inline void block_sync() { g_block->arrive_and_wait(); }

inline float shfl_xor(float v, int lane_mask) {
    WarpExchange& w = g_warp[t_tid >> 5];
    const int l = t_tid & 31;
    w.f[l][0] = v;
    w.bar.arrive_and_wait();
    const float r = w.f[l ^ lane_mask][0];
    w.bar.arrive_and_wait();
    return r;
}

inline uint32_t smem_addr(const void* p) { return (uint32_t)(static_cast<const char*>(p) - g_smem); }

static uint16_t smem_half(uint32_t byte) {
    if (byte + 2 > g_smem_bytes) fail("ldmatrix reads past shared memory");
    uint16_t h;
    std::memcpy(&h, g_smem + byte, 2);
    return h;
}

// Lane 8 i + r gives the address of row r of matrix i. Without .trans lane 4 g + q receives
// row g, elements 2q and 2q + 1 of each matrix; with .trans, element g of rows 2q and 2q + 1.
static void ldmatrix(uint32_t* r, uint32_t addr, bool trans) {
    if (addr % 16) fail("ldmatrix row address not 16-byte aligned");
    WarpExchange& w = g_warp[t_tid >> 5];
    const int l = t_tid & 31, g = l >> 2, q = l & 3;
    w.u[l][0] = addr;
    w.bar.arrive_and_wait();
    for (int i = 0; i < 4; ++i) {
        uint16_t lo, hi;
        if (!trans) {
            lo = smem_half(w.u[8 * i + g][0] + 4 * q);
            hi = smem_half(w.u[8 * i + g][0] + 4 * q + 2);
        } else {
            lo = smem_half(w.u[8 * i + 2 * q][0] + 2 * g);
            hi = smem_half(w.u[8 * i + 2 * q + 1][0] + 2 * g);
        }
        r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
    w.bar.arrive_and_wait();
}
inline void ldmatrix_x4(uint32_t* r, uint32_t addr) { ldmatrix(r, addr, false); }
inline void ldmatrix_x4_trans(uint32_t* r, uint32_t addr) { ldmatrix(r, addr, true); }

static double half_bits(uint32_t reg, int upper) {
    const uint16_t b = (uint16_t)(upper ? reg >> 16 : reg & 0xFFFF);
    __half h;
    std::memcpy(&h, &b, 2);
    return (double)__half2float(h);
}

// d = a b + c for the warp's 16 x 16 A and 16 x 8 B, from every lane's fragments.
inline void mma_16816(float* c, const uint32_t* a, const uint32_t* b) {
    WarpExchange& w = g_warp[t_tid >> 5];
    const int l = t_tid & 31, g = l >> 2, q = l & 3;
    for (int i = 0; i < 4; ++i) w.u[l][i] = a[i];
    w.f[l][0] = 0.0f;
    std::memcpy(&w.f[l][1], &b[0], 4);
    std::memcpy(&w.f[l][2], &b[1], 4);
    w.bar.arrive_and_wait();
    auto A = [&](int row, int k) {  // a0: (g, 2q..), a1: (g + 8), a2: (g, 2q + 8..), a3: (g + 8, 2q + 8..)
        const int owner = 4 * (row % 8) + (k % 8) / 2, reg = (row >= 8) + 2 * (k >= 8);
        return half_bits(w.u[owner][reg], k % 2);
    };
    auto B = [&](int k, int n) {  // b0: (k 2q.., n g), b1: (k 2q + 8..)
        const int owner = 4 * n + (k % 8) / 2;
        uint32_t reg;
        std::memcpy(&reg, &w.f[owner][1 + (k >= 8)], 4);
        return half_bits(reg, k % 2);
    };
    float d[4];
    for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e >> 1), col = 2 * q + (e & 1);
        double s = c[e];
        for (int k = 0; k < 16; ++k) s += A(row, k) * B(k, col);
        d[e] = (float)s;
    }
    w.bar.arrive_and_wait();
    for (int e = 0; e < 4; ++e) c[e] = d[e];
}

}  // namespace strata::cuda

#include "backends/cuda/attention_mma.cuh"

using namespace strata::cuda;

namespace {

struct Case {
    int head_dim, n_head, n_kv, window, n_past, rows, n_batch;
};

template <int HD>
void run_blocks(const AttnArgs& a, const float* q, const __half* kc, const __half* vc, float* out, int rows,
                int n_past) {
    std::vector<__half> smem(kMmaAttnSmemHalves<HD>);
    g_smem = reinterpret_cast<const char*>(smem.data());
    g_smem_bytes = smem.size() * sizeof(__half);
    const int tiles = (rows + kMmaQ - 1) / kMmaQ;
    for (int h = 0; h < a.n_head; ++h) {
        for (int tile = 0; tile < tiles; ++tile) {
            std::barrier<> block(128);
            g_block = &block;
            std::vector<std::thread> threads;
            for (int tid = 0; tid < 128; ++tid)
                threads.emplace_back([&, tid] {
                    t_tid = tid;
                    attention_prefill_mma_block<HD>(a, q, kc, vc, out, rows, n_past, smem.data(), tid, tile, h);
                });
            for (std::thread& t : threads) t.join();
        }
    }
}

// Returns the largest |kernel - float64| over the step's outputs; aborts on a structural fault.
double check(const Case& c, std::mt19937& rng) {
    const int hd = c.head_dim, total = c.n_past + c.rows;
    const int64_t cap = c.window > 0 ? std::min<int64_t>(total, c.window + c.n_batch - 1) : total;
    const int64_t qw = (int64_t)c.n_head * hd, kvw = (int64_t)c.n_kv * hd;
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> q(c.rows * qw);
    for (float& x : q) x = nd(rng);
    // Every position's K and V (f16), written into the cache in order as the engine appends.
    std::vector<__half> kall(total * kvw), vall(total * kvw), kc(cap * kvw), vc(cap * kvw);
    for (int64_t i = 0; i < total * kvw; ++i) {
        kall[i] = __float2half(nd(rng));
        vall[i] = __float2half(nd(rng));
    }
    for (int p = 0; p < total; ++p) {
        std::memcpy(&kc[(p % cap) * kvw], &kall[p * kvw], kvw * sizeof(__half));
        std::memcpy(&vc[(p % cap) * kvw], &vall[p * kvw], kvw * sizeof(__half));
    }
    std::vector<float> out(c.rows * qw, NAN);
    AttnArgs a{c.n_head, c.n_kv, hd, c.window, cap, 1.0f / std::sqrt((float)hd), 0.0f, PrefillAttn::Mma};
    if (hd == 64)
        run_blocks<64>(a, q.data(), kc.data(), vc.data(), out.data(), c.rows, c.n_past);
    else
        run_blocks<128>(a, q.data(), kc.data(), vc.data(), out.data(), c.rows, c.n_past);

    double worst = 0.0;
    std::vector<double> s(total), acc(hd);
    for (int t = 0; t < c.rows; ++t) {
        const int p = c.n_past + t, first = c.window > 0 ? std::max(0, p - c.window + 1) : 0;
        for (int h = 0; h < c.n_head; ++h) {
            const int kvh = h / (c.n_head / c.n_kv);
            double mx = -INFINITY;
            for (int j = first; j <= p; ++j) {
                double d = 0.0;
                for (int e = 0; e < hd; ++e)
                    d += (double)q[t * qw + h * hd + e] * (double)__half2float(kall[j * kvw + kvh * hd + e]);
                s[j] = d * (double)a.scale;
                mx = std::max(mx, s[j]);
            }
            double l = 0.0;
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int j = first; j <= p; ++j) {
                const double w = std::exp(s[j] - mx);
                l += w;
                for (int e = 0; e < hd; ++e) acc[e] += w * (double)__half2float(vall[j * kvw + kvh * hd + e]);
            }
            for (int e = 0; e < hd; ++e) {
                const double got = out[t * qw + h * hd + e];
                if (!std::isfinite(got)) {
                    std::fprintf(stderr, "FAIL: row %d head %d dim %d not written or not finite\n", t, h, e);
                    std::abort();
                }
                worst = std::max(worst, std::abs(got - acc[e] / l));
            }
        }
    }
    return worst;
}

}  // namespace

int main() {
    std::mt19937 rng(1234);
    const Case cases[] = {
        // head_dim, heads, kv heads, window, n_past, rows, n_batch
        {64, 4, 2, 0, 0, 2, 64},     {64, 4, 2, 0, 0, 13, 64},    {64, 4, 2, 0, 0, 64, 64},
        {64, 2, 1, 0, 0, 150, 160},  {64, 4, 2, 0, 37, 70, 80},   {64, 4, 2, 40, 0, 70, 80},
        {64, 2, 2, 24, 100, 64, 64}, {128, 4, 2, 0, 0, 13, 64},   {128, 2, 1, 0, 0, 130, 160},
        {128, 4, 1, 0, 1, 64, 64},   {128, 4, 2, 45, 0, 70, 80},  {128, 2, 1, 24, 136, 64, 64},
        {128, 2, 2, 7, 5, 33, 40},
    };
    const double bound = 2e-3;
    bool ok = true;
    for (const Case& c : cases) {
        const double err = check(c, rng);
        const bool pass = err < bound;
        ok = ok && pass;
        std::printf("%s head_dim %3d heads %d/%d window %2d n_past %3d rows %3d: max |err| %.2e\n",
                    pass ? "ok  " : "FAIL", c.head_dim, c.n_head, c.n_kv, c.window, c.n_past, c.rows, err);
    }
    std::printf(ok ? "all cases within %.0e of float64\n" : "some case exceeds %.0e\n", bound);
    return ok ? 0 : 1;
}
