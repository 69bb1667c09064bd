// rope: rotary position embedding of each head of each row, at position n_past + row.
//
// Normal layout rotates adjacent pairs (x[2i], x[2i+1]); neox rotates halves (x[i],
// x[i + n_rot/2]). The angle is position * freq_scale * base^(-2i/n_rot), computed in
// double once per row and pair and reused for every head. Optional per-pair frequency
// factors (Llama 3.1's rope_freqs) divide the angle.
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

void op_rope(Exec& ex, const Node& n, int ith, int nth) {
    const int32_t n_head = n.p.n_head, hd = n.p.head_dim, n_rot = n.p.n_rot;
    const int64_t W = ex.width[n.in[0]], T = ex.n_rows;
    const float* X = f32_of(ex, n.in[0]);
    float* Y = f32_of(ex, n.out);
    float* cs = ex.scratch + (int64_t)ith * ex.scratch_floats;  // cos, sin per pair
    const int32_t half = n_rot / 2;
    const float* factors = n.in[1] >= 0 ? (const float*)ex.data[n.in[1]] : nullptr;
    int64_t t0, t1;
    split_range(T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; ++t) {
        const double pos = (double)(ex.n_past + t) * n.p.rope_freq_scale;
        for (int32_t i = 0; i < half; ++i) {
            double theta = pos * std::pow((double)n.p.rope_base, -2.0 * i / n_rot);
            if (factors) theta /= factors[i];
            cs[2 * i] = (float)(std::cos(theta) * n.p.rope_attn_factor);
            cs[2 * i + 1] = (float)(std::sin(theta) * n.p.rope_attn_factor);
        }
        for (int32_t h = 0; h < n_head; ++h) {
            const float* x = X + t * W + (int64_t)h * hd;
            float* y = Y + t * W + (int64_t)h * hd;
            for (int32_t i = 0; i < half; ++i) {
                const int32_t a = n.p.rope_mode == RopeMode::Normal ? 2 * i : i;
                const int32_t b = n.p.rope_mode == RopeMode::Normal ? 2 * i + 1 : i + half;
                const float c = cs[2 * i], s = cs[2 * i + 1];
                const float x0 = x[a], x1 = x[b];
                y[a] = x0 * c - x1 * s;
                y[b] = x0 * s + x1 * c;
            }
            for (int32_t i = n_rot; i < hd; ++i) y[i] = x[i];
        }
    }
}

}  // namespace strata::cpu::STRATA_ISA
