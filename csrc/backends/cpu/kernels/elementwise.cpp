// Row-wise elementwise ops: add, mul (with a broadcast per-channel vector), scale,
// activations and gated activations, and last_row. Work is split over all elements so
// a single decode row still uses every thread. slice copies a column range (fused qkv).
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

static inline float act_apply(Activation a, float x) {
    switch (a) {
        case Activation::Silu: return x / (1.0f + expf(-x));
        case Activation::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case Activation::GeluTanh:
            return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * x * (1.0f + 0.044715f * x * x)));
    }
    return x;
}

template <typename F>
static inline void binary(Exec& ex, const Node& n, int ith, int nth, F f) {
    const int64_t W = ex.width[n.in[0]], T = rows_of(ex, n.in[0]);
    const float* a = f32_of(ex, n.in[0]);
    const float* b = (const float*)ex.data[n.in[1]];
    const bool broadcast = ex.type[n.in[1]] == DType::F32 && ex.weight_rows[n.in[1]] == 1;
    float* y = f32_of(ex, n.out);
    int64_t i0, i1;
    split_range(T * W, ith, nth, &i0, &i1);
    if (broadcast)
        for (int64_t i = i0; i < i1; ++i) y[i] = f(a[i], b[i % W]);
    else
        for (int64_t i = i0; i < i1; ++i) y[i] = f(a[i], b[i]);
}

void op_add(Exec& ex, const Node& n, int ith, int nth) {
    binary(ex, n, ith, nth, [](float a, float b) { return a + b; });
}
void op_mul(Exec& ex, const Node& n, int ith, int nth) {
    binary(ex, n, ith, nth, [](float a, float b) { return a * b; });
}
void op_glu(Exec& ex, const Node& n, int ith, int nth) {
    const Activation act = n.p.act;
    binary(ex, n, ith, nth, [act](float g, float u) { return act_apply(act, g) * u; });
}

void op_scale(Exec& ex, const Node& n, int ith, int nth) {
    const int64_t N = ex.width[n.in[0]] * rows_of(ex, n.in[0]);
    const float* x = f32_of(ex, n.in[0]);
    float* y = f32_of(ex, n.out);
    int64_t i0, i1;
    split_range(N, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * n.p.scale;
}

void op_activation(Exec& ex, const Node& n, int ith, int nth) {
    const int64_t N = ex.width[n.in[0]] * rows_of(ex, n.in[0]);
    const float* x = f32_of(ex, n.in[0]);
    float* y = f32_of(ex, n.out);
    int64_t i0, i1;
    split_range(N, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; ++i) y[i] = act_apply(n.p.act, x[i]);
}

void op_last_row(Exec& ex, const Node& n, int ith, int nth) {
    const int64_t W = ex.width[n.in[0]];
    const int64_t first = ex.all_rows ? 0 : ex.n_rows - 1;
    const float* x = f32_of(ex, n.in[0]) + first * W;
    float* y = f32_of(ex, n.out);
    int64_t i0, i1;
    split_range((ex.n_rows - first) * W, ith, nth, &i0, &i1);
    memcpy(y + i0, x + i0, sizeof(float) * (i1 - i0));
}

void op_slice(Exec& ex, const Node& n, int ith, int nth) {
    const int64_t W = ex.width[n.in[0]], w = n.p.width, T = rows_of(ex, n.in[0]);
    const float* x = f32_of(ex, n.in[0]) + n.p.offset;
    float* y = f32_of(ex, n.out);
    int64_t t0, t1;
    split_range(T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; ++t) memcpy(y + t * w, x + t * W, sizeof(float) * w);
}

}  // namespace strata::cpu::STRATA_ISA
