// attention: append this step's K and V rows to the layer's fp16 KV cache, then for each
// query (token, head) compute softmax(scale * q . k_j) over the visible positions j and the
// weighted sum of v_j. Causal: token t at position p sees j <= p, and with a sliding
// window only j > p - window (kept in a ring buffer, see KvSlot). GQA: head h reads KV head
// h / (n_head / n_head_kv).
//
// Blocks of queries that share a KV head (heads of one group x a few tokens) walk the cache
// in tiles of positions with an online softmax (a running max and sum per query,
// accumulators rescaled when the max grows), so a block reads and converts each K and V
// row once instead of once per query.
//
// A query's result does not depend on the block it is in: every score is one dot product
// with one fixed summation order, softmax and V sums run per query in position order,
// tiles are aligned to absolute positions, and masked positions add exact zeros. So a
// token gives bit-identical results in prefill and in decode (one query per head), and a
// cached prompt continues exactly as an uncached one.
//
// Positions also fall into chunks of kAttnChunk (exec.h): the online softmax restarts at
// each chunk and the chunks' results are folded in order (fold_chunk). A prefill block folds
// as it walks; a decode step over a long cache may give the chunks to different threads
// (each writes its chunk's result to ex.attn_partial) and fold them after a barrier, which
// gives the same bits, since both fold the same chunk results in the same order.
#include <float.h>

#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

constexpr int32_t QB = kAttnQueryBlock, KT = kAttnKeyTile;

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define STRATA_ATTN_AVX2 1
#endif

#if defined(STRATA_ATTN_AVX2)
// e^x for 8 floats: Cephes' expf (2^n e^r, |r| <= ln2 / 2, polynomial), within about 1 ulp
// of expf. Below about -87.3 (e^-inf included) it gives 0; NaN stays NaN.
static inline __m256 exp8(__m256 x) {
    // max/min return their second operand when one is NaN: x goes second to keep it.
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-88.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // n = -127 (x below about -87.3) makes the scale's bits 0, so the result is 0.
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}
#endif

// First position the query at position pos sees.
static inline int64_t window_start(const Node& n, int64_t pos) {
    return n.p.window > 0 ? max_i64(0, pos - n.p.window + 1) : 0;
}

// A block has nq <= QB queries, column c of the score tile; the softmax runs on ncol >= nq
// columns (whole SIMD vectors; the extra ones hold zeros and copy the last query's
// positions, and are never stored). Scratch layouts (floats): q [QB][hd] the queries
// scaled, o [QB][hd] accumulators of the current chunk, acc [QB][hd] the folded chunks, kf
// and vf [KT][hd] a tile of K and V, s [KT][QB] scores, then probabilities.

struct BlockScratch {
    float *q, *o, *acc, *kf, *vf, *s;
};

// Folds one chunk's softmax result (its max m, sum l, unnormalised outputs o) into a query's
// running result (M, L, acc). Explicit fmaf and a skipped zero weight, so the bits are the
// same wherever it is inlined and an empty chunk (l = 0, o = 0, m = -FLT_MAX) changes
// nothing: a prefill block folds the empty chunks before a query's window and after its
// position that a decode step never visits.
static inline void fold_chunk(float& M, float& L, float* acc, float m, float l, const float* o, int32_t hd) {
    const float Mn = fmaxf(M, m);
    const float a = expf(M - Mn), b = expf(m - Mn);
    if (b == 0.0f || l == 0.0f) {
        L *= a;
        for (int32_t d = 0; d < hd; ++d) acc[d] *= a;
    } else {
        L = fmaf(l, b, L * a);
        for (int32_t d = 0; d < hd; ++d) acc[d] = fmaf(o[d], b, acc[d] * a);
    }
    M = Mn;
}

