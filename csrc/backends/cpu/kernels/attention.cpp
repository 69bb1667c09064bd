// attention: append this step's K and V rows to the layer's fp16 KV cache, then for each
// (token, head) compute softmax(scale * q . k_j) over the visible positions j and the
// weighted sum of v_j. Causal: token t at position p sees j <= p, and with a sliding
// window only j > p - window (kept in a ring buffer, see KvSlot). GQA: head h reads KV head h / (n_head / n_head_kv).
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

static inline float dot_q_k(const float* q, const uint16_t* k, int32_t n) {
    int32_t i = 0;
    float acc = 0.0f;
#if defined(__AVX2__) && defined(__F16C__)
    __m256 a = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k + i))), a);
    acc = hsum_ps256(a);
#endif
    for (; i < n; ++i) acc += q[i] * fp16_to_f32(k[i]);
    return acc;
}

static inline void axpy_v(float* acc, float p, const uint16_t* v, int32_t n) {
    int32_t i = 0;
#if defined(__AVX2__) && defined(__F16C__)
    const __m256 pv = _mm256_set1_ps(p);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(pv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v + i))),
                                                  _mm256_loadu_ps(acc + i)));
#endif
    for (; i < n; ++i) acc[i] += p * fp16_to_f32(v[i]);
}

void op_attention(Exec& ex, const Node& n, int ith, int nth) {
    const int32_t n_head = n.p.n_head, n_kv = n.p.n_head_kv, hd = n.p.head_dim;
    const int64_t T = ex.n_rows, kvw = (int64_t)n_kv * hd, qw = (int64_t)n_head * hd;
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

    float* scores = ex.scratch + (int64_t)ith * ex.scratch_floats;
    float* acc = scores + ex.n_ctx;
    const int32_t group = n_head / n_kv;
    split_range(T * n_head, ith, nth, &i0, &i1);
    for (int64_t item = i0; item < i1; ++item) {
        const int64_t t = item / n_head;
        const int32_t h = (int32_t)(item % n_head);
        const int64_t pos = ex.n_past + t;
        const int64_t lo = n.p.window > 0 ? max_i64(0, pos - n.p.window + 1) : 0;
        const float* q = Q + t * qw + (int64_t)h * hd;
        const int64_t koff = (int64_t)(h / group) * hd;
        float mx = -INFINITY;
        for (int64_t j = lo; j <= pos; ++j) {
            float s = n.p.attn_scale * dot_q_k(q, kv.k + (j % kv.capacity) * kvw + koff, hd);
            if (n.p.softcap > 0.0f) s = n.p.softcap * tanhf(s / n.p.softcap);
            scores[j - lo] = s;
            mx = s > mx ? s : mx;
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= pos - lo; ++j) {
            scores[j] = expf(scores[j] - mx);
            sum += scores[j];
        }
        for (int32_t d = 0; d < hd; ++d) acc[d] = 0.0f;
        for (int64_t j = lo; j <= pos; ++j) axpy_v(acc, scores[j - lo], kv.v + (j % kv.capacity) * kvw + koff, hd);
        const float inv = (float)(1.0 / sum);
        float* o = O + t * qw + (int64_t)h * hd;
        for (int32_t d = 0; d < hd; ++d) o[d] = acc[d] * inv;
    }
}

}  // namespace strata::cpu::STRATA_ISA
