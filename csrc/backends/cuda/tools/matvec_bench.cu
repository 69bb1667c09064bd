// Decode matvec timings per weight type and shape on the device: the one-warp-per-row kernels
// (matvec.cu, "v1") against the wide kernel (matvec_wide.cu) at its tile ("wide"), and the same
// tile built with the split-K kernel's shared memory ("smem"). Each timing is a CUDA graph of
// launches cycling over enough copies of the weight that they do not fit the L2 (the weights
// of a decode step are read from DRAM); median of 5 replays; microseconds per matvec.
//   "alone": matvecs back to back;
//   "in seq": each matvec after an rms_norm (shared memory) and, for quantized weights, the
//   activation quantization, as in a decode step; the time of the graph without the matvecs
//   is subtracted.
// With --sweep, every tile instead (nr rows per warp, split-K, unroll), alone. With --spread,
// 16 copies 512 MiB apart in one 8 GiB allocation (as a model's weights lie: far apart, so
// each matvec touches pages no recent one did). --types=F16,Q4_0 limits the types.
// Every variant's output is compared with v1's on the same weights (max |diff| / max |v1|).
// Random weights: bytes from a hash, fp16 scales set in +-[1e-3, 1e-1]; f16 weights normal-ish.
//
// Build and run on the device, from the repository root (about 30 s to build):
//   nvcc -std=c++20 -O3 -arch=sm_90 -o /tmp/matvec_bench csrc/backends/cuda/tools/matvec_bench.cu \
//        csrc/backends/cuda/matvec.cu csrc/backends/cuda/matvec_wide.cu \
//        csrc/backends/cuda/elementwise.cu csrc/core/dtype.cpp
//   /tmp/matvec_bench [--sweep] [--spread] [--types=A,B] [full.txt]   (summary on stdout; all to full.txt)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../common.cuh"
#include "../../../core/dtype.h"

using namespace strata;
using namespace strata::cuda;

#define CK(x)                                                                                       \
    do {                                                                                            \
        cudaError_t e_ = (x);                                                                       \
        if (e_ != cudaSuccess) {                                                                    \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                           \
        }                                                                                           \
    } while (0)

__device__ uint32_t hash32(uint64_t i, uint32_t seed) {
    uint64_t z = i * 0x9E3779B97F4A7C15ull + seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)(z ^ (z >> 31));
}

__global__ void fill_bytes(uint8_t* p, int64_t n, uint32_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        p[i] = (uint8_t)hash32(i, seed);
}
__device__ __half scale_half(uint32_t h) {
    const float u = 1e-3f + (1e-1f - 1e-3f) * (float)(h >> 8) / 16777216.0f;
    return __float2half((h & 1) ? -u : u);
}
// fp16 fields of every block (offsets as tests/test_cuda.py's FP16_FIELDS); f16: all elements.
__global__ void fix_scales(uint8_t* p, int64_t n_blocks, int block_bytes, int off0, int off1, uint32_t seed) {
    for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < n_blocks; b += (int64_t)gridDim.x * blockDim.x) {
        *(__half*)(p + b * block_bytes + off0) = scale_half(hash32(2 * b, seed));
        if (off1 >= 0) *(__half*)(p + b * block_bytes + off1) = scale_half(hash32(2 * b + 1, seed));
    }
}
__global__ void fill_f16(__half* p, int64_t n, uint32_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const uint32_t h = hash32(i, seed);
        const float v = ((float)(h & 0xFFFF) + (float)(h >> 16)) / 65536.0f - 1.0f;  // triangular on (-1, 1)
        p[i] = __float2half(0.05f * v);
    }
}
__global__ void fill_x(float* p, int n, uint32_t seed) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        p[i] = (float)(hash32(i, seed) >> 8) / 8388608.0f - 1.0f;
}

struct Shape {
    const char* name;
    int64_t R, K;
};
struct Type {
    const char* name;
    DType t;
    int off0, off1;  // fp16 fields
};

