// rms_norm and layer_norm over each row, with optional per-channel weight (and bias).
// Sums are taken in double: the rows are short and this keeps the norm exact to f32.
#include "vec_math.h"

namespace strata::cpu::STRATA_ISA {

// sum over i of (x[i] - c)^2 in double (c = 0 for rms_norm): two accumulators of double
// lanes, since one chain of dependent adds would bound the loop by add latency.
static double sum_sq_dev(const float* x, int64_t n, double c) {
    vdouble s0 = {}, s1 = {};
    int64_t i = 0;
    for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
        const vdouble d0 = vwiden(vload(x + i)) - c, d1 = vwiden(vload(x + i + kLanes)) - c;
        s0 += d0 * d0;
        s1 += d1 * d1;
    }
    for (; i < n; i += kLanes) {
        const int64_t m = min_i64(kLanes, n - i);
        vdouble d = vwiden(vload_part(x + i, m)) - c;
        for (int64_t l = m; l < kLanes; ++l) d[l] = 0.0;  // the zero padding is not x - c
        s0 += d * d;
    }
    return vhsum(s0 + s1);
}

static double sum(const float* x, int64_t n) {
    vdouble s = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) s += vwiden(vload(x + i));
    if (i < n) s += vwiden(vload_part(x + i, n - i));
    return vhsum(s);
}

void op_rms_norm(Exec& ex, const Node& n, int ith, int nth) {
    // A row of `width` is normalised as width / W independent groups of W (one per head for
    // q/k norms, W = head_dim; otherwise the whole row).
    const int64_t width = ex.width[n.in[0]];
    const int64_t W = n.p.head_dim > 0 ? n.p.head_dim : width;
    const int64_t T = rows_of(ex, n.in[0]) * (width / W);
    const float* X = f32_of(ex, n.in[0]);
    const float* w = n.in[1] >= 0 ? (const float*)ex.data[n.in[1]] : nullptr;
    float* Y = f32_of(ex, n.out);
    int64_t t0, t1;
    split_range(T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; ++t) {
        const float* x = X + t * W;
        float* y = Y + t * W;
        const double ss = sum_sq_dev(x, W, 0.0);
        const float scale = (float)(1.0 / std::sqrt(ss / (double)W + (double)n.p.eps));
        int64_t i = 0;
        for (; i + kLanes <= W; i += kLanes) {
            const vfloat v = vload(x + i) * scale;
            vstore(y + i, w ? v * vload(w + i) : v);
        }
        for (; i < W; ++i) y[i] = w ? x[i] * scale * w[i] : x[i] * scale;
    }
}

void op_layer_norm(Exec& ex, const Node& n, int ith, int nth) {
    const int64_t W = ex.width[n.in[0]], T = rows_of(ex, n.in[0]);
    const float* X = f32_of(ex, n.in[0]);
    const float* w = n.in[1] >= 0 ? (const float*)ex.data[n.in[1]] : nullptr;
    const float* b = n.in[2] >= 0 ? (const float*)ex.data[n.in[2]] : nullptr;
    float* Y = f32_of(ex, n.out);
    int64_t t0, t1;
    split_range(T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; ++t) {
        const float* x = X + t * W;
        float* y = Y + t * W;
        const double mean = sum(x, W) / (double)W;
        const double var = sum_sq_dev(x, W, mean);
        const float scale = (float)(1.0 / std::sqrt(var / (double)W + (double)n.p.eps));
        for (int64_t i = 0; i < W; ++i) {
            float v = (float)(x[i] - mean) * scale;
            if (w) v *= w[i];
            if (b) v += b[i];
            y[i] = v;
        }
    }
}

}  // namespace strata::cpu::STRATA_ISA
