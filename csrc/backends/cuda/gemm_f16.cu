// Prefill matmul on tensor cores: Y[t, r] = dot(X[t, :], W[r, :]) for many rows t.
//
// Three steps per matmul, all on the stream:
//   1. the activations are rounded to f16 once (rows x K), not once per weight tile;
//   2. the weights are dequantized to f16 into scratch, a chunk of rows at a time (f16
//      weights are used in place), a bandwidth-bound pass that costs a fraction of the
//      multiply at prefill sizes;
//   3. a GEMM: cuBLAS's (cublas.cu) where it loads, else this file's, on mma.sync m16n8k16 (f16 in, f32 accumulate): 128 weight rows x 128 (or 64)
//      activation rows per block, 8 warps of 32 x 64 (or 32 x 32), K in steps of 32 through a
//      4-stage cp.async pipeline, operands read with ldmatrix from XOR-swizzled shared memory
//      (64-byte rows; the swizzle puts the 8 rows of an 8x8 matrix in 8 different banks).
// The f16 operands are the same values the WMMA kernel (matmul.cu) uses: weights rounded to
// f16 once, activations rounded to f16. On these tiles each output's sum runs over K in the
// same order whatever the row count or tile choice, so a position's logits do not depend on
// how a prompt is split into steps; cuBLAS picks its kernel (and may split K) by shape, so
// there the last bits of a position can depend on its step's row count. K must be a multiple of 32 (every quantized type; float
// weights of other widths take matmul.cu).
#include <cstdlib>

#include "common.cuh"
#include "mma.cuh"
#include "quant.cuh"
#include "weight_split.cuh"

