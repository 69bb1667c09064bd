// attention against the fp16 KV cache, as csrc/backends/cpu/kernels/attention.cpp:
// append the step's K and V rows at positions n_past.. (row p % capacity: sliding-window
// layers keep a ring buffer of window + max_rows - 1 rows), then for each (row, head)
// softmax(scale * q.k_j, soft-capped if asked) over the visible positions j, times v_j.
// Causal: row t at position p = n_past + t sees j <= p, and with a window only j > p - window.
// GQA: head h reads KV head h / (n_head / n_head_kv).
//
// One warp per (row, head, split): the lanes hold the head's dimensions (pairs 2 lane +
// 64 c, c < NC), every key's dot is a warp all-reduce, and the softmax is online (running
// max and sum, rescaling the accumulator), four keys per round for memory parallelism (8 or
// 16 with STRATA_CUDA_ATTN_ROUND; the last round masked), each decode warp having first asked
// L2 for its keys' K and V rows (prefetch_keys). A
// block's 4 warps are 4 consecutive heads of one row, which share KV heads under GQA.
// Decode (one row) splits the keys over up to n_split warps (flash-decoding; as many as
// stretches of a.split_keys keys need, so the count follows the position) and a second kernel
// merges the partial results; prefill runs one split and writes the output directly, on
// tensor cores for head_dim 64 / 128 without soft-cap (attention_mma.cuh; STRATA_CUDA_ATTN=f32
// or a soft-cap: f32 tiles of 32 query rows x 32 keys for those head sizes).
// n_past is read from device memory (StepParams), so a captured decode graph stays valid.
#include "attention_mma.cuh"
#include "common.cuh"
#include "quantize_q8.cuh"

