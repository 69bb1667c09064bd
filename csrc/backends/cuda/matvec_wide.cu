// Decode matvec with 16-byte weight loads (the per-type units: matvec_wide.cuh).
//
// A block of 4 warps. Each warp takes NR consecutive weight rows (x is loaded once for them)
// and 1/S of their units (split-K: S warps of the block share the rows, S = 1, 2 or 4); its
// lanes keep U steps of loads in flight. With S > 1 the partial sums meet in shared memory and
// are added in a fixed order, so results do not depend on timing; with S = 1 the kernel has
// no shared memory at all (see wide_tile for why that matters).
#include <type_traits>

#include "activation.cuh"
#include "matvec_wide.cuh"

namespace strata::cuda {

namespace {

constexpr int kWarps = 4;

// Up to kMaxMatvecParts weights of one type and width against the same x: the blocks of part
// p follow those of part p - 1 (a launch of one weight is one part).
struct Parts {
    const uint8_t* w[kMaxMatvecParts];
    float* y[kMaxMatvecParts];
    int R[kMaxMatvecParts];
    int end[kMaxMatvecParts];  // first block past part p
    bool early;                // first weight loads before the PDL wait (wide_lane_sums)
};

template <class Op, int NR, int U, bool kSplit>
__global__ void __launch_bounds__(kWarps * 32) matvec_wide_kernel(Parts parts, int64_t row_bytes, int K,
                                                                   typename Op::XArg x0, int S) {
    // pdl_begin: in wide_lane_sums (nothing before it touches memory).
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // The part of this block (uniform over the block: no divergence), then its block index in it.
    int bx = blockIdx.x;
    const uint8_t* __restrict__ w = parts.w[0];
    float* __restrict__ y = parts.y[0];
    int R = parts.R[0];
    if (bx >= parts.end[0]) {
        const bool second = bx < parts.end[1];
        bx -= second ? parts.end[0] : parts.end[1];
        w = second ? parts.w[1] : parts.w[2];
        y = second ? parts.y[1] : parts.y[2];
        R = second ? parts.R[1] : parts.R[2];
    }
    const int r0 = (bx * (kWarps / S) + warp / S) * NR, slice = warp % S;
    const int t = blockIdx.y;
    const typename Op::XArg x = Op::row_x(x0, t, K);
    y += (int64_t)t * R;
    int i0, i1;
    wide_steps(K / Op::kElems, slice, S, &i0, &i1);
    float acc[NR];
    wide_lane_sums<Op, NR, U>(w, row_bytes, K, R, r0, x, i0, i1, lane, acc, parts.early);
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] = warp_sum(acc[r]);
    if constexpr (!kSplit) {  // S == 1
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < NR; ++r)
                if (r0 + r < R) y[r0 + r] = acc[r];
        }
    } else {
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
}

// gate/up and the glu after them in one launch (f16 / bf16 weights, one row, no split-K):
// a block's first kWarps / 2 warps take NR rows of gate each, the others the same rows of up,
// and the gate warps write h = act(gate) * up from the up sums in shared memory, so neither
// gate nor up goes to memory and the glu kernel (~3 us a layer with its launch) is gone.
// Each row's sum is wide_lane_sums's, as in matvec_wide_kernel, and the product is
// binary_kernel's (activation.cuh): the bits of the unfused launches. The quantized types
// cannot do this: the down matvec reads the glu's int8 copy, whose scales span 32 outputs.
template <class Op, int NR, int U>
__global__ void __launch_bounds__(kWarps * 32) matvec_wide_glu_kernel(const uint8_t* __restrict__ wg,
                                                                       const uint8_t* __restrict__ wu,
                                                                       int64_t row_bytes, int K, int R,
                                                                       typename Op::XArg x, Activation act,
                                                                       float* __restrict__ h, bool early) {
    // pdl_begin: in wide_lane_sums (nothing before it touches memory).
    constexpr int kHalf = kWarps / 2;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool up = warp >= kHalf;
    const int r0 = (blockIdx.x * kHalf + warp % kHalf) * NR;
    int i0, i1;
    wide_steps(K / Op::kElems, 0, 1, &i0, &i1);
    float acc[NR];
    wide_lane_sums<Op, NR, U>(up ? wu : wg, row_bytes, K, R, r0, x, i0, i1, lane, acc, early);
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] = warp_sum(acc[r]);
    __shared__ float up_sums[kHalf][NR];
    if (up && lane == 0) {
#pragma unroll
        for (int r = 0; r < NR; ++r) up_sums[warp - kHalf][r] = acc[r];
    }
    __syncthreads();
    if (!up && lane == 0) {
#pragma unroll
        for (int r = 0; r < NR; ++r)
            if (r0 + r < R) h[r0 + r] = act_apply(act, acc[r]) * up_sums[warp][r];
    }
}