namespace strata::cuda {

namespace {

constexpr int kBK = 32;      // K per pipeline stage: one 64-byte row per operand row
constexpr int kStages = 4;
constexpr int kThreads = 256;
constexpr int kBN = 128;     // weight rows per block

// Dequantized weights per chunk: 256 MiB unless STRATA_CUDA_GEMM_CHUNK_MB says otherwise (a
// chunk that fits the L2 cache measured 1.7x slower on an 8B model: fewer blocks per GEMM;
// 256 MiB holds every matrix of an 8B Llama whole, 64 MiB measured 14% slower there).
int64_t chunk_halves() {
    static const int64_t halves = [] {
        const char* v = std::getenv("STRATA_CUDA_GEMM_CHUNK_MB");
        const int64_t mb = v ? std::atoll(v) : 0;
        return (mb > 0 ? mb : 256) << 19;
    }();
    return halves;
}

// Byte offset of 16-byte chunk c (0..3) of row r in a tile of 64-byte rows.
__device__ __forceinline__ uint32_t swizzle(int r, int c) { return (uint32_t)(r * 64 + ((c ^ ((r >> 1) & 3)) << 4)); }

// X: M x K f16 (activations), W: N x K f16 (weights), Y[m * ldy + n] f32.
template <int BM>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_f16_kernel(const __half* __restrict__ X, const __half* __restrict__ W, int M, int N, int K,
                    float* __restrict__ Y, int64_t ldy) {
    constexpr int MT = BM / 32;  // m16 tiles per warp: 2 warps share the block's BM rows
    constexpr uint32_t kABytes = BM * 64, kStageBytes = kABytes + kBN * 64;
    extern __shared__ __align__(128) uint8_t smem[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm * BM/2, weight rows wn * 32
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * kBN;
    const uint32_t base = smem_addr(smem);
    const int n_kt = K / kBK;

    auto load_stage = [&](int stage, int kt) {
        const uint32_t sa = base + stage * kStageBytes, sb = sa + kABytes;
        const int k = kt * kBK;
#pragma unroll
        for (int i = tid; i < BM * 4; i += kThreads) {
            const int r = i >> 2, c = i & 3, m = m0 + r;
            cp_async16(sa + swizzle(r, c), X + (int64_t)(m < M ? m : 0) * K + k + 8 * c, m < M);
        }
#pragma unroll
        for (int i = tid; i < kBN * 4; i += kThreads) {
            const int r = i >> 2, c = i & 3, n = n0 + r;
            cp_async16(sb + swizzle(r, c), W + (int64_t)(n < N ? n : 0) * K + k + 8 * c, n < N);
        }
    };

    float acc[MT][4][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < n_kt) load_stage(s, s);
        cp_async_commit();  // empty groups keep the group count in step with kt
    }
    for (int kt = 0; kt < n_kt; ++kt) {
        cp_async_wait<kStages - 2>();  // stage kt has landed (for this thread) ...
        __syncthreads();               // ... for every thread, and stage kt - 1 is free again
        const int next = kt + kStages - 1;
        if (next < n_kt) load_stage(next % kStages, next);
        cp_async_commit();

        const uint32_t sa = base + (kt % kStages) * kStageBytes, sb = sa + kABytes;
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {  // two k16 steps per stage
            uint32_t a[MT][4], b[4][2];
#pragma unroll
            for (int i = 0; i < MT; ++i)  // matrices: rows 0-7 / 8-15 x k 0-7, then k 8-15
                ldmatrix_x4(a[i], sa + swizzle(wm * (BM / 2) + 16 * i + (lane & 15), 2 * kk + (lane >> 4)));
#pragma unroll
            for (int j = 0; j < 2; ++j) {  // two n8 tiles: n 0-7 x k 0-7, k 8-15, then n 8-15
                uint32_t t[4];
                ldmatrix_x4(t, sb + swizzle(wn * 32 + 16 * j + (lane & 7) + ((lane >> 4) << 3),
                                            2 * kk + ((lane >> 3) & 1)));
                b[2 * j][0] = t[0];
                b[2 * j][1] = t[1];
                b[2 * j + 1][0] = t[2];
                b[2 * j + 1][1] = t[3];
            }
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma_16816(acc[i][j], a[i], b[j]);
        }
    }
    cp_async_wait<0>();

    // Accumulator layout: c0, c1 at (row lane/4, cols 2 (lane%4) + 0, 1); c2, c3 eight rows down.
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + wn * 32 + 8 * j + 2 * (lane & 3);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int m = m0 + wm * (BM / 2) + 16 * i + (lane >> 2) + 8 * h;
                if (m >= M || n >= N) continue;
                float* y = Y + (int64_t)m * ldy + n;
                y[0] = acc[i][j][2 * h];
                if (n + 1 < N) y[1] = acc[i][j][2 * h + 1];
            }
        }
}

__device__ __forceinline__ uint32_t pack_half2(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b);  // a in the low half: memory order a, b
    return *reinterpret_cast<const uint32_t*>(&h);
}

// Rows [0, rows) of a weight (K a multiple of 32) to f16, 8 elements per thread and step.
template <DType T, bool kSplit>
__global__ void dequant_f16_kernel(const uint8_t* __restrict__ W, int64_t row_bytes, int K, int64_t rows,
                                   __half* __restrict__ out) {
    const int per_row = K / 8;
    const int64_t n = rows * per_row;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < n; g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = g / per_row;
        const int e = (int)(g - r * per_row) * 8;
        float v[8];
        if constexpr (kSplit) load_w8_split<T>(W + r * row_bytes, e, K, v);
        else load_w8<T>(W + r * row_bytes, e, K, v);
        *reinterpret_cast<uint4*>(out + r * K + e) =
            make_uint4(pack_half2(v[0], v[1]), pack_half2(v[2], v[3]), pack_half2(v[4], v[5]), pack_half2(v[6], v[7]));
    }
}