namespace strata::cuda {

namespace {

constexpr int kHeadsPerBlock = 4;

__global__ void kv_append_kernel(const float* __restrict__ k, const float* __restrict__ v, __half* __restrict__ kc,
                                 __half* __restrict__ vc, int64_t n, int64_t kvw, int64_t capacity,
                                 const StepParams* __restrict__ sp) {
    pdl_begin();
    const int64_t n_past = sp->n_past;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / kvw, c = i - t * kvw;
        const int64_t dst = ((n_past + t) % capacity) * kvw + c;
        kc[dst] = __float2half_rn(k[i]);
        vc[dst] = __float2half_rn(v[i]);
    }
}

// The keys row position `pos` sees, [lo, lo + len), and how decode cuts them: `used` splits
// of `chunk` keys (the last may be shorter or empty). Both kernels of a decode step compute it
// from the same position, so the merge reads exactly the splits that were written. Measured on
// the H100 (cuda_notes.md round 9): a fixed count cut short caches into slivers whose fixed
// costs outweighed the parallelism, and left long ones with too few splits.
struct KeySplit {
    int lo, len, used, chunk;
};
__device__ __forceinline__ KeySplit key_split(const AttnArgs& a, int pos, int n_split) {
    KeySplit k;
    k.lo = a.window > 0 ? max(0, pos - a.window + 1) : 0;
    k.len = pos - k.lo + 1;
    k.used = a.split_keys > 0 ? min(n_split, (k.len + a.split_keys - 1) / a.split_keys) : n_split;
    k.chunk = (k.len + k.used - 1) / k.used;
    return k;
}

// p[0] + ... + p[N-1] as a balanced tree (N a power of two): ((p0 + p1) + (p2 + p3)) for 4.
template <int N>
__device__ __forceinline__ float pairwise_sum(const float* p) {
    if constexpr (N == 1)
        return p[0];
    else
        return pairwise_sum<N / 2>(p) + pairwise_sum<N / 2>(p + N / 2);
}

// Asks L2 for the K and V rows of keys j0 .. j1 - 1 of one KV head (hd halves at koff in each
// row), lane `lane` taking keys j0 + lane, j0 + lane + 32, ...: every round's loads then find
// their lines in L2 instead of waiting on DRAM one round after another. The attention kernel
// does this before pdl_begin, while the kernel before it (the KV append, or rope with it) still
// runs: the rows of positions before n_past were written by earlier steps and do not change in
// this one; the row the append is writing may be fetched before the write lands, which is
// harmless, as L2 is where that write goes (a prefetch fills L2 only, never L1, and changes
// no value). n_past itself is copied in before the step's first kernel starts.
__device__ __forceinline__ void prefetch_keys(const __half* kc, const __half* vc, int64_t kvw, int64_t koff, int hd,
                                              int cap, int j0, int j1, int lane) {
    for (int j = j0 + lane; j < j1; j += 32) {
        const int64_t row = (int64_t)(j % cap) * kvw + koff;
        for (int b = 0; b < 2 * hd; b += 128) {
            prefetch_l2_line((uintptr_t)(kc + row) + b);
            prefetch_l2_line((uintptr_t)(vc + row) + b);
        }
    }
}

template <int NC, int KR>
__global__ void __launch_bounds__(kHeadsPerBlock * 32)
    attention_kernel(AttnArgs a, const float* __restrict__ q, const __half* __restrict__ kc,
                     const __half* __restrict__ vc, float* __restrict__ out, float* __restrict__ partial,
                     const StepParams* __restrict__ sp) {
    const int lane = threadIdx.x & 31;
    const int t = blockIdx.x;
    const int h = blockIdx.y * kHeadsPerBlock + (threadIdx.x >> 5);
    const int z = blockIdx.z, n_split = gridDim.z;
    const int hd = a.head_dim;
    const int64_t qw = (int64_t)a.n_head * hd, kvw = (int64_t)a.n_head_kv * hd;
    const int cap = (int)a.capacity;

    const int pos = sp->n_past + t;  // before pdl_begin: see prefetch_keys
    const KeySplit ks = key_split(a, pos, n_split);
    const int j0 = ks.lo + z * ks.chunk;
    const int j1 = min(pos + 1, j0 + ks.chunk);
    const int group = a.n_head / a.n_head_kv;
    const int64_t koff = (int64_t)(h / group) * hd;
    // Decode only (one row): in a prefill step every row's warp would ask for all its keys again.
    // One warp per KV head of the block asks: its GQA group's other warps read the same rows.
    const bool first_of_kv_head = h % group == 0 || threadIdx.x < 32;
    if (a.prefetch && gridDim.x == 1 && h < a.n_head && z < ks.used && first_of_kv_head)
        prefetch_keys(kc, vc, kvw, koff, hd, cap, j0, j1, lane);
    pdl_begin();
    if (h >= a.n_head) return;  // whole warps; no block-wide synchronisation below
    if (z >= ks.used) return;   // the merge reads only the splits in use
    const float* qp = q + (int64_t)t * qw + (int64_t)h * hd;
    float2 qv[NC], acc[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
        const int d = 2 * lane + 64 * c;
        qv[c] = d < hd ? *(const float2*)(qp + d) : make_float2(0.0f, 0.0f);
        acc[c] = make_float2(0.0f, 0.0f);
    }
    float m = -INFINITY, l = 0.0f;

    int r = j0 < j1 ? j0 % cap : 0;  // cache row of position j
    // Rounds of KR keys; in the last one the keys from j1 on are masked (not loaded, probability
    // 0), so a split of n keys waits on memory ceil(n / KR) times.
    for (int j = j0; j < j1; j += KR) {
        int64_t off[KR];
        bool ok[KR];
#pragma unroll
        for (int u = 0; u < KR; ++u) {
            ok[u] = j + u < j1;
            off[u] = (int64_t)r * kvw + koff;
            r = r + 1 == cap ? 0 : r + 1;
        }
        // The round's KR keys' K and V rows are loaded before any use: the round waits on memory
        // once, not once for K and again for V after the dot products' shuffles.
        __half2 kh[KR][NC], vh[KR][NC];
#pragma unroll
        for (int u = 0; u < KR; ++u)
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const int d = 2 * lane + 64 * c;
                kh[u][c] = ok[u] && d < hd ? *(const __half2*)(kc + off[u] + d) : __half2{};
                vh[u][c] = ok[u] && d < hd ? *(const __half2*)(vc + off[u] + d) : __half2{};
            }
        float dot[KR];
#pragma unroll
        for (int u = 0; u < KR; ++u) {
            dot[u] = 0.0f;
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const int d = 2 * lane + 64 * c;
                if (d < hd) {
                    const float2 kf = __half22float2(kh[u][c]);
                    dot[u] += qv[c].x * kf.x + qv[c].y * kf.y;
                }
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int u = 0; u < KR; ++u) dot[u] += __shfl_xor_sync(0xffffffffu, dot[u], o);
        float s[KR], mn = m;
#pragma unroll
        for (int u = 0; u < KR; ++u) {
            s[u] = a.scale * dot[u];
            if (a.softcap > 0.0f) s[u] = a.softcap * tanhf(s[u] / a.softcap);
            if (!ok[u]) s[u] = -INFINITY;  // p = 0; the round's first key is always in range
            mn = fmaxf(mn, s[u]);
        }
        const float corr = expf(m - mn);  // 0 while m is -inf
        float p[KR];
#pragma unroll
        for (int u = 0; u < KR; ++u) p[u] = expf(s[u] - mn);
        l = l * corr + pairwise_sum<KR>(p);
#pragma unroll
        for (int c = 0; c < NC; ++c) {
            const int d = 2 * lane + 64 * c;
            if (d < hd) {
                float2 o2 = make_float2(acc[c].x * corr, acc[c].y * corr);
#pragma unroll
                for (int u = 0; u < KR; ++u) {
                    const float2 vf = __half22float2(vh[u][c]);
                    o2.x = fmaf(p[u], vf.x, o2.x);
                    o2.y = fmaf(p[u], vf.y, o2.y);
                }
                acc[c] = o2;
            }
        }
        m = mn;
    }
    if (n_split == 1) {
        const float inv = 1.0f / l;  // l >= 1: the row sees at least its own position
        float* op = out + (int64_t)t * qw + (int64_t)h * hd;
#pragma unroll
        for (int c = 0; c < NC; ++c) {
            const int d = 2 * lane + 64 * c;
            if (d < hd) *(float2*)(op + d) = make_float2(acc[c].x * inv, acc[c].y * inv);
        }
    } else {
        float* pp = partial + (((int64_t)t * a.n_head + h) * n_split + z) * (hd + 2);
        if (lane == 0) {
            pp[0] = m;
            pp[1] = l;  // 0 for an empty split
        }
#pragma unroll
        for (int c = 0; c < NC; ++c) {
            const int d = 2 * lane + 64 * c;
            if (d < hd) {
                pp[2 + d] = acc[c].x;
                pp[3 + d] = acc[c].y;
            }
        }
    }
}

