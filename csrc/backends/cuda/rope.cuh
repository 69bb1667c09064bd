// The rotary embedding's angles and rotation (rope.cpp's numbers), and the rope + KV append
// of one head in a decode step: shared by rope.cu's kernels and the q/k/v matvec that
// finishes its own heads (matvec_tail.cuh), so every path gives the same bits. Device code only.
#pragma once

#include "common.cuh"

namespace strata::cuda {

// cos and sin (times the magnitude factor) of pair i at position `position`.
__device__ __forceinline__ float2 rope_cs(const RopeArgs& a, int position, int i, const float* factors) {
    const double pos = (double)position * (double)a.freq_scale;
    double theta = pos * pow((double)a.base, -2.0 * (double)i / (double)a.n_rot);
    if (factors) theta /= (double)factors[i];
    return make_float2((float)(cos(theta) * (double)a.attn_factor), (float)(sin(theta) * (double)a.attn_factor));
}

// (x0, x1) rotated by (c, s); explicit roundings, so no kernel contracts it differently.
__device__ __forceinline__ float2 rope_rotate(float x0, float x1, float2 cs) {
    return make_float2(__fmaf_rn(x0, cs.x, -__fmul_rn(x1, cs.y)), __fmaf_rn(x0, cs.y, __fmul_rn(x1, cs.x)));
}

// Head `head` of a decode step at position pos, by the threads of a block: a q head (head <
// n_head) rotated into qo; a k head rotated into ko and the K cache, and the same head of v
// appended to the V cache (cache row pos % capacity). Dimensions past n_rot pass through.
// cs_first (when `early`): thread tid's first pair's angle, taken beforehand. q, k and v are
// read through L2 (__ldcg): the matvec tail reads them right after other SMs wrote them.
__device__ __forceinline__ void rope_append_head(const RopeAppend& r, int head, int pos, bool early, float2 cs_first) {
    const RopeArgs& a = r.a;
    const int tid = threadIdx.x, nt = blockDim.x;
    const int hd = a.head_dim, n_rot = a.n_rot, half = n_rot / 2;
    const int64_t crow = ((int64_t)pos % r.capacity) * r.n_head_k * hd;  // as kv_append_kernel's row
    const bool is_q = head < a.n_head;
    const int o = (is_q ? head : head - a.n_head) * hd;  // the head in q or k
    const float* x = is_q ? r.q + o : r.k + o;
    for (int i = tid; i < half; i += nt) {
        const int ia = a.neox ? i : 2 * i;
        const int ib = a.neox ? i + half : 2 * i + 1;
        const float2 v = rope_rotate(__ldcg(x + ia), __ldcg(x + ib), early && i == tid ? cs_first : rope_cs(a, pos, i, r.factors));
        if (is_q) {
            r.qo[o + ia] = v.x;
            r.qo[o + ib] = v.y;
        } else {
            r.ko[o + ia] = v.x;
            r.ko[o + ib] = v.y;
            r.kc[crow + o + ia] = __float2half_rn(v.x);
            r.kc[crow + o + ib] = __float2half_rn(v.y);
        }
    }
    for (int e = n_rot + tid; e < hd; e += nt) {
        const float v = __ldcg(x + e);
        if (is_q) {
            r.qo[o + e] = v;
        } else {
            r.ko[o + e] = v;
            r.kc[crow + o + e] = __float2half_rn(v);
        }
    }
    if (!is_q)
        for (int e = tid; e < hd; e += nt) r.vc[crow + o + e] = __float2half_rn(__ldcg(r.v + o + e));
}

}  // namespace strata::cuda
