// rope: rotary position embedding of each head of each row, at position n_past + row.
//
// Normal layout rotates adjacent pairs (x[2i], x[2i+1]); neox rotates halves (x[i],
// x[i + n_rot/2]). The angle is position * freq_scale * base^(-2i/n_rot), in double. Optional
// per-pair frequency factors (Llama 3.1's rope_freqs) divide the angle.
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

void op_rope(Exec& ex, const Node& n, int ith, int nth) {
    const int32_t n_head = n.p.n_head, hd = n.p.head_dim, n_rot = n.p.n_rot;
    const int64_t W = ex.width[n.in[0]], T = ex.n_rows;
    const float* X = f32_of(ex, n.in[0]);
    float* Y = f32_of(ex, n.out);
    const int32_t half = n_rot / 2;
    const bool neox = n.p.rope_mode == RopeMode::Neox;
    const double attn = n.p.rope_attn_factor;
    const float* factors = n.in[1] >= 0 ? (const float*)ex.data[n.in[1]] : nullptr;
    int64_t t0, t1;
    split_range(T, ith, nth, &t0, &t1);
    if (t0 == t1) return;
    // cos/sin of a pair's angle come from libm at this thread's first row and by angle
    // addition (in double) at the following ones: sin/cos per row and pair dominated prefill,
    // and the recurrence drifts by ~1e-16 per row, far below f32 rounding. Pairs go in blocks
    // so that the angle state fits on the stack.
    constexpr int32_t kPairs = 64;
    for (int32_t i0 = 0; i0 < half; i0 += kPairs) {
        const int32_t m = half - i0 < kPairs ? half - i0 : kPairs;
        double c[kPairs], s[kPairs], dc[kPairs], ds[kPairs];
        float fc[kPairs], fs[kPairs];
        for (int32_t i = 0; i < m; ++i) {
            double step = std::pow((double)n.p.rope_base, -2.0 * (i0 + i) / n_rot);
            if (factors) step /= factors[i0 + i];
            const double theta = (double)(ex.n_past + t0) * n.p.rope_freq_scale * step;
            c[i] = std::cos(theta);
            s[i] = std::sin(theta);
            step *= n.p.rope_freq_scale;
            dc[i] = t1 - t0 > 1 ? std::cos(step) : 1.0;
            ds[i] = t1 - t0 > 1 ? std::sin(step) : 0.0;
        }
        for (int64_t t = t0; t < t1; ++t) {
            for (int32_t i = 0; i < m; ++i) {
                fc[i] = (float)(c[i] * attn);
                fs[i] = (float)(s[i] * attn);
                const double cn = c[i] * dc[i] - s[i] * ds[i];
                s[i] = s[i] * dc[i] + c[i] * ds[i];
                c[i] = cn;
            }
            for (int32_t h = 0; h < n_head; ++h) {
                const float* x = X + t * W + (int64_t)h * hd;
                float* y = Y + t * W + (int64_t)h * hd;
                for (int32_t i = 0; i < m; ++i) {
                    const int32_t a = neox ? i0 + i : 2 * (i0 + i);
                    const int32_t b = neox ? i0 + i + half : a + 1;
                    const float x0 = x[a], x1 = x[b];
                    y[a] = x0 * fc[i] - x1 * fs[i];
                    y[b] = x0 * fs[i] + x1 * fc[i];
                }
            }
        }
    }
    if (n_rot < hd)
        for (int64_t t = t0; t < t1; ++t)
            for (int32_t h = 0; h < n_head; ++h) {
                const int64_t o = t * W + (int64_t)h * hd;
                memmove(Y + o + n_rot, X + o + n_rot, sizeof(float) * (hd - n_rot));
            }
}

}  // namespace strata::cpu::STRATA_ISA
