// Prefill matmul: Y[t, r] = dot(W[r, :], X[t, :]) for many activation rows t, on 8x8
// simdgroup matrices. Mirrors csrc/backends/cuda/matmul.cu (tiles, dequantization into
// shared memory); matvec.metal stays the decode path.
//
// A threadgroup of 128 threads (4 simdgroups, exactly: the loader roles below count on it)
// computes a tile of 64 weight rows x 32 activation rows, stepping 32 along K:
//   1. every thread dequantizes 16 weights (quants.h dequant16_*, the embedding rows' code)
//      and loads 8 activations into threadgroup memory, as float;
//   2. barrier; each simdgroup multiplies its 32 weight rows x 16 activation rows: per
//      8-wide slice of K, 2 activation tiles, 4 weight tiles (loaded transposed: W^T), 8
//      simdgroup_multiply_accumulate into float accumulators; barrier.
// The result goes through threadgroup memory, so rows past T and columns past R are never
// written; weights past R or K and activations past T or K are zero-filled, so any shape
// works (K % 32 == 0 for the block formats, whose rows are whole blocks).
//
// Operands are what the CPU backend multiplies: block formats meet the block_q8_act
// activations of kernel_quantize_q8_act (d * q), float formats the f32 activations; the
// weights are the exact dequantized floats (no rounding to half). Only the order of the
// float sums differs, so a prompt's logits do not depend on whether it ran through this
// kernel or the matvecs.
//
// Function constant MM_TYPE (index 3): the weight format, STRATA_MM_* (strata_args.h).
#include "strata_args.h"
#include "quants.h"

constant int MM_TYPE [[function_constant(3)]];

#define MM_BR 64  // weight rows per threadgroup
#define MM_BT 32  // activation rows per threadgroup
#define MM_BK 32  // K per step: one 32-element block of every format

static inline float mm_float_weight(device const uchar* row, int i) {
    switch (MM_TYPE) {
        case STRATA_MM_F16: return (float)((device const half*)row)[i];
        case STRATA_MM_BF16: return bf16_to_f32(((device const ushort*)row)[i]);
        default: return ((device const float*)row)[i];
    }
}

// Weights k .. k + 15 of row r (k % 16 == 0), zero outside R x K.
static inline void mm_load_w16(device const uchar* w, constant MatvecArgs& args, int r, int k, thread float* v) {
    if (r >= args.R || k >= args.K) {
        for (int i = 0; i < 16; ++i) v[i] = 0.0f;
        return;
    }
    device const uchar* row = w + (long)r * args.row_bytes;
    const int g = k / 16;
    switch (MM_TYPE) {
        case STRATA_MM_Q8_0: dequant16_q8_0(row, g, v); break;
        case STRATA_MM_Q4_0: dequant16_q4_0(row, g, v); break;
        case STRATA_MM_Q4_1: dequant16_q4_1(row, g, v); break;
        case STRATA_MM_Q5_0: dequant16_q5_0(row, g, v); break;
        case STRATA_MM_Q5_1: dequant16_q5_1(row, g, v); break;
        case STRATA_MM_IQ4_NL: dequant16_iq4_nl(row, g, v); break;
        case STRATA_MM_Q2_K: dequant16_q2_K(row, g, v); break;
        case STRATA_MM_Q3_K: dequant16_q3_K(row, g, v); break;
        case STRATA_MM_Q4_K: dequant16_q4_K(row, g, v); break;
        case STRATA_MM_Q5_K: dequant16_q5_K(row, g, v); break;
        case STRATA_MM_Q6_K: dequant16_q6_K(row, g, v); break;
        case STRATA_MM_IQ4_XS: dequant16_iq4_xs(row, g, v); break;
        default:  // F32, F16, BF16: K may be anything
            for (int i = 0; i < 16; ++i) v[i] = k + i < args.K ? mm_float_weight(row, k + i) : 0.0f;
            break;
    }
}

