// The decode matvec with 16-byte weight loads (matvec_wide.cu): what one lane loads and
// computes per unit of a weight row, for each type it serves, and the lane's loop over its
// units. Device functions only, no launch and no warp intrinsics, so that
// tools/wide_host_check.cpp can compile this as host C++ and walk every lane of a launch.
//
// A unit is the piece of a row one lane handles per step: 8 elements for f16 / bf16 (16
// bytes), 32 elements for the quantized types. Lane l of a warp takes units 32 i + l of its
// rows (i over the warp's share of the row), so the lanes of one step read consecutive bytes.
// Every weight load is a 16-byte load at a 16-byte aligned address:
//   - f16 / bf16: one unit = one load (rows start 16-byte aligned when K % 8 == 0);
//   - 32-element block types (q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl): blocks of 18..34 bytes
//     start 2-, 4- or 8-byte aligned, so the lane loads the 2 or 3 aligned 16-byte pieces that
//     cover its block and shifts the block's bytes into place in registers (align_words); the
//     overlapping pieces of neighbouring lanes are the same cache lines, so DRAM still reads
//     each byte once. The block's value is quant.cuh's dotb, the formula of the older kernel;
//   - q4_K: 16-byte aligned super-blocks; a unit is a 32-element chunk as in quant.cuh's
//     dot32 (the header and the chunk's 32 quant bytes: three loads), same value;
//   - q4_0 / q8_0 in split rows (weight_split.cuh, the default where they can be): the block's quants
//     one or two aligned loads, its scale a 2-byte load (WideSplit), the dotb value again;
//   - q6_K: 210-byte super-blocks (2-byte aligned); a unit is 16 bytes of ql and 16 of qh, which
//     hold 16 elements of two 32-element chunks (aligned-cover loads as above, four in all),
//     and the chunks' int8 scales and d as small loads.
// Activations: f32 for the float types; ActQ8 (int8 per 32 with scale and sums, the CPU's
// block_q8_act numbers) for the quantized types, with the same integer dp4a sums as before.
#pragma once

#include "common.cuh"
#include "quant.cuh"
#include "weight_split.cuh"