// Rows j0 .. j0 + n - 1 (positions, wrapped into the ring) of one KV head, fp16 -> fp32.
static void load_tile(const uint16_t* cache, const KvSlot& kv, int64_t koff, int64_t j0, int32_t n, int32_t hd,
                      float* dst) {
    for (int32_t r = 0; r < n; ++r) {
        const uint16_t* src = cache + ((j0 + r) % kv.capacity) * kv.width + koff;
        float* out = dst + (int64_t)r * hd;
        int32_t d = 0;
#if defined(STRATA_ATTN_AVX2)
        for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(out + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + d))));
#endif
        for (; d < hd; ++d) out[d] = fp16_to_f32(src[d]);
    }
}

#if defined(STRATA_ATTN_AVX2)
// s[r][c] = q_c . k_r for NQ queries x NK rows (NQ * NK = 8): lane partial sums per pair
// (16 lanes folded to 8 with AVX-512), then reduce8, then the scalar tail, the same for
// either shape.
template <int NQ, int NK>
static inline void dots(const float* q, const float* k, int32_t hd, float* s) {
    __m256 a[8];
    int32_t d = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    __m512 z[8];
    for (int i = 0; i < 8; ++i) z[i] = _mm512_setzero_ps();
    for (; d + 16 <= hd; d += 16) {
        __m512 qv[NQ];
        for (int i = 0; i < NQ; ++i) qv[i] = _mm512_loadu_ps(q + (int64_t)i * hd + d);
        for (int j = 0; j < NK; ++j) {
            const __m512 kv = _mm512_loadu_ps(k + (int64_t)j * hd + d);
            for (int i = 0; i < NQ; ++i) z[j * NQ + i] = _mm512_fmadd_ps(qv[i], kv, z[j * NQ + i]);
        }
    }
    for (int i = 0; i < 8; ++i) a[i] = _mm256_add_ps(_mm512_extractf32x8_ps(z[i], 0), _mm512_extractf32x8_ps(z[i], 1));
#else
    for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
#endif
    for (; d + 8 <= hd; d += 8) {
        __m256 qv[NQ];
        for (int i = 0; i < NQ; ++i) qv[i] = _mm256_loadu_ps(q + (int64_t)i * hd + d);
        for (int j = 0; j < NK; ++j) {
            const __m256 kv = _mm256_loadu_ps(k + (int64_t)j * hd + d);
            for (int i = 0; i < NQ; ++i) a[j * NQ + i] = _mm256_fmadd_ps(qv[i], kv, a[j * NQ + i]);
        }
    }
    alignas(32) float sum[8];
    _mm256_store_ps(sum, reduce8(a));
    for (int x = 0; x < 8; ++x) {
        const int j = x / NQ, i = x % NQ;
        float acc = sum[x % 2 * 4 + x / 2];
        for (int32_t e = d; e < hd; ++e) acc = fmaf(q[(int64_t)i * hd + e], k[(int64_t)j * hd + e], acc);
        s[(int64_t)j * QB + i] = acc;
    }
}
#endif

// s[r][c] = q_c . k_r for r < n, c < nq; zeros in columns nq .. ncol - 1.
static void tile_scores(const float* q, float* kf, float* s, int32_t hd, int32_t n, int32_t nq, int32_t ncol) {
#if defined(STRATA_ATTN_AVX2)
    const int32_t rows8 = (n + 7) / 8 * 8;
    memset(kf + (int64_t)n * hd, 0, sizeof(float) * (size_t)(rows8 - n) * hd);  // rows the 4- and 8-row steps read
    int32_t c = 0;
    for (; c + 2 <= nq; c += 2)
        for (int32_t r = 0; r < n; r += 4) dots<2, 4>(q + (int64_t)c * hd, kf + (int64_t)r * hd, hd, s + (int64_t)r * QB + c);
    if (c < nq)
        for (int32_t r = 0; r < n; r += 8) dots<1, 8>(q + (int64_t)c * hd, kf + (int64_t)r * hd, hd, s + (int64_t)r * QB + c);
#else
    for (int32_t r = 0; r < n; ++r)
        for (int32_t c = 0; c < nq; ++c) {
            const float* qc = q + (int64_t)c * hd;
            const float* k = kf + (int64_t)r * hd;
            float acc = 0.0f;
            for (int32_t d = 0; d < hd; ++d) acc += qc[d] * k[d];
            s[(int64_t)r * QB + c] = acc;
        }
#endif
    for (int32_t r = 0; r < n; ++r)
        for (int32_t c = nq; c < ncol; ++c) s[(int64_t)r * QB + c] = 0.0f;
}

