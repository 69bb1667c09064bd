// attention against the fp16 KV cache. Reference: csrc/backends/cpu/kernels/attention.cpp,
// csrc/backends/cuda/attention.cu, tests/reference/numpy_ops.py::ref_attention.
//
// Row t of a step sits at position p = n_past + t and sees cache positions lo..p (lo =
// p - window + 1 with a window, else 0); position j lives in cache row j % capacity (a ring
// buffer for sliding-window layers). GQA head h reads KV head h / (n_head / n_head_kv).
//
// kernel_kv_append: rows t < T of k and v into cache row (n_past + t) % capacity (fp16,
// round to nearest even).
//
// Decode (steps of a few rows): kernel_attention_f16, one query row per threadgroup of NSG
// simdgroups (1..8), grid (n_head, T, n_split). The row's visible keys are cut into n_split
// contiguous ranges (n_split = 1 but for long contexts), threadgroup z takes range z, and
// its simdgroups split that into NSG contiguous chunks; each simdgroup runs an online
// softmax over its chunk (lanes hold dims lane + 32c, each key's dot is a simd_sum; running
// max m, sum l, accumulator rescaled by exp(m_old - m_new)), then simdgroup 0 merges the
// NSG partial (m, l, acc) from threadgroup memory. With n_split = 1 it writes the
// normalised row; with n_split > 1 (flash-decoding: more threadgroups than heads x rows,
// as csrc/backends/cuda/attention.cu) it writes the unnormalised (M, L, acc[head_dim]) of
// its range, and kernel_attention_merge_f32, grid (n_head, T), combines the n_split
// partials of each (row, head): M* = max M_z, L* = sum L_z e^(M_z - M*), out = sum acc_z
// e^(M_z - M*) / L*, skipping empty ranges (L = 0). head_dim <= 256.
//
// Prefill (steps of many rows): kernel_attention_tile_f16 in attention_tile.metal.
#include "strata_args.h"

#define STRATA_ATTN_MAX_SG 8
#define STRATA_ATTN_MAX_NC 8  // head_dim / 32

kernel void kernel_kv_append(
        constant AttnArgs& args [[buffer(0)]],
        device const float* k [[buffer(1)]],
        device const float* v [[buffer(2)]],
        device half* kc [[buffer(3)]],
        device half* vc [[buffer(4)]],
        uint i [[thread_position_in_grid]]) {
    const long kvw = (long)args.n_head_kv * args.head_dim;
    if ((long)i >= (long)args.T * kvw) return;
    const long t = (long)i / kvw, c = (long)i - t * kvw;
    const long dst = ((args.n_past + t) % args.capacity) * kvw + c;
    kc[dst] = (half)k[i];
    vc[dst] = (half)v[i];
}

