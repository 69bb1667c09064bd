// The Metal backend: a MetalContext plus the graph. Built only on macOS.
//
// What is here: device discovery, the model mapping wrapped without copying, the op ->
// kernel table, and the step structure (one command buffer per step). What is not yet:
// the per-node dispatch of a planned graph (arena offsets, KV slots, prefill tiles), so
// prepare() raises UnsupportedError and backend="auto" must keep choosing cuda/cpu until
// it lands and a Mac run of the tests and selftest reports back (docs/metal.md).
#import <Metal/Metal.h>

#include "metal_backend.h"

#include <memory>
#include <string>

#include "../../core/errors.h"
#include "metal_context.h"

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

class MetalBackend final : public Backend {
public:
    MetalBackend() : ctx_(std::make_unique<MetalContext>()) {}

    std::string name() const override { return "metal"; }
    std::string describe() const override { return ctx_->describe(); }

    void prepare(const Graph&, const Plan&, const uint8_t* file, int64_t file_size, int64_t) override {
        // Weights: wrapped in place (the engine's mapping is page aligned); tensors up to
        // 1 GiB never straddle two pieces.
        ctx_->wrap_mapping(file, (uint64_t)file_size, 1ull << 30);
        throw UnsupportedError(
            "metal backend: graph execution is not implemented yet (kernels and host runtime only; "
            "see docs/metal.md). Use backend=\"cpu\".");
    }

    void run(const StepShape&) override { throw UnsupportedError("metal backend: not prepared"); }
    const float* output(int64_t* rows) override {
        *rows = 0;
        return nullptr;
    }
    int64_t kv_cache_bytes() const override { return 0; }

private:
    std::unique_ptr<MetalContext> ctx_;
};

}  // namespace

std::unique_ptr<Backend> make_metal_backend() { return std::make_unique<MetalBackend>(); }

}  // namespace strata::metal
