// The Metal backend: a MetalContext replaying the dispatch list of a MetalPlan (metal_plan.h,
// plain C++ checked on Linux) once per step. Built only on macOS; unverified on hardware
// (docs/metal.md), so backend="auto" does not pick it unless STRATA_METAL_AUTO=1.
//
// Memory: the model file is wrapped in place (no copy; unified memory). The activation
// arena is one shared buffer: the host writes the step's tokens and positions into it and
// reads the output from it after the command buffer completes, so a step needs no copy
// kernels. The fp16 KV cache and the q8 scratch are private to the GPU.
//
// Greedy decoding (device_argmax): kernel_argmax_f32 over the output's last row, its int32
// written into the arena and read in place. A step encodes it into its own command buffer
// (one commit gives the token) when device_argmax() was asked after the step before, as it
// is at every step of greedy decoding; sampling with a temperature never asks and never
// pays for it. Asked after a step that did not encode it (the first greedy step), it runs
// alone in a command buffer of its own. STRATA_METAL_DEVICE_ARGMAX=0 turns it off (the
// engine then reads the logits and takes the argmax on the CPU).
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include "metal_backend.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../../core/errors.h"
#include "metal_context.h"
#include "metal_plan.h"

namespace strata::metal {

bool metal_available() {
    @autoreleasepool {
        id<MTLDevice> d = MTLCreateSystemDefaultDevice();
        return d != nil;
    }
}

std::string device_description() {
    try {
        MetalContext ctx;
        return ctx.describe();
    } catch (const std::exception& e) {
        return std::string("no Metal device: ") + e.what();
    }
}

namespace {

std::string mib(int64_t bytes) { return std::to_string(bytes / (1 << 20)) + " MiB"; }

// STRATA_METAL_DEVICE_ARGMAX: unset or 1 on, 0 off.
bool device_argmax_from_env() {
    const char* v = std::getenv("STRATA_METAL_DEVICE_ARGMAX");
    if (!v || !*v || std::strcmp(v, "1") == 0) return true;
    if (std::strcmp(v, "0") == 0) return false;
    throw StrataError(std::string("STRATA_METAL_DEVICE_ARGMAX must be 0 or 1, got '") + v + "'");
}

class MetalBackend final : public Backend {
public:
    MetalBackend() : ctx_(std::make_unique<MetalContext>()) {}

    std::string name() const override { return "metal"; }
    std::string describe() const override {
        // Greedy decoding on the GPU unless STRATA_METAL_DEVICE_ARGMAX=0 or the GPU refused the
        // kernel's threadgroup size (then the CPU takes the argmax of the read-back logits).
        return "metal (" + ctx_->describe() + (plan_ && !argmax_on_ ? "; argmax on the CPU" : "") + ")";
    }

