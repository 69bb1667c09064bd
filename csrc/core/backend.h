// What the core asks of a backend (cpu, cuda, metal). A backend knows ops, never models.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph.h"
#include "plan.h"

namespace strata {

struct StepShape {
    const int32_t* tokens;  // n_rows ids, already checked against the embedding tables
    int64_t n_rows;         // tokens in this step (<= plan.max_rows)
    int64_t n_past;         // tokens already in the KV cache; this step's first position
    bool all_rows;          // LastRow passes every row through (logits for every position)
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    // A one-line description of what runs (e.g. the SIMD path chosen on this CPU).
    virtual std::string describe() const = 0;
    // Called once, before any step. `file` is the model mapping; every weight range of `g`
    // has been checked against `file_size` by the engine.
    virtual void prepare(const Graph& g, const Plan& plan, const uint8_t* file, int64_t file_size,
                         int64_t n_ctx) = 0;
    virtual void run(const StepShape& step) = 0;
    // The graph output of the last step: `*rows` rows of `width` floats, host-readable.
    virtual const float* output(int64_t* rows) = 0;
    // Greedy decoding without reading the logits back: after run(), the first index of the
    // largest value in the output's last row, computed where the output lives; -1 where the
    // backend has no such kernel (the engine then reads output() and samples on the host).
    // output() still works afterwards. NaN never wins here, where the host argmax returns 0
    // for a row starting with NaN: rows holding NaN are broken either way.
    virtual int32_t device_argmax() { return -1; }
    // The k best logits of the last step's last row (k <= kMaxDeviceTopK), best first, equal
    // values by increasing id, into values / ids, from a backend whose logits are still on the
    // device: the number written (k, or fewer when the row has fewer non-NaN values), or -1
    // when this backend does not do it (the engine then samples on the host from output()).
    static constexpr int32_t kMaxDeviceTopK = 64;
    virtual int32_t device_top_k(int32_t k, float* values, int32_t* ids) { return -1; }
    virtual int64_t kv_cache_bytes() const = 0;
    // Whether the cache, holding positions [0, n_past), still has what a continuation from
    // position n needs (sliding-window ring buffers forget old positions).
    virtual bool can_truncate(int64_t n_past, int64_t n) const { return true; }
    // Steps of at least this many tokens compute every token with the batched (prefill)
    // kernels, shorter steps with decode's; a token's numbers depend only on which (fp32
    // summation order differs between the two). The engine never ends a prompt on a shorter
    // step than this, and prompt caching re-evaluates at least this many tokens, so a
    // prompt's logits do not depend on what was cached or how it was split.
    virtual int64_t batch_kernel_rows() const { return 1; }
    // STRATA_PROFILE: per-node wall time summed over steps (empty where unsupported).
    virtual void set_profiling(bool on) {}
    virtual std::vector<double> node_seconds() const { return {}; }
};

}  // namespace strata
