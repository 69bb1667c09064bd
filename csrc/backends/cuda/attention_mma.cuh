// Prefill attention on tensor cores (the default; STRATA_CUDA_ATTN=f32 for the f32 tiles): one block's code, a header so
// that tools/attention_mma_host_check.cpp can run it on the host, lane by lane.
//
// One block per (64 query rows, head), 4 warps of 16 rows each. S = Q K^T and O += P V run
// on mma.sync m16n8k16 (mma.cuh: f16 operands, f32 accumulators): Q and the probabilities P
// are rounded to f16 (K and V are f16 in the cache already), as in llama.cpp's flash
// attention; scaling, masking and the online softmax stay in f32. S's accumulators are laid
// out as P's A fragments, so P never leaves registers. K and V tiles sit in shared memory
// with rows padded by 16 bytes, which spreads ldmatrix's 8 row reads over all 32 banks.
// Warps skip key tiles wholly in the future of their rows. Written in session 6 without a GPU
// (the host check ran it); on the H100 in session 7 its tests passed and 8B pp512 gained 27%
// (F16) and 18% (Q4_0) over the f32 tiles.
#pragma once

#include "common.cuh"
#include "mma.cuh"

namespace strata::cuda {

constexpr int kMmaQ = 64, kMmaK = 64;  // query rows, keys per tile
template <int HD>
constexpr int kMmaAttnSmemHalves = 2 * kMmaK * (HD + 8);

// Query tile `tile` (rows 64 tile ..) of head h; tid = threadIdx.x (128 threads); smem holds
// kMmaAttnSmemHalves<HD> halves, 16-byte aligned.
template <int HD>
__device__ __forceinline__ void attention_prefill_mma_block(const AttnArgs& a, const float* __restrict__ q,
                                                            const __half* __restrict__ kc,
                                                            const __half* __restrict__ vc, float* __restrict__ out,
                                                            int rows, int n_past, __half* smem, int tid, int tile,
                                                            int h) {
    constexpr int KS = HD / 16;    // k-steps of S over the head's dimensions
    constexpr int NT = kMmaK / 8;  // n-tiles of S over a key tile
    constexpr int DT = HD / 8;     // n-tiles of O over the dimensions
    constexpr int LD = HD + 8;     // halves per shared row
    const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, qd = lane & 3;
    const int t0 = tile * kMmaQ;
    const int64_t qw = (int64_t)a.n_head * HD, kvw = (int64_t)a.n_head_kv * HD;
    const int64_t koff = (int64_t)(h / (a.n_head / a.n_head_kv)) * HD;
    const int cap = (int)a.capacity;
    const int ta = t0 + warp * 16 + g, tb = ta + 8;  // this thread's two query rows
    const int pos_a = n_past + ta, pos_b = n_past + tb;

    uint32_t qf[KS][4];  // Q's A fragments, rows ta and tb (zeros past the step's rows)
    {
        const float* qa = q + (int64_t)ta * qw + (int64_t)h * HD + 2 * qd;
        const float* qb = q + (int64_t)tb * qw + (int64_t)h * HD + 2 * qd;
        const float2 zero = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            const float2 x0 = ta < rows ? *reinterpret_cast<const float2*>(qa + 16 * ks) : zero;
            const float2 x1 = tb < rows ? *reinterpret_cast<const float2*>(qb + 16 * ks) : zero;
            const float2 x2 = ta < rows ? *reinterpret_cast<const float2*>(qa + 16 * ks + 8) : zero;
            const float2 x3 = tb < rows ? *reinterpret_cast<const float2*>(qb + 16 * ks + 8) : zero;
            qf[ks][0] = pack_half2(x0.x, x0.y);
            qf[ks][1] = pack_half2(x1.x, x1.y);
            qf[ks][2] = pack_half2(x2.x, x2.y);
            qf[ks][3] = pack_half2(x3.x, x3.y);
        }
    }

