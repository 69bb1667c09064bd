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
#include "rope.cuh"

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

// q/k/v and the rope + KV append after them in one launch (decode, one row, no split-K):
// the blocks of q, then of k, then of v, each a stretch of kRows rows holding whole rope
// pairs: for the normal layout kRows consecutive rows (pairs 2m, 2m + 1), for neox kRows / 2
// rows of one head's first half and the same rows of its second half (pairs i, i + n_rot / 2),
// each warp's NR rows consecutive either way. A q or k block's warps put their sums in shared
// memory; thread t < kRows / 2 rotates pair t (rope_rotate, the rope kernels
// bits) and writes q' to qo, or k' to the KV cache as f16; a v block writes its rows to the
// cache from the warps' sums. Neither q, k, v nor k' goes to memory as f32, and the rope
// kernel (a launch a layer) is gone. Each row's sum is wide_lane_sums's, as in
// matvec_wide_kernel. The pairs' angles come from a table the step's rope_angles_kernel wrote
// (rope_cs, the same bits), loaded right after the PDL wait, so no double pow / cos / sin
// sits on a q or k block's path. (Round 15 of benchmarks/cuda_notes.md blamed that math for
// the first version's loss; round 16 traced the loss to a stack frame, below. The table
// stays as the cheaper design; it was not measured against the angles taken here.)
struct RopeLaunch {
    const uint8_t* w[3];  // q, k, v
    int R[3];
    int end[3];  // first block past part p
    RopeArgs a;
    const float2* angles;  // pair i's cos and sin (launch_rope_angles)
    float* qo;
    __half* kc;
    __half* vc;
    int64_t capacity;  // cache rows (position p in row p % capacity)
    bool early;
};

// a[part] by selects: a kernel parameter indexed at run time is copied to a stack frame,
// every thread's copy of the whole struct through L1 and L2 (matvec_wide_rope_kernel lost
// 7-10% of tg128 to that at first: benchmarks/cuda_notes.md round 16).
template <class T>
__device__ __forceinline__ T of_part(const T (&a)[3], int part) {
    return part == 0 ? a[0] : part == 1 ? a[1] : a[2];
}

template <class Op, int NR, int U>
__global__ void __launch_bounds__(kWarps * 32) matvec_wide_rope_kernel(RopeLaunch p, int64_t row_bytes, int K,
                                                                        typename Op::XArg x,
                                                                        const StepParams* __restrict__ sp) {
    // pdl_begin: in wide_lane_sums (nothing before it touches memory but n_past).
    constexpr int kRows = kWarps * NR, kPairs = kRows / 2;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int part = (int)blockIdx.x < p.end[0] ? 0 : (int)blockIdx.x < p.end[1] ? 1 : 2;
    const int bx = (int)blockIdx.x - (part == 0 ? 0 : part == 1 ? p.end[0] : p.end[1]);
    const uint8_t* __restrict__ w = of_part(p.w, part);
    const int R = of_part(p.R, part);
    const float2* __restrict__ angles = p.angles;
    const int hd = p.a.head_dim, half = p.a.n_rot / 2;
    const bool neox = p.a.neox && part < 2;
    // rows of slots 0 .. kPairs - 1 and kPairs .. kRows - 1
    int lo = bx * kRows, hi = lo + kPairs;
    if (neox) {
        const int per_head = half / kPairs;  // blocks a head (n_rot == head_dim)
        lo = (bx / per_head) * hd + (bx % per_head) * kPairs;
        hi = lo + half;
    }
    const int slot0 = warp * NR, r0 = slot0 < kPairs ? lo + slot0 : hi + slot0 - kPairs;
    // thread t < kPairs: pair t of the block, rows ra and rb, angle i
    const int ra = neox ? lo + tid : lo + 2 * tid, rb = neox ? hi + tid : ra + 1;
    const bool rotates = part < 2 && tid < kPairs && (neox || ra % hd < p.a.n_rot);
    const int pos = sp->n_past;  // before the wait, as the decode kernels may (common.cuh)
    float2 cs{};
    int i0, i1;
    wide_steps(K / Op::kElems, 0, 1, &i0, &i1);
    float acc[NR];
    const int angle = neox ? ra % hd : ra % hd / 2;
    wide_lane_sums<Op, NR, U>(w, row_bytes, K, R, r0, x, i0, i1, lane, acc, p.early, [&] {
        if (rotates) cs = angles[angle];
    });
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] = warp_sum(acc[r]);
    const int64_t crow = ((int64_t)pos % p.capacity) * p.R[1];  // as kv_append_kernel's row
    if (part == 2) {  // v: to the cache as it is
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < NR; ++r)
                if (r0 + r < R) p.vc[crow + r0 + r] = __float2half_rn(acc[r]);
        }
        return;
    }
    __shared__ float sums[kRows];
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < NR; ++r) sums[slot0 + r] = acc[r];
    }
    __syncthreads();
    if (tid < kPairs) {
        float ya = sums[neox ? tid : 2 * tid], yb = sums[neox ? tid + kPairs : 2 * tid + 1];
        if (rotates) {
            const float2 r = rope_rotate(ya, yb, cs);
            ya = r.x;
            yb = r.y;
        }
        if (part == 0) {
            p.qo[ra] = ya;
            p.qo[rb] = yb;
        } else {
            p.kc[crow + ra] = __float2half_rn(ya);
            p.kc[crow + rb] = __float2half_rn(yb);
        }
    }
}