template <class Op, int NR>
void launch_glu_nr(const uint8_t* wg, const uint8_t* wu, int64_t row_bytes, int K, int R, const float* x,
                   Activation act, float* h, int U, bool early, Launch s) {
    const unsigned blocks = (unsigned)ceil_div(R, (int64_t)(kWarps / 2) * NR);
    auto go = [&](auto kernel) {
        launch_kernel(kernel, blocks, kWarps * 32, 0, s, wg, wu, row_bytes, K, R, x, act, h, early);
    };
    switch (U) {
        case 1: go(matvec_wide_glu_kernel<Op, NR, 1>); break;
        case 2: go(matvec_wide_glu_kernel<Op, NR, 2>); break;
        default: go(matvec_wide_glu_kernel<Op, NR, 4>); break;
    }
}

template <class Op, int NR, int U>
void launch_u(const MatvecPart* mp, int n_parts, int64_t row_bytes, int K, const typename Op::XArg& x, int rows,
              int S, const MatvecConfig& cfg, Launch s) {
    Parts parts{};
    int blocks = 0;
    for (int p = 0; p < kMaxMatvecParts; ++p) {
        const MatvecPart& m = mp[std::min(p, n_parts - 1)];  // unused parts repeat the last (no blocks)
        parts.w[p] = m.w;
        parts.y[p] = m.y;
        parts.R[p] = (int)m.R;
        if (p < n_parts) blocks += (int)ceil_div(ceil_div(m.R, NR), kWarps / S);
        parts.end[p] = blocks;
    }
    parts.early = cfg.early_weights;
    const dim3 grid((unsigned)blocks, (unsigned)rows);
    if (S > 1 || cfg.split_kernel)
        launch_kernel(matvec_wide_kernel<Op, NR, U, true>, grid, kWarps * 32, 0, s, parts, row_bytes, K, x, S);
    else
        launch_kernel(matvec_wide_kernel<Op, NR, U, false>, grid, kWarps * 32, 0, s, parts, row_bytes, K, x, 1);
}

template <class Op, int NR>
void launch_nr(const MatvecPart* mp, int n_parts, int64_t row_bytes, int K, const typename Op::XArg& x, int rows,
               int S, int U, const MatvecConfig& cfg, Launch s) {
    switch (U) {
        case 1: launch_u<Op, NR, 1>(mp, n_parts, row_bytes, K, x, rows, S, cfg, s); break;
        case 2: launch_u<Op, NR, 2>(mp, n_parts, row_bytes, K, x, rows, S, cfg, s); break;
        default: launch_u<Op, NR, 4>(mp, n_parts, row_bytes, K, x, rows, S, cfg, s); break;
    }
}

template <class Op>
void launch_op(DType t, const MatvecPart* mp, int n_parts, int64_t row_bytes, int64_t K, const typename Op::XArg& x,
               int64_t rows, const MatvecConfig& cfg, Launch s) {
    const WideTile tile = wide_tile(t, cfg);
    const int k = (int)K, r = (int)rows;
    switch (tile.nr) {
        case 1: launch_nr<Op, 1>(mp, n_parts, row_bytes, k, x, r, tile.split, tile.unroll, cfg, s); break;
        case 2: launch_nr<Op, 2>(mp, n_parts, row_bytes, k, x, r, tile.split, tile.unroll, cfg, s); break;
        default: launch_nr<Op, 4>(mp, n_parts, row_bytes, k, x, r, tile.split, tile.unroll, cfg, s); break;
    }
}

}  // namespace

