// Native token sampling: repetition penalty, top-k, top-p, min-p, temperature, seeded draw.
//
// Order follows llama.cpp's default chain (penalties -> top-k -> top-p -> min-p ->
// temperature -> draw), so the same settings mean the same thing. All scratch is allocated
// once for the vocabulary size; sampling a token allocates nothing.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace strata {

struct SamplingParams {
    float temperature = 0.8f;  // 0 = greedy (argmax)
    int32_t top_k = 40;        // 0 = off
    float top_p = 0.95f;       // 1 = off
    float min_p = 0.05f;       // 0 = off
    float repetition_penalty = 1.0f;  // 1 = off
    int32_t penalty_last_n = 64;      // how many recent tokens the penalty looks at
};

class Sampler {
public:
    explicit Sampler(int64_t n_vocab);
    void seed(uint64_t seed);
    // `recent` are the most recent tokens (prompt and generated), oldest first.
    int32_t sample(const float* logits, const SamplingParams& p, std::span<const int32_t> recent);
    // The same draw from only the top-k candidates, p.top_k of them (0 < top_k < n_vocab), as
    // a backend selected them: values best first, equal values by increasing id. Gives what
    // sample() gives on the whole row when there is no repetition penalty, bit for bit: with
    // top-k on, sample() reads nothing else.
    int32_t sample_top(const float* values, const int32_t* ids, const SamplingParams& p);

private:
    // Temperature, then a draw among the first `keep` candidates (best first).
    int32_t draw(const float* values, const int32_t* ids, int64_t keep, float max_logit, float temperature);
    double next_uniform();  // [0, 1)
    int64_t n_vocab_;
    std::vector<float> logits_, values_;
    std::vector<int32_t> order_;
    std::vector<uint8_t> seen_;
    uint64_t state_[4];
};

int32_t argmax(const float* x, int64_t n);

}  // namespace strata