// One block per (row, head); with q8 (decode, head_dim % 32 == 0) the output is quantized too.
// The merge is a chain of waits on L2 (the splits were just written by other SMs), so it is
// written to wait twice: warp 0 reads every split's (m, l) at once, two splits a lane, and
// leaves w_z = exp(m_z - M) (0 for an empty or unused split) in shared memory with 1 / sum l_z
// w_z; then each thread loads its output element's value in every split in use before summing
// them. The loop this replaced read each split's m and l behind a branch on the one before:
// ~3 waits on L2 a split, ~20 us a layer at 32 splits (cuda_notes.md round 11). Each output is
// sum over z in order of v_z w_z, times 1 / L: a function of the partials alone.
static_assert(kMaxAttnSplits == 64, "warp 0 reads two splits a lane");
__global__ void attention_merge_kernel(AttnArgs a, int n_split, const float* __restrict__ partial,
                                       float* __restrict__ out, ActQ8 q8, const StepParams* __restrict__ sp) {
    pdl_begin();
    __shared__ float w[kMaxAttnSplits];
    __shared__ float inv_l;
    const int t = blockIdx.x, h = blockIdx.y, hd = a.head_dim, tid = threadIdx.x;
    const int used = key_split(a, sp->n_past + t, n_split).used;
    const int64_t o = (int64_t)t * a.n_head * hd + (int64_t)h * hd;
    const float* pp = partial + ((int64_t)t * a.n_head + h) * n_split * (hd + 2);
    if (tid < 32) {
        float m[2], l[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int z = tid + 32 * i;
            m[i] = z < used ? pp[(int64_t)z * (hd + 2)] : -INFINITY;
            l[i] = z < used ? pp[(int64_t)z * (hd + 2) + 1] : 0.0f;  // 0: an empty split
        }
        const float M = warp_max(fmaxf(l[0] > 0.0f ? m[0] : -INFINITY, l[1] > 0.0f ? m[1] : -INFINITY));
        float L = 0.0f;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const float wz = l[i] > 0.0f ? expf(m[i] - M) : 0.0f;
            w[tid + 32 * i] = wz;
            L += l[i] * wz;
        }
        L = warp_sum(L);  // >= 1: the row sees at least its own position
        if (tid == 0) inv_l = 1.0f / L;
    }
    __syncthreads();
    const float inv = inv_l;
    for (int d = tid; d < hd; d += blockDim.x) {  // whole warps: hd % 32 == 0 with q8
        float v[kMaxAttnSplits];  // all loads issued before the first use: one wait
#pragma unroll
        for (int z = 0; z < kMaxAttnSplits; ++z) v[z] = z < used ? pp[(int64_t)z * (hd + 2) + 2 + d] : 0.0f;
        float acc = 0.0f;
#pragma unroll
        for (int z = 0; z < kMaxAttnSplits; ++z) acc = fmaf(v[z], w[z], acc);
        out[o + d] = acc * inv;
        if (q8.q) quantize_chunk32(acc * inv, (o + d) >> 5, q8);
    }
}