WideTile wide_tile(DType type, const MatvecConfig& cfg) {
    // One tile per type, whatever the shape: measured on the H100 over every tile and the 1B
    // and 8B Llama shapes (benchmarks/cuda_notes.md, round 3), these are within a few percent
    // of each shape's best, but for the f16 k/v projections (split-K 2-4 saves ~0.5 us there).
    // One kernel per type, no shared memory (split 1).
    // q4_0 at two rows a warp since its first weights load before the PDL wait: tg128 +1.6% on
    // 8B, +0.7 to +1.8% on 1B against one row; q8_0 lost 2% at two (round 14).
    WideTile t{1, 1, 2};
    if (type == DType::F16 || type == DType::BF16) t.unroll = 4;
    if (type == DType::Q6_K || type == DType::Q4_0) t.nr = 2;
    if (cfg.nr > 0) t.nr = cfg.nr;
    if (cfg.split > 0) t.split = cfg.split;
    if (cfg.unroll > 0) t.unroll = cfg.unroll;
    return t;
}

bool matvec_glu_supported(DType t, int64_t K, const MatvecConfig& cfg) {
    return (t == DType::F16 || t == DType::BF16) && matvec_takes_wide(t, K, false, cfg) &&
           wide_tile(t, cfg).split == 1 && !cfg.split_kernel;
}

void launch_matvec_wide_glu(DType t, const uint8_t* w_gate, const uint8_t* w_up, int64_t row_bytes, int64_t K,
                            int64_t R, const float* x, Activation act, float* h, const MatvecConfig& cfg, Launch s) {
    const WideTile tile = wide_tile(t, cfg);
    dispatch_type(t, [&]<DType T>() {
        if constexpr (T == DType::F16 || T == DType::BF16) {
            using Op = WideFloat<T>;
            const int k = (int)K, r = (int)R, U = tile.unroll;
            const bool e = cfg.early_weights;
            switch (tile.nr) {
                case 1: launch_glu_nr<Op, 1>(w_gate, w_up, row_bytes, k, r, x, act, h, U, e, s); break;
                case 2: launch_glu_nr<Op, 2>(w_gate, w_up, row_bytes, k, r, x, act, h, U, e, s); break;
                default: launch_glu_nr<Op, 4>(w_gate, w_up, row_bytes, k, r, x, act, h, U, e, s); break;
            }
        }
    });
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

bool matvec_wide_default(DType t) {
    switch (t) {
        case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0: case DType::Q4_K: case DType::Q6_K:
            return true;
        default: return false;
    }
}

bool matvec_takes_wide(DType t, int64_t K, bool q8, const MatvecConfig& cfg) {
    return !cfg.v1 && (cfg.wide_all || matvec_wide_default(t)) && matvec_wide_supported(t, K, q8);
}

void launch_matvec_wide_q8_parts(DType t, int64_t row_bytes, int64_t K, const MatvecPart* parts, int n_parts,
                                 ActQ8 x, int64_t rows, const MatvecConfig& cfg, Launch s, bool split) {
    dispatch_type(t, [&]<DType T>() {
        using Op = typename WideOp<T>::type;
        using SplitOp = typename WideSplitOp<T>::type;
        if constexpr (!std::is_void_v<SplitOp>) {
            if (split) {
                launch_op<SplitOp>(t, parts, n_parts, row_bytes, K, x, rows, cfg, s);
                return;
            }
        }
        if constexpr (!std::is_void_v<Op>) {
            if constexpr (Op::kElems == 32) launch_op<Op>(t, parts, n_parts, row_bytes, K, x, rows, cfg, s);
        }
    });
}

void launch_matvec_wide_f32_parts(DType t, int64_t row_bytes, int64_t K, const MatvecPart* parts, int n_parts,
                                  const float* x, int64_t rows, const MatvecConfig& cfg, Launch s) {
    dispatch_type(t, [&]<DType T>() {
        using Op = typename WideOp<T>::type;
        if constexpr (!std::is_void_v<Op>) {
            if constexpr (Op::kElems == 8) launch_op<Op>(t, parts, n_parts, row_bytes, K, x, rows, cfg, s);
        }
    });
}

void launch_matvec_wide_q8(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, ActQ8 x,
                           int64_t rows, float* y, const MatvecConfig& cfg, Launch s) {
    const MatvecPart part{w, R, y};
    launch_matvec_wide_q8_parts(t, row_bytes, K, &part, 1, x, rows, cfg, s, false);
}

void launch_matvec_wide_f32(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                            int64_t rows, float* y, const MatvecConfig& cfg, Launch s) {
    const MatvecPart part{w, R, y};
    launch_matvec_wide_f32_parts(t, row_bytes, K, &part, 1, x, rows, cfg, s);
}

}  // namespace strata::cuda
