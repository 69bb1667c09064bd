// The Metal backend: a MetalContext replaying the dispatch list of a MetalPlan (metal_plan.h,
// plain C++ checked on Linux) once per step. Built only on macOS; unverified on hardware
// (docs/metal.md), so backend="auto" does not pick it unless STRATA_METAL_AUTO=1.
//
// Memory: the model file is wrapped in place (no copy; unified memory). The activation
// arena is one shared buffer: the host writes the step's tokens and positions into it and
// reads the output from it after the command buffer completes, so a step needs no copy
// kernels. The fp16 KV cache and the q8 scratch are private to the GPU.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include "metal_backend.h"

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

class MetalBackend final : public Backend {
public:
    MetalBackend() : ctx_(std::make_unique<MetalContext>()) {}

    std::string name() const override { return "metal"; }
    std::string describe() const override { return "metal (" + ctx_->describe() + ")"; }

    void prepare(const Graph& g, const Plan& plan, const uint8_t* file, int64_t file_size, int64_t n_ctx) override {
        @autoreleasepool {
            // Refuses graphs with ops or weight types that have no kernel, before any allocation.
            plan_ = std::make_unique<MetalPlan>(g, plan, n_ctx);
            n_ctx_ = n_ctx;
            max_rows_ = plan.max_rows;
            tokens_value_ = g.tokens_value();
            positions_value_ = g.positions_value();
            output_value_ = g.output();

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
            for (const Specialisation& s : plan_->pipelines()) {
                const int p = ctx_->pipeline(*s.kernel, s.fc);
                if (ctx_->max_threads(p) < s.kernel->threads)
                    throw UnsupportedError(std::string("metal: ") + s.kernel->name + " needs " +
                                           std::to_string(s.kernel->threads) + " threads per threadgroup, this GPU allows " +
                                           std::to_string(ctx_->max_threads(p)));
                pipelines_.push_back(p);
            }
            // Size the dispatch list for the largest step once; later steps reuse it.
            plan_->encode(plan.max_rows, 0, false, dispatches_);
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
        @autoreleasepool {
            ctx_->begin_step();
            BufferRef bound[kMaxBuffers];
            for (const Dispatch& d : dispatches_) {
                if (d.barrier) ctx_->barrier();
                for (int b = 0; b < d.n_buffers; ++b) bound[b] = resolve(d.buffers[b]);
                ctx_->dispatch(pipelines_[(size_t)d.pipeline], d.args, plan_->pipelines()[(size_t)d.pipeline].kernel->args_size,
                               bound, d.n_buffers, d.groups, d.threads);
            }
            ctx_->end_step();
        }
        out_rows_ = plan_->rows_of(output_value_, T, step.all_rows);
    }

    const float* output(int64_t* rows) override {
        *rows = out_rows_;
        return reinterpret_cast<const float*>(arena_base_ + plan_->offset_of(output_value_));
    }

    int64_t kv_cache_bytes() const override { return plan_ ? plan_->kv_bytes() : 0; }

    bool can_truncate(int64_t n_past, int64_t n) const override { return plan_->can_truncate(n_past, n); }
    int64_t batch_kernel_rows() const override { return kMatmulMinRows; }

private:
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
    int arena_ = -1, kv_ = -1, q8_ = -1;
    uint8_t* arena_base_ = nullptr;
    int64_t n_ctx_ = 0, max_rows_ = 0, out_rows_ = 0;
    int32_t tokens_value_ = -1, positions_value_ = -1, output_value_ = -1;
};

}  // namespace

std::unique_ptr<Backend> make_metal_backend() { return std::make_unique<MetalBackend>(); }

}  // namespace strata::metal