// ---- prefill: tiles of 32 query rows x 32 keys ------------------------------------------
// One block per (32 query rows, head), 128 threads. Thread (g = tid / 8, c = tid % 8) owns
// query rows 2g, 2g + 1: the scores of keys 4c .. 4c + 3 of each key tile, and output
// dimensions 4c + 32 i .. + 3. Q (f32) and each K tile (fp16 -> f32) are stored transposed
// ([dim][row]) so a thread reads its two rows or four keys per dimension with one load; V
// tiles are row-major. Softmax is online per row, reduced over the row's 8 threads, and p is
// passed to them by shuffles. The arithmetic is f32 as in the per-row kernel above and the
// CPU backend; what changes is that each K/V element is read once per 32 query rows.
constexpr int kTileQ = 32, kTileK = 32;

// Eight fp16 values from the cache at element offset `off` (16-byte aligned) as f32; zeros
// for off < 0 (a key past the block's last position).
__device__ __forceinline__ void load_f16x8(const __half* __restrict__ cache, int64_t off, float* y) {
    if (off < 0) {
#pragma unroll
        for (int e = 0; e < 8; ++e) y[e] = 0.0f;
        return;
    }
    const uint4 raw = *reinterpret_cast<const uint4*>(cache + off);
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float2 f = __half22float2(h[e]);
        y[2 * e] = f.x;
        y[2 * e + 1] = f.y;
    }
}