// Activations k .. k + 7 of row t (k % 8 == 0), zero outside T x K: f32 rows for the float
// formats, block_q8_act rows (K / 32 blocks each) for the block formats.
static inline void mm_load_x8(device const uchar* x, constant MatvecArgs& args, int t, int k, thread float* u) {
    if (t >= args.T || k >= args.K) {
        for (int i = 0; i < 8; ++i) u[i] = 0.0f;
        return;
    }
    if (MM_TYPE <= STRATA_MM_BF16) {
        device const float* xr = (device const float*)x + (long)t * args.K;
        for (int i = 0; i < 8; ++i) u[i] = k + i < args.K ? xr[k + i] : 0.0f;
    } else {
        device const block_q8_act& b = ((device const block_q8_act*)x)[(long)t * (args.K / 32) + k / 32];
        for (int i = 0; i < 8; ++i) u[i] = b.d * (float)b.qs[k % 32 + i];
    }
}

kernel void kernel_matmul(
        constant MatvecArgs& args [[buffer(0)]],
        device const uchar* w [[buffer(1)]],
        device const uchar* x [[buffer(2)]],
        device float* y [[buffer(3)]],
        uint2 tg [[threadgroup_position_in_grid]],
        uint tid [[thread_index_in_threadgroup]],
        uint sg [[simdgroup_index_in_threadgroup]]) {
    threadgroup float sw[MM_BR * MM_BK];  // weight r, column k at r * MM_BK + k; then Y's tile
    threadgroup float sx[MM_BT * MM_BK];  // activation t, column k at t * MM_BK + k
    const int r0 = (int)tg.x * MM_BR, t0 = (int)tg.y * MM_BT;
    // Simdgroup sg: weight rows 32 (sg & 1) .. + 32 (4 tiles j), activation rows
    // 16 (sg >> 1) .. + 16 (2 tiles i) of the threadgroup's tile.
    const int wr = 32 * (int)(sg & 1), xr = 16 * (int)(sg >> 1);
    simdgroup_float8x8 acc[8];  // acc[4 i + j]: activation tile i x weight tile j
    for (int i = 0; i < 8; ++i) acc[i] = make_filled_simdgroup_matrix<float, 8>(0.0f);

    // Loader roles: 16 weights of row tid / 2, 8 activations of row tid / 4.
    const int lw = (int)tid >> 1, lwk = 16 * ((int)tid & 1);
    const int lx = (int)tid >> 2, lxk = 8 * ((int)tid & 3);
    for (int k0 = 0; k0 < args.K; k0 += MM_BK) {
        float v[16], u[8];
        mm_load_w16(w, args, r0 + lw, k0 + lwk, v);
        mm_load_x8(x, args, t0 + lx, k0 + lxk, u);
        for (int i = 0; i < 16; ++i) sw[lw * MM_BK + lwk + i] = v[i];
        for (int i = 0; i < 8; ++i) sx[lx * MM_BK + lxk + i] = u[i];
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int kk = 0; kk < MM_BK; kk += 8) {
            simdgroup_float8x8 a[2], b[4];
            for (int i = 0; i < 2; ++i) simdgroup_load(a[i], sx + (xr + 8 * i) * MM_BK + kk, MM_BK);
            for (int j = 0; j < 4; ++j) simdgroup_load(b[j], sw + (wr + 8 * j) * MM_BK + kk, MM_BK, 0, true);
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 4; ++j) simdgroup_multiply_accumulate(acc[4 * i + j], a[i], b[j], acc[4 * i + j]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    // Y's tile (activation t, weight r at t * MM_BR + r) in sw, then the rows and columns
    // that exist to y.
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) simdgroup_store(acc[4 * i + j], sw + (xr + 8 * i) * MM_BR + wr + 8 * j, MM_BR);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int e = (int)tid; e < MM_BT * MM_BR; e += 128) {
        const int t = t0 + e / MM_BR, r = r0 + e % MM_BR;
        if (t < args.T && r < args.R) y[(long)t * args.R + r] = sw[e];
    }
}
