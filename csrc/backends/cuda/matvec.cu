// Decode matmul: y[t, r] = dot(W[r, :], x[t, :]) for a handful of activation rows t (one
// in a decode step), streaming each weight row once per activation row.
//
// The default decode path is matvec_wide.cu (16-byte loads, optional rows per warp and
// split-K) for f16, bf16, q8_0, q4_0, q4_K and q6_K; the kernels here serve the other types,
// widths the wide kernel does not take, and every type under STRATA_CUDA_MATVEC=v1.
//
// One warp per weight row; the lanes walk the row in 32-element chunks (lane, lane + 32,
// ...), so a warp's loads of one step cover consecutive blocks: coalesced, several bytes
// per lane in flight. Quantized weights meet activations quantized to 8 bits per 32 (ActQ8,
// the CPU backend's block_q8_act numbers exactly) and are multiplied with __dp4a in
// integers (quant.cuh: dot32). Float weights, and every type when STRATA_CUDA_MATVEC=f32,
// take the f32 path: weights dequantized in registers (deq8) times f32 activations.
#include "common.cuh"
#include "quantize_q8.cuh"
#include "quant.cuh"

namespace strata::cuda {

namespace {

constexpr int kWarps = 4;  // weight rows per block

// One warp per 32-element chunk of the flattened rows (K % 32 == 0, so chunks never span
// rows and chunk c of the flat array is chunk c of ActQ8's flat arrays).
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t n_chunks, ActQ8 out) {
    pdl_begin();
    const int lane = threadIdx.x & 31;
    const int64_t step = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t c = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); c < n_chunks; c += step)
        quantize_chunk32(x[c * 32 + lane], c, out);
}

template <DType T>
__global__ void __launch_bounds__(kWarps * 32) matvec_q8_kernel(const uint8_t* __restrict__ w, int64_t row_bytes,
                                                                 int K, int R, ActQ8 x, float* __restrict__ y) {
    pdl_begin();
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int t = blockIdx.y;
    if (r >= R) return;  // whole warps
    const int nc = K >> 5;
    const uint8_t* row = w + (int64_t)r * row_bytes;
    const int8_t* xq = x.q + (int64_t)t * K;
    const float* xd = x.d + (int64_t)t * nc;
    const int32_t* xs = x.s + (int64_t)t * nc;
    float acc = 0.0f;
#pragma unroll 2
    for (int c = lane; c < nc; c += 32) {
        const int4 a = *(const int4*)(xq + 32 * c);
        const int4 b = *(const int4*)(xq + 32 * c + 16);
        const int xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        acc += QT<T>::dot32(row, c, xv, xd[c], xs[c]);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(int64_t)t * R + r] = acc;
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

template <DType T>
__global__ void __launch_bounds__(kWarps * 32) matvec_f32_kernel(const uint8_t* __restrict__ w, int64_t row_bytes,
                                                                  int K, int R, const float* __restrict__ x,
                                                                  float* __restrict__ y) {
    pdl_begin();
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int t = blockIdx.y;
    if (r >= R) return;
    const uint8_t* row = w + (int64_t)r * row_bytes;
    const float* xr = x + (int64_t)t * K;
    float acc = 0.0f;
#pragma unroll 2
    for (int e = lane * 8; e < K; e += 256) {
        float wv[8], xv[8];
        load_w8<T>(row, e, K, wv);
        load_x8(xr, e, K, xv);
#pragma unroll
        for (int k = 0; k < 8; ++k) acc = fmaf(wv[k], xv[k], acc);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(int64_t)t * R + r] = acc;
}

}  // namespace

void launch_quantize_q8(const float* x, int64_t rows, int64_t K, ActQ8 out, Launch s) {
    const int64_t n_chunks = rows * (K / 32);
    const int64_t blocks = std::min<int64_t>(ceil_div(n_chunks, 4), 65535);
    launch_kernel(quantize_q8_kernel, (unsigned)blocks, 128, 0, s, x, n_chunks, out);
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
                      int64_t rows, float* y, const MatvecConfig& cfg, Launch s) {
    if (matvec_takes_wide(t, K, true, cfg)) {
        launch_matvec_wide_q8(t, w, row_bytes, K, R, x, rows, y, cfg, s);
        return;
    }
    const dim3 grid((unsigned)ceil_div(R, kWarps), (unsigned)rows);
    dispatch_type(t, [&]<DType T>() {
        if constexpr (!QT<T>::kFloat)
            launch_kernel(matvec_q8_kernel<T>, grid, kWarps * 32, 0, s, w, row_bytes, (int)K, (int)R, x, y);
    });
}

void launch_matvec_f32(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                       int64_t rows, float* y, const MatvecConfig& cfg, Launch s) {
    if (matvec_takes_wide(t, K, false, cfg)) {
        launch_matvec_wide_f32(t, w, row_bytes, K, R, x, rows, y, cfg, s);
        return;
    }
    const dim3 grid((unsigned)ceil_div(R, kWarps), (unsigned)rows);
    dispatch_type(t, [&]<DType T>() {
        launch_kernel(matvec_f32_kernel<T>, grid, kWarps * 32, 0, s, w, row_bytes, (int)K, (int)R, x, y);
    });
}

}  // namespace strata::cuda
