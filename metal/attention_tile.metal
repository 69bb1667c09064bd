// Prefill attention on tiles: 32 query rows of one head against tiles of keys, on 8x8
// simdgroup matrices, with an online softmax. Same result as attention.metal's
// kernel_attention_f16 (tests/reference/numpy_ops.py::ref_attention); what changes is that
// each K / V element is read from the cache once per 32 query rows instead of once per row.
// Mirrors csrc/backends/cuda/attention.cu's attention_prefill_kernel (32 x 32 tiles) and
// llama.cpp's kernel_flash_attn_ext (Q, O as simdgroup matrices; diag(corr) rescaling).
//
// Grid (ceil(T / 32), n_head), threadgroups of exactly 4 simdgroups (the kernel counts on
// 128 threads: simdgroup sg owns query rows t0 + 8 sg .. + 7). head_dim % 8 == 0, <= 256.
// Per simdgroup, Q (f32) and the output accumulator O (f32) are head_dim / 8 matrices of
// 8 x 8 each. Per tile of BK keys (BK = 32 for head_dim <= 128, else 16, so a K or V tile is
// at most 4096 halves = 8 KiB), all 128 threads copy the K and V rows (fp16, exact) into
// threadgroup memory, zero past the block's last position; then each simdgroup
//   1. S = Q K^T (8 rows x BK keys) by simdgroup_multiply_accumulate (f32 Q, half K^T loaded
//      transposed), stored to its own 8 x 32 float scratch;
//   2. per row (4 lanes each, BK / 4 keys per lane): scale, soft-cap, causal + sliding
//      window mask, new running max m (shuffles over the row's 4 lanes), corr = exp(m_old -
//      m_new), p = exp(s - m_new) written back over S, running sum l;
//   3. O = diag(corr) O (the diagonal staged in threadgroup memory), O += P V (P from the
//      scratch, V tile loaded as is).
// At the end O / l goes out through the 8 x 8 staging area, rows < T only.
// Masked keys get p = 0 and the running max starts at -FLT_MAX / 2 (finite), so no step
// depends on infinities (fast math) and a row with no visible key in a tile adds nothing.
#include "strata_args.h"

#define ATT_BQ 32            // query rows per threadgroup (8 per simdgroup)
#define ATT_MAX_D8 32        // head_dim / 8
#define ATT_TILE_HALVES 4096 // BK keys x head_dim of one K (or V) tile
#define ATT_MAX_BK 32

