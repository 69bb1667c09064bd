// The Metal backend's step plan, in plain C++ (no Objective-C), so that Linux can check it:
// for every node of a planned graph, which kernel of metal/kernels.def it dispatches, with
// which argument struct (metal/strata_args.h), which buffers at which byte offsets, which
// grid and threadgroup size, and whether a buffer barrier must come before it.
//
// metal_backend.mm replays the list through MetalContext on a Mac. On Linux,
// _core.metal_dispatch_plan exposes it to tests/metal/test_metal_plan.py, which checks the
// barriers and runs the whole list through the MSL harness against the CPU backend.
//
// Memory regions (each one Metal buffer, or the wrapped model file for weights):
//   Arena  the planner's activation arena (host-visible: tokens and positions are written
//          into it before a step, the output read from it after), then 16 bytes for the
//          int32 kernel_argmax_f32 writes (argmax_offset());
//   Kv     every attention layer's fp16 K then V cache, slot after slot;
//   Q8     scratch: the int8 copy of the activation a quantized matmul multiplies, then (from
//          attention_partial_offset()) the split decode attention's partial results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../../core/graph.h"
#include "../../core/plan.h"
#include "kernel_table.h"

namespace strata::metal {

enum class Region : uint8_t { None, Weight, Arena, Kv, Q8 };
const char* region_name(Region r);

// A buffer binding: a byte range of a region; for Region::Weight, of weight `weight`.
// `bytes` is the extent the kernel may touch, what barrier placement compares.
struct BufferSlice {
    Region region = Region::None;
    bool written = false;
    int32_t weight = -1;
    int64_t offset = 0;
    int64_t bytes = 0;
};

// A pipeline: one kernel with its function-constant values.
struct Specialisation {
    const KernelInfo* kernel;
    ConstValues fc;
};

// Steps of at least this many rows multiply on kernel_matmul's simdgroup-matrix tiles
// (64 weight rows x 32 activation rows per threadgroup of 128 threads); fewer rows take the
// matvecs, one simdgroup per NR weight rows per activation row (Backend::batch_kernel_rows).
constexpr int64_t kMatmulMinRows = 8;
// Attention: steps of at least this many rows run kernel_attention_tile_f16 (32 query rows
// of a head per threadgroup, when head_dim % 8 == 0); fewer rows run kernel_attention_f16,
// a threadgroup per (head, row), split over the keys as below.
constexpr int64_t kAttnPrefillMinRows = kMatmulMinRows;
// Split-KV decode (flash-decoding): a step of fewer than kAttnPrefillMinRows rows whose last
// row sees `visible` positions runs n_split = min(kAttnMaxSplits, visible / split_keys)
// threadgroups per (head, row), each over a contiguous range of at least split_keys
// positions, then kernel_attention_merge_f32; below 2 * split_keys positions, one.
// split_keys = kAttnSplitKeys unless STRATA_METAL_ATTN_SPLIT_KEYS says otherwise (tests,
// tuning on a Mac).
constexpr int64_t kAttnSplitKeys = 256;
constexpr int64_t kAttnMaxSplits = 32;
constexpr int kMaxBuffers = 4;       // the most any kernel of kernels.def binds after args
constexpr size_t kMaxArgsBytes = 40; // the largest argument structs (RopeArgs, AttnArgs)

struct Dispatch {
    int32_t node = -1;      // the graph node it computes (part of); -1: the argmax of the output
    int32_t pipeline = -1;  // index into MetalPlan::pipelines()
    bool barrier = false;   // memoryBarrierWithScope:MTLBarrierScopeBuffers before it
    uint32_t groups[3] = {1, 1, 1};
    uint32_t threads[3] = {1, 1, 1};
    int32_t n_buffers = 0;  // bound at indices 1..n_buffers (Region::None: nothing bound)
    BufferSlice buffers[kMaxBuffers];
    alignas(4) uint8_t args[kMaxArgsBytes] = {};
};

class MetalPlan {
public:
    // Checks that every node has a Metal kernel (else UnsupportedError naming each missing
    // op / weight type) and lays out the KV cache and the q8 scratch.
    MetalPlan(const Graph& g, const Plan& plan, int64_t n_ctx);

