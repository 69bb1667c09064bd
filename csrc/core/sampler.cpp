#include "sampler.h"

#include <algorithm>
#include <cmath>

#include "errors.h"

namespace strata {

int32_t argmax(const float* x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

// min-p over candidates sorted best first: how many of the first `keep` have a probability of
// at least min_p times the best one's (at least one).
static int64_t min_p_keep(const float* v, int64_t keep, float max_logit, float min_p) {
    if (min_p <= 0.0f) return keep;
    const double floor_logit = max_logit + std::log((double)min_p);
    int64_t i = 1;
    while (i < keep && v[i] >= floor_logit) ++i;
    return i;
}

Sampler::Sampler(int64_t n_vocab)
    : n_vocab_(n_vocab), logits_(n_vocab), values_(n_vocab), order_(n_vocab), seen_(n_vocab) {
    seed(0);
}

void Sampler::seed(uint64_t seed) {
    // xoshiro256** seeded by splitmix64: the same seed gives the same draws on every platform.
    uint64_t z = seed;
    for (auto& s : state_) {
        z += 0x9E3779B97F4A7C15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        s = x ^ (x >> 31);
    }
}

double Sampler::next_uniform() {
    auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return (double)(result >> 11) * 0x1.0p-53;
}

int32_t Sampler::sample(const float* in, const SamplingParams& p, std::span<const int32_t> recent) {
    const int64_t n = n_vocab_;
    float* l = logits_.data();
    std::copy(in, in + n, l);

    if (p.repetition_penalty != 1.0f && p.penalty_last_n != 0) {
        const size_t take = p.penalty_last_n < 0 ? recent.size()
                                                 : std::min<size_t>(recent.size(), (size_t)p.penalty_last_n);
        auto window = recent.subspan(recent.size() - take);
        for (int32_t t : window)
            if (t >= 0 && t < n && !seen_[t]) {
                seen_[t] = 1;
                l[t] = l[t] > 0 ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty;
            }
        for (int32_t t : window)
            if (t >= 0 && t < n) seen_[t] = 0;
    }
    if (p.temperature <= 0.0f) return argmax(l, n);

    // Candidates sorted by logit, best first (equal logits by increasing id).
    const int64_t k = (p.top_k > 0 && p.top_k < n) ? p.top_k : n;
    int32_t* idx = order_.data();
    for (int64_t i = 0; i < n; ++i) idx[i] = (int32_t)i;
    auto by_logit = [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
    if (k < n) {  // top-k: everything after this reads the k best only
        std::partial_sort(idx, idx + k, idx + n, by_logit);
        for (int64_t i = 0; i < k; ++i) values_[i] = l[idx[i]];
        return sample_top(values_.data(), idx, p);
    }
    // No top-k: the whole vocabulary is the softmax's denominator, and only as many
    // candidates as top-p needs are sorted: start small and widen while the kept probability
    // mass is below top_p.
    const float max_logit = l[argmax(l, n)];
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += std::exp((double)l[i] - max_logit);
    int64_t sorted = std::min<int64_t>(n, 256);
    std::partial_sort(idx, idx + sorted, idx + n, by_logit);
    // top-p: the smallest prefix whose probability reaches top_p (at least one token).
    int64_t keep = n;
    if (p.top_p < 1.0f) {
        double cum = 0;
        int64_t i = 0;
        for (;;) {
            if (i == sorted) {  // need more sorted candidates
                const int64_t more = std::min<int64_t>(n, sorted * 4);
                std::partial_sort(idx + sorted, idx + more, idx + n, by_logit);
                sorted = more;
            }
            cum += std::exp((double)l[idx[i]] - max_logit) / total;
            ++i;
            if (cum >= p.top_p || i == n) break;
        }
        keep = i;
    }
    if (keep > sorted) {
        std::partial_sort(idx + sorted, idx + keep, idx + n, by_logit);
        sorted = keep;
    }
    for (int64_t i = 0; i < keep; ++i) values_[i] = l[idx[i]];
    keep = min_p_keep(values_.data(), keep, max_logit, p.min_p);
    return draw(values_.data(), idx, keep, max_logit, p.temperature);
}

int32_t Sampler::sample_top(const float* v, const int32_t* ids, const SamplingParams& p) {
    const int64_t k = p.top_k;
    if (k <= 0 || k >= n_vocab_) throw StrataError("sample_top: top_k out of range");
    const float max_logit = v[0];
    double total = 0;  // softmax denominator over the top-k candidates
    for (int64_t i = 0; i < k; ++i) total += std::exp((double)v[i] - max_logit);
    // top-p: the smallest prefix whose probability reaches top_p (at least one token).
    int64_t keep = k;
    if (p.top_p < 1.0f) {
        double cum = 0;
        int64_t i = 0;
        do cum += std::exp((double)v[i++] - max_logit) / total;
        while (!(cum >= p.top_p) && i < k);  // as the loop above, NaN included
        keep = i;
    }
    keep = min_p_keep(v, keep, max_logit, p.min_p);
    return draw(v, ids, keep, max_logit, p.temperature);
}

int32_t Sampler::draw(const float* v, const int32_t* ids, int64_t keep, float max_logit, float temperature) {
    double sum = 0;
    for (int64_t i = 0; i < keep; ++i) sum += std::exp(((double)v[i] - max_logit) / temperature);
    double r = next_uniform() * sum;
    for (int64_t i = 0; i < keep; ++i) {
        r -= std::exp(((double)v[i] - max_logit) / temperature);
        if (r < 0) return ids[i];
    }
    return ids[keep - 1];
}

}  // namespace strata
