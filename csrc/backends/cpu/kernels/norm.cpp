// rms_norm and layer_norm over each row, with optional per-channel weight (and bias).
// Sums are taken in double: the rows are short and this keeps the norm exact to f32.
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

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
        double ss = 0.0;
        for (int64_t i = 0; i < W; ++i) ss += (double)x[i] * x[i];
        const float scale = (float)(1.0 / std::sqrt(ss / (double)W + (double)n.p.eps));
        if (w) for (int64_t i = 0; i < W; ++i) y[i] = x[i] * scale * w[i];
        else for (int64_t i = 0; i < W; ++i) y[i] = x[i] * scale;
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
        double sum = 0.0;
        for (int64_t i = 0; i < W; ++i) sum += x[i];
        const double mean = sum / (double)W;
        double var = 0.0;
        for (int64_t i = 0; i < W; ++i) var += ((double)x[i] - mean) * ((double)x[i] - mean);
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
