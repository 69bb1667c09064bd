// Decode matmul: y[t, r] = dot(W[r, :], x[t, :]) for a handful of activation rows t (one
// in a decode step), streaming each weight row once per activation row.
//
// Each warp owns NR consecutive weight rows (NR = 2 where R is large enough to keep every
// SM busy, else 1) and reads each activation chunk once for all of them. Quantized weights
// meet activations quantized to 8 bits per 32 (ActQ8, the CPU backend's block_q8_act
// numbers exactly) and are multiplied with __dp4a in integers; float weights, and every
// type when STRATA_CUDA_MATVEC=f32, take the f32 path (weights dequantized in registers,
// deq8, times f32 activations).
//
// Two integer kernels:
//   - split chunks (q4_0, q4_1, q5_0, q5_1, q8_0, q6_K; matvec_split.cuh): four lanes share
//     one 32-element chunk (for the 32-element types, one block),
//     each taking a quarter of its quants (one or two words), so a warp's load instruction
//     covers 8 consecutive blocks (144 to 272 contiguous bytes) instead of 32 lanes each
//     walking its own block in 2-byte steps (9 to 17 load instructions per block, one
//     L1 wavefront per touched line each: the L1, not DRAM, was the limit). The four
//     integer partial sums are added with shuffles (exact) and the block's float value is
//     the same expression as quant.cuh's dot32, so every block contributes bit for bit what
//     it did before; only the order of the fp32 sum over blocks differs. Four chunk slots
//     (32 blocks) per lane and row are loaded before the first is used.
//   - every other type: a lane per 32-element chunk (quant.cuh: dot32), lanes over
//     consecutive chunks, four chunks per lane loaded ahead.
#include "common.cuh"
#include "matvec_split.cuh"
#include "quant.cuh"

namespace strata::cuda {

namespace {

constexpr int kWarps = 4;  // warps per block
constexpr int kU = 4;      // chunk slots per lane loaded before use

// One warp per 32-element chunk of the flattened rows (K % 32 == 0, so chunks never span
// rows and chunk c of the flat array is chunk c of ActQ8's flat arrays).
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t n_chunks, int8_t* __restrict__ q,
                                   float* __restrict__ d, int32_t* __restrict__ s) {
    const int lane = threadIdx.x & 31;
    const int64_t step = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t c = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); c < n_chunks; c += step)
        quantize_chunk32(x[c * 32 + lane], lane, c, ActQ8{q, d, s});
}

template <DType T>
constexpr bool kSplit = T == DType::Q4_0 || T == DType::Q4_1 || T == DType::Q5_0 || T == DType::Q5_1 ||
                        T == DType::Q8_0 || T == DType::Q6_K;