namespace strata::cuda {

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// A load through the read-only path (ld.global.nc); a plain load in the host check.
template <class V>
__device__ __forceinline__ V ldg(const V* p) {
#ifdef __CUDA_ARCH__
    return __ldg(p);
#else
    return *p;
#endif
}

template <int M>
__device__ __forceinline__ uint32_t word_or_zero(const uint32_t (&w)[M], int i) {
    return i < M ? w[i] : 0u;
}

// v[k] = bytes o + 4k .. o + 4k + 3 of the words w (little-endian), o even in [0, 16):
// three selects / funnel shifts per word, no indexing by a run-time value (registers stay
// registers). Bytes past w read as zero.
template <int M, int N>
__device__ __forceinline__ void align_words(const uint32_t (&w)[M], uint32_t o, uint32_t (&v)[N]) {
    uint32_t t[N + 2], u[N + 1];
#pragma unroll
    for (int k = 0; k < N + 2; ++k) t[k] = (o & 8) ? word_or_zero(w, k + 2) : word_or_zero(w, k);
#pragma unroll
    for (int k = 0; k < N + 1; ++k) u[k] = (o & 4) ? t[k + 1] : t[k];
    const uint32_t sh = 8 * (o & 3);
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = __funnelshift_r(u[k], u[k + 1], sh);
}

__device__ __forceinline__ void put_words(uint32_t* w, const uint4& a) {
    w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
}

// ---- f16 / bf16 weights, f32 activations: 8 elements per unit --------------------------
template <DType T>
struct WideFloat {
    static_assert(T == DType::F16 || T == DType::BF16);
    static constexpr int kElems = 8;
    using XArg = const float*;
    struct W { uint4 q; };
    struct X { float v[8]; };
    __device__ static XArg row_x(XArg x, int t, int K) { return x + (int64_t)t * K; }
    __device__ static W load_w(const uint8_t* row, int n, int) { return {ldg((const uint4*)(row + 16 * n))}; }
    __device__ static X load_x(XArg x, int n) {
        const float4 a = ldg((const float4*)(x + 8 * n)), b = ldg((const float4*)(x + 8 * n) + 1);
        return {{a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}};
    }
    __device__ static float lo(uint32_t w) {
        if constexpr (T == DType::F16) return h2f(w & 0xFFFFu);
        else return __uint_as_float(w << 16);
    }
    __device__ static float hi(uint32_t w) {
        if constexpr (T == DType::F16) return h2f(w >> 16);
        else return __uint_as_float(w & 0xFFFF0000u);
    }
    // Element order as the f32 kernel of matvec.cu (one fma chain per lane).
    __device__ static float accum(float acc, const W& w, const X& x, int) {
        const uint32_t q[4] = {w.q.x, w.q.y, w.q.z, w.q.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            acc = fmaf(lo(q[k]), x.v[2 * k], acc);
            acc = fmaf(hi(q[k]), x.v[2 * k + 1], acc);
        }
        return acc;
    }
};

// ---- quantized weights, ActQ8 activations: 32 elements per unit ------------------------
__device__ __forceinline__ ActQ8 act_row(const ActQ8& x, int t, int K) {
    return {x.q + (int64_t)t * K, x.d + (int64_t)t * (K / 32), x.s + (int64_t)t * (K / 32)};
}

// One 32-element activation chunk: 8 words of int8 quants, scale, packed half sums.
struct XChunk {
    int q[8];
    float d;
    int32_t s;
};
__device__ __forceinline__ XChunk load_chunk(const ActQ8& x, int c) {
    const int4 a = ldg((const int4*)(x.q + 32 * c)), b = ldg((const int4*)(x.q + 32 * c + 16));
    return {{a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}, ldg(x.d + c), ldg(x.s + c)};
}

constexpr int gcd16(int b) { return (b & 15) == 0 ? 16 : (b & 7) == 0 ? 8 : (b & 3) == 0 ? 4 : (b & 1) == 0 ? 2 : 1; }

// 32-element blocks: unit n = block n of the row.
template <DType T>
struct WideBlock32 {
    static constexpr int kElems = 32;
    static constexpr int kBytes = QT<T>::kBytes;
    static_assert(gcd16(kBytes) >= 2, "blocks must be at least 2-byte aligned");
    static constexpr int kVecs = (16 - gcd16(kBytes) + kBytes + 15) / 16;  // aligned pieces covering a block
    static constexpr int kWords = (kBytes + 3) / 4 + 1;
    using XArg = ActQ8;
    struct W {
        uint32_t w[4 * kVecs];
        uint32_t o;  // the block's first byte within w
    };
    using X = XChunk;
    __device__ static XArg row_x(const XArg& x, int t, int K) { return act_row(x, t, K); }
    __device__ static W load_w(const uint8_t* row, int n, int) {
        const uint8_t* p = row + n * kBytes;
        const uint4* a = (const uint4*)((uintptr_t)p & ~(uintptr_t)15);
        W r;
#pragma unroll
        for (int v = 0; v < kVecs; ++v) put_words(r.w + 4 * v, ldg(a + v));
        r.o = (uint32_t)((uintptr_t)p & 15);
        return r;
    }
    __device__ static X load_x(const XArg& x, int n) { return load_chunk(x, n); }
    __device__ static float accum(float acc, const W& w, const X& x, int) {
        RegBlock<kWords> b;
        align_words(w.w, w.o, b.v);
        return acc + QT<T>::dotb(b, x.q, x.d, x.s);
    }
};

// q4_K: unit n = chunk n (super-block n / 8, sub-block j = n % 8), as quant.cuh's dot32.
struct WideQ4K {
    static constexpr int kElems = 32;
    using XArg = ActQ8;
    struct W { uint4 h, q0, q1; };  // d, dmin, scales; the 32 quant bytes of sub-blocks j & ~1, j | 1
    using X = XChunk;
    __device__ static XArg row_x(const XArg& x, int t, int K) { return act_row(x, t, K); }
    __device__ static W load_w(const uint8_t* row, int n, int) {
        const uint8_t* b = row + (n >> 3) * 144;
        const uint4* q = (const uint4*)(b + 16 + 32 * ((n & 7) >> 1));
        return {ldg((const uint4*)b), ldg(q), ldg(q + 1)};
    }
    __device__ static X load_x(const XArg& x, int n) { return load_chunk(x, n); }
    __device__ static float accum(float acc, const W& w, const X& x, int n) {
        const int j = n & 7, sh = 4 * (j & 1);
        const uint32_t q[8] = {w.q0.x, w.q0.y, w.q0.z, w.q0.w, w.q1.x, w.q1.y, w.q1.z, w.q1.w};
        int sumi = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) sumi = dp4a((q[k] >> sh) & 0x0F0F0F0Fu, x.q[k], sumi);
        // scale_min_k4 over the 12 scale bytes h.y, h.z, h.w, without run-time indexing
        const int bs = 8 * (j & 3);
        const int by = (int)((w.h.y >> bs) & 0xFF), bz = (int)((w.h.z >> bs) & 0xFF), bw = (int)((w.h.w >> bs) & 0xFF);
        const int sc = j < 4 ? (by & 63) : ((bw & 0x0F) | ((by >> 6) << 4));
        const int m = j < 4 ? (bz & 63) : ((bw >> 4) | ((bz >> 6) << 4));
        return acc + (h2f(w.h.x & 0xFFFFu) * x.d * (float)(sc * sumi) -
                      h2f(w.h.x >> 16) * x.d * (float)(m * (sum_lo(x.s) + sum_hi(x.s))));
    }
};

