// Decode matmul: y[t, r] = dot(W[r, :], x[t, :]) for r < R and a few activation rows t
// (one per sequence in a decode step). Mirrors csrc/backends/cuda/matvec.cu.
//
// Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, and the super-block formats
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS one 32-element sub-block at a time) meet activations quantized to 8 bits per 32
// (block_q8_act: fp32 scale d and fp32 d * sum(q), exactly as the CPU and CUDA backends
// quantize them, kernel_quantize_q8_act below) and are multiplied in integers per block.
// F16, BF16 and F32 weights meet the f32 activations directly.
//
// Each simdgroup owns NR consecutive weight rows (function constant 0, STRATA_FC_NR, at
// most 8); lane l walks 32-element blocks l, l + 32, ... of each row (for K formats:
// sub-block l % 8 of super-block l / 8, ...), so one step of the simdgroup reads 32
// consecutive blocks (4 super-blocks) of a row; simd_sum reduces each row. Threadgroup = any
// number of simdgroups (the host uses 2); grid = (ceil(R / (NR * simdgroups)), T).
// References: csrc/backends/cpu/kernels/quant_dot.cpp, tests/test_quants.py.
#include "strata_args.h"
#include "quants.h"

constant int NR [[function_constant(2)]];
#define STRATA_NR_MAX 8

// One simdgroup per 32-element block: amax by simd_max, d = amax / 127, q = rint(x / d)
// (round half to even, as nearbyintf on the CPU), s = d * sum(q).
kernel void kernel_quantize_q8_act(
        constant MatvecArgs& args [[buffer(0)]],
        device const float* x [[buffer(1)]],
        device block_q8_act* q [[buffer(2)]],
        uint tg [[threadgroup_position_in_grid]],
        uint lane [[thread_index_in_simdgroup]],
        uint sg [[simdgroup_index_in_threadgroup]],
        uint nsg [[simdgroups_per_threadgroup]]) {
    const long c = (long)tg * nsg + sg;
    if (c >= (long)args.T * (args.K / 32)) return;  // whole simdgroups
    const float v = x[c * 32 + lane];
    const float amax = simd_max(fabs(v));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? precise::divide(1.0f, d) : 0.0f;
    const int qi = (int)rint(v * id);
    q[c].qs[lane] = (int8_t)qi;
    const int sum = simd_sum(qi);
    if (lane == 0) {
        q[c].d = d;
        q[c].s = d * (float)sum;
    }
}

static inline float dot_q8_0(device const block_q8_0& w, device const block_q8_act& x) {
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += (int)w.qs[j] * (int)x.qs[j];
    return (float)w.d * x.d * (float)sum;
}

static inline float dot_q4_0(device const block_q4_0& w, device const block_q8_act& x) {
    int sum = 0;  // unsigned nibbles times x; the offset 8 comes back through x.s
    for (int j = 0; j < 16; ++j) sum += (int)(w.qs[j] & 0x0F) * (int)x.qs[j] + (int)(w.qs[j] >> 4) * (int)x.qs[j + 16];
    const float dw = (float)w.d;
    return dw * x.d * (float)sum - 8.0f * dw * x.s;
}

static inline float dot_q4_1(device const block_q4_1& w, device const block_q8_act& x) {
    int sum = 0;
    for (int j = 0; j < 16; ++j) sum += (int)(w.qs[j] & 0x0F) * (int)x.qs[j] + (int)(w.qs[j] >> 4) * (int)x.qs[j + 16];
    return (float)w.d * x.d * (float)sum + (float)w.m * x.s;
}

static inline uint qh_bits(device const uint8_t* qh) {
    return (uint)qh[0] | ((uint)qh[1] << 8) | ((uint)qh[2] << 16) | ((uint)qh[3] << 24);
}