__global__ void f32_to_f16_kernel(const float* __restrict__ x, __half* __restrict__ y, int64_t n8) {
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < n8; g += (int64_t)gridDim.x * blockDim.x) {
        const float4 a = reinterpret_cast<const float4*>(x)[2 * g];
        const float4 b = reinterpret_cast<const float4*>(x)[2 * g + 1];
        reinterpret_cast<uint4*>(y)[g] =
            make_uint4(pack_half2(a.x, a.y), pack_half2(a.z, a.w), pack_half2(b.x, b.y), pack_half2(b.z, b.w));
    }
}

// Grid-stride kernels: enough 256-thread blocks to fill the device, no more.
unsigned grid_for(int64_t items, int num_sms) {
    return (unsigned)std::max<int64_t>(1, std::min<int64_t>(ceil_div(items, 256), (int64_t)num_sms * 8));
}

template <int BM>
void launch_tiles(const __half* x, const __half* w, int64_t M, int64_t N, int64_t K, float* y, int64_t ldy,
                  cudaStream_t s) {
    constexpr int kSmem = kStages * (BM * 64 + kBN * 64);
    static bool attribute_set = false;  // per instantiation; the value is the same on every device
    if (!attribute_set) {
        cudaFuncSetAttribute(gemm_f16_kernel<BM>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
        attribute_set = true;
    }
    const dim3 grid((unsigned)ceil_div(N, kBN), (unsigned)ceil_div(M, BM));
    gemm_f16_kernel<BM><<<grid, kThreads, kSmem, s>>>(x, w, (int)M, (int)N, (int)K, y, ldy);
}

}  // namespace

bool gemm_f16_supported(DType t, int64_t K) { return matmul_tc_exact_enough(t) && K % kBK == 0; }

int64_t gemm_f16_chunk_rows(int64_t K, int64_t R) {
    return std::min<int64_t>(R, std::max<int64_t>(kBN, chunk_halves() / K / kBN * kBN));
}

int64_t gemm_f16_scratch_halves(DType t, int64_t K, int64_t R, int64_t max_rows) {
    const int64_t acts = ceil_div(max_rows * K, 128) * 128;
    return acts + (t == DType::F16 ? 0 : gemm_f16_chunk_rows(K, R) * K);
}

void launch_gemm_f16(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                     int64_t rows, float* y, __half* scratch, int num_sms, const Cublas* blas, cudaStream_t s,
                     bool split) {
    __half* xh = scratch;
    f32_to_f16_kernel<<<grid_for(rows * K / 8, num_sms), 256, 0, s>>>(x, xh, rows * K / 8);
    __half* wh = scratch + ceil_div(rows * K, 128) * 128;
    const int64_t chunk = t == DType::F16 ? R : gemm_f16_chunk_rows(K, R);
    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
        const int64_t n = std::min(chunk, R - r0);
        const __half* wsrc;
        if (t == DType::F16) {
            wsrc = reinterpret_cast<const __half*>(w) + r0 * K;
        } else {
            dispatch_type(t, [&]<DType T>() {
                const unsigned grid = grid_for(n * K / 8, num_sms);
                if constexpr (split_qs_bytes(T) > 0) {
                    if (split) {
                        dequant_f16_kernel<T, true><<<grid, 256, 0, s>>>(w + r0 * row_bytes, row_bytes, (int)K, n, wh);
                        return;
                    }
                }
                dequant_f16_kernel<T, false><<<grid, 256, 0, s>>>(w + r0 * row_bytes, row_bytes, (int)K, n, wh);
            });
            wsrc = wh;
        }
        if (blas) {
            blas->gemm_f16(wsrc, xh, y + r0, n, rows, K, R);
            continue;
        }
        // Small grids (few tokens or few weight rows) take 64-row tiles: twice the blocks.
        if (ceil_div(n, kBN) * ceil_div(rows, 128) < 2 * (int64_t)num_sms)
            launch_tiles<64>(xh, wsrc, rows, n, K, y + r0, R, s);
        else
            launch_tiles<128>(xh, wsrc, rows, n, K, y + r0, R, s);
    }
}

}  // namespace strata::cuda
