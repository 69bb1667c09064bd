// The engine: a planned graph, a backend to run it, the KV cache position and a sampler.
//
// Python builds the graph once and hands it here; from then on each call runs whole steps
// natively: `eval` appends tokens to the sequence (prefill in chunks of n_batch), and
// `step_sample` runs one decode step and samples the next token in the same call.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend.h"
#include "graph.h"
#include "plan.h"
#include "sampler.h"

namespace strata {

struct EngineConfig {
    int64_t n_ctx = 4096;   // KV cache capacity in tokens
    int64_t n_batch = 512;  // most tokens evaluated in one step (prefill chunk)
};

class Engine {
public:
    Engine(Graph graph, std::unique_ptr<Backend> backend, const uint8_t* file, int64_t file_size,
           EngineConfig cfg);

    // Appends `tokens` at position n_past(). With all_logits, writes the logits of every
    // token to `out` (tokens.size() x n_vocab floats); otherwise only the last token's
    // logits are kept (see last_logits()). Throws ContextOverflow before any work if the
    // tokens do not fit, and StrataError for a token id outside the vocabulary.
    void eval(std::span<const int32_t> tokens, bool all_logits, float* out);
    // eval of one token + sampling, in one call: the decode loop's only native call. Greedy
    // settings with no repetition penalty take the backend's device_argmax where it has one:
    // the logits are then read back only if last_logits() asks for them.
    int32_t step_sample(int32_t token, const SamplingParams& p, std::span<const int32_t> recent);
    int32_t sample(const SamplingParams& p, std::span<const int32_t> recent);

    const float* last_logits();
    int64_t n_vocab() const { return n_vocab_; }
    int64_t n_past() const { return n_past_; }
    // Forget everything after the first n tokens (0 = empty cache): the KV cache is
    // positional, so a shared prompt prefix stays valid.
    void truncate(int64_t n);
    int64_t n_ctx() const { return cfg_.n_ctx; }
    int64_t n_batch() const { return cfg_.n_batch; }
    void seed(uint64_t s) { sampler_.seed(s); }
    int64_t tokens_evaluated() const { return tokens_evaluated_; }
    const Backend& backend() const { return *backend_; }
    const Plan& plan() const { return plan_; }
    const Graph& graph() const { return graph_; }
    void set_profiling(bool on) { backend_->set_profiling(on); }

private:
    void check_tokens(std::span<const int32_t> tokens) const;
    // Runs the steps of eval; the last step's output stays on the backend (logits_pending_).
    void run_steps(std::span<const int32_t> tokens, bool all_logits, float* out);

    Graph graph_;
    Plan plan_;
    std::unique_ptr<Backend> backend_;
    EngineConfig cfg_;
    int64_t n_vocab_ = 0;
    int64_t n_past_ = 0;
    int64_t vocab_limit_ = 0;  // token ids must be below this (smallest embedding table)
    int64_t tokens_evaluated_ = 0;
    std::vector<float> last_logits_;
    bool logits_pending_ = false;  // last_logits_ is stale: the last step's row is on the backend
    Sampler sampler_;
};

}  // namespace strata