// 5-bit quants: the nibble plus bit j (element j) / j + 16 (element j + 16) of qh.
static inline int dot_q5_isum(device const uint8_t* qs, uint qh, device const block_q8_act& x) {
    int sum = 0;
    for (int j = 0; j < 16; ++j) {
        const int lo = (int)(qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        const int hi = (int)(qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        sum += lo * (int)x.qs[j] + hi * (int)x.qs[j + 16];
    }
    return sum;
}

static inline float dot_q5_0(device const block_q5_0& w, device const block_q8_act& x) {
    const float dw = (float)w.d;
    return dw * x.d * (float)dot_q5_isum(w.qs, qh_bits(w.qh), x) - 16.0f * dw * x.s;
}

static inline float dot_q5_1(device const block_q5_1& w, device const block_q8_act& x) {
    return (float)w.d * x.d * (float)dot_q5_isum(w.qs, qh_bits(w.qh), x) + (float)w.m * x.s;
}

static inline float dot_iq4_nl(device const block_iq4_nl& w, device const block_q8_act& x) {
    int sum = 0;
    for (int j = 0; j < 16; ++j)
        sum += (int)kvalues_iq4nl[w.qs[j] & 0x0F] * (int)x.qs[j] + (int)kvalues_iq4nl[w.qs[j] >> 4] * (int)x.qs[j + 16];
    return (float)w.d * x.d * (float)sum;
}


// ---- K formats: one 32-element sub-block j (0..7) of a 256-element super-block -----------

// x = d * sc * q - dmin * m: the integer dot of unsigned q, scaled; the mins come back
// through x.s (= x.d * sum of the activation quants), as dot_q4_1's m does.
static inline float dot_k4_tail(device const strata_f16& d, device const strata_f16& dmin,
                                device const uint8_t* scales, int j, int sumi, device const block_q8_act& x) {
    int sc, m;
    scale_min_k4(scales, j, sc, m);
    return (float)d * x.d * (float)(sc * sumi) - (float)dmin * (float)m * x.s;
}

static inline float dot_q4_K(device const block_q4_K& w, int j, device const block_q8_act& x) {
    device const uint8_t* q = w.qs + 32 * (j >> 1);
    const int sh = 4 * (j & 1);
    int sumi = 0;
    for (int l = 0; l < 32; ++l) sumi += (int)((q[l] >> sh) & 0x0F) * (int)x.qs[l];
    return dot_k4_tail(w.d, w.dmin, w.scales, j, sumi, x);
}

static inline float dot_q5_K(device const block_q5_K& w, int j, device const block_q8_act& x) {
    device const uint8_t* q = w.qs + 32 * (j >> 1);
    const int sh = 4 * (j & 1);
    int sumi = 0;
    for (int l = 0; l < 32; ++l)
        sumi += ((int)((q[l] >> sh) & 0x0F) | (int)(((w.qh[l] >> j) & 1) << 4)) * (int)x.qs[l];
    return dot_k4_tail(w.d, w.dmin, w.scales, j, sumi, x);
}

// x = d * scales[i / 16] * (q - 32): the -32 is applied per element in integers (the
// scale changes every 16 elements, so x.s, one sum per 32, cannot carry it); everything
// up to the single float multiply is exact (|sumi| < 2^22).
static inline float dot_q6_K(device const block_q6_K& w, int j, device const block_q8_act& x) {
    const int h = j >> 2, s = j & 3;  // element 32*j + l = 128*h + 32*s + l
    device const uint8_t* ql = w.ql + 64 * h + 32 * (s & 1);
    device const uint8_t* qh = w.qh + 32 * h;
    const int lsh = 4 * (s >> 1), hsh = 2 * s;
    int half_sum[2] = {0, 0};
    for (int l = 0; l < 32; ++l) {
        const int q = (int)((ql[l] >> lsh) & 0x0F) | (int)(((qh[l] >> hsh) & 3) << 4);
        half_sum[l >> 4] += (q - 32) * (int)x.qs[l];
    }
    const int sumi = (int)w.scales[2 * j] * half_sum[0] + (int)w.scales[2 * j + 1] * half_sum[1];
    return (float)w.d * x.d * (float)sumi;
}

// q2_K: scale byte i (one per 16 elements) holds a 4-bit scale and a 4-bit min, so each
// half of the sub-block has its own integer sums: x = d sc q - dmin m, the mins times the
// sum of that half's activation quants. Exact in integers up to the two float products.
static inline float dot_q2_K(device const block_q2_K& w, int j, device const block_q8_act& x) {
    device const uint8_t* q = w.qs + 32 * (j >> 2);  // element 32*j + l, j = 4h + s
    const int sh = 2 * (j & 3);
    int qsum[2] = {0, 0}, xsum[2] = {0, 0};
    for (int l = 0; l < 32; ++l) {
        qsum[l >> 4] += (int)((q[l] >> sh) & 3) * (int)x.qs[l];
        xsum[l >> 4] += (int)x.qs[l];
    }
    const int sa = w.scales[2 * j], sb = w.scales[2 * j + 1];
    const int isc = (sa & 0x0F) * qsum[0] + (sb & 0x0F) * qsum[1];
    const int imin = (sa >> 4) * xsum[0] + (sb >> 4) * xsum[1];
    return (float)w.d * x.d * (float)isc - (float)w.dmin * x.d * (float)imin;
}

// q3_K: the value lo - 4 * !hbit (-4..3) is formed per element in integers, as q6_K's -32;
// two six-bit scales (minus 32) per sub-block.
static inline float dot_q3_K(device const block_q3_K& w, int j, device const block_q8_act& x) {
    device const uint8_t* q = w.qs + 32 * (j >> 2);
    const int sh = 2 * (j & 3);
    int half_sum[2] = {0, 0};
    for (int l = 0; l < 32; ++l) {
        const int v = (int)((q[l] >> sh) & 3) - (((w.hmask[l] >> j) & 1) ? 0 : 4);
        half_sum[l >> 4] += v * (int)x.qs[l];
    }
    const int sumi = scale_q3_K(w.scales, 2 * j) * half_sum[0] + scale_q3_K(w.scales, 2 * j + 1) * half_sum[1];
    return (float)w.d * x.d * (float)sumi;
}

// iq4_xs: sub-block j is an iq4_nl block whose scale is d * (ls - 32).
static inline float dot_iq4_xs(device const block_iq4_xs& w, int j, device const block_q8_act& x) {
    device const uint8_t* q = w.qs + 16 * j;
    int sum = 0;
    for (int l = 0; l < 16; ++l)
        sum += (int)kvalues_iq4nl[q[l] & 0x0F] * (int)x.qs[l] + (int)kvalues_iq4nl[q[l] >> 4] * (int)x.qs[l + 16];
    return (float)w.d * x.d * (float)(scale_iq4_xs(w, j) * sum);
}

// DOT: the dot of 32-block c of weight row wr (device const BLOCK*) with xb[c].
#define STRATA_MATVEC_Q8(NAME, BLOCK, DOT)                                                        \
    kernel void NAME(                                                                             \
            constant MatvecArgs& args [[buffer(0)]],                                              \
            device const uchar* w [[buffer(1)]],                                                  \
            device const block_q8_act* xq [[buffer(2)]],                                          \
            device float* y [[buffer(3)]],                                                        \
            uint2 tg [[threadgroup_position_in_grid]],                                            \
            uint lane [[thread_index_in_simdgroup]],                                              \
            uint sg [[simdgroup_index_in_threadgroup]],                                           \
            uint nsg [[simdgroups_per_threadgroup]]) {                                            \
        const int r0 = ((int)tg.x * (int)nsg + (int)sg) * NR;                                     \
        const int t = (int)tg.y;                                                                  \
        if (r0 >= args.R || t >= args.T) return; /* whole simdgroups */                           \
        const int nb = args.K / 32;                                                               \
        device const block_q8_act* xb = xq + (long)t * nb;                                        \
        float acc[STRATA_NR_MAX];                                                                 \
        for (int r = 0; r < NR; ++r) acc[r] = 0.0f;                                               \
        for (int c = (int)lane; c < nb; c += 32) {                                                \
            for (int r = 0; r < NR; ++r) {                                                        \
                if (r0 + r < args.R) {                                                            \
                    device const BLOCK* wr = (device const BLOCK*)(w + (long)(r0 + r) * args.row_bytes); \
                    acc[r] += DOT;                                                                \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < NR; ++r) {                                                            \
            const float s = simd_sum(acc[r]);                                                     \
            if (lane == 0 && r0 + r < args.R) y[(long)t * args.R + r0 + r] = s;                   \
        }                                                                                         \
    }

STRATA_MATVEC_Q8(kernel_matvec_q8_0, block_q8_0, dot_q8_0(wr[c], xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q4_0, block_q4_0, dot_q4_0(wr[c], xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q4_1, block_q4_1, dot_q4_1(wr[c], xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q5_0, block_q5_0, dot_q5_0(wr[c], xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q5_1, block_q5_1, dot_q5_1(wr[c], xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_iq4_nl, block_iq4_nl, dot_iq4_nl(wr[c], xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q4_K, block_q4_K, dot_q4_K(wr[c >> 3], c & 7, xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q5_K, block_q5_K, dot_q5_K(wr[c >> 3], c & 7, xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q6_K, block_q6_K, dot_q6_K(wr[c >> 3], c & 7, xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q2_K, block_q2_K, dot_q2_K(wr[c >> 3], c & 7, xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_q3_K, block_q3_K, dot_q3_K(wr[c >> 3], c & 7, xb[c]))
STRATA_MATVEC_Q8(kernel_matvec_iq4_xs, block_iq4_xs, dot_iq4_xs(wr[c >> 3], c & 7, xb[c]))

// F16, BF16 and F32 weights times f32 activations. With K % 4 == 0 every row starts 8-byte
// (f16, bf16) or 16-byte (f32) aligned and lanes read 4-wide vectors (4 elements each, 128
// per simdgroup step); otherwise scalars. CVT turns one element into float (bf16: ushort).
#define STRATA_MATVEC_FLOAT(NAME, ELEM, ELEM4, CVT)                                                    \
    kernel void NAME(                                                                             \
            constant MatvecArgs& args [[buffer(0)]],                                              \
            device const uchar* w [[buffer(1)]],                                                  \
            device const float* x [[buffer(2)]],                                                  \
            device float* y [[buffer(3)]],                                                        \
            uint2 tg [[threadgroup_position_in_grid]],                                            \
            uint lane [[thread_index_in_simdgroup]],                                              \
            uint sg [[simdgroup_index_in_threadgroup]],                                           \
            uint nsg [[simdgroups_per_threadgroup]]) {                                            \
        const int r0 = ((int)tg.x * (int)nsg + (int)sg) * NR;                                     \
        const int t = (int)tg.y;                                                                  \
        if (r0 >= args.R || t >= args.T) return;                                                  \
        const int K = args.K;                                                                     \
        device const float* xr = x + (long)t * K;                                                 \
        float acc[STRATA_NR_MAX];                                                                 \
        for (int r = 0; r < NR; ++r) acc[r] = 0.0f;                                               \
        for (int r = 0; r < NR; ++r) {                                                            \
            if (r0 + r >= args.R) break;                                                          \
            device const ELEM* wr = (device const ELEM*)(w + (long)(r0 + r) * args.row_bytes);    \
            if ((K & 3) == 0) {                                                                   \
                device const ELEM4* w4 = (device const ELEM4*)wr;                                 \
                device const float4* x4 = (device const float4*)xr;                               \
                for (int i = (int)lane; i < K / 4; i += 32) {                                     \
                    const ELEM4 a = w4[i];                                                        \
                    const float4 b = x4[i];                                                       \
                    acc[r] += CVT(a.x) * b.x + CVT(a.y) * b.y + CVT(a.z) * b.z + CVT(a.w) * b.w;  \
                }                                                                                 \
            } else {                                                                              \
                for (int i = (int)lane; i < K; i += 32) acc[r] += CVT(wr[i]) * xr[i];             \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < NR; ++r) {                                                            \
            const float s = simd_sum(acc[r]);                                                     \
            if (lane == 0 && r0 + r < args.R) y[(long)t * args.R + r0 + r] = s;                   \
        }                                                                                         \
    }

STRATA_MATVEC_FLOAT(kernel_matvec_f16, half, half4, (float))
STRATA_MATVEC_FLOAT(kernel_matvec_bf16, ushort, ushort4, bf16_to_f32)
STRATA_MATVEC_FLOAT(kernel_matvec_f32, float, float4, (float))