    void prepare(const Graph& g, const Plan& plan, const uint8_t* file, int64_t file_size, int64_t n_ctx) override {
        @autoreleasepool {
            // Refuses graphs with ops or weight types that have no kernel, before any allocation.
            plan_ = std::make_unique<MetalPlan>(g, plan, n_ctx);
            n_ctx_ = n_ctx;
            max_rows_ = plan.max_rows;
            tokens_value_ = g.tokens_value();
            positions_value_ = g.positions_value();
            output_value_ = g.output();
            output_width_ = g.values()[(size_t)output_value_].width;
            argmax_on_ = device_argmax_from_env();

            const int64_t need = plan_->arena_bytes() + plan_->kv_bytes() + plan_->q8_bytes() + file_size;
            const uint64_t have = ctx_->recommended_working_set();
            if ((uint64_t)need > have)
                throw StrataError("out of GPU memory: the model needs " + mib(need) + " (weights " + mib(file_size) +
                                  ", KV cache " + mib(plan_->kv_bytes()) + " for n_ctx = " + std::to_string(n_ctx) +
                                  ", activations " + mib(plan_->arena_bytes()) + ") and the device's recommended "
                                  "working set is " + mib((int64_t)have) + "; use a smaller n_ctx");

            // Weights: wrapped in place (the engine's mapping is page aligned); tensors up to
            // 1 GiB never straddle two pieces.
            ctx_->wrap_mapping(file, (uint64_t)file_size, 1ull << 30);
            weights_.clear();
            for (const WeightRef& w : g.weights()) weights_.push_back(ctx_->locate((uint64_t)w.offset, (uint64_t)w.nbytes));
            arena_ = ctx_->allocate((uint64_t)plan_->arena_bytes(), true, "strata activations");
            kv_ = ctx_->allocate((uint64_t)plan_->kv_bytes(), false, "strata KV cache");
            q8_ = ctx_->allocate((uint64_t)plan_->q8_bytes(), false, "strata quantized activations");
            arena_base_ = static_cast<uint8_t*>(ctx_->contents(arena_));

            // Every pipeline now, so that a shader the compiler rejects or a threadgroup size
            // the GPU refuses fails at load, naming the kernel, and never mid-step.
            pipelines_.clear();
            for (size_t i = 0; i < plan_->pipelines().size(); ++i) {
                const Specialisation& s = plan_->pipelines()[i];
                if ((int32_t)i == plan_->argmax_pipeline() && !argmax_on_) {
                    pipelines_.push_back(-1);  // never dispatched
                    continue;
                }
                const int p = ctx_->pipeline(*s.kernel, s.fc);
                // The argmax is an optimisation: a GPU that refuses its threadgroup size
                // keeps greedy decoding on the CPU instead of failing the load.
                if ((int32_t)i == plan_->argmax_pipeline() && ctx_->max_threads(p) < s.kernel->threads) {
                    argmax_on_ = false;
                    pipelines_.push_back(-1);
                    continue;
                }
                if (ctx_->max_threads(p) < s.kernel->threads)
                    throw UnsupportedError(std::string("metal: ") + s.kernel->name + " needs " +
                                           std::to_string(s.kernel->threads) + " threads per threadgroup, this GPU allows " +
                                           std::to_string(ctx_->max_threads(p)));
                pipelines_.push_back(p);
            }
            // Size the dispatch list for the largest step once; later steps reuse it.
            plan_->encode(plan.max_rows, 0, false, dispatches_);
            plan_->encode_argmax(plan.max_rows, false, dispatches_);
            argmax_list_.reserve(1);
        }
    }

    void run(const StepShape& step) override {
        if (!plan_) throw StrataError("metal backend: run() before prepare()");
        if (step.n_rows <= 0 || step.n_rows > max_rows_) throw StrataError("step larger than planned");
        if (step.n_past < 0 || step.n_past + step.n_rows > n_ctx_) throw ContextOverflow("step past the KV cache");
        const int64_t T = step.n_rows;
        if (tokens_value_ >= 0)
            std::memcpy(arena_base_ + plan_->offset_of(tokens_value_), step.tokens, sizeof(int32_t) * T);
        if (positions_value_ >= 0) {
            int32_t* pos = reinterpret_cast<int32_t*>(arena_base_ + plan_->offset_of(positions_value_));
            for (int64_t i = 0; i < T; ++i) pos[i] = (int32_t)(step.n_past + i);
        }
        plan_->encode(T, step.n_past, step.all_rows, dispatches_);
        // The argmax joins the step when greedy decoding asked for the previous step's.
        argmax_ready_ = false;
        const bool fuse = argmax_on_ && argmax_asked_ && !step.all_rows;
        argmax_asked_ = false;
        if (fuse) {
            plan_->encode_argmax(T, step.all_rows, dispatches_);
            argmax_slot() = -1;  // what no kernel wrote is refused in device_argmax
        }
        replay(dispatches_);
        out_rows_ = plan_->rows_of(output_value_, T, step.all_rows);
        last_T_ = T;
        last_all_rows_ = step.all_rows;
        argmax_ready_ = fuse;
    }