template <int HD>
__global__ void __launch_bounds__(128)
    attention_prefill_kernel(AttnArgs a, const float* __restrict__ q, const __half* __restrict__ kc,
                             const __half* __restrict__ vc, float* __restrict__ out, int rows,
                             const StepParams* __restrict__ sp) {
    pdl_begin();
    constexpr int ND = HD / 32;  // float4 chunks of output per thread and row
    __shared__ __align__(16) float Qs[HD][kTileQ];
    __shared__ __align__(16) float Ks[HD][kTileK];
    __shared__ __align__(16) float Vs[kTileK][HD];
    const int tid = threadIdx.x, g = tid >> 3, c = tid & 7;
    const int t0 = blockIdx.x * kTileQ, h = blockIdx.y;
    const int64_t qw = (int64_t)a.n_head * HD, kvw = (int64_t)a.n_head_kv * HD;
    const int64_t koff = (int64_t)(h / (a.n_head / a.n_head_kv)) * HD;
    const int cap = (int)a.capacity, n_past = sp->n_past;

    for (int i = tid; i < kTileQ * HD; i += 128) {  // consecutive threads: consecutive rows
        const int r = i % kTileQ, d = i / kTileQ;
        Qs[d][r] = t0 + r < rows ? q[(int64_t)(t0 + r) * qw + (int64_t)h * HD + d] : 0.0f;
    }

    int pos[2];
    float m[2], l[2];
    float4 acc[2][ND];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        pos[i] = n_past + t0 + 2 * g + i;
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < ND; ++e) acc[i][e] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    const int last = n_past + min(t0 + kTileQ, rows) - 1;  // the block's last position
    const int first = a.window > 0 ? max(0, n_past + t0 - a.window + 1) : 0;

    for (int j0 = first; j0 <= last; j0 += kTileK) {
        __syncthreads();  // the previous tile's K and V are no longer read
        // K: consecutive threads take consecutive keys, so the transposed stores hit
        // consecutive banks; V: consecutive threads take consecutive 8-half pieces of a row.
        for (int i = tid; i < kTileK * (HD / 8); i += 128) {
            const int jj = i % kTileK, d8 = (i / kTileK) * 8, j = j0 + jj;
            float kf[8];
            load_f16x8(kc, j <= last ? (int64_t)(j % cap) * kvw + koff + d8 : -1, kf);
#pragma unroll
            for (int e = 0; e < 8; ++e) Ks[d8 + e][jj] = kf[e];
        }
        for (int i = tid; i < kTileK * (HD / 8); i += 128) {
            const int jj = i / (HD / 8), d8 = (i % (HD / 8)) * 8, j = j0 + jj;
            float vf[8];
            load_f16x8(vc, j <= last ? (int64_t)(j % cap) * kvw + koff + d8 : -1, vf);
            *reinterpret_cast<float4*>(&Vs[jj][d8]) = make_float4(vf[0], vf[1], vf[2], vf[3]);
            *reinterpret_cast<float4*>(&Vs[jj][d8 + 4]) = make_float4(vf[4], vf[5], vf[6], vf[7]);
        }
        __syncthreads();

        float s[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int u = 0; u < 4; ++u) s[i][u] = 0.0f;
#pragma unroll 8
        for (int d = 0; d < HD; ++d) {
            const float2 qv = *reinterpret_cast<const float2*>(&Qs[d][2 * g]);
            const float4 kv = *reinterpret_cast<const float4*>(&Ks[d][4 * c]);
            s[0][0] = fmaf(qv.x, kv.x, s[0][0]); s[0][1] = fmaf(qv.x, kv.y, s[0][1]);
            s[0][2] = fmaf(qv.x, kv.z, s[0][2]); s[0][3] = fmaf(qv.x, kv.w, s[0][3]);
            s[1][0] = fmaf(qv.y, kv.x, s[1][0]); s[1][1] = fmaf(qv.y, kv.y, s[1][1]);
            s[1][2] = fmaf(qv.y, kv.z, s[1][2]); s[1][3] = fmaf(qv.y, kv.w, s[1][3]);
        }
        float p[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float mx = -INFINITY;
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int j = j0 + 4 * c + u;
                float v = a.scale * s[i][u];
                if (a.softcap > 0.0f) v = a.softcap * tanhf(v / a.softcap);
                const bool visible = j <= pos[i] && (a.window <= 0 || j > pos[i] - a.window);
                s[i][u] = visible ? v : -INFINITY;
                mx = fmaxf(mx, s[i][u]);
            }
#pragma unroll
            for (int o = 1; o < 8; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float mn = fmaxf(m[i], mx);
            // A row that has seen no visible key yet keeps m = -inf and adds nothing.
            const float corr = mn == -INFINITY ? 1.0f : expf(m[i] - mn);
            float sum = 0.0f;
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                p[i][u] = mn == -INFINITY ? 0.0f : expf(s[i][u] - mn);
                sum += p[i][u];
            }
#pragma unroll
            for (int o = 1; o < 8; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            l[i] = l[i] * corr + sum;
            m[i] = mn;
#pragma unroll
            for (int e = 0; e < ND; ++e) {
                acc[i][e].x *= corr; acc[i][e].y *= corr; acc[i][e].z *= corr; acc[i][e].w *= corr;
            }
        }
        const int base = (tid & 31) & ~7;  // lane of this row group's c = 0
#pragma unroll 4
        for (int jj = 0; jj < kTileK; ++jj) {
            const int src = base + (jj >> 2);
            float pj[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const float mine = (jj & 3) == 0 ? p[i][0] : (jj & 3) == 1 ? p[i][1] : (jj & 3) == 2 ? p[i][2] : p[i][3];
                pj[i] = __shfl_sync(0xffffffffu, mine, src);
            }
#pragma unroll
            for (int e = 0; e < ND; ++e) {
                const float4 v = *reinterpret_cast<const float4*>(&Vs[jj][4 * c + 32 * e]);
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    acc[i][e].x = fmaf(pj[i], v.x, acc[i][e].x);
                    acc[i][e].y = fmaf(pj[i], v.y, acc[i][e].y);
                    acc[i][e].z = fmaf(pj[i], v.z, acc[i][e].z);
                    acc[i][e].w = fmaf(pj[i], v.w, acc[i][e].w);
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int t = t0 + 2 * g + i;
        if (t >= rows) continue;
        const float inv = 1.0f / l[i];  // l >= 1: every row sees its own position
        float* op = out + (int64_t)t * qw + (int64_t)h * HD;
#pragma unroll
        for (int e = 0; e < ND; ++e)
            *reinterpret_cast<float4*>(op + 4 * c + 32 * e) =
                make_float4(acc[i][e].x * inv, acc[i][e].y * inv, acc[i][e].z * inv, acc[i][e].w * inv);
    }
}

// ---- prefill on tensor cores (attention_mma.cuh) --------------------------------------
template <int HD>
__global__ void __launch_bounds__(128)
    attention_prefill_mma_kernel(AttnArgs a, const float* __restrict__ q, const __half* __restrict__ kc,
                                 const __half* __restrict__ vc, float* __restrict__ out, int rows,
                                 const StepParams* __restrict__ sp) {
    pdl_begin();
    __shared__ __align__(16) __half smem[kMmaAttnSmemHalves<HD>];
    // The last (longest: causal) query tiles first.
    attention_prefill_mma_block<HD>(a, q, kc, vc, out, rows, sp->n_past, smem, threadIdx.x,
                                    gridDim.x - 1 - blockIdx.x, blockIdx.y);
}

// The one-warp-per-row kernel for the head size, KR keys a round.
template <int KR>
void launch_rows_kernel(const AttnArgs& a, const float* q, const __half* kc, const __half* vc, float* out,
                        float* partial, const StepParams* sp, Launch s, dim3 grid, int threads) {
    if (a.head_dim <= 64)
        launch_kernel(attention_kernel<1, KR>, grid, threads, 0, s, a, q, kc, vc, out, partial, sp);
    else if (a.head_dim <= 128)
        launch_kernel(attention_kernel<2, KR>, grid, threads, 0, s, a, q, kc, vc, out, partial, sp);
    else
        launch_kernel(attention_kernel<4, KR>, grid, threads, 0, s, a, q, kc, vc, out, partial, sp);
}

}  // namespace

