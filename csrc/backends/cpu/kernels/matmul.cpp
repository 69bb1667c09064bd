// matmul: Y[t, r] = dot(X[t, :], W[r, :]) for every token row t and weight row r.
//
// The input rows are quantized once into the shared activation buffer (all threads, then a
// barrier); the buffer remembers which value it holds, so q/k/v and gate/up, which read the
// same input, quantize it once. Threads then split the weight rows: decode streams each
// weight row once; prefill walks the rows in small tiles so a tile stays in L1 while every
// token row is multiplied against it: as repacked 16-row tiles (gemm_vnni.cpp) where the
// ISA has that kernel and the prompt is long enough to pay for the repacking, else with
// the 4-token dots.
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

namespace {
constexpr int64_t kRowTile = 16;
}

void op_matmul(Exec& ex, const Node& n, int ith, int nth) {
    const int32_t xv = n.in[0], wv = n.in[1];
    const DType wt = ex.type[wv];
    const int64_t K = ex.width[xv], R = ex.weight_rows[wv], T = rows_of(ex, xv);
    const float* X = f32_of(ex, xv);
    float* Y = f32_of(ex, n.out);
    const uint8_t* W = ex.data[wv];

    if (T >= ex.gemm_min_rows && R % kGemmFloatTileRows == 0 && gemm_float_supported(wt)) {
        int64_t t0, t1;
        split_range(R / kGemmFloatTileRows, ith, nth, &t0, &t1);
        gemm_float_rows(wt, W, K, t0 * kGemmFloatTileRows, t1 * kGemmFloatTileRows, X, T, Y, R,
                        ex.gemm_tile + ith * ex.gemm_tile_bytes);
        return;
    }
    const bool gemm = T >= ex.gemm_min_rows && R % kGemmTileRows == 0 && gemm_supported(wt);
    const ActFormat f = gemm ? ActFormat::Q8_Halves : act_format(wt);
    const int64_t xrb = act_row_bytes(f, K);
    const uint8_t* XQ = (const uint8_t*)X;
    if (f != ActFormat::None) {
        if (ex.act_q_value[ith] != xv || ex.act_q_format[ith] != (int32_t)f) {
            int64_t t0, t1;
            split_range(T, ith, nth, &t0, &t1);
            for (int64_t t = t0; t < t1; ++t) quantize_act_row(f, X + t * K, ex.act_q + t * xrb, K);
            ex.barrier(ex.pool);
            ex.act_q_value[ith] = xv;
            ex.act_q_format[ith] = (int32_t)f;
        }
        XQ = ex.act_q;
    }

    if (gemm) {
        int64_t t0, t1;
        split_range(R / kGemmTileRows, ith, nth, &t0, &t1);
        gemm_rows(wt, W, K, t0 * kGemmTileRows, t1 * kGemmTileRows, XQ, xrb, T, Y, R,
                  ex.gemm_tile + ith * ex.gemm_tile_bytes);
        return;
    }
    int64_t r0, r1;
    split_range(R, ith, nth, &r0, &r1);
    if (T == 1) {
        // Decode streams the weights once: rows in stretches of about 8 KiB, each started
        // after asking for the next stretch's cache lines, so memory works ahead of the dots.
        const int64_t rb = row_bytes(wt, K), stretch = std::max<int64_t>(1, 8192 / rb);
        for (int64_t rs = r0; rs < r1; rs += stretch) {
            const int64_t re = min_i64(rs + stretch, r1);
            const uint8_t* next = W + re * rb;
            const int64_t ahead = (min_i64(re + stretch, r1) - re) * rb;
            for (int64_t o = 0; o < ahead; o += 64) __builtin_prefetch(next + o, 0, 3);
            dot_rows(wt, W, K, rs, re, XQ, Y + rs, 1);
        }
        return;
    }
    for (int64_t rt = r0; rt < r1; rt += kRowTile) {
        const int64_t re = min_i64(rt + kRowTile, r1);
        int64_t t = 0;
        for (; t + 4 <= T; t += 4)
            if (!dot_rows_x4(wt, W, K, rt, re, XQ + t * xrb, xrb, Y + t * R + rt, R)) break;
        for (; t < T; ++t) dot_rows(wt, W, K, rt, re, XQ + t * xrb, Y + t * R + rt, 1);
    }
}

}  // namespace strata::cpu::STRATA_ISA