    int32_t device_argmax() override {
        if (!argmax_on_ || out_rows_ == 0) return -1;
        argmax_asked_ = true;  // greedy decoding: the next step encodes it
        if (!argmax_ready_) {  // this step had none: the argmax alone, over the output in place
            argmax_list_.clear();
            plan_->encode_argmax(last_T_, last_all_rows_, argmax_list_);
            argmax_slot() = -1;
            replay(argmax_list_);
            argmax_ready_ = true;
        }
        const int32_t best = argmax_slot();
        if (best < 0 || best >= output_width_)
            throw StrataError("metal: kernel_argmax_f32 gave token " + std::to_string(best) + " of " +
                              std::to_string(output_width_));
        return best;
    }

    const float* output(int64_t* rows) override {
        *rows = out_rows_;
        return reinterpret_cast<const float*>(arena_base_ + plan_->offset_of(output_value_));
    }

    int64_t kv_cache_bytes() const override { return plan_ ? plan_->kv_bytes() : 0; }

    bool can_truncate(int64_t n_past, int64_t n) const override { return plan_->can_truncate(n_past, n); }
    int64_t batch_kernel_rows() const override { return kMatmulMinRows; }

private:
    // One command buffer: the list's dispatches, a buffer barrier where the plan put one.
    void replay(const std::vector<Dispatch>& list) {
        @autoreleasepool {
            ctx_->begin_step();
            BufferRef bound[kMaxBuffers];
            for (const Dispatch& d : list) {
                if (d.barrier) ctx_->barrier();
                for (int b = 0; b < d.n_buffers; ++b) bound[b] = resolve(d.buffers[b]);
                ctx_->dispatch(pipelines_[(size_t)d.pipeline], d.args, plan_->pipelines()[(size_t)d.pipeline].kernel->args_size,
                               bound, d.n_buffers, d.groups, d.threads);
            }
            ctx_->end_step();
        }
    }

    int32_t& argmax_slot() { return *reinterpret_cast<int32_t*>(arena_base_ + plan_->argmax_offset()); }

    BufferRef resolve(const BufferSlice& s) const {
        switch (s.region) {
            case Region::None: return BufferRef{};
            case Region::Weight: {
                BufferRef r = weights_[(size_t)s.weight];
                r.offset += s.offset;
                return r;
            }
            case Region::Arena: return BufferRef{arena_, s.offset};
            case Region::Kv: return BufferRef{kv_, s.offset};
            case Region::Q8: return BufferRef{q8_, s.offset};
        }
        return BufferRef{};
    }

    std::unique_ptr<MetalContext> ctx_;
    std::unique_ptr<MetalPlan> plan_;
    std::vector<BufferRef> weights_;  // per graph weight: its wrapped buffer and offset
    std::vector<int> pipelines_;      // per plan pipeline: the context's handle
    std::vector<Dispatch> dispatches_;
    std::vector<Dispatch> argmax_list_;  // the argmax alone (device_argmax after a step without it)
    int arena_ = -1, kv_ = -1, q8_ = -1;
    uint8_t* arena_base_ = nullptr;
    int64_t n_ctx_ = 0, max_rows_ = 0, out_rows_ = 0, output_width_ = 0, last_T_ = 0;
    bool last_all_rows_ = false;
    bool argmax_on_ = true;       // STRATA_METAL_DEVICE_ARGMAX, and the GPU takes its threadgroup size
    bool argmax_asked_ = false;   // device_argmax() was called after the last step
    bool argmax_ready_ = false;   // the arena holds the argmax of the last step's output
    int32_t tokens_value_ = -1, positions_value_ = -1, output_value_ = -1;
};

}  // namespace

std::unique_ptr<Backend> make_metal_backend() { return std::make_unique<MetalBackend>(); }

}  // namespace strata::metal