template <DType T, int NR>
__global__ void __launch_bounds__(kWarps * 32) matvec_split_kernel(const uint8_t* __restrict__ w, int64_t row_bytes,
                                                                    int K, int R, ActQ8 x, float* __restrict__ y) {
    using S = Split<T>;
    static_assert(S::kBytes == QT<T>::kBytes);
    static_assert(S::kWords == 2);
    const int lane = threadIdx.x & 31, p = lane & 3, sub = lane >> 2;
    const int r0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * NR;
    const int t = blockIdx.y;
    if (r0 >= R) return;  // whole warps
    const int nc = K >> 5;
    const uint8_t* row[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) row[i] = w + (int64_t)min(r0 + i, R - 1) * row_bytes;
    const int8_t* xq = x.q + (int64_t)t * K;
    const float* xd = x.d + (int64_t)t * nc;
    const int32_t* xs = x.s + (int64_t)t * nc;
    float acc[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) acc[i] = 0.0f;
    for (int c0 = 0; c0 < nc; c0 += 8 * kU) {  // warp-uniform: every lane takes the shuffles
        int xw[kU][S::kWords], si[kU][NR];
        uint32_t hd[kU][NR];
        float d[kU];
        int32_t s[kU];
        int cc[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) {
            // Slots past the row's end reread its last block; their value is dropped below.
            cc[u] = min(c0 + 8 * u + sub, nc - 1);
#pragma unroll
            for (int k = 0; k < S::kWords; ++k) xw[u][k] = *(const int*)(xq + 32 * cc[u] + 4 * S::xi(p, k));
            d[u] = xd[cc[u]];
            s[u] = xs[cc[u]];
#pragma unroll
            for (int i = 0; i < NR; ++i) {
                hd[u][i] = S::head(row[i], cc[u]);
                si[u][i] = S::sumi(row[i], cc[u], p, xw[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < kU; ++u) {
            const bool take = p == 0 && c0 + 8 * u + sub < nc;
#pragma unroll
            for (int i = 0; i < NR; ++i) {
                int v = si[u][i];
                v += __shfl_xor_sync(0xffffffffu, v, 1);
                v += __shfl_xor_sync(0xffffffffu, v, 2);
                const float f = S::value(hd[u][i], v, d[u], s[u]);
                if (take) acc[i] += f;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < NR; ++i) {
        const float v = warp_sum(acc[i]);
        if (lane == 0 && r0 + i < R) y[(int64_t)t * R + r0 + i] = v;
    }
}

// ---- every other quantized type: a chunk per lane ----------------------------------------
template <DType T, int NR>
__global__ void __launch_bounds__(kWarps * 32) matvec_q8_kernel(const uint8_t* __restrict__ w, int64_t row_bytes,
                                                                 int K, int R, ActQ8 x, float* __restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int r0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * NR;
    const int t = blockIdx.y;
    if (r0 >= R) return;  // whole warps
    const int nc = K >> 5;
    const uint8_t* row[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) row[i] = w + (int64_t)min(r0 + i, R - 1) * row_bytes;
    const int8_t* xq = x.q + (int64_t)t * K;
    const float* xd = x.d + (int64_t)t * nc;
    const int32_t* xs = x.s + (int64_t)t * nc;
    float acc[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) acc[i] = 0.0f;
    for (int c0 = lane; c0 < nc; c0 += 32 * kU) {
        // Chunks c0, c0 + 32, ...: the order each lane summed them in before (one chunk per
        // step), so each row's result is what the one-row-per-warp kernel gave.
#pragma unroll
        for (int u = 0; u < kU; ++u) {
            const int c = c0 + 32 * u;
            if (c < nc) {
                const int4 a = *(const int4*)(xq + 32 * c);
                const int4 b = *(const int4*)(xq + 32 * c + 16);
                const int xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
                const float dd = xd[c];
                const int32_t ss = xs[c];
#pragma unroll
                for (int i = 0; i < NR; ++i) acc[i] += QT<T>::dot32(row[i], c, xv, dd, ss);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < NR; ++i) {
        const float v = warp_sum(acc[i]);
        if (lane == 0 && r0 + i < R) y[(int64_t)t * R + r0 + i] = v;
    }
}

__device__ __forceinline__ void load_x8(const float* x, int e, int K, float* v) {
    if ((K & 7) == 0) {  // rows start 32-byte aligned and e + 8 <= K
        const float4 a = *(const float4*)(x + e), b = *(const float4*)(x + e + 4);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = e + k < K ? x[e + k] : 0.0f;
    }
}

// Float weights (f32, f16, bf16; or any type dequantized in registers): lane takes 8
// elements at e = 8 lane + 256 j; 4 of those steps (2 with two rows) are loaded before the first is used,
// and each activation load serves the warp's NR rows. Each row sums in the order of the
// one-row-per-warp kernel before it (j ascending), so results are unchanged.
template <DType T, int NR>
__global__ void __launch_bounds__(kWarps * 32) matvec_f32_kernel(const uint8_t* __restrict__ w, int64_t row_bytes,
                                                                  int K, int R, const float* __restrict__ x,
                                                                  float* __restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int r0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * NR;
    const int t = blockIdx.y;
    if (r0 >= R) return;
    const uint8_t* row[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) row[i] = w + (int64_t)min(r0 + i, R - 1) * row_bytes;
    const float* xr = x + (int64_t)t * K;
    float acc[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) acc[i] = 0.0f;
    constexpr int U = NR == 2 ? 2 : kU;  // 2 x 2 rows: as many bytes in flight, ~80 registers
    for (int e0 = lane * 8; e0 < K; e0 += 256 * U) {
        float xv[U][8], wv[U][NR][8];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int e = e0 + 256 * u;
            if (e < K) {
                load_x8(xr, e, K, xv[u]);
#pragma unroll
                for (int i = 0; i < NR; ++i) load_w8<T>(row[i], e, K, wv[u][i]);
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (e0 + 256 * u < K) {
#pragma unroll
                for (int i = 0; i < NR; ++i)
#pragma unroll
                    for (int k = 0; k < 8; ++k) acc[i] = fmaf(wv[u][i][k], xv[u][k], acc[i]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < NR; ++i) {
        const float v = warp_sum(acc[i]);
        if (lane == 0 && r0 + i < R) y[(int64_t)t * R + r0 + i] = v;
    }
}

// Two rows per warp once that still gives at least ~2 blocks per SM of a 132-SM device.
inline int rows_per_warp(int64_t R) { return R >= 2048 ? 2 : 1; }

}  // namespace

void launch_quantize_q8(const float* x, int64_t rows, int64_t K, ActQ8 out, cudaStream_t s) {
    const int64_t n_chunks = rows * (K / 32);
    const int64_t blocks = std::min<int64_t>(ceil_div(n_chunks, 4), 65535);
    quantize_q8_kernel<<<(unsigned)blocks, 128, 0, s>>>(x, n_chunks, out.q, out.d, out.s);
}

bool matvec_q8_supported(DType t) {
    switch (t) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::IQ4_NL: case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K:
        case DType::Q6_K: case DType::IQ4_XS:
            return true;
        default: return false;
    }
}

void launch_matvec_q8(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, ActQ8 x,
                      int64_t rows, float* y, cudaStream_t s) {
    const int nr = rows_per_warp(R);
    const dim3 grid((unsigned)ceil_div(R, kWarps * nr), (unsigned)rows);
    dispatch_type(t, [&]<DType T>() {
        if constexpr (kSplit<T>) {
            if (nr == 2) matvec_split_kernel<T, 2><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, (int)K, (int)R, x, y);
            else matvec_split_kernel<T, 1><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, (int)K, (int)R, x, y);
        } else if constexpr (!QT<T>::kFloat) {
            if (nr == 2) matvec_q8_kernel<T, 2><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, (int)K, (int)R, x, y);
            else matvec_q8_kernel<T, 1><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, (int)K, (int)R, x, y);
        }
    });
}

void launch_matvec_f32(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                       int64_t rows, float* y, cudaStream_t s) {
    const int nr = rows_per_warp(R);
    const dim3 grid((unsigned)ceil_div(R, kWarps * nr), (unsigned)rows);
    dispatch_type(t, [&]<DType T>() {
        if (nr == 2) matvec_f32_kernel<T, 2><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, (int)K, (int)R, x, y);
        else matvec_f32_kernel<T, 1><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, (int)K, (int)R, x, y);
    });
}

}  // namespace strata::cuda