// Online softmax over one tile: new running max m, scores -> e^(s - m), running sum l, and
// alpha = e^(old m - new m), the factor the accumulators need. Returns whether any alpha
// differs from 1.
static bool softmax_tile(float* s, int32_t n, int32_t ncol, float* m, float* l, float* alpha) {
#if defined(STRATA_ATTN_AVX2)
    int rescale = 0;
    for (int32_t c = 0; c < ncol; c += 8) {
        const __m256 m_old = _mm256_loadu_ps(m + c);
        __m256 m_new = m_old;
        for (int32_t r = 0; r < n; ++r) m_new = _mm256_max_ps(m_new, _mm256_loadu_ps(s + (int64_t)r * QB + c));
        __m256 sum = _mm256_setzero_ps();
        for (int32_t r = 0; r < n; ++r) {
            float* sr = s + (int64_t)r * QB + c;
            const __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(sr), m_new));
            _mm256_storeu_ps(sr, p);
            sum = _mm256_add_ps(sum, p);
        }
        const __m256 a = exp8(_mm256_sub_ps(m_old, m_new));
        rescale |= _mm256_movemask_ps(_mm256_cmp_ps(m_new, m_old, _CMP_NEQ_UQ));
        _mm256_storeu_ps(alpha + c, a);
        _mm256_storeu_ps(l + c, _mm256_fmadd_ps(_mm256_loadu_ps(l + c), a, sum));
        _mm256_storeu_ps(m + c, m_new);
    }
    return rescale != 0;
#else
    bool rescale = false;
    for (int32_t c = 0; c < ncol; ++c) {
        float m_new = m[c];
        for (int32_t r = 0; r < n; ++r) m_new = fmaxf(m_new, s[(int64_t)r * QB + c]);
        float sum = 0.0f;
        for (int32_t r = 0; r < n; ++r) {
            float& x = s[(int64_t)r * QB + c];
            x = expf(x - m_new);
            sum += x;
        }
        alpha[c] = expf(m[c] - m_new);
        rescale |= m_new != m[c];
        l[c] = l[c] * alpha[c] + sum;
        m[c] = m_new;
    }
    return rescale;
#endif
}

