#include "engine.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "errors.h"

namespace strata {

namespace {
int64_t output_width(const Graph& g) {
    if (g.output() < 0) throw StrataError("graph has no output");
    return g.values()[g.output()].width;
}
}  // namespace

Engine::Engine(Graph graph, std::unique_ptr<Backend> backend, const uint8_t* file,
               int64_t file_size, EngineConfig cfg)
    : graph_(std::move(graph)),
      backend_(std::move(backend)),
      cfg_(cfg),
      n_vocab_(output_width(graph_)),
      sampler_(n_vocab_) {
    if (cfg_.n_ctx <= 0) throw StrataError("n_ctx must be positive");
    if (cfg_.n_batch <= 0) throw StrataError("n_batch must be positive");
    cfg_.n_batch = std::min(cfg_.n_batch, cfg_.n_ctx);
    // Native code checks every weight range itself, whatever Python validated before.
    for (const WeightRef& w : graph_.weights()) {
        if (w.offset < 0 || w.nbytes < 0 || w.offset > file_size || w.nbytes > file_size - w.offset)
            throw StrataError("weight " + w.name + " lies outside the model file");
    }
    vocab_limit_ = std::numeric_limits<int32_t>::max();
    bool has_embedding = false;
    for (const Node& n : graph_.nodes())
        if (n.op == Op::Embedding && n.in[1] == graph_.tokens_value()) {
            const WeightRef& w = graph_.weights()[graph_.values()[n.in[0]].weight];
            vocab_limit_ = std::min(vocab_limit_, w.rows);
            has_embedding = true;
        }
    if (!has_embedding) vocab_limit_ = n_vocab_;
    for (const Node& n : graph_.nodes())
        if (n.op == Op::Embedding && n.in[1] == graph_.positions_value()) {
            const WeightRef& w = graph_.weights()[graph_.values()[n.in[0]].weight];
            if (cfg_.n_ctx > w.rows)
                throw StrataError("n_ctx = " + std::to_string(cfg_.n_ctx) + " exceeds the " +
                                  std::to_string(w.rows) + " learned positions of " + w.name);
        }
    plan_ = make_plan(graph_, cfg_.n_batch);
    backend_->prepare(graph_, plan_, file, file_size, cfg_.n_ctx);
    last_logits_.assign(n_vocab_, 0.0f);
}

void Engine::check_tokens(std::span<const int32_t> tokens) const {
    if (tokens.empty()) throw StrataError("no tokens to evaluate");
    if ((int64_t)tokens.size() > cfg_.n_ctx - n_past_)
        throw ContextOverflow(std::to_string(n_past_) + " tokens in the context plus " +
                              std::to_string(tokens.size()) + " new ones exceed n_ctx = " +
                              std::to_string(cfg_.n_ctx));
    for (int32_t t : tokens)
        if (t < 0 || t >= vocab_limit_)
            throw StrataError("token id " + std::to_string(t) + " is outside the vocabulary (" +
                              std::to_string(vocab_limit_) + ")");
}

void Engine::eval(std::span<const int32_t> tokens, bool all_logits, float* out) {
    run_steps(tokens, all_logits, out);
    last_logits();
}

void Engine::run_steps(std::span<const int32_t> tokens, bool all_logits, float* out) {
    check_tokens(tokens);
    const int64_t chunk = all_logits ? plan_.max_single_rows : cfg_.n_batch;
    const int64_t total = (int64_t)tokens.size(), min_rows = backend_->batch_kernel_rows();
    for (int64_t start = 0, n = 0; start < total; start += n) {
        n = std::min<int64_t>(chunk, total - start);
        // Leave the last step at least min_rows tokens (Backend::batch_kernel_rows): a
        // prompt's tokens then all run on the batched kernels however it is chunked.
        const int64_t rest = total - start - n;
        if (rest > 0 && rest < min_rows && n - (min_rows - rest) >= min_rows) n -= min_rows - rest;
        StepShape step{tokens.data() + start, n, n_past_, all_logits};
        logits_pending_ = false;
        backend_->run(step);
        n_past_ += n;
        tokens_evaluated_ += n;
        logits_pending_ = true;
        if (all_logits && out) {
            int64_t rows = 0;
            const float* logits = backend_->output(&rows);
            std::memcpy(out + start * n_vocab_, logits, sizeof(float) * n * n_vocab_);
        }
    }
}

const float* Engine::last_logits() {
    if (logits_pending_) {
        int64_t rows = 0;
        const float* logits = backend_->output(&rows);
        std::memcpy(last_logits_.data(), logits + (rows - 1) * n_vocab_, sizeof(float) * n_vocab_);
        logits_pending_ = false;
    }
    return last_logits_.data();
}

int32_t Engine::sample(const SamplingParams& p, std::span<const int32_t> recent) {
    return sampler_.sample(last_logits(), p, recent);
}

int32_t Engine::step_sample(int32_t token, const SamplingParams& p, std::span<const int32_t> recent) {
    run_steps(std::span<const int32_t>(&token, 1), false, nullptr);
    if (p.temperature <= 0.0f && p.repetition_penalty == 1.0f) {
        const int32_t best = backend_->device_argmax();
        if (best >= 0) return best;
    }
    // Top-k sampling reads only the k best logits: a backend that selects them on the device
    // saves copying the row back and sorting it here (the same draw, bit for bit).
    if (p.temperature > 0.0f && p.repetition_penalty == 1.0f && p.top_k > 0 &&
        p.top_k <= Backend::kMaxDeviceTopK && p.top_k < n_vocab_) {
        float values[Backend::kMaxDeviceTopK];
        int32_t ids[Backend::kMaxDeviceTopK];
        if (backend_->device_top_k(p.top_k, values, ids) == p.top_k) return sampler_.sample_top(values, ids, p);
    }
    return sample(p, recent);
}

void Engine::truncate(int64_t n) {
    if (n < 0 || n > n_past_) throw StrataError("truncate: position out of range");
    if (n > 0 && !backend_->can_truncate(n_past_, n))
        throw StrataError("truncate: the sliding-window cache no longer holds position " + std::to_string(n));
    n_past_ = n;
}

}  // namespace strata
