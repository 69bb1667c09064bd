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

// The tile's 16 f16 weights of row n from column k, packed (zero outside R x K). f16 rows
// whose 16 elements are 16-byte aligned are copied as they are (f16 -> f32 -> f16 is
// exact, so this is what dequantizing and rounding would give); everything else goes
// through deq8 and rounds to nearest.
template <DType T>
__device__ __forceinline__ void fetch_w16(const uint8_t* __restrict__ W, int64_t row_bytes, int R, int K, int n, int k,
                                          uint4* out) {
    if constexpr (T == DType::F16) {
        if (n < R && k + 16 <= K) {
            const uint8_t* p = W + (int64_t)n * row_bytes + 2 * (int64_t)k;
            if (((uintptr_t)p & 15) == 0) {
                out[0] = ((const uint4*)p)[0];
                out[1] = ((const uint4*)p)[1];
                return;
            }
        }
    }
    float v[16];
    load_w16<T>(W, row_bytes, R, K, n, k, v);
    out[0] = make_uint4(pack_f16x2(v[0], v[1]), pack_f16x2(v[2], v[3]), pack_f16x2(v[4], v[5]), pack_f16x2(v[6], v[7]));
    out[1] = make_uint4(pack_f16x2(v[8], v[9]), pack_f16x2(v[10], v[11]), pack_f16x2(v[12], v[13]),
                        pack_f16x2(v[14], v[15]));
}

// Quantized weights: the global lines holding the block of row n at column k, hinted into
// L1 (prefetch.L1, generic address, no fault, no data dependence) so that the loads of
// fetch_w16 issued after the multiply find them there. Blocks of 256 elements (K-quants,
// iq4_xs) span up to two 128-byte lines, so first, middle and last byte are hinted.
template <DType T>
__device__ __forceinline__ void prefetch_w16(const uint8_t* __restrict__ W, int64_t row_bytes, int R, int K, int n,
                                             int k) {
    if (n >= R || k >= K) return;
    constexpr int kBlock = (T == DType::Q2_K || T == DType::Q3_K || T == DType::Q4_K || T == DType::Q5_K ||
                            T == DType::Q6_K || T == DType::IQ4_XS) ? 256 : 32;
    const uint8_t* b = W + (int64_t)n * row_bytes + (int64_t)(k / kBlock) * QT<T>::kBytes;
    asm volatile("prefetch.L1 [%0];" ::"l"(b));
    asm volatile("prefetch.L1 [%0];" ::"l"(b + QT<T>::kBytes / 2));
    asm volatile("prefetch.L1 [%0];" ::"l"(b + QT<T>::kBytes - 1));
}