// q6_K: unit n = (super-block n / 8, u = n % 8, h = u / 4, p = u % 4): ql bytes 64h + 16p ..
// +16 (low nibbles: elements 128h + 16p + i, high nibbles: 128h + 64 + 16p + i, i < 16) and
// qh bytes 32h + 16(p & 1) .. +16 (bits 2(p / 2) and 4 + 2(p / 2) of byte i for those), scales
// 8h + p and 8h + 4 + p. Chunk a = 4h + p / 2, chunk b = a + 2, both at half p & 1.
struct WideQ6K {
    static constexpr int kElems = 32;
    using XArg = ActQ8;
    struct W {
        uint32_t l[8], g[8];  // aligned pieces covering the 16 ql and 16 qh bytes
        uint32_t o;           // their first byte within l and g (the same: both offsets are 0 mod 16)
        int sca, scb;
        uint32_t d;
    };
    struct X {
        int qa[4], qb[4];
        float da, db;
        int sa, sb;  // sums of the 16 activation quants of each half
    };
    __device__ static XArg row_x(const XArg& x, int t, int K) { return act_row(x, t, K); }
    __device__ static W load_w(const uint8_t* row, int n, int) {
        const uint8_t* b = row + (n >> 3) * 210;
        const int u = n & 7, h = u >> 2, p = u & 3;
        const uint8_t* pl = b + 64 * h + 16 * p;
        const uint8_t* pg = b + 128 + 32 * h + 16 * (p & 1);
        const uint4* al = (const uint4*)((uintptr_t)pl & ~(uintptr_t)15);
        const uint4* ag = (const uint4*)((uintptr_t)pg & ~(uintptr_t)15);
        W r;
        put_words(r.l, ldg(al)); put_words(r.l + 4, ldg(al + 1));
        put_words(r.g, ldg(ag)); put_words(r.g + 4, ldg(ag + 1));
        r.o = (uint32_t)((uintptr_t)pl & 15);
        r.sca = ldg((const signed char*)b + 192 + 8 * h + p);
        r.scb = ldg((const signed char*)b + 196 + 8 * h + p);
        r.d = ldg((const unsigned short*)(b + 208));
        return r;
    }
    __device__ static X load_x(const XArg& x, int n) {
        const int u = n & 7, h = u >> 2, p = u & 3, half = p & 1;
        const int ca = 8 * (n >> 3) + 4 * h + (p >> 1), cb = ca + 2;
        const int4 a = ldg((const int4*)(x.q + 32 * ca + 16 * half)), b = ldg((const int4*)(x.q + 32 * cb + 16 * half));
        const int32_t sa = ldg(x.s + ca), sb = ldg(x.s + cb);
        return {{a.x, a.y, a.z, a.w}, {b.x, b.y, b.z, b.w}, ldg(x.d + ca), ldg(x.d + cb),
                half ? sum_hi(sa) : sum_lo(sa), half ? sum_hi(sb) : sum_lo(sb)};
    }
    __device__ static float accum(float acc, const W& w, const X& x, int n) {
        uint32_t l[4], g[4];
        align_words(w.l, w.o, l);
        align_words(w.g, w.o, g);
        const int hs = 2 * ((n & 3) >> 1);
        int ia = 0, ib = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t va = (l[k] & 0x0F0F0F0Fu) | (((g[k] >> hs) & 0x03030303u) << 4);
            const uint32_t vb = ((l[k] >> 4) & 0x0F0F0F0Fu) | (((g[k] >> (hs + 4)) & 0x03030303u) << 4);
            ia = dp4a(va, x.qa[k], ia);
            ib = dp4a(vb, x.qb[k], ib);
        }
        const int isa = w.sca * (ia - 32 * x.sa), isb = w.scb * (ib - 32 * x.sb);
        return acc + h2f(w.d) * (x.da * (float)isa + x.db * (float)isb);
    }
};

