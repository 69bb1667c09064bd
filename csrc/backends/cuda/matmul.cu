// Prefill matmul: Y[t, r] = dot(X[t, :], W[r, :]) for many activation rows t.
//
// Tiles of 128 activation rows x 128 weight rows, stepping 32 along K. Each step, 256
// threads load the tile's activations (f32) and dequantize the tile's weights (any GGUF
// type, quant.cuh: deq8) into shared memory, then multiply:
//   - tensor cores (default for f16 and quantized weights): both operands stored as f16,
//     WMMA 16x16x16 fragments accumulating in f32; 8 warps, each 32 x 64 of the tile.
//   - f32 FMA (f32 and bf16 weights, whose values f16 cannot hold exactly, or every type
//     with STRATA_CUDA_MMA=0): each thread accumulates 8 x 8 outputs.
// Rows past T or R and columns past K are zero-filled, so any shape is correct.
#include <mma.h>

#include "common.cuh"
#include "quant.cuh"

namespace strata::cuda {

namespace {

constexpr int BM = 128;  // activation rows per tile
constexpr int BN = 128;  // weight rows per tile
constexpr int BK = 32;   // K per step
constexpr int kThreads = 256;

// 16 activations of row m from column k (zero outside T x K).
__device__ __forceinline__ void load_x16(const float* __restrict__ X, int T, int K, int m, int k, float* v) {
    if (m >= T) {
#pragma unroll
        for (int i = 0; i < 16; ++i) v[i] = 0.0f;
        return;
    }
    const float* p = X + (int64_t)m * K + k;
    if ((K & 3) == 0 && k + 16 <= K) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float4 a = ((const float4*)p)[i];
            v[4 * i] = a.x; v[4 * i + 1] = a.y; v[4 * i + 2] = a.z; v[4 * i + 3] = a.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < 16; ++i) v[i] = k + i < K ? p[i] : 0.0f;
    }
}

// 16 dequantized weights of row n from column k (zero outside R x K).
template <DType T>
__device__ __forceinline__ void load_w16(const uint8_t* __restrict__ W, int64_t row_bytes, int R, int K, int n,
                                         int k, float* v) {
    if (n >= R || k >= K) {
#pragma unroll
        for (int i = 0; i < 16; ++i) v[i] = 0.0f;
        return;
    }
    const uint8_t* row = W + (int64_t)n * row_bytes;
    load_w8<T>(row, k, K, v);
    if (k + 8 < K) load_w8<T>(row, k + 8, K, v + 8);
    else {
#pragma unroll
        for (int i = 8; i < 16; ++i) v[i] = 0.0f;
    }
}

// ---- tensor cores (WMMA f16, f32 accumulate) --------------------------------------------
constexpr int LDH = BK + 8;  // f16 row stride in shared memory (80 bytes: 16-byte aligned rows)

__device__ __forceinline__ uint32_t pack_f16x2(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b);  // a in the low half: memory order a, b
    return *reinterpret_cast<const uint32_t*>(&h);
}
// 16 floats to 16 f16 at a 16-byte aligned address.
__device__ __forceinline__ void store_f16x16(__half* dst, const float* v) {
    uint4* d = reinterpret_cast<uint4*>(dst);
    d[0] = make_uint4(pack_f16x2(v[0], v[1]), pack_f16x2(v[2], v[3]), pack_f16x2(v[4], v[5]), pack_f16x2(v[6], v[7]));
    d[1] = make_uint4(pack_f16x2(v[8], v[9]), pack_f16x2(v[10], v[11]), pack_f16x2(v[12], v[13]),
                      pack_f16x2(v[14], v[15]));
}

template <DType T>
__global__ void __launch_bounds__(kThreads) matmul_tc_kernel(const uint8_t* __restrict__ W, int64_t row_bytes,
                                                              int K, int R, const float* __restrict__ X, int M,
                                                              float* __restrict__ Y) {
    using namespace nvcuda;
    __shared__ __align__(128) __half As[BM * LDH];
    __shared__ __align__(128) __half Bs[BN * LDH];
    __shared__ __align__(128) float stage[kThreads / 32][16 * 16];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int lr = tid & 127, part = tid >> 7;  // loader: one row, 16 of the 32 columns
    const int wm = warp & 3, wn = warp >> 2;    // warp tile: rows 32 wm .. +32, cols 64 wn .. +64

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    for (int k0 = 0; k0 < K; k0 += BK) {
        float v[16];
        load_x16(X, M, K, m0 + lr, k0 + 16 * part, v);
        store_f16x16(As + lr * LDH + 16 * part, v);
        load_w16<T>(W, row_bytes, R, K, n0 + lr, k0 + 16 * part, v);
        store_f16x16(Bs + lr * LDH + 16 * part, v);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[4];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (32 * wm + 16 * i) * LDH + kk, LDH);
#pragma unroll
            for (int j = 0; j < 4; ++j) wmma::load_matrix_sync(b[j], Bs + (64 * wn + 16 * j) * LDH + kk, LDH);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

    float* st = stage[warp];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            wmma::store_matrix_sync(st, acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                const int m = m0 + 32 * wm + 16 * i + (e >> 4), n = n0 + 64 * wn + 16 * j + (e & 15);
                if (m < M && n < R) Y[(int64_t)m * R + n] = st[e];
            }
            __syncwarp();
        }
}

// ---- f32 FMA ---------------------------------------------------------------------------
constexpr int LDF = BM + 4;  // transposed tiles: [k][row]

template <DType T>
__global__ void __launch_bounds__(kThreads) matmul_f32_kernel(const uint8_t* __restrict__ W, int64_t row_bytes,
                                                               int K, int R, const float* __restrict__ X, int M,
                                                               float* __restrict__ Y) {
    __shared__ float As[BK * LDF];
    __shared__ float Bs[BK * LDF];
    const int tid = threadIdx.x;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int lr = tid & 127, part = tid >> 7;
    const int tx = tid & 15, ty = tid >> 4;  // outputs (ty + 16 i, tx + 16 j)

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        float v[16];
        load_x16(X, M, K, m0 + lr, k0 + 16 * part, v);
#pragma unroll
        for (int i = 0; i < 16; ++i) As[(16 * part + i) * LDF + lr] = v[i];
        load_w16<T>(W, row_bytes, R, K, n0 + lr, k0 + 16 * part, v);
#pragma unroll
        for (int i = 0; i < 16; ++i) Bs[(16 * part + i) * LDF + lr] = v[i];
        __syncthreads();
#pragma unroll 4
        for (int k = 0; k < BK; ++k) {
            float a[8], b[8];
#pragma unroll
            for (int i = 0; i < 8; ++i) a[i] = As[k * LDF + ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 8; ++j) b[j] = Bs[k * LDF + tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int n = n0 + tx + 16 * j;
            if (n < R) Y[(int64_t)m * R + n] = acc[i][j];
        }
    }
}

}  // namespace

bool matmul_tc_exact_enough(DType t) { return t != DType::F32 && t != DType::BF16; }

void launch_matmul(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x, int64_t rows,
                   float* y, bool tensor_cores, cudaStream_t s) {
    const dim3 grid((unsigned)ceil_div(R, BN), (unsigned)ceil_div(rows, BM));
    dispatch_type(t, [&]<DType T>() {
        if (tensor_cores)
            matmul_tc_kernel<T><<<grid, kThreads, 0, s>>>(w, row_bytes, (int)K, (int)R, x, (int)rows, y);
        else
            matmul_f32_kernel<T><<<grid, kThreads, 0, s>>>(w, row_bytes, (int)K, (int)R, x, (int)rows, y);
    });
}

}  // namespace strata::cuda