    const std::vector<Specialisation>& pipelines() const { return pipelines_; }
    int64_t arena_bytes() const { return arena_bytes_; }
    int64_t kv_bytes() const { return kv_bytes_; }
    int64_t q8_bytes() const { return q8_bytes_; }  // the whole Q8 scratch region
    int64_t attention_partial_offset() const { return partial_offset_; }
    int64_t attention_split_keys() const { return split_keys_; }
    int64_t offset_of(int32_t value) const { return offset_[value]; }  // arena offset
    int64_t argmax_offset() const { return argmax_offset_; }           // arena offset of the token
    int32_t argmax_pipeline() const { return argmax_pipeline_; }
    int64_t rows_of(int32_t value, int64_t T, bool all_rows) const {
        return (single_row_[value] && !all_rows) ? 1 : T;
    }

    // The dispatches of one step of T rows at positions n_past.. (T <= max_rows and
    // n_past + T <= n_ctx, checked by the caller). `out` is cleared and refilled; its
    // capacity is kept, so steps after the first allocate nothing.
    void encode(int64_t T, int64_t n_past, bool all_rows, std::vector<Dispatch>& out);

    // Greedy decoding on the GPU (Backend::device_argmax): appends kernel_argmax_f32 over the
    // last row of the output of a step of T rows (one threadgroup), writing one int32 at
    // argmax_offset() in the arena. Called right after encode() with that step's list, it
    // joins the step's command buffer, with a barrier exactly where the rule of push() puts
    // one (after the output's last write); called with an empty `out`, it is a command
    // buffer of its own after the step's has completed (no barrier).
    void encode_argmax(int64_t T, bool all_rows, std::vector<Dispatch>& out);

    // Whether positions [0, n_past) in the cache still hold what a continuation from
    // position n needs (sliding-window ring buffers forget old positions).
    bool can_truncate(int64_t n_past, int64_t n) const;

private:
    struct KvSlot {
        int64_t k_offset = 0, v_offset = 0, bytes = 0, capacity = 0;
    };
    struct NodeKernels {
        int32_t main = -1;  // the node's kernel
        int32_t pre = -1;   // quantize_q8_act before a quantized matmul, kv_append before attention
        int32_t tile = -1;  // kernel_matmul / kernel_attention_tile_f16 for steps of 8 rows or more
        int32_t merge = -1; // attention: kernel_attention_merge_f32 when the keys may be split
    };

    int32_t pipeline_for(const char* kernel, const char* fc = nullptr, int32_t value = 0);
    BufferSlice value_slice(int32_t v, int64_t rows, bool written, int64_t first_row = 0) const;
    BufferSlice weight_slice(int32_t v) const;
    void push(std::vector<Dispatch>& out, Dispatch d, const void* args, size_t args_size);

    std::vector<Node> nodes_;
    std::vector<WeightRef> weights_;
    std::vector<int32_t> weight_of_;  // per value: weight index or -1
    std::vector<int64_t> width_, offset_;
    std::vector<uint8_t> single_row_;
    std::vector<NodeKernels> kernels_;
    std::vector<KvSlot> kv_;
    std::vector<Specialisation> pipelines_;
    std::vector<BufferSlice> pending_;  // accesses since the last barrier
    int64_t arena_bytes_ = 0, kv_bytes_ = 0, q8_bytes_ = 0, partial_offset_ = 0, argmax_offset_ = 0;
    int32_t output_ = -1, argmax_pipeline_ = -1;
    int64_t split_keys_ = kAttnSplitKeys;
};

}  // namespace strata::metal