    float o[DT][4];
#pragma unroll
    for (int d = 0; d < DT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;  // l: this thread's columns only
    const int last = n_past + min(t0 + kMmaQ, rows) - 1;  // the block's last position
    const int first = a.window > 0 ? max(0, n_past + t0 - a.window + 1) : 0;
    const int warp_last = min(last, n_past + t0 + warp * 16 + 15);  // the warp's last position
    __half* Ks = smem;
    __half* Vs = smem + kMmaK * LD;
    const uint32_t k_base = smem_addr(Ks), v_base = smem_addr(Vs);

    for (int j0 = first; j0 <= last; j0 += kMmaK) {
        block_sync();  // the previous tile's K and V are no longer read
        for (int i = tid; i < kMmaK * (HD / 8); i += 128) {
            const int jj = i / (HD / 8), d8 = (i % (HD / 8)) * 8, j = j0 + jj;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (j <= last) {
                const int64_t off = (int64_t)(j % cap) * kvw + koff + d8;
                kv = *reinterpret_cast<const uint4*>(kc + off);
                vv = *reinterpret_cast<const uint4*>(vc + off);
            }
            *reinterpret_cast<uint4*>(&Ks[jj * LD + d8]) = kv;
            *reinterpret_cast<uint4*>(&Vs[jj * LD + d8]) = vv;
        }
        block_sync();
        if (j0 > warp_last) continue;  // every key of this tile is in the future of the warp's rows

        float s[NT][4];
#pragma unroll
        for (int n = 0; n < NT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
            for (int n = 0; n < NT; n += 2) {  // matrices: keys of n-tile n (dims 0-7, 8-15), then n + 1
                uint32_t b[4];
                const int key = (n + (lane >> 4)) * 8 + (lane & 7), dim = 16 * ks + ((lane >> 3) & 1) * 8;
                ldmatrix_x4(b, k_base + (uint32_t)(key * LD + dim) * 2);
                mma_16816(s[n], qf[ks], b);
                mma_16816(s[n + 1], qf[ks], b + 2);
            }
        }

        float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int j = j0 + 8 * n + 2 * qd + e;
                const bool in = j <= last;
                const bool see_a = in && j <= pos_a && (a.window <= 0 || j > pos_a - a.window);
                const bool see_b = in && j <= pos_b && (a.window <= 0 || j > pos_b - a.window);
                s[n][e] = see_a ? a.scale * s[n][e] : -INFINITY;
                s[n][2 + e] = see_b ? a.scale * s[n][2 + e] : -INFINITY;
                mx_a = fmaxf(mx_a, s[n][e]);
                mx_b = fmaxf(mx_b, s[n][2 + e]);
            }
        }
#pragma unroll
        for (int o2 = 1; o2 < 4; o2 <<= 1) {  // the row's four threads
            mx_a = fmaxf(mx_a, shfl_xor(mx_a, o2));
            mx_b = fmaxf(mx_b, shfl_xor(mx_b, o2));
        }
        const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
        // A row that has seen no visible key yet keeps m = -inf and adds nothing.
        const float corr_a = mn_a == -INFINITY ? 1.0f : expf(m_a - mn_a);
        const float corr_b = mn_b == -INFINITY ? 1.0f : expf(m_b - mn_b);
        m_a = mn_a;
        m_b = mn_b;
        uint32_t pf[NT / 2][4];  // P as A fragments: keys 16 kk .. 16 kk + 15
        float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; ++n) {
            const float p0 = mn_a == -INFINITY ? 0.0f : expf(s[n][0] - mn_a);
            const float p1 = mn_a == -INFINITY ? 0.0f : expf(s[n][1] - mn_a);
            const float p2 = mn_b == -INFINITY ? 0.0f : expf(s[n][2] - mn_b);
            const float p3 = mn_b == -INFINITY ? 0.0f : expf(s[n][3] - mn_b);
            sum_a += p0 + p1;
            sum_b += p2 + p3;
            pf[n / 2][(n & 1) * 2] = pack_half2(p0, p1);
            pf[n / 2][(n & 1) * 2 + 1] = pack_half2(p2, p3);
        }
        l_a = l_a * corr_a + sum_a;
        l_b = l_b * corr_b + sum_b;
#pragma unroll
        for (int d = 0; d < DT; ++d) {
            o[d][0] *= corr_a;
            o[d][1] *= corr_a;
            o[d][2] *= corr_b;
            o[d][3] *= corr_b;
        }
#pragma unroll
        for (int kk = 0; kk < NT / 2; ++kk) {
#pragma unroll
            for (int d = 0; d < DT; d += 2) {  // matrices: keys 0-7, 8-15 of dims 8d.., then of 8(d+1)..
                uint32_t b[4];
                const int key = 16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8, dim = (d + (lane >> 4)) * 8;
                ldmatrix_x4_trans(b, v_base + (uint32_t)(key * LD + dim) * 2);
                mma_16816(o[d], pf[kk], b);
                mma_16816(o[d + 1], pf[kk], b + 2);
            }
        }
    }

#pragma unroll
    for (int o2 = 1; o2 < 4; o2 <<= 1) {
        l_a += shfl_xor(l_a, o2);
        l_b += shfl_xor(l_b, o2);
    }
    // l >= 1 for every row of the step: each sees its own position.
    if (ta < rows) {
        const float inv = 1.0f / l_a;
        float* op = out + (int64_t)ta * qw + (int64_t)h * HD + 2 * qd;
#pragma unroll
        for (int d = 0; d < DT; ++d)
            *reinterpret_cast<float2*>(op + 8 * d) = make_float2(o[d][0] * inv, o[d][1] * inv);
    }
    if (tb < rows) {
        const float inv = 1.0f / l_b;
        float* op = out + (int64_t)tb * qw + (int64_t)h * HD + 2 * qd;
#pragma unroll
        for (int d = 0; d < DT; ++d)
            *reinterpret_cast<float2*>(op + 8 * d) = make_float2(o[d][2] * inv, o[d][3] * inv);
    }
}

}  // namespace strata::cuda