// q4_0 / q8_0 in split rows (weight_split.cuh): unit n = block n, its quants one or two
// aligned 16-byte loads, its scale a 2-byte load from the scales after the row's quants.
// The block's value is quant.cuh's dotb over the same bytes (SplitBlock below), so a split
// weight gives the numbers the GGUF layout gives, bit for bit.
template <DType T>
struct WideSplit {
    static constexpr int kElems = 32;
    static constexpr int kQ = split_qs_bytes(T);
    static_assert(kQ == 16 || kQ == 32);
    using XArg = ActQ8;
    // dotb's byte source: offset 0 the scale, offsets 2 + 4k word k of the quants (dotb reads
    // nothing else of a q4_0 / q8_0 block; the offsets are constants once inlined).
    struct W {
        uint32_t q[kQ / 4];
        uint32_t d;
        __device__ __forceinline__ uint32_t u16(int) const { return d; }
        __device__ __forceinline__ uint32_t u32a2(int off) const { return q[(off - 2) >> 2]; }
        __device__ __forceinline__ uint32_t u32(int off) const { return q[(off - 2) >> 2]; }
    };
    using X = XChunk;
    __device__ static XArg row_x(const XArg& x, int t, int K) { return act_row(x, t, K); }
    __device__ static W load_w(const uint8_t* row, int n, int units) {
        W r;
#pragma unroll
        for (int v = 0; v < kQ / 16; ++v) put_words(r.q + 4 * v, ldg((const uint4*)(row + kQ * n) + v));
        r.d = ldg((const unsigned short*)(row + kQ * units) + n);
        return r;
    }
    __device__ static X load_x(const XArg& x, int n) { return load_chunk(x, n); }
    __device__ static float accum(float acc, const W& w, const X& x, int) {
        return acc + QT<T>::dotb(w, x.q, x.d, x.s);
    }
};
template <DType T> struct WideSplitOp { using type = void; };
template <> struct WideSplitOp<DType::Q4_0> { using type = WideSplit<DType::Q4_0>; };
template <> struct WideSplitOp<DType::Q8_0> { using type = WideSplit<DType::Q8_0>; };