template <class Op, int NR>
void launch_rope_nr(RopeLaunch p, int64_t row_bytes, int K, const typename Op::XArg& x, int U,
                    const StepParams* sp, Launch s) {
    constexpr int kRows = kWarps * NR;
    int blocks = 0;
    for (int k = 0; k < 3; ++k) p.end[k] = blocks += (int)ceil_div(p.R[k], kRows);
    auto go = [&](auto kernel) { launch_kernel(kernel, (unsigned)blocks, kWarps * 32, 0, s, p, row_bytes, K, x, sp); };
    switch (U) {
        case 1: go(matvec_wide_rope_kernel<Op, NR, 1>); break;
        case 2: go(matvec_wide_rope_kernel<Op, NR, 2>); break;
        default: go(matvec_wide_rope_kernel<Op, NR, 4>); break;
    }
}

template <class Op>
void launch_rope_op(const RopeLaunch& p, int64_t row_bytes, int64_t K, const typename Op::XArg& x,
                    const WideTile& tile, const StepParams* sp, Launch s) {
    switch (tile.nr) {
        case 1: launch_rope_nr<Op, 1>(p, row_bytes, (int)K, x, tile.unroll, sp, s); break;
        case 2: launch_rope_nr<Op, 2>(p, row_bytes, (int)K, x, tile.unroll, sp, s); break;
        default: launch_rope_nr<Op, 4>(p, row_bytes, (int)K, x, tile.unroll, sp, s); break;
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

bool matvec_rope_supported(DType t, int64_t K, bool q8, const RopeArgs& a, int n_head_k, const MatvecConfig& cfg) {
    if (!matvec_takes_wide(t, K, q8, cfg)) return false;
    const WideTile tile = wide_tile(t, cfg);
    const int rows = 4 * tile.nr;  // a block's rows (kWarps * NR), whole pairs
    if (tile.split != 1 || cfg.split_kernel || a.head_dim % rows != 0 || a.n_rot % 2 != 0) return false;
    // neox pairs span the head: only where every dimension rotates, in stretches of rows / 2
    if (a.neox && (a.n_rot != a.head_dim || (a.n_rot / 2) % (rows / 2) != 0)) return false;
    return a.n_head > 0 && n_head_k > 0;
}

void launch_matvec_wide_rope(DType t, int64_t row_bytes, int64_t K, const MatvecPart* qkv, const float* x,
                             ActQ8 x8, bool split, const RopeArgs& a, const float2* angles, float* qo, __half* kc,
                             __half* vc, int64_t capacity, const StepParams* sp, const MatvecConfig& cfg, Launch s) {
    RopeLaunch p{};
    for (int k = 0; k < 3; ++k) {
        p.w[k] = qkv[k].w;
        p.R[k] = (int)qkv[k].R;
    }
    p.a = a;
    p.angles = angles;
    p.qo = qo;
    p.kc = kc;
    p.vc = vc;
    p.capacity = capacity;
    p.early = cfg.early_weights;
    const WideTile tile = wide_tile(t, cfg);
    dispatch_type(t, [&]<DType T>() {
        using Op = typename WideOp<T>::type;
        using SplitOp = typename WideSplitOp<T>::type;
        if constexpr (!std::is_void_v<SplitOp>) {
            if (split) {
                launch_rope_op<SplitOp>(p, row_bytes, K, x8, tile, sp, s);
                return;
            }
        }
        if constexpr (!std::is_void_v<Op>) {
            if constexpr (Op::kElems == 32) launch_rope_op<Op>(p, row_bytes, K, x8, tile, sp, s);
            else launch_rope_op<Op>(p, row_bytes, K, x, tile, sp, s);
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