// Partial results (n_split > 1): (row t, head h, range z) at ((t * n_head + h) * n_split +
// z) * (head_dim + 2) floats: m, l, then acc[head_dim] (unnormalised).
kernel void kernel_attention_f16(
        constant AttnArgs& args [[buffer(0)]],
        device const float* q [[buffer(1)]],
        device const half* kc [[buffer(2)]],
        device const half* vc [[buffer(3)]],
        device float* out [[buffer(4)]],  // the output, or the partial results when n_split > 1
        uint3 tg [[threadgroup_position_in_grid]],
        uint lane [[thread_index_in_simdgroup]],
        uint sg [[simdgroup_index_in_threadgroup]],
        uint nsg [[simdgroups_per_threadgroup]]) {
    threadgroup float tg_m[STRATA_ATTN_MAX_SG];
    threadgroup float tg_l[STRATA_ATTN_MAX_SG];
    threadgroup float tg_acc[STRATA_ATTN_MAX_SG * STRATA_ATTN_MAX_NC * 32];

    const int n_split = max(1, args.n_split);
    const int h = (int)tg.x, t = (int)tg.y, z = (int)tg.z;
    if (h >= args.n_head || t >= args.T || z >= n_split) return;  // whole threadgroups
    const int hd = args.head_dim;
    const int nc = (hd + 31) / 32;
    const long kvw = (long)args.n_head_kv * hd;
    const long koff = (long)(h / (args.n_head / args.n_head_kv)) * hd;
    device const float* qh = q + (long)t * args.n_head * hd + (long)h * hd;

    // The threadgroup's keys: range z of n_split over lo..pos (the last ranges may be empty
    // for a row shorter than the step's last), then chunk sg of nsg of that range.
    const int pos = args.n_past + t;
    const int lo = args.window > 0 ? max(0, pos - args.window + 1) : 0;
    const int len = pos - lo + 1;
    const int range = (len + n_split - 1) / n_split;
    const int r0 = lo + z * range;
    const int r1 = min(pos + 1, r0 + range);
    const int n = max(0, r1 - r0);
    const int chunk = (n + (int)nsg - 1) / (int)nsg;
    const int j0 = r0 + (int)sg * chunk;
    const int j1 = min(r0 + n, j0 + chunk);

    float qv[STRATA_ATTN_MAX_NC], acc[STRATA_ATTN_MAX_NC];
    for (int c = 0; c < STRATA_ATTN_MAX_NC; ++c) {
        const int d = (int)lane + 32 * c;
        qv[c] = (c < nc && d < hd) ? qh[d] : 0.0f;
        acc[c] = 0.0f;
    }
    // -FLT_MAX / 2, not -INFINITY: stays well defined if a build enables fast math.
    float m = -FLT_MAX / 2, l = 0.0f;
    for (int j = j0; j < j1; ++j) {
        const long row = (long)(j % args.capacity) * kvw + koff;
        float dot = 0.0f;
        for (int c = 0; c < nc; ++c) {
            const int d = (int)lane + 32 * c;
            if (d < hd) dot += qv[c] * (float)kc[row + d];
        }
        float s = args.scale * simd_sum(dot);
        if (args.softcap > 0.0f) s = args.softcap * precise::tanh(s / args.softcap);
        const float mn = max(m, s);
        const float corr = exp(m - mn);  // 0 before the first key
        const float p = exp(s - mn);
        l = l * corr + p;
        for (int c = 0; c < nc; ++c) {
            const int d = (int)lane + 32 * c;
            if (d < hd) acc[c] = acc[c] * corr + p * (float)vc[row + d];
        }
        m = mn;
    }

    if (lane == 0) {
        tg_m[sg] = m;
        tg_l[sg] = l;
    }
    for (int c = 0; c < nc; ++c) tg_acc[(sg * STRATA_ATTN_MAX_NC + c) * 32 + lane] = acc[c];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (sg != 0) return;

    float M = -FLT_MAX / 2;
    for (uint s = 0; s < nsg; ++s) M = max(M, tg_m[s]);
    float L = 0.0f;
    float o[STRATA_ATTN_MAX_NC];
    for (int c = 0; c < STRATA_ATTN_MAX_NC; ++c) o[c] = 0.0f;
    for (uint s = 0; s < nsg; ++s) {
        if (tg_l[s] == 0.0f) continue;  // empty chunk: nothing to add
        const float f = exp(tg_m[s] - M);
        L += tg_l[s] * f;
        for (int c = 0; c < nc; ++c) o[c] += tg_acc[(s * STRATA_ATTN_MAX_NC + c) * 32 + lane] * f;
    }
    if (n_split == 1) {
        const float inv = 1.0f / L;  // L >= 1: the row sees its own position
        device float* oh = out + (long)t * args.n_head * hd + (long)h * hd;
        for (int c = 0; c < nc; ++c) {
            const int d = (int)lane + 32 * c;
            if (d < hd) oh[d] = o[c] * inv;
        }
    } else {
        device float* pp = out + (((long)t * args.n_head + h) * n_split + z) * (hd + 2);
        if (lane == 0) {
            pp[0] = M;
            pp[1] = L;  // 0 for an empty range
        }
        for (int c = 0; c < nc; ++c) {
            const int d = (int)lane + 32 * c;
            if (d < hd) pp[2 + d] = o[c];
        }
    }
}

// One threadgroup per (head, row), threads striding the head's dimensions.
kernel void kernel_attention_merge_f32(
        constant AttnArgs& args [[buffer(0)]],
        device const float* partial [[buffer(1)]],
        device float* out [[buffer(2)]],
        uint2 tg [[threadgroup_position_in_grid]],
        uint tid [[thread_index_in_threadgroup]],
        uint ntg [[threads_per_threadgroup]]) {
    const int h = (int)tg.x, t = (int)tg.y;
    if (h >= args.n_head || t >= args.T) return;
    const int hd = args.head_dim, ns = args.n_split;
    const long stride = hd + 2;
    device const float* pp = partial + ((long)t * args.n_head + h) * ns * stride;
    float M = -FLT_MAX / 2;
    for (int z = 0; z < ns; ++z)
        if (pp[z * stride + 1] > 0.0f) M = max(M, pp[z * stride]);
    float L = 0.0f;
    for (int z = 0; z < ns; ++z) {
        const float lz = pp[z * stride + 1];
        if (lz > 0.0f) L += lz * exp(pp[z * stride] - M);
    }
    const float inv = 1.0f / L;  // L >= 1: the row sees its own position
    device float* oh = out + (long)t * args.n_head * hd + (long)h * hd;
    for (int d = (int)tid; d < hd; d += (int)ntg) {
        float o = 0.0f;
        for (int z = 0; z < ns; ++z) {
            const float lz = pp[z * stride + 1];
            if (lz > 0.0f) o += pp[z * stride + 2 + d] * exp(pp[z * stride] - M);
        }
        oh[d] = o * inv;
    }
}