// Two shared-memory stages: while the warps multiply the tile of step k out of one stage,
// each thread already holds step k + 1's activations (raw f32) and weights (packed f16) in
// registers, loaded before the multiply so that their latency overlaps it, and stores them
// into the other stage after it; one barrier per step. Quantized weights are hinted into L1
// two steps ahead and loaded and dequantized after the multiply (dequantizing needs the
// data, so loading them before it would stall the multiply on their latency).
//
// TM activation rows per tile: 128, or 64 where 128-row tiles would leave SMs idle (a
// 512-row prompt against a 4096-row weight makes only 128 tiles of 128 x 128). Warps are
// laid out (TM / 32) x (8 / (TM / 32)), each 32 rows x (16 FN) columns. Every 16 x 16
// output fragment sees the same operands in the same K order whatever TM is and however the
// loads are staged, so results are bit for bit those of the 128-row single-stage kernel, and
// the choice of TM (made from R and the row count) cannot make a position's logits depend
// on how a prompt was split.
template <DType T, int TM>
__global__ void __launch_bounds__(kThreads, 2) matmul_tc_kernel(const uint8_t* __restrict__ W, int64_t row_bytes,
                                                                 int K, int R, const float* __restrict__ X, int M,
                                                                 float* __restrict__ Y) {
    using namespace nvcuda;
    static_assert(TM == 64 || TM == 128);
    constexpr int kWM = TM / 32, kWN = 8 / kWM, FN = BN / kWN / 16;
    __shared__ __align__(128) __half smem[2][(TM + BN) * LDH];  // [stage]: A rows, then B rows; 40 or 30 KB

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * BN;
    const int lr = tid & 127, part = tid >> 7;  // loader: one row, 16 of the 32 columns
    const bool loads_x = lr < TM;               // TM = 64: threads with lr < 64 load A too
    const int wm = warp % kWM, wn = warp / kWM;  // warp tile: rows 32 wm .. +32, cols 16 FN wn ..

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][FN];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    float xv[16];
    uint4 wp[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
    auto store_stage = [&](int st) {
        __half* As = smem[st];
        __half* Bs = smem[st] + TM * LDH;
        if (loads_x) store_f16x16(As + lr * LDH + 16 * part, xv);
        uint4* d = reinterpret_cast<uint4*>(Bs + lr * LDH + 16 * part);
        d[0] = wp[0];
        d[1] = wp[1];
    };
    if (loads_x) load_x16(X, M, K, m0 + lr, 16 * part, xv);
    fetch_w16<T>(W, row_bytes, R, K, n0 + lr, 16 * part, wp);
    if constexpr (!QT<T>::kFloat) prefetch_w16<T>(W, row_bytes, R, K, n0 + lr, BK + 16 * part);
    store_stage(0);
    __syncthreads();

    const int nk = (K + BK - 1) / BK;
    for (int kt = 0; kt < nk; ++kt) {
        const int cur = kt & 1;
        const bool more = kt + 1 < nk;
        const int k1 = (kt + 1) * BK + 16 * part;
        if (more) {
            if (loads_x) load_x16(X, M, K, m0 + lr, k1, xv);
            if constexpr (QT<T>::kFloat) fetch_w16<T>(W, row_bytes, R, K, n0 + lr, k1, wp);
            else prefetch_w16<T>(W, row_bytes, R, K, n0 + lr, k1 + BK);  // two steps ahead
        }
        const __half* As = smem[cur];
        const __half* Bs = smem[cur] + TM * LDH;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[FN];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (32 * wm + 16 * i) * LDH + kk, LDH);
#pragma unroll
            for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(b[j], Bs + (16 * FN * wn + 16 * j) * LDH + kk, LDH);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        // Stage cur ^ 1 was last read in step kt - 1, before the barrier that ended it.
        if (more) {
            if constexpr (!QT<T>::kFloat) fetch_w16<T>(W, row_bytes, R, K, n0 + lr, k1, wp);
            store_stage(cur ^ 1);
        }
        __syncthreads();
    }

    // The loop ended on a barrier: the stages are free to hold the output staging (8 KB).
    float* st = reinterpret_cast<float*>(&smem[0][0]) + warp * 256;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) {
            wmma::store_matrix_sync(st, acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                const int m = m0 + 32 * wm + 16 * i + (e >> 4), n = n0 + 16 * FN * wn + 16 * j + (e & 15);
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
    // 64-row tiles when 128-row ones would make fewer than two per SM of a 132-SM device.
    const bool small = grid.x * grid.y < 264;
    const dim3 grid64((unsigned)ceil_div(R, BN), (unsigned)ceil_div(rows, 64));
    dispatch_type(t, [&]<DType T>() {
        if (tensor_cores && small)
            matmul_tc_kernel<T, 64><<<grid64, kThreads, 0, s>>>(w, row_bytes, (int)K, (int)R, x, (int)rows, y);
        else if (tensor_cores)
            matmul_tc_kernel<T, 128><<<grid, kThreads, 0, s>>>(w, row_bytes, (int)K, (int)R, x, (int)rows, y);
        else
            matmul_f32_kernel<T><<<grid, kThreads, 0, s>>>(w, row_bytes, (int)K, (int)R, x, (int)rows, y);
    });
}

}  // namespace strata::cuda
