// Row-wise elementwise ops: add, mul (with a broadcast per-channel vector), scale,
// activations and gated activations, and last_row. Work is split over all elements so
// a single decode row still uses every thread. slice copies a column range (fused qkv).
#include "vec_math.h"

namespace strata::cpu::STRATA_ISA {

// f over n elements of a (and b), in vectors.
template <typename F>
static inline void map1(const float* a, float* y, int64_t n, F f) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) vstore(y + i, f(vload(a + i)));
    if (i < n) vstore_part(y + i, f(vload_part(a + i, n - i)), n - i);
}
template <typename F>
static inline void map2(const float* a, const float* b, float* y, int64_t n, F f) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) vstore(y + i, f(vload(a + i), vload(b + i)));
    if (i < n) vstore_part(y + i, f(vload_part(a + i, n - i), vload_part(b + i, n - i)), n - i);
}

// y = f(a, b) where b is either a full tensor like a or one row broadcast over a's rows. A
// thread's share is cut at row ends so each piece is contiguous in a, b and y.
template <typename F>
static inline void binary(Exec& ex, const Node& n, int ith, int nth, F f) {
    const int64_t W = ex.width[n.in[0]], T = rows_of(ex, n.in[0]);
    const float* a = f32_of(ex, n.in[0]);
    const float* b = (const float*)ex.data[n.in[1]];
    const bool broadcast = ex.type[n.in[1]] == DType::F32 && ex.weight_rows[n.in[1]] == 1;
    float* y = f32_of(ex, n.out);
    int64_t i0, i1;
    split_range(T * W, ith, nth, &i0, &i1);
    if (!broadcast) return map2(a + i0, b + i0, y + i0, i1 - i0, f);
    for (int64_t i = i0; i < i1;) {
        const int64_t col = i % W, len = min_i64(W - col, i1 - i);
        map2(a + i, b + col, y + i, len, f);
        i += len;
    }
}

template <typename F>
static inline void unary(Exec& ex, const Node& n, int ith, int nth, F f) {
    const int64_t N = ex.width[n.in[0]] * rows_of(ex, n.in[0]);
    int64_t i0, i1;
    split_range(N, ith, nth, &i0, &i1);
    map1(f32_of(ex, n.in[0]) + i0, f32_of(ex, n.out) + i0, i1 - i0, f);
}

void op_add(Exec& ex, const Node& n, int ith, int nth) {
    binary(ex, n, ith, nth, [](vfloat a, vfloat b) { return a + b; });
}
void op_mul(Exec& ex, const Node& n, int ith, int nth) {
    binary(ex, n, ith, nth, [](vfloat a, vfloat b) { return a * b; });
}
void op_glu(Exec& ex, const Node& n, int ith, int nth) {
    switch (n.p.act) {
        case Activation::Silu:
            return binary(ex, n, ith, nth, [](vfloat g, vfloat u) { return vsilu(g) * u; });
        case Activation::Gelu:
            return binary(ex, n, ith, nth, [](vfloat g, vfloat u) { return vgelu_erf(g) * u; });
        case Activation::GeluTanh:
            return binary(ex, n, ith, nth, [](vfloat g, vfloat u) { return vgelu_tanh(g) * u; });
    }
}

void op_scale(Exec& ex, const Node& n, int ith, int nth) {
    const float s = n.p.scale;
    unary(ex, n, ith, nth, [s](vfloat x) { return x * s; });
}

void op_activation(Exec& ex, const Node& n, int ith, int nth) {
    switch (n.p.act) {
        case Activation::Silu: return unary(ex, n, ith, nth, vsilu);
        case Activation::Gelu: return unary(ex, n, ith, nth, vgelu_erf);
        case Activation::GeluTanh: return unary(ex, n, ith, nth, vgelu_tanh);
    }
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