#if defined(STRATA_ATTN_AVX2)
// o[c] += sum_r s[r][c] * v_r for NR columns from c.
template <int NR>
static inline void pv_rows(const float* s, const float* vf, float* oc, int32_t n, int32_t hd) {
    int32_t d = 0;
    for (; d + 16 <= hd; d += 16) {
        __m256 a[NR][2];
        for (int i = 0; i < NR; ++i) {
            a[i][0] = _mm256_loadu_ps(oc + (int64_t)i * hd + d);
            a[i][1] = _mm256_loadu_ps(oc + (int64_t)i * hd + d + 8);
        }
        for (int32_t r = 0; r < n; ++r) {
            const float* v = vf + (int64_t)r * hd + d;
            const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
            for (int i = 0; i < NR; ++i) {
                const __m256 p = _mm256_broadcast_ss(s + (int64_t)r * QB + i);
                a[i][0] = _mm256_fmadd_ps(p, v0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(p, v1, a[i][1]);
            }
        }
        for (int i = 0; i < NR; ++i) {
            _mm256_storeu_ps(oc + (int64_t)i * hd + d, a[i][0]);
            _mm256_storeu_ps(oc + (int64_t)i * hd + d + 8, a[i][1]);
        }
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 a[NR];
        for (int i = 0; i < NR; ++i) a[i] = _mm256_loadu_ps(oc + (int64_t)i * hd + d);
        for (int32_t r = 0; r < n; ++r) {
            const __m256 v = _mm256_loadu_ps(vf + (int64_t)r * hd + d);
            for (int i = 0; i < NR; ++i) a[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(s + (int64_t)r * QB + i), v, a[i]);
        }
        for (int i = 0; i < NR; ++i) _mm256_storeu_ps(oc + (int64_t)i * hd + d, a[i]);
    }
    for (; d < hd; ++d)
        for (int i = 0; i < NR; ++i) {
            float a = oc[(int64_t)i * hd + d];
            for (int32_t r = 0; r < n; ++r) a = fmaf(s[(int64_t)r * QB + i], vf[(int64_t)r * hd + d], a);
            oc[(int64_t)i * hd + d] = a;
        }
}
#endif

// o[c] += sum_r s[r][c] * v_r for c < nq, r < n.
static void accumulate_pv(const float* s, const float* vf, float* o, int32_t n, int32_t nq, int32_t hd) {
#if defined(STRATA_ATTN_AVX2)
    int32_t c = 0;
    for (; c + 4 <= nq; c += 4) pv_rows<4>(s + c, vf, o + (int64_t)c * hd, n, hd);
    if (c + 2 <= nq) {
        pv_rows<2>(s + c, vf, o + (int64_t)c * hd, n, hd);
        c += 2;
    }
    if (c < nq) pv_rows<1>(s + c, vf, o + (int64_t)c * hd, n, hd);
#else
    for (int32_t c = 0; c < nq; ++c) {
        float* oc = o + (int64_t)c * hd;
        for (int32_t r = 0; r < n; ++r) {
            const float p = s[(int64_t)r * QB + c];
            const float* v = vf + (int64_t)r * hd;
            for (int32_t d = 0; d < hd; ++d) oc[d] += p * v[d];
        }
    }
#endif
}

// Where decode by chunks keeps head h's result for chunk k: m, l, then head_dim outputs,
// every chunk of n_ctx per head (exec.h, attn_partial_floats).
static inline float* chunk_result(const Exec& ex, int32_t h, int64_t k, int32_t hd) {
    return ex.attn_partial + ((int64_t)h * ((ex.n_ctx + kAttnChunk - 1) / kAttnChunk) + k) * (hd + 2);
}

// A query's output: its folded outputs over their folded sum (>= 1: it sees its own position).
static inline void write_normalised(float* out, const float* acc, float L, int32_t hd) {
    const float inv = 1.0f / L;
    for (int32_t d = 0; d < hd; ++d) out[d] = acc[d] * inv;
}

// Heads [h0, h0 + nh) of KV head kvh for tokens [t0, t0 + nt); query c is token c / nh,
// head c % nh. With `chunk` >= 0 (decode, nt = 1) only positions of that chunk, whose
// result each head writes raw to its chunk_result for attend_by_chunks to fold; else every
// position, folded, normalised into O.
static void run_block(const Exec& ex, const Node& n, const float* Q, float* O, int32_t kvh, int64_t t0,
                      int32_t nt, int32_t h0, int32_t nh, const BlockScratch& w, int64_t chunk = -1) {
    const KvSlot& kv = ex.kv[n.p.kv_slot];
    const int32_t hd = n.p.head_dim;
    const int64_t qw = (int64_t)n.p.n_head * hd, koff = (int64_t)kvh * hd;
    const int32_t nq = nt * nh;
#if defined(STRATA_ATTN_AVX2)
    const int32_t ncol = (nq + 7) / 8 * 8;
#else
    const int32_t ncol = nq;
#endif
    float m[QB], l[QB], alpha[QB], M[QB], L[QB];
    int64_t pos[QB], lo[QB];
    for (int32_t c = 0; c < ncol; ++c) {
        const int32_t qc = c < nq ? c : nq - 1;
        const int64_t t = t0 + qc / nh;
        pos[c] = ex.n_past + t;
        lo[c] = window_start(n, pos[c]);
        // Finite, so that a query whose positions all lie in later tiles gets e^0 = 1 as
        // alpha and e^-inf = 0 for its masked scores until then.
        m[c] = M[c] = -FLT_MAX;
        l[c] = L[c] = 0.0f;
        if (c == qc) {
            const float* q = Q + t * qw + (int64_t)(h0 + c % nh) * hd;
            for (int32_t d = 0; d < hd; ++d) w.q[(int64_t)c * hd + d] = n.p.attn_scale * q[d];
            for (int32_t d = 0; d < hd; ++d) w.o[(int64_t)c * hd + d] = 0.0f;
            for (int32_t d = 0; d < hd; ++d) w.acc[(int64_t)c * hd + d] = 0.0f;
        }
    }
    // The current chunk's result folded into the running one, and the chunk restarted.
    auto fold = [&]() {
        for (int32_t c = 0; c < nq; ++c) {
            fold_chunk(M[c], L[c], w.acc + (int64_t)c * hd, m[c], l[c], w.o + (int64_t)c * hd, hd);
            for (int32_t d = 0; d < hd; ++d) w.o[(int64_t)c * hd + d] = 0.0f;
        }
        for (int32_t c = 0; c < ncol; ++c) {
            m[c] = -FLT_MAX;
            l[c] = 0.0f;
        }
    };
    // Positions grow with c: the first token sees the fewest late ones, the last the fewest early.
    const int64_t first_pos = ex.n_past + t0, last_pos = first_pos + nt - 1;
    const int64_t first_lo = window_start(n, first_pos), last_lo = window_start(n, last_pos);
    const int64_t start = chunk >= 0 ? max_i64(first_lo, chunk * kAttnChunk) : first_lo;
    const int64_t end = chunk >= 0 ? min_i64(last_pos, (chunk + 1) * kAttnChunk - 1) : last_pos;
    for (int64_t tile = start / KT * KT; tile <= end; tile += KT) {
        if (tile % kAttnChunk == 0 && tile > start) fold();
        const int64_t j0 = max_i64(tile, first_lo);
        const int32_t tn = (int32_t)(min_i64(tile + KT, end + 1) - j0);
        load_tile(kv.k, kv, koff, j0, tn, hd, w.kf);
        tile_scores(w.q, w.kf, w.s, hd, tn, nq, ncol);
        if (n.p.softcap > 0.0f)
            for (int32_t r = 0; r < tn; ++r)
                for (int32_t c = 0; c < ncol; ++c) {
                    float& x = w.s[(int64_t)r * QB + c];
                    x = n.p.softcap * tanhf(x / n.p.softcap);
                }
        if (j0 + tn - 1 > first_pos || j0 < last_lo)
            for (int32_t r = 0; r < tn; ++r)
                for (int32_t c = 0; c < ncol; ++c)
                    if (j0 + r > pos[c] || j0 + r < lo[c]) w.s[(int64_t)r * QB + c] = -INFINITY;
        if (softmax_tile(w.s, tn, ncol, m, l, alpha))
            for (int32_t c = 0; c < nq; ++c)
                if (alpha[c] != 1.0f)
                    for (int32_t d = 0; d < hd; ++d) w.o[(int64_t)c * hd + d] *= alpha[c];
        load_tile(kv.v, kv, koff, j0, tn, hd, w.vf);
        accumulate_pv(w.s, w.vf, w.o, tn, nq, hd);
    }
    if (chunk >= 0) {
        for (int32_t c = 0; c < nq; ++c) {
            float* p = chunk_result(ex, h0 + c, chunk, hd);
            p[0] = m[c];
            p[1] = l[c];
            for (int32_t d = 0; d < hd; ++d) p[2 + d] = w.o[(int64_t)c * hd + d];
        }
        return;
    }
    fold();
    for (int32_t c = 0; c < nq; ++c)
        write_normalised(O + (t0 + c / nh) * qw + (int64_t)(h0 + c % nh) * hd, w.acc + (int64_t)c * hd, L[c], hd);
}

// Blocks per KV head: a group larger than a block is split, and a step with fewer tokens
// than threads (decode) splits it further where that makes the busiest thread's work
// smaller. A block's work is reading and converting its KV head's rows (which every block of
// the head does again) plus one query's dots, softmax and sums per head in it; the reading
// weighs about kKvReadCost queries: SmolLM2 (3 heads per KV head, 3 KV heads) decoding after
// 2048 positions on 2 threads took 9.5 ms a token in attention with a block per head (the
// choice without the reading cost) and 6.2-6.9 ms with a block per KV head (weights 2 to 4).
constexpr int32_t kKvReadCost = 4;
static int32_t group_splits(int64_t T, int32_t n_kv, int32_t group, int nth) {
    int32_t best = (group + QB - 1) / QB;
    if (T >= nth) return best;
    auto busiest = [&](int32_t s) { return (T * n_kv * s + nth - 1) / nth * (kKvReadCost + (group + s - 1) / s); };
    for (int32_t s = best + 1; s <= group; ++s)
        if (busiest(s) < busiest(best)) best = s;
    return best;
}

// Decode over positions [lo, pos]: whether giving each KV head's chunks to different threads
// (attend_by_chunks' items, dealt round robin) makes the busiest thread's work smaller than
// group_splits' blocks over every position, by the same cost measure. SmolLM2 (3 KV heads,
// 2 threads) after 2048 positions: 2 heads' rows on the busiest thread by heads, 1.5 by chunks.
static bool decode_by_chunks(int32_t n_kv, int32_t group, int64_t lo, int64_t pos, int nth) {
    const int64_t first = lo / kAttnChunk, n_chunks = pos / kAttnChunk - first + 1;
    if (nth < 2 || n_chunks < 2 || n_chunks > 4096) return false;
    const int32_t s = group_splits(1, n_kv, group, nth), sc = (group + QB - 1) / QB;
    const int64_t by_heads = ((int64_t)n_kv * s + nth - 1) / nth * (kKvReadCost + (group + s - 1) / s) * (pos - lo + 1);
    int64_t busiest = 0;
    for (int t = 0; t < nth; ++t) {
        int64_t work = 0;
        for (int64_t i = t; i < (int64_t)n_kv * sc * n_chunks; i += nth) {
            const int64_t k = first + i % n_chunks;
            work += min_i64(pos, (k + 1) * kAttnChunk - 1) - max_i64(lo, k * kAttnChunk) + 1;
        }
        busiest = max_i64(busiest, work * (kKvReadCost + (group + sc - 1) / sc));
    }
    return busiest < by_heads;
}

// One decode row by chunks: every (KV head, block of its heads, chunk) item writes its chunk's
// results (chunk_result); after a barrier each head's chunks are folded in order.
static void attend_by_chunks(Exec& ex, const Node& n, const float* Q, float* O, int ith, int nth,
                             const BlockScratch& w, int64_t first_chunk, int64_t n_chunks) {
    const int32_t n_kv = n.p.n_head_kv, hd = n.p.head_dim, group = n.p.n_head / n_kv;
    const int32_t nsub = (group + QB - 1) / QB, hb = (group + nsub - 1) / nsub;
    const int64_t n_items = (int64_t)n_kv * nsub * n_chunks;
    for (int64_t i = ith; i < n_items; i += nth) {
        const int32_t kvh = (int32_t)(i / (nsub * n_chunks)), sub = (int32_t)(i / n_chunks % nsub);
        run_block(ex, n, Q, O, kvh, 0, 1, kvh * group + sub * hb, (int32_t)min_i64(hb, group - sub * hb), w,
                  first_chunk + i % n_chunks);
    }
    ex.barrier(ex.pool);
    for (int32_t h = ith; h < n.p.n_head; h += nth) {
        float M = -FLT_MAX, L = 0.0f;
        for (int32_t d = 0; d < hd; ++d) w.acc[d] = 0.0f;
        for (int64_t k = first_chunk; k < first_chunk + n_chunks; ++k) {
            const float* p = chunk_result(ex, h, k, hd);
            fold_chunk(M, L, w.acc, p[0], p[1], p + 2, hd);
        }
        write_normalised(O + (int64_t)h * hd, w.acc, L, hd);
    }
}

static void attend(Exec& ex, const Node& n, const float* Q, float* O, int ith, int nth) {
    const int64_t T = ex.n_rows;
    const int32_t n_kv = n.p.n_head_kv, hd = n.p.head_dim, group = n.p.n_head / n_kv;

    float* base = ex.scratch + (int64_t)ith * ex.scratch_floats;
    BlockScratch w;
    w.q = base;
    w.o = w.q + (int64_t)QB * hd;
    w.acc = w.o + (int64_t)QB * hd;
    w.kf = w.acc + (int64_t)QB * hd;
    w.vf = w.kf + (int64_t)KT * hd;
    w.s = w.vf + (int64_t)KT * hd;

    if (T == 1) {
        const int64_t lo = window_start(n, ex.n_past), first_chunk = lo / kAttnChunk;
        if (decode_by_chunks(n_kv, group, lo, ex.n_past, nth))
            return attend_by_chunks(ex, n, Q, O, ith, nth, w, first_chunk, ex.n_past / kAttnChunk - first_chunk + 1);
    }

    const int32_t nsub = group_splits(T, n_kv, group, nth), hb = (group + nsub - 1) / nsub;
    const int64_t units = (int64_t)n_kv * nsub;
    // As many tokens per block as fit, but at least two blocks per thread in short steps.
    const int64_t nt = max_i64(1, min_i64(QB / hb, T * units / (2 * nth)));
    const int64_t n_items = (T + nt - 1) / nt * units;

    // Later tokens see more positions, so items are dealt out in a snake order (threads
    // 0 .. nth-1, then nth-1 .. 0, ...) to even out the work.
    for (int64_t round = 0; round * nth < n_items; ++round) {
        const int64_t i = round * nth + (round % 2 ? nth - 1 - ith : ith);
        if (i >= n_items) continue;
        const int64_t t0 = i / units * nt;
        const int32_t kvh = (int32_t)(i % units / nsub), sub = (int32_t)(i % units % nsub);
        run_block(ex, n, Q, O, kvh, t0, (int32_t)min_i64(nt, T - t0), kvh * group + sub * hb,
                  (int32_t)min_i64(hb, group - sub * hb), w);
    }
}

void op_attention(Exec& ex, const Node& n, int ith, int nth) {
    const int64_t T = ex.n_rows, kvw = (int64_t)n.p.n_head_kv * n.p.head_dim;
    const KvSlot& kv = ex.kv[n.p.kv_slot];
    const float* Q = f32_of(ex, n.in[0]);
    const float* K = f32_of(ex, n.in[1]);
    const float* V = f32_of(ex, n.in[2]);
    float* O = f32_of(ex, n.out);

    int64_t i0, i1;
    split_range(T * kvw, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; ++i) {
        const int64_t dst = ((ex.n_past + i / kvw) % kv.capacity) * kvw + i % kvw;
        kv.k[dst] = f32_to_fp16(K[i]);
        kv.v[dst] = f32_to_fp16(V[i]);
    }
    ex.barrier(ex.pool);

    attend(ex, n, Q, O, ith, nth);
}

}  // namespace strata::cpu::STRATA_ISA