// The unit types of each weight type (void: not served by the wide kernel).
template <DType T> struct WideOp { using type = void; };
template <> struct WideOp<DType::F16> { using type = WideFloat<DType::F16>; };
template <> struct WideOp<DType::BF16> { using type = WideFloat<DType::BF16>; };
template <> struct WideOp<DType::Q4_0> { using type = WideBlock32<DType::Q4_0>; };
template <> struct WideOp<DType::Q4_1> { using type = WideBlock32<DType::Q4_1>; };
template <> struct WideOp<DType::Q5_0> { using type = WideBlock32<DType::Q5_0>; };
template <> struct WideOp<DType::Q5_1> { using type = WideBlock32<DType::Q5_1>; };
template <> struct WideOp<DType::Q8_0> { using type = WideBlock32<DType::Q8_0>; };
template <> struct WideOp<DType::IQ4_NL> { using type = WideBlock32<DType::IQ4_NL>; };
template <> struct WideOp<DType::Q4_K> { using type = WideQ4K; };
template <> struct WideOp<DType::Q6_K> { using type = WideQ6K; };

// Steps i0 .. i1 of the row (a step: 32 units, one per lane) for split `slice` of S.
__device__ __forceinline__ void wide_steps(int units, int slice, int S, int* i0, int* i1) {
    const int steps = (units + 31) >> 5;
    *i0 = steps * slice / S;
    *i1 = steps * (slice + 1) / S;
}

// Lane `lane`'s partial sums over its units of rows r0 .. r0 + NR - 1 (rows past R repeat
// row R - 1; their sums are dropped by the caller), steps i0 .. i1. U steps of loads are
// issued before the first of them is used: NR x U weight units (16 to 48 bytes each) per lane.
// The kernels' PDL wait (pdl_begin) is here: with `early`, the first U steps of weight loads
// are issued before it, while the kernel before still runs (weights are never written during
// a step: the exception common.cuh argues), so their trip to DRAM is off the step's path.
// after_wait() runs right after the wait: a load of the caller's of memory the step writes
// (the rope launch's angles), issued before the loop, waited for after it.
struct NoHook {
    __device__ void operator()() const {}
};
template <class Op, int NR, int U, class AfterWait = NoHook>
__device__ __forceinline__ void wide_lane_sums(const uint8_t* w, int64_t row_bytes, int K, int R, int r0,
                                               const typename Op::XArg& x, int i0, int i1, int lane,
                                               float (&acc)[NR], bool early = false, AfterWait after_wait = {}) {
    const int units = K / Op::kElems;
    const uint8_t* rp[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) {
        rp[r] = w + (int64_t)imin(r0 + r, R - 1) * row_bytes;
        acc[r] = 0.0f;
    }
    typename Op::W wv[U][NR];
    auto load_weights = [&](int i) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int n = imin(32 * (i + u) + lane, units - 1);  // past the end: a unit in the row, unused
#pragma unroll
            for (int r = 0; r < NR; ++r) wv[u][r] = Op::load_w(rp[r], n, units);
        }
    };
    if (early) load_weights(i0);
    pdl_begin();
    after_wait();
    for (int i = i0; i < i1; i += U) {
        if (!early || i != i0) load_weights(i);
        typename Op::X xv[U];
#pragma unroll
        for (int u = 0; u < U; ++u) xv[u] = Op::load_x(x, imin(32 * (i + u) + lane, units - 1));
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int n = 32 * (i + u) + lane;
            if (i + u < i1 && n < units) {
#pragma unroll
                for (int r = 0; r < NR; ++r) acc[r] = Op::accum(acc[r], wv[u][r], xv[u], n);
            }
        }
    }
}

}  // namespace strata::cuda
