// Decode matvec with 16-byte weight loads (the per-type units: matvec_wide.cuh).
//
// A block of 4 warps. Each warp takes NR consecutive weight rows (x is loaded once for them)
// and 1/S of their units (split-K: S warps of the block share the rows, S = 1, 2 or 4); its
// lanes keep U steps of loads in flight. The S partial sums meet in shared memory and are
// added in a fixed order, so results do not depend on timing. NR and S are chosen by shape
// (wide_tile): enough warps to cover every SM even for the 512- and 2048-row matrices of 1B
// models, and NR > 1 only where the rows are plentiful.
#include <type_traits>

#include "matvec_wide.cuh"

namespace strata::cuda {

namespace {

constexpr int kWarps = 4;

template <class Op, int NR, int U>
__global__ void __launch_bounds__(kWarps * 32) matvec_wide_kernel(const uint8_t* __restrict__ w, int64_t row_bytes,
                                                                   int K, int R, typename Op::XArg x0,
                                                                   float* __restrict__ y, int S) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r0 = (blockIdx.x * (kWarps / S) + warp / S) * NR, slice = warp % S;
    const int t = blockIdx.y;
    const typename Op::XArg x = Op::row_x(x0, t, K);
    y += (int64_t)t * R;
    int i0, i1;
    wide_steps(K / Op::kElems, slice, S, &i0, &i1);
    float acc[NR];
    wide_lane_sums<Op, NR, U>(w, row_bytes, K, R, r0, x, i0, i1, lane, acc);
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] = warp_sum(acc[r]);
    if (S == 1) {
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < NR; ++r)
                if (r0 + r < R) y[r0 + r] = acc[r];
        }
        return;
    }
    __shared__ float part[kWarps][NR];
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < NR; ++r) part[warp][r] = acc[r];
    }
    __syncthreads();
    if (slice == 0 && lane < NR && r0 + lane < R) {
        float s = part[warp][lane];
        for (int k = 1; k < S; ++k) s += part[warp + k][lane];
        y[r0 + lane] = s;
    }
}

template <class Op, int NR>
void launch_nr(const uint8_t* w, int64_t row_bytes, int K, int R, const typename Op::XArg& x, int rows, float* y,
               int S, int U, cudaStream_t s) {
    const dim3 grid((unsigned)ceil_div(ceil_div(R, NR), kWarps / S), (unsigned)rows);
    switch (U) {
        case 1: matvec_wide_kernel<Op, NR, 1><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, K, R, x, y, S); break;
        case 2: matvec_wide_kernel<Op, NR, 2><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, K, R, x, y, S); break;
        default: matvec_wide_kernel<Op, NR, 4><<<grid, kWarps * 32, 0, s>>>(w, row_bytes, K, R, x, y, S); break;
    }
}

template <class Op>
void launch_op(const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const typename Op::XArg& x, int64_t rows,
               float* y, const MatvecConfig& cfg, cudaStream_t s) {
    const WideTile tile = wide_tile(R, K / Op::kElems, Op::kElems == 8, cfg);
    switch (tile.nr) {
        case 1: launch_nr<Op, 1>(w, row_bytes, (int)K, (int)R, x, (int)rows, y, tile.split, tile.unroll, s); break;
        case 2: launch_nr<Op, 2>(w, row_bytes, (int)K, (int)R, x, (int)rows, y, tile.split, tile.unroll, s); break;
        default: launch_nr<Op, 4>(w, row_bytes, (int)K, (int)R, x, (int)rows, y, tile.split, tile.unroll, s); break;
    }
}

}  // namespace

WideTile wide_tile(int64_t R, int64_t units, bool float_units, const MatvecConfig& cfg) {
    // ~12 warps per SM: 4 KB to 16 KB of weights in flight per SM at the defaults below.
    const int64_t target = 12 * (int64_t)std::max(cfg.num_sms, 1);
    WideTile t;
    t.nr = R >= 4 * target ? 4 : R >= 2 * target ? 2 : 1;
    const int64_t steps = (units + 31) / 32;
    t.split = 1;
    while (t.split < 4 && ceil_div(R, t.nr) * t.split < target && steps >= 2 * t.split) t.split *= 2;
    // loads in flight per lane: NR x U units (f16: 16 bytes each; quantized: 32 elements each)
    t.unroll = std::max(1, (float_units ? 8 : 4) / t.nr);
    if (t.unroll > 4) t.unroll = 4;
    if (cfg.nr > 0) t.nr = cfg.nr;
    if (cfg.split > 0) t.split = cfg.split;
    if (cfg.unroll > 0) t.unroll = cfg.unroll;
    return t;
}

bool matvec_wide_supported(DType t, int64_t K, bool q8) {
    switch (t) {
        case DType::F16: case DType::BF16: return !q8 && K % 8 == 0;
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::IQ4_NL: case DType::Q4_K: case DType::Q6_K:
            return q8 && K % 32 == 0;
        default: return false;
    }
}

void launch_matvec_wide_q8(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, ActQ8 x,
                           int64_t rows, float* y, const MatvecConfig& cfg, cudaStream_t s) {
    dispatch_type(t, [&]<DType T>() {
        using Op = typename WideOp<T>::type;
        if constexpr (!std::is_void_v<Op>) {
            if constexpr (Op::kElems == 32) launch_op<Op>(w, row_bytes, K, R, x, rows, y, cfg, s);
        }
    });
}

void launch_matvec_wide_f32(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                            int64_t rows, float* y, const MatvecConfig& cfg, cudaStream_t s) {
    dispatch_type(t, [&]<DType T>() {
        using Op = typename WideOp<T>::type;
        if constexpr (!std::is_void_v<Op>) {
            if constexpr (Op::kElems == 8) launch_op<Op>(w, row_bytes, K, R, x, rows, y, cfg, s);
        }
    });
}

}  // namespace strata::cuda
