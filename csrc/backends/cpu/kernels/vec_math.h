// Portable SIMD for the elementwise and norm kernels: GCC/Clang vector extensions, so one
// source gives each ISA build its own width (16 lanes with AVX-512, 8 elsewhere: AVX2, or
// two SSE / NEON registers per operation), and the scalar builds run the same arithmetic.
#pragma once

#include "kernel_common.h"

// Passing these vectors by value changes the ABI where the ISA lacks registers that wide; all
// functions here are internal and inlined, so GCC's note about it does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace strata::cpu::STRATA_ISA {

#if defined(__AVX512F__)
#define STRATA_VEC_BYTES 64
#else
#define STRATA_VEC_BYTES 32
#endif
typedef float vfloat __attribute__((vector_size(STRATA_VEC_BYTES)));
typedef double vdouble __attribute__((vector_size(2 * STRATA_VEC_BYTES)));  // one vfloat, widened
typedef int64_t vlong __attribute__((vector_size(2 * STRATA_VEC_BYTES)));
inline constexpr int64_t kLanes = STRATA_VEC_BYTES / 4;

static inline vfloat vload(const float* p) {
    vfloat v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vstore(float* p, vfloat v) { memcpy(p, &v, sizeof v); }
// The first n < kLanes floats at p, zeros after: tails run through the vector code too, so a
// row's last elements are computed exactly like the others.
static inline vfloat vload_part(const float* p, int64_t n) {
    vfloat v = {};
    memcpy(&v, p, sizeof(float) * n);
    return v;
}
static inline void vstore_part(float* p, vfloat v, int64_t n) { memcpy(p, &v, sizeof(float) * n); }

// x widened to double, lane for lane.
static inline vdouble vwiden(vfloat x) { return __builtin_convertvector(x, vdouble); }
static inline vfloat vnarrow(vdouble x) { return __builtin_convertvector(x, vfloat); }

// e^x for |x| <= 700: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by its Taylor polynomial to
// r^11 (truncation error 6e-15), scaled by 2^n through the exponent bits.
static inline vdouble vexp_f64(vdouble x) {
    // n = round(x / ln 2) by the 1.5 * 2^52 trick, whose low mantissa bits then hold n.
    const vdouble magic = vdouble{} + 6755399441055744.0;
    const vdouble t = x * 1.4426950408889634 + magic;
    const vdouble n = t - magic;
    const vlong ni = (vlong)t - (vlong)magic;
    // fdlibm's split of ln 2: n * ln2_hi is exact for |n| < 2^20.
    const vdouble r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    vdouble p = vdouble{} + 1.0 / 39916800.0;
    for (const double c : {1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
                           1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0})
        p = p * r + c;
    return p * (vdouble)((ni + 1023) << 52);
}

static inline vdouble vselect(vlong mask, vdouble a, vdouble b) {
    return (vdouble)((mask & (vlong)a) | (~mask & (vlong)b));
}
// A NaN fails both comparisons and stays NaN.
static inline vdouble vclamp(vdouble x, double lo, double hi) {
    x = vselect(x > hi, vdouble{} + hi, x);
    return vselect(x < lo, vdouble{} + lo, x);
}

// silu stays on libm's expf, lane by lane. A 1-ulp change in an activation can flip the
// rounding of an int8-quantized activation downstream and change greedy decoding, so silu
// keeps its results; glibc's expf is fast (~2 ns) but not quite correctly rounded, and
// vexp_f64 with a per-lane libm fallback next to rounding midpoints measured slower.
static inline vfloat vsilu(vfloat x) {
    vfloat y;
    for (int64_t l = 0; l < kLanes; ++l) y[l] = x[l] / (1.0f + expf(-x[l]));
    return y;
}

// x * sigmoid(z) in double, rounded once; z is clamped where e^-z is already 0 or beyond any
// f32 quotient.
static inline vfloat vmul_sigmoid_f64(vdouble x, vdouble z) {
    return vnarrow(x / (1.0 + vexp_f64(-vclamp(z, -200.0, 200.0))));
}
// 0.5 x (1 + tanh(u)) = x sigmoid(2u), in double: correctly rounded bar ties (libm tanhf
// in the f32 formula was 18x slower and, through the cancellation in 1 + tanhf for negative
// x, off by up to 100% where the result is small).
static inline vfloat vgelu_tanh(vfloat x) {
    const vdouble d = vwiden(x);
    return vmul_sigmoid_f64(d, 1.5957691216057308 * (d + 0.044715 * d * d * d));
}

// No model on the CPU path uses the erf form today: libm per lane.
static inline vfloat vgelu_erf(vfloat x) {
    vfloat y;
    for (int64_t l = 0; l < kLanes; ++l) y[l] = 0.5f * x[l] * (1.0f + erff(x[l] * 0.70710678118654752f));
    return y;
}

static inline double vhsum(vdouble v) {
    double s = 0.0;
    for (int64_t l = 0; l < kLanes; ++l) s += v[l];
    return s;
}

}  // namespace strata::cpu::STRATA_ISA