void launch_kv_append(const AttnArgs& a, const float* k, const float* v, __half* kc, __half* vc, int64_t rows,
                      const StepParams* sp, Launch s) {
    const int64_t kvw = (int64_t)a.n_head_kv * a.head_dim, n = rows * kvw;
    const unsigned blocks = (unsigned)std::min<int64_t>(ceil_div(n, 256), 65535);
    launch_kernel(kv_append_kernel, blocks, 256, 0, s, k, v, kc, vc, n, kvw, a.capacity, sp);
}

bool attention_supported(int32_t head_dim) { return head_dim > 0 && head_dim % 2 == 0 && head_dim <= 256; }

void launch_attention(const AttnArgs& a, const float* q, const __half* kc, const __half* vc, float* out, int64_t rows,
                      int n_split, float* partial, const StepParams* sp, Launch s, ActQ8 q8) {
    const bool tiled_head = a.head_dim == 64 || a.head_dim == 128;
    if (n_split == 1 && rows > 1 && tiled_head && a.softcap <= 0.0f && a.prefill == PrefillAttn::Mma) {
        const dim3 tiles((unsigned)ceil_div(rows, kMmaQ), (unsigned)a.n_head);
        if (a.head_dim == 64)
            launch_kernel(attention_prefill_mma_kernel<64>, tiles, 128, 0, s, a, q, kc, vc, out, (int)rows, sp);
        else
            launch_kernel(attention_prefill_mma_kernel<128>, tiles, 128, 0, s, a, q, kc, vc, out, (int)rows, sp);
        return;
    }
    if (n_split == 1 && rows > 1 && tiled_head && a.prefill != PrefillAttn::Rows) {
        const dim3 tiles((unsigned)ceil_div(rows, kTileQ), (unsigned)a.n_head);
        if (a.head_dim == 64)
            launch_kernel(attention_prefill_kernel<64>, tiles, 128, 0, s, a, q, kc, vc, out, (int)rows, sp);
        else
            launch_kernel(attention_prefill_kernel<128>, tiles, 128, 0, s, a, q, kc, vc, out, (int)rows, sp);
        return;
    }
    const dim3 grid((unsigned)rows, (unsigned)ceil_div(a.n_head, kHeadsPerBlock), (unsigned)n_split);
    const int threads = kHeadsPerBlock * 32;
    if (a.keys_per_round == 16)
        launch_rows_kernel<16>(a, q, kc, vc, out, partial, sp, s, grid, threads);
    else if (a.keys_per_round == 8)
        launch_rows_kernel<8>(a, q, kc, vc, out, partial, sp, s, grid, threads);
    else
        launch_rows_kernel<4>(a, q, kc, vc, out, partial, sp, s, grid, threads);
    if (n_split > 1)
        launch_kernel(attention_merge_kernel, dim3((unsigned)rows, (unsigned)a.n_head), 128, 0, s, a, n_split, partial,
                      out, q8, sp);
}

}  // namespace strata::cuda