int main(int argc, char** argv) {
    bool sweep = false, spread = false;
    std::string only;
    FILE* full = nullptr;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--sweep") sweep = true;
        else if (a == "--spread") spread = true;
        else if (a.rfind("--types=", 0) == 0) only = "," + a.substr(8) + ",";
        else full = std::fopen(a.c_str(), "w");
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    std::printf("%s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
    const Shape shapes[] = {
        {"1b.q/o", 2048, 2048},   {"1b.k/v", 512, 2048},     {"1b.gate/up", 8192, 2048}, {"1b.down", 2048, 8192},
        {"1b.out32k", 32000, 2048}, {"1b.out128k", 128256, 2048}, {"8b.q/o", 4096, 4096},  {"8b.k/v", 1024, 4096},
        {"8b.gate/up", 14336, 4096}, {"8b.down", 4096, 14336}, {"8b.out32k", 32000, 4096},
    };
    const Type types[] = {
        {"F16", DType::F16, -1, -1},   {"Q8_0", DType::Q8_0, 0, -1}, {"Q4_0", DType::Q4_0, 0, -1},
        {"Q4_K", DType::Q4_K, 0, 2},   {"Q6_K", DType::Q6_K, 208, -1}, {"Q4_1", DType::Q4_1, 0, 2},
    };
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    if (sweep)
        std::printf("%-6s %-11s %8s | %-12s %8s %6s | %-12s %8s %6s | %8s %s\n", "type", "shape", "v1 us", "wide", "us",
                    "GB/s", "best", "us", "GB/s", "v1 GB/s", "max rel diff vs v1");
    else
        std::printf("%-6s %-11s %6s | %-7s %6s %6s %6s %6s | %6s %6s %6s %6s | %6s %6s | %s\n", "type", "shape", "MB",
                    "tile", "alone:", "v1", "wide", "smem", "in seq:", "v1", "wide", "smem", "GB/s", "(wide)",
                    "rel diff");
    for (const Type& ty : types) {
        for (const Shape& sh : shapes) {
            if (ty.t == DType::Q4_1 && sh.R > 32000) continue;
            if (!only.empty() && only.find("," + std::string(ty.name) + ",") == std::string::npos) continue;
            const DTypeTraits* tr = dtype_traits((uint32_t)ty.t);
            const int64_t rb = sh.K / tr->block_size * tr->type_size;
            const int64_t bytes = sh.R * rb;
            const int64_t stride = spread ? std::max<int64_t>(512ll << 20, (bytes + 255) / 256 * 256) : (bytes + 255) / 256 * 256;
            const int copies = spread ? 16 : (int)std::clamp<int64_t>((int64_t)(384ll << 20) / bytes + 1, 2, 64);
            uint8_t* w;
            CK(cudaMalloc(&w, stride * copies));
            for (int c = 0; c < copies; ++c) {
                uint8_t* p = w + stride * c;
                if (ty.t == DType::F16) {
                    fill_f16<<<1024, 256, 0, st>>>((__half*)p, sh.R * sh.K, 77 + c);
                } else {
                    fill_bytes<<<1024, 256, 0, st>>>(p, bytes, 77 + c);
                    fix_scales<<<1024, 256, 0, st>>>(p, sh.R * sh.K / tr->block_size, (int)tr->type_size, ty.off0,
                                                     ty.off1, 1000 + c);
                }
            }
            float *x, *xn, *y, *yref;
            ActQ8 q;
            CK(cudaMalloc(&x, 4 * sh.K));
            CK(cudaMalloc(&xn, 4 * sh.K));
            CK(cudaMalloc(&y, 4 * sh.R));
            CK(cudaMalloc(&yref, 4 * sh.R));
            CK(cudaMalloc(&q.q, sh.K + 256));
            CK(cudaMalloc(&q.d, sh.K / 8 + 256));
            CK(cudaMalloc(&q.s, sh.K / 8 + 256));
            fill_x<<<64, 256, 0, st>>>(x, (int)sh.K, 5);
            const bool q8 = ty.t != DType::F16;
            if (q8) launch_quantize_q8(x, 1, sh.K, q, st);
            CK(cudaStreamSynchronize(st));
            CK(cudaGetLastError());

            auto launch = [&](const MatvecConfig& cfg, const uint8_t* wp, float* out) {
                if (q8) launch_matvec_q8(ty.t, wp, rb, sh.K, sh.R, q, 1, out, cfg, st);
                else launch_matvec_f32(ty.t, wp, rb, sh.K, sh.R, x, 1, out, cfg, st);
            };
            // A graph of n steps, each (in_seq) rms_norm + quantize before the matvec, or the
            // matvec alone; cfg null: the steps without the matvec. Median ms of 5 replays.
            auto graph_ms = [&](const MatvecConfig* cfg, bool in_seq, int n) -> double {
                cudaGraph_t g;
                cudaGraphExec_t ge;
                CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                for (int i = 0; i < n; ++i) {
                    if (in_seq) {
                        launch_rms_norm(x, nullptr, xn, 1, sh.K, 1e-5f, st);
                        if (q8) launch_quantize_q8(xn, 1, sh.K, q, st);
                    }
                    if (cfg) launch(*cfg, w + stride * (i % copies), y);
                }
                CK(cudaStreamEndCapture(st, &g));
                CK(cudaGraphInstantiate(&ge, g, 0));
                CK(cudaGraphLaunch(ge, st));
                std::vector<float> ms;
                for (int rep = 0; rep < 5; ++rep) {
                    CK(cudaEventRecord(e0, st));
                    CK(cudaGraphLaunch(ge, st));
                    CK(cudaEventRecord(e1, st));
                    CK(cudaEventSynchronize(e1));
                    float m;
                    CK(cudaEventElapsedTime(&m, e0, e1));
                    ms.push_back(m);
                }
                CK(cudaGraphExecDestroy(ge));
                CK(cudaGraphDestroy(g));
                std::sort(ms.begin(), ms.end());
                return ms[2];
            };
            const int n_launch = std::max(copies, 48);
            std::vector<float> href(sh.R), hgot(sh.R);
            auto measure = [&](const MatvecConfig& cfg, double* rel, bool in_seq = false) -> double {
                launch(cfg, w, cfg.v1 ? yref : y);
                CK(cudaStreamSynchronize(st));
                CK(cudaGetLastError());
                if (cfg.v1) {
                    CK(cudaMemcpy(href.data(), yref, 4 * sh.R, cudaMemcpyDeviceToHost));
                    *rel = 0;
                } else {
                    CK(cudaMemcpy(hgot.data(), y, 4 * sh.R, cudaMemcpyDeviceToHost));
                    double md = 0, mr = 0;
                    for (int64_t r = 0; r < sh.R; ++r) {
                        const double d = std::fabs((double)hgot[r] - href[r]);
                        md = std::isfinite(hgot[r]) ? std::max(md, d) : INFINITY;
                        mr = std::max(mr, (double)std::fabs(href[r]));
                    }
                    *rel = md / (mr > 0 ? mr : 1);
                }
                return 1e3 * graph_ms(&cfg, in_seq, n_launch) / n_launch;  // us per launch
            };
            MatvecConfig base;
            base.num_sms = prop.multiProcessorCount;
            base.wide_all = true;  // also the types that stay on v1 by default
            MatvecConfig v1 = base;
            v1.v1 = true;
            MatvecConfig smem = base;
            smem.split_kernel = true;
            auto gbs = [&](double us) { return (double)bytes / (us * 1e3); };
            double rel, worst = 0;
            const double t_v1 = measure(v1, &rel);
            const WideTile at = wide_tile(ty.t, base);
            if (!sweep) {
                const double t_w = measure(base, &rel);
                worst = std::max(worst, rel);
                const double t_s = measure(smem, &rel);
                worst = std::max(worst, rel);
                const double seq0 = 1e3 * graph_ms(nullptr, true, n_launch) / n_launch;
                const double q_v1 = measure(v1, &rel, true) - seq0;
                const double q_w = measure(base, &rel, true) - seq0;
                const double q_s = measure(smem, &rel, true) - seq0;
                char a[32];
                std::snprintf(a, sizeof a, "%d,%d,%d", at.nr, at.split, at.unroll);
                std::printf(
                    "%-6s %-11s %6.1f | %-7s %6s %6.2f %6.2f %6.2f | %6s %6.2f %6.2f %6.2f | %6.0f %6.0f | %.2g%s\n",
                    ty.name, sh.name, bytes / 1e6, a, "", t_v1, t_w, t_s, "", q_v1, q_w, q_s, gbs(t_v1), gbs(t_w),
                    worst, worst > 1e-4 ? "  MISMATCH" : "");
                if (full)
                    std::fprintf(full,
                                 "%s %s R=%lld K=%lld seq0 %.2f alone v1 %.2f wide %.2f smem %.2f "
                                 "seq v1 %.2f wide %.2f smem %.2f\n",
                                 ty.name, sh.name, (long long)sh.R, (long long)sh.K, seq0, t_v1, t_w, t_s, q_v1, q_w,
                                 q_s);
                std::fflush(stdout);
            } else {
                const double t_auto = measure(base, &rel);
                worst = std::max(worst, rel);
                double t_best = 1e30;
                WideTile best{};
                if (full)
                    std::fprintf(full, "%s %s R=%lld K=%lld v1 %.2f us, auto %d,%d,%d %.2f us\n", ty.name, sh.name,
                                 (long long)sh.R, (long long)sh.K, t_v1, at.nr, at.split, at.unroll, t_auto);
                for (int nr : {1, 2, 4})
                    for (int sp : {1, 2, 4})
                        for (int un : {1, 2, 4}) {
                            MatvecConfig c = base;
                            c.nr = nr;
                            c.split = sp;
                            c.unroll = un;
                            const double t = measure(c, &rel);
                            worst = std::max(worst, rel);
                            if (full) std::fprintf(full, "  %d,%d,%d %.2f us (rel %.2g)\n", nr, sp, un, t, rel);
                            if (t < t_best) {
                                t_best = t;
                                best = {nr, sp, un};
                            }
                        }
                char a[32], b[32];
                std::snprintf(a, sizeof a, "%d,%d,%d", at.nr, at.split, at.unroll);
                std::snprintf(b, sizeof b, "%d,%d,%d", best.nr, best.split, best.unroll);
                std::printf("%-6s %-11s %8.2f | %-12s %8.2f %6.0f | %-12s %8.2f %6.0f | %8.0f %.2g%s\n", ty.name, sh.name,
                            t_v1, a, t_auto, gbs(t_auto), b, t_best, gbs(t_best), gbs(t_v1), worst,
                            worst > 1e-4 ? "  MISMATCH" : "");
                std::fflush(stdout);
            }
            if (full) std::fflush(full);
            CK(cudaFree(w));
            CK(cudaFree(x));
            CK(cudaFree(xn));
            CK(cudaFree(y));
            CK(cudaFree(yref));
            CK(cudaFree(q.q));
            CK(cudaFree(q.d));
            CK(cudaFree(q.s));
        }
    }
    if (full) std::fclose(full);
    return 0;
}