kernel void kernel_attention_tile_f16(
        constant AttnArgs& args [[buffer(0)]],
        device const float* q [[buffer(1)]],
        device const half* kc [[buffer(2)]],
        device const half* vc [[buffer(3)]],
        device float* out [[buffer(4)]],
        uint2 tg [[threadgroup_position_in_grid]],
        uint tid [[thread_index_in_threadgroup]],
        uint lane [[thread_index_in_simdgroup]],
        uint sg [[simdgroup_index_in_threadgroup]]) {
    threadgroup half sk[ATT_TILE_HALVES];   // key jj, dim d at jj * head_dim + d
    threadgroup half sv[ATT_TILE_HALVES];
    threadgroup float ss[4 * 8 * ATT_MAX_BK]; // per simdgroup: row r, key jj at r * ATT_MAX_BK + jj
    threadgroup float sd[4 * 64];            // per simdgroup: one 8 x 8 staging matrix

    const int hd = args.head_dim, d8 = hd / 8;
    const int bk = min(ATT_MAX_BK, ATT_TILE_HALVES / hd) & ~7;
    const int t0 = (int)tg.x * ATT_BQ, h = (int)tg.y;
    if (h >= args.n_head || t0 >= args.T) return;  // whole threadgroups
    const long qw = (long)args.n_head * hd, kvw = (long)args.n_head_kv * hd;
    const long koff = (long)(h / (args.n_head / args.n_head_kv)) * hd;
    // Keys the block's rows can see: first .. last (positions).
    const int last = args.n_past + min(args.T, t0 + ATT_BQ) - 1;
    const int first = args.window > 0 ? max(0, args.n_past + t0 - args.window + 1) : 0;

    // The simdgroup's own scratch: scores at ss + S0, staging matrix at sd + D0 (offsets, not
    // threadgroup pointers: the Linux harness models threadgroup memory as arrays only).
    const int S0 = (int)sg * 8 * ATT_MAX_BK, D0 = (int)sg * 64;
    const int tb = t0 + 8 * (int)sg;  // the simdgroup's first row
    // Softmax state: lane keeps row r = lane / 4 (with lanes 4r .. 4r + 3), which is also
    // the row of the two elements 2 lane, 2 lane + 1 it holds of an 8 x 8 staging matrix.
    const int r = (int)lane / 4;
    const int pos = args.n_past + tb + r;
    const int lo = args.window > 0 ? pos - args.window + 1 : 0;

    // Q: the simdgroup's 8 rows (zero past T), 8 dims at a time through the staging matrix.
    simdgroup_float8x8 qm[ATT_MAX_D8], om[ATT_MAX_D8];
    for (int c = 0; c < d8; ++c) {
        for (int e = 2 * (int)lane; e < 2 * (int)lane + 2; ++e) {
            const int t = tb + e / 8;
            sd[D0 + e] = t < args.T ? q[(long)t * qw + (long)h * hd + 8 * c + e % 8] : 0.0f;
        }
        simdgroup_barrier(mem_flags::mem_threadgroup);
        simdgroup_load(qm[c], sd + D0, 8);
        simdgroup_barrier(mem_flags::mem_threadgroup);
        om[c] = make_filled_simdgroup_matrix<float, 8>(0.0f);
    }

    float m = -FLT_MAX / 2, l = 0.0f;
    for (int j0 = first; j0 <= last; j0 += bk) {
        // The tile: keys j0 .. j0 + bk - 1, four halves per thread per step (head_dim % 8 == 0).
        threadgroup_barrier(mem_flags::mem_threadgroup);  // the previous tile is no longer read
        for (int i = 4 * (int)tid; i < bk * hd; i += 4 * 128) {
            const int jj = i / hd, d = i - jj * hd, j = j0 + jj;
            if (j <= last) {
                const long row = (long)(j % args.capacity) * kvw + koff + d;
                const half4 k4 = *(device const half4*)(kc + row), v4 = *(device const half4*)(vc + row);
                sk[i] = k4.x;
                sk[i + 1] = k4.y;
                sk[i + 2] = k4.z;
                sk[i + 3] = k4.w;
                sv[i] = v4.x;
                sv[i + 1] = v4.y;
                sv[i + 2] = v4.z;
                sv[i + 3] = v4.w;
            } else {
                for (int e = 0; e < 4; ++e) {
                    sk[i + e] = (half)0.0f;
                    sv[i + e] = (half)0.0f;
                }
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);

        // 1. S = Q K^T, 8 keys at a time.
        for (int kb = 0; kb < bk / 8; ++kb) {
            simdgroup_float8x8 s = make_filled_simdgroup_matrix<float, 8>(0.0f);
            for (int c = 0; c < d8; ++c) {
                simdgroup_half8x8 kt;
                simdgroup_load(kt, sk + kb * 8 * hd + 8 * c, hd, 0, true);
                simdgroup_multiply_accumulate(s, qm[c], kt, s);
            }
            simdgroup_store(s, ss + S0 + 8 * kb, ATT_MAX_BK);
        }
        simdgroup_barrier(mem_flags::mem_threadgroup);

        // 2. Online softmax of row r over keys 4 u + lane % 4.
        const int nk = bk / 4;
        float x[ATT_MAX_BK / 4];
        uint visible = 0;  // bit u: key 4 u + lane % 4 is visible to row r
        float mx = -FLT_MAX / 2;
        for (int u = 0; u < nk; ++u) {
            const int jj = 4 * u + ((int)lane & 3), j = j0 + jj;
            x[u] = args.scale * ss[S0 + r * ATT_MAX_BK + jj];
            if (args.softcap > 0.0f) x[u] = args.softcap * precise::tanh(x[u] / args.softcap);
            if (j <= pos && j >= lo) {
                visible |= 1u << u;
                mx = max(mx, x[u]);
            }
        }
        mx = max(mx, simd_shuffle_xor(mx, 1));
        mx = max(mx, simd_shuffle_xor(mx, 2));
        const float mn = max(m, mx);
        const float corr = exp(m - mn);  // 1 while the row has seen no key, 0 at its first
        float sum = 0.0f;
        for (int u = 0; u < nk; ++u) {
            const int jj = 4 * u + ((int)lane & 3);
            const float p = ((visible >> u) & 1) ? exp(x[u] - mn) : 0.0f;
            ss[S0 + r * ATT_MAX_BK + jj] = p;
            sum += p;
        }
        sum += simd_shuffle_xor(sum, 1);
        sum += simd_shuffle_xor(sum, 2);
        l = l * corr + sum;
        m = mn;

        // 3. O = diag(corr) O + P V. Lane holds elements 2 lane, 2 lane + 1 (row r) of diag.
        for (int e = 2 * (int)lane; e < 2 * (int)lane + 2; ++e) sd[D0 + e] = e / 8 == e % 8 ? corr : 0.0f;
        simdgroup_barrier(mem_flags::mem_threadgroup);
        simdgroup_float8x8 dm;
        simdgroup_load(dm, sd + D0, 8);
        for (int c = 0; c < d8; ++c) simdgroup_multiply(om[c], dm, om[c]);
        for (int kb = 0; kb < bk / 8; ++kb) {
            simdgroup_float8x8 pm;
            simdgroup_load(pm, ss + S0 + 8 * kb, ATT_MAX_BK);
            for (int c = 0; c < d8; ++c) {
                simdgroup_half8x8 vm;
                simdgroup_load(vm, sv + kb * 8 * hd + 8 * c, hd);
                simdgroup_multiply_accumulate(om[c], pm, vm, om[c]);
            }
        }
    }

    // O / l, rows < T: row r = lane / 4 of each 8 x 8 block is this lane's.
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // l >= 1 for rows < T (they see themselves)
    const int t = tb + r;
    for (int c = 0; c < d8; ++c) {
        simdgroup_barrier(mem_flags::mem_threadgroup);
        simdgroup_store(om[c], sd + D0, 8);
        simdgroup_barrier(mem_flags::mem_threadgroup);
        if (t < args.T)
            for (int e = 2 * (int)lane; e < 2 * (int)lane + 2; ++e)
                out[(long)t * qw + (long)h * hd + 8 * c + e % 8] = sd[D0 + e] * inv;
    }
}
