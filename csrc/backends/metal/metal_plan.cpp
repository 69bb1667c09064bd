#include "metal_plan.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "../../core/errors.h"

namespace strata::metal {

namespace {

// Rows of the weight each simdgroup of a matvec owns (function constant NR, at most 8):
// llama.cpp's mul_vec_q_n uses 4 as well.
constexpr int32_t kMatvecRows = 4;
constexpr int64_t kMatmulTileRows = 64, kMatmulTileCols = 32;
// kernel_attention_f16 keeps head_dim / 32 accumulators per lane, at most 8;
// kernel_attention_tile_f16 head_dim / 8 matrices of Q and of O per simdgroup, at most 32.
constexpr int32_t kAttentionMaxHeadDim = 256;
constexpr int64_t kAttnTileRows = 32;  // query rows per kernel_attention_tile_f16 threadgroup

// STRATA_METAL_ATTN_SPLIT_KEYS: the positions per split of decode attention (metal_plan.h).
int64_t split_keys_from_env() {
    const char* v = std::getenv("STRATA_METAL_ATTN_SPLIT_KEYS");
    if (!v || !*v) return kAttnSplitKeys;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (*end || n < 1 || n > (1 << 20))
        throw StrataError(std::string("STRATA_METAL_ATTN_SPLIT_KEYS must be a positive number of positions, got '") + v + "'");
    return n;
}

int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

uint32_t ceil_div(int64_t a, int64_t b) { return (uint32_t)((a + b - 1) / b); }

// Embedding rows: float tables one thread per element, block formats one per 16 elements
// (metal/embedding.metal).
const char* get_rows_kernel(DType t) {
    switch (t) {
        case DType::F32: return "kernel_get_rows_f32";
        case DType::F16: return "kernel_get_rows_f16";
        case DType::BF16: return "kernel_get_rows_bf16";
        case DType::Q8_0: return "kernel_get_rows_q8_0";
        case DType::Q4_0: return "kernel_get_rows_q4_0";
        case DType::Q4_1: return "kernel_get_rows_q4_1";
        case DType::Q5_0: return "kernel_get_rows_q5_0";
        case DType::Q5_1: return "kernel_get_rows_q5_1";
        case DType::IQ4_NL: return "kernel_get_rows_iq4_nl";
        case DType::Q2_K: return "kernel_get_rows_q2_K";
        case DType::Q3_K: return "kernel_get_rows_q3_K";
        case DType::Q4_K: return "kernel_get_rows_q4_K";
        case DType::Q5_K: return "kernel_get_rows_q5_K";
        case DType::Q6_K: return "kernel_get_rows_q6_K";
        case DType::IQ4_XS: return "kernel_get_rows_iq4_xs";
        default: return nullptr;
    }
}

int64_t get_rows_elements_per_thread(DType t) {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16 ? 1 : 16;
}

// Matvec kernels that multiply block_q8_act activations (quantized first).
const char* matvec_q8_kernel(DType t) {
    switch (t) {
        case DType::Q8_0: return "kernel_matvec_q8_0";
        case DType::Q4_0: return "kernel_matvec_q4_0";
        case DType::Q4_1: return "kernel_matvec_q4_1";
        case DType::Q5_0: return "kernel_matvec_q5_0";
        case DType::Q5_1: return "kernel_matvec_q5_1";
        case DType::IQ4_NL: return "kernel_matvec_iq4_nl";
        // K-quants: super-blocks of 256 are 8 sub-blocks of 32, which meet the same
        // 32-element activation blocks.
        case DType::Q4_K: return "kernel_matvec_q4_K";
        case DType::Q5_K: return "kernel_matvec_q5_K";
        case DType::Q6_K: return "kernel_matvec_q6_K";
        case DType::Q2_K: return "kernel_matvec_q2_K";
        case DType::Q3_K: return "kernel_matvec_q3_K";
        case DType::IQ4_XS: return "kernel_matvec_iq4_xs";
        default: return nullptr;
    }
}

// kernel_matmul's function constant MM_TYPE (metal/strata_args.h), -1 for none.
int32_t matmul_type(DType t) {
    switch (t) {
        case DType::F32: return STRATA_MM_F32;
        case DType::F16: return STRATA_MM_F16;
        case DType::BF16: return STRATA_MM_BF16;
        case DType::Q8_0: return STRATA_MM_Q8_0;
        case DType::Q4_0: return STRATA_MM_Q4_0;
        case DType::Q4_1: return STRATA_MM_Q4_1;
        case DType::Q5_0: return STRATA_MM_Q5_0;
        case DType::Q5_1: return STRATA_MM_Q5_1;
        case DType::IQ4_NL: return STRATA_MM_IQ4_NL;
        case DType::Q2_K: return STRATA_MM_Q2_K;
        case DType::Q3_K: return STRATA_MM_Q3_K;
        case DType::Q4_K: return STRATA_MM_Q4_K;
        case DType::Q5_K: return STRATA_MM_Q5_K;
        case DType::Q6_K: return STRATA_MM_Q6_K;
        case DType::IQ4_XS: return STRATA_MM_IQ4_XS;
        default: return -1;
    }
}

// Matvec kernels that read the f32 activations directly.
const char* matvec_float_kernel(DType t) {
    switch (t) {
        case DType::F16: return "kernel_matvec_f16";
        case DType::BF16: return "kernel_matvec_bf16";
        case DType::F32: return "kernel_matvec_f32";
        default: return nullptr;
    }
}

static_assert(sizeof(RopeArgs) <= kMaxArgsBytes && sizeof(AttnArgs) <= kMaxArgsBytes &&
              sizeof(EmbeddingArgs) <= kMaxArgsBytes && sizeof(RmsNormArgs) <= kMaxArgsBytes &&
              sizeof(EltwiseArgs) <= kMaxArgsBytes && sizeof(MatvecArgs) <= kMaxArgsBytes &&
              sizeof(CopyArgs) <= kMaxArgsBytes && sizeof(LayerNormArgs) <= kMaxArgsBytes &&
              sizeof(ArgmaxArgs) <= kMaxArgsBytes,
              "an argument struct outgrew Dispatch::args");

void bind(Dispatch& d, std::initializer_list<BufferSlice> buffers) {
    d.n_buffers = 0;
    for (const BufferSlice& b : buffers) d.buffers[d.n_buffers++] = b;
}

bool overlaps(const BufferSlice& a, const BufferSlice& b) {
    return a.region == b.region && a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
}

}  // namespace

const char* region_name(Region r) {
    switch (r) {
        case Region::None: return "none";
        case Region::Weight: return "weight";
        case Region::Arena: return "arena";
        case Region::Kv: return "kv";
        case Region::Q8: return "q8";
    }
    return "?";
}

MetalPlan::MetalPlan(const Graph& g, const Plan& plan, int64_t n_ctx) {
    const auto& values = g.values();
    const size_t nv = values.size();
    nodes_ = g.nodes();
    weights_ = g.weights();
    offset_ = plan.offset;
    output_ = g.output();
    if (output_ < 0) throw StrataError("graph has no output");
    // The token of kernel_argmax_f32 lives after the planner's slots, in the host-visible
    // arena: the host reads it in place, as it reads the output.
    argmax_offset_ = align_up(plan.arena_bytes, 16);
    arena_bytes_ = argmax_offset_ + 16;
    weight_of_.assign(nv, -1);
    width_.assign(nv, 0);
    single_row_.assign(nv, 0);
    split_keys_ = split_keys_from_env();

    if (n_ctx > (int64_t)INT32_MAX - plan.max_rows)
        throw UnsupportedError("n_ctx = " + std::to_string(n_ctx) +
                               " is too large for the Metal backend (positions are 32-bit)");
    // The kernels index with 32-bit integers (grid positions, argument structs).
    for (size_t v = 0; v < nv; ++v) {
        const Value& val = values[v];
        width_[v] = val.width;
        single_row_[v] = val.single_row;
        if (val.kind == ValueKind::Weight) {
            weight_of_[v] = val.weight;
            const WeightRef& w = weights_[val.weight];
            if (w.rows > INT32_MAX || row_bytes(w.type, w.width) > INT32_MAX)
                throw UnsupportedError("tensor " + w.name + " is too large for the Metal kernels' 32-bit indices");
        } else if (checked_mul(plan.max_rows, val.width, "activation size") > INT32_MAX) {
            throw UnsupportedError("an activation of " + std::to_string(plan.max_rows) + " x " +
                                   std::to_string(val.width) + " floats is too large for the Metal kernels' 32-bit indices");
        }
    }

    // Every node's kernels; what has none is collected and reported all at once.
    // Each kind once (op, weight type), with the first tensor that needs it.
    std::vector<std::string> missing, example;
    auto lack = [&](const std::string& what, const std::string& tensor = "") {
        if (std::find(missing.begin(), missing.end(), what) != missing.end()) return;
        missing.push_back(what);
        example.push_back(tensor);
    };
    kernels_.assign(nodes_.size(), NodeKernels{});
    kv_.assign(g.n_kv_slots(), KvSlot{});
    int64_t partial_bytes = 0;  // split attention's partial results, after the q8 blocks
    for (size_t i = 0; i < nodes_.size(); ++i) {
        const Node& n = nodes_[i];
        NodeKernels& k = kernels_[i];
        switch (n.op) {
            case Op::Embedding: {
                const WeightRef& w = weights_[weight_of_[n.in[0]]];
                if (const char* name = get_rows_kernel(w.type)) k.main = pipeline_for(name);
                else lack("embedding of " + dtype_name(w.type) + " rows", w.name);
                break;
            }
            case Op::RmsNorm: k.main = pipeline_for("kernel_rms_norm_f32"); break;
            case Op::LayerNorm: k.main = pipeline_for("kernel_layer_norm_f32"); break;
            case Op::MatMul: {
                const WeightRef& w = weights_[weight_of_[n.in[1]]];
                if (const char* name = matvec_q8_kernel(w.type)) {
                    k.pre = pipeline_for("kernel_quantize_q8_act");
                    k.main = pipeline_for(name, "NR", kMatvecRows);
                    const int64_t rows = values[n.in[0]].single_row ? plan.max_single_rows : plan.max_rows;
                    q8_bytes_ = std::max(q8_bytes_, checked_mul(rows * (w.width / 32), sizeof(block_q8_act), "q8 scratch"));
                } else if (const char* name = matvec_float_kernel(w.type)) {
                    k.main = pipeline_for(name, "NR", kMatvecRows);
                } else {
                    lack("matmul with " + dtype_name(w.type) + " weights", w.name);
                    break;
                }
                // Prefill steps: the tile matmul, same operands (q8 activations for blocks).
                const int64_t rows = values[n.in[0]].single_row ? plan.max_single_rows : plan.max_rows;
                if (rows >= kMatmulMinRows) k.tile = pipeline_for("kernel_matmul", "MM_TYPE", matmul_type(w.type));
                break;
            }
            case Op::Add: k.main = pipeline_for("kernel_add_f32"); break;
            case Op::Mul: k.main = pipeline_for("kernel_mul_f32"); break;
            case Op::Scale: k.main = pipeline_for("kernel_scale_f32"); break;
            case Op::Activation:
            case Op::Glu: {
                // ACT: the Activation value (STRATA_ACT_* in strata_args.h).
                k.main = pipeline_for(n.op == Op::Glu ? "kernel_glu_f32" : "kernel_activation_f32", "ACT", (int32_t)n.p.act);
                break;
            }
            case Op::Rope:
                if (n.p.head_dim % 2) lack("rope with an odd head_dim (" + std::to_string(n.p.head_dim) + ")");
                else k.main = pipeline_for("kernel_rope_f32", "ROPE_NEOX", n.p.rope_mode == RopeMode::Neox ? 1 : 0);
                break;
            case Op::Attention: {
                if (n.p.head_dim > kAttentionMaxHeadDim) {
                    lack("attention with head_dim " + std::to_string(n.p.head_dim) + " > " +
                         std::to_string(kAttentionMaxHeadDim));
                    break;
                }
                k.pre = pipeline_for("kernel_kv_append");
                k.main = pipeline_for("kernel_attention_f16");
                if (plan.max_rows >= kAttnPrefillMinRows && n.p.head_dim % 8 == 0)
                    k.tile = pipeline_for("kernel_attention_tile_f16");
                // Split decode: the most splits a step of this node can have, and the partial
                // results (m, l, head_dim accumulators) of that many per (row, head).
                const int64_t seen = n.p.window > 0 ? std::min<int64_t>(n.p.window, n_ctx) : n_ctx;
                const int64_t splits = std::min(kAttnMaxSplits, seen / split_keys_);
                if (splits >= 2) {
                    k.merge = pipeline_for("kernel_attention_merge_f32");
                    const int64_t rows = std::min(plan.max_rows, kAttnPrefillMinRows - 1);
                    partial_bytes = std::max(partial_bytes, checked_mul(checked_mul(rows * n.p.n_head, splits, "attention partials"),
                                                                        (int64_t)(n.p.head_dim + 2) * 4, "attention partials"));
                }
                // Position p lives in row p % capacity; a sliding window keeps window +
                // max_rows - 1 rows, enough for a step's queries to see their whole window.
                KvSlot& s = kv_[n.p.kv_slot];
                s.capacity = n.p.window > 0 ? std::min<int64_t>(n_ctx, n.p.window + plan.max_rows - 1) : n_ctx;
                s.bytes = checked_mul(checked_mul(2, s.capacity, "KV cache"), (int64_t)n.p.n_head_kv * n.p.head_dim, "KV cache");
                s.k_offset = kv_bytes_;
                s.v_offset = checked_add(s.k_offset, align_up(s.bytes, 256), "KV cache");
                kv_bytes_ = checked_add(s.v_offset, align_up(s.bytes, 256), "KV cache");
                break;
            }
            case Op::LastRow:
            case Op::Slice: k.main = pipeline_for("kernel_copy_cols_f32"); break;
        }
    }
    argmax_pipeline_ = pipeline_for("kernel_argmax_f32");
    if (partial_bytes > 0) {
        partial_offset_ = align_up(q8_bytes_, 256);
        q8_bytes_ = checked_add(partial_offset_, partial_bytes, "attention partials");
    }
    if (!missing.empty()) {
        std::string list;
        for (size_t i = 0; i < missing.size(); ++i)
            list += (i ? "; " : "") + missing[i] + (example[i].empty() ? "" : " (first: " + example[i] + ")");
        throw UnsupportedError("the Metal backend has no kernel yet for: " + list +
                               " (docs/metal.md, \"Left to do\"); use backend=\"cpu\"");
    }
}

int32_t MetalPlan::pipeline_for(const char* kernel, const char* fc, int32_t value) {
    const KernelInfo* k = find_kernel(kernel);
    if (!k) throw StrataError(std::string("internal: ") + kernel + " is not in metal/kernels.def");
    ConstValues values;
    if (fc) {
        const int index = function_constant_index(*k, fc);
        if (index < 0) throw StrataError(std::string("internal: ") + kernel + " has no function constant " + fc);
        values.emplace_back(index, value);
    }
    for (size_t i = 0; i < pipelines_.size(); ++i)
        if (pipelines_[i].kernel == k && pipelines_[i].fc == values) return (int32_t)i;
    pipelines_.push_back({k, std::move(values)});
    return (int32_t)pipelines_.size() - 1;
}

BufferSlice MetalPlan::value_slice(int32_t v, int64_t rows, bool written, int64_t first_row) const {
    const int64_t row = width_[v] * 4;  // f32 activations, int32 tokens and positions
    return BufferSlice{Region::Arena, written, -1, offset_[v] + first_row * row, rows * row};
}

BufferSlice MetalPlan::weight_slice(int32_t v) const {
    const WeightRef& w = weights_[weight_of_[v]];
    return BufferSlice{Region::Weight, false, weight_of_[v], 0, w.nbytes};
}

// Appends d with its arguments. Dispatches of one concurrent encoder may run at once, so d
// waits behind a barrier when it touches a range that a dispatch since the last barrier
// touched and either of them writes: read after write, and also write after read or write
// (the arena reuses memory, so a slot can be rewritten while an earlier node reads it).
// Weights are never written and never wait.
void MetalPlan::push(std::vector<Dispatch>& out, Dispatch d, const void* args, size_t args_size) {
    std::memcpy(d.args, args, args_size);
    for (int b = 0; b < d.n_buffers && !d.barrier; ++b) {
        const BufferSlice& s = d.buffers[b];
        if (s.region == Region::None || s.region == Region::Weight) continue;
        for (const BufferSlice& p : pending_)
            if ((p.written || s.written) && overlaps(p, s)) {
                d.barrier = true;
                break;
            }
    }
    if (d.barrier) pending_.clear();
    for (int b = 0; b < d.n_buffers; ++b)
        if (d.buffers[b].region != Region::None && d.buffers[b].region != Region::Weight)
            pending_.push_back(d.buffers[b]);
    out.push_back(d);
}

void MetalPlan::encode(int64_t T, int64_t n_past, bool all_rows, std::vector<Dispatch>& out) {
    out.clear();
    // At most 3 dispatches a node (kv_append, attention, merge), whatever the step: after the
    // first step no step allocates, even one that splits where the first did not.
    out.reserve(3 * nodes_.size() + 1);  // + kernel_argmax_f32 (encode_argmax)
    pending_.clear();  // the previous step's command buffer has completed
    int32_t q8_value = -1;  // the value whose int8 copy the q8 region holds
    const BufferSlice none{};
    // Threadgroup size from kernels.def; grid in threadgroups.
    auto launch = [&](Dispatch& d, int32_t pipeline, uint32_t gx, uint32_t gy = 1, uint32_t gz = 1) {
        d.pipeline = pipeline;
        d.threads[0] = (uint32_t)pipelines_[pipeline].kernel->threads;
        d.groups[0] = std::max<uint32_t>(gx, 1);
        d.groups[1] = gy;
        d.groups[2] = gz;
    };
    auto threads = [&](int32_t pipeline) { return (int64_t)pipelines_[pipeline].kernel->threads; };

    for (size_t i = 0; i < nodes_.size(); ++i) {
        const Node& n = nodes_[i];
        const NodeKernels& k = kernels_[i];
        const int32_t x = n.in[0];
        const int64_t rows = rows_of(x, T, all_rows);
        Dispatch d;
        d.node = (int32_t)i;
        switch (n.op) {
            case Op::Embedding: {
                const WeightRef& w = weights_[weight_of_[x]];
                const EmbeddingArgs a{(int32_t)T, (int32_t)w.width, (int32_t)w.rows, (int32_t)row_bytes(w.type, w.width)};
                bind(d, {weight_slice(x), value_slice(n.in[1], T, false), value_slice(n.out, T, true)});
                launch(d, k.main, ceil_div(w.width / get_rows_elements_per_thread(w.type), threads(k.main)), (uint32_t)T);
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::RmsNorm: {
                const int64_t W = n.p.head_dim > 0 ? n.p.head_dim : width_[x];
                const int64_t groups = rows * (width_[x] / W);
                const RmsNormArgs a{(int32_t)groups, (int32_t)W, n.p.eps, n.in[1] >= 0 ? 1 : 0};
                // Without a weight the kernel never reads buffer 2; x is bound there so that
                // every buffer the function declares is bound (Metal's validation layer).
                bind(d, {value_slice(x, rows, false), n.in[1] >= 0 ? weight_slice(n.in[1]) : value_slice(x, rows, false),
                         value_slice(n.out, rows, true)});
                launch(d, k.main, (uint32_t)groups);
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::LayerNorm: {
                const int32_t w = n.in[1], b = n.in[2];
                const LayerNormArgs a{(int32_t)rows, (int32_t)width_[x], n.p.eps, w >= 0 ? 1 : 0, b >= 0 ? 1 : 0};
                // As for rms_norm: x stands in for an absent weight or bias, never read.
                bind(d, {value_slice(x, rows, false), w >= 0 ? weight_slice(w) : value_slice(x, rows, false),
                         b >= 0 ? weight_slice(b) : value_slice(x, rows, false), value_slice(n.out, rows, true)});
                launch(d, k.main, (uint32_t)rows);
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::MatMul: {
                const int32_t wv = n.in[1];
                const WeightRef& w = weights_[weight_of_[wv]];
                const MatvecArgs a{(int32_t)w.width, (int32_t)w.rows, (int32_t)rows, (int32_t)row_bytes(w.type, w.width)};
                const int64_t sg = threads(k.main) / 32;
                if (k.pre >= 0) {
                    const int64_t blocks = rows * (w.width / 32);
                    const BufferSlice q8{Region::Q8, false, -1, 0, blocks * (int64_t)sizeof(block_q8_act)};
                    if (q8_value != x) {  // q, k and v projections share one quantized input
                        Dispatch q;
                        q.node = (int32_t)i;
                        BufferSlice q8w = q8;
                        q8w.written = true;
                        bind(q, {value_slice(x, rows, false), q8w});
                        launch(q, k.pre, ceil_div(blocks, threads(k.pre) / 32));
                        push(out, q, &a, sizeof a);
                        q8_value = x;
                    }
                    bind(d, {weight_slice(wv), q8, value_slice(n.out, rows, true)});
                } else {
                    bind(d, {weight_slice(wv), value_slice(x, rows, false), value_slice(n.out, rows, true)});
                }
                if (rows >= kMatmulMinRows && k.tile >= 0)
                    launch(d, k.tile, ceil_div(w.rows, kMatmulTileRows), ceil_div(rows, kMatmulTileCols));
                else
                    launch(d, k.main, ceil_div(w.rows, kMatvecRows * sg), (uint32_t)rows);
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::Add:
            case Op::Mul:
            case Op::Glu: {
                const int32_t b = n.in[1];
                const bool broadcast = weight_of_[b] >= 0;
                const EltwiseArgs a{(int32_t)(rows * width_[x]), (int32_t)width_[x], broadcast ? 1 : 0, 1.0f};
                bind(d, {value_slice(x, rows, false), broadcast ? weight_slice(b) : value_slice(b, rows, false),
                         value_slice(n.out, rows, true)});
                launch(d, k.main, ceil_div(rows * width_[x], threads(k.main)));
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::Scale:
            case Op::Activation: {
                const EltwiseArgs a{(int32_t)(rows * width_[x]), (int32_t)width_[x], 0, n.p.scale};
                bind(d, {value_slice(x, rows, false), none, value_slice(n.out, rows, true)});
                launch(d, k.main, ceil_div(rows * width_[x], threads(k.main)));
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::Rope: {
                const int32_t f = n.in[1];
                const RopeArgs a{(int32_t)T, (int32_t)width_[x], n.p.n_head, n.p.head_dim, n.p.n_rot, (int32_t)n_past,
                                 n.p.rope_freq_scale, std::log2(n.p.rope_base), n.p.rope_attn_factor, f >= 0 ? 1 : 0};
                // As for rms_norm: x stands in for absent frequency factors, never read.
                bind(d, {value_slice(x, T, false), f >= 0 ? weight_slice(f) : value_slice(x, T, false),
                         value_slice(n.out, T, true)});
                launch(d, k.main, ceil_div(n.p.head_dim / 2, threads(k.main)), (uint32_t)n.p.n_head, (uint32_t)T);
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::Attention: {
                const KvSlot& s = kv_[n.p.kv_slot];
                AttnArgs a{(int32_t)T, n.p.n_head, n.p.n_head_kv, n.p.head_dim, (int32_t)n_past,
                           (int32_t)s.capacity, n.p.window, n.p.attn_scale, n.p.softcap, 1};
                const BufferSlice kc{Region::Kv, false, -1, s.k_offset, s.bytes};
                const BufferSlice vc{Region::Kv, false, -1, s.v_offset, s.bytes};
                BufferSlice kw = kc, vw = vc;
                kw.written = vw.written = true;
                Dispatch append;
                append.node = (int32_t)i;
                bind(append, {value_slice(n.in[1], T, false), value_slice(n.in[2], T, false), kw, vw});
                launch(append, k.pre, ceil_div(T * width_[n.in[1]], threads(k.pre)));
                push(out, append, &a, sizeof a);
                if (T >= kAttnPrefillMinRows && k.tile >= 0) {  // prefill: 32 query rows per threadgroup
                    bind(d, {value_slice(x, T, false), kc, vc, value_slice(n.out, T, true)});
                    launch(d, k.tile, ceil_div(T, kAttnTileRows), (uint32_t)n.p.n_head);
                    push(out, d, &a, sizeof a);
                    break;
                }
                // Decode: the positions the step's last row sees decide the split (metal_plan.h).
                const int64_t last = n_past + T - 1;
                const int64_t visible = n.p.window > 0 ? std::min<int64_t>(n.p.window, last + 1) : last + 1;
                const int64_t n_split = k.merge >= 0 && T < kAttnPrefillMinRows
                                            ? std::clamp<int64_t>(visible / split_keys_, 1, kAttnMaxSplits)
                                            : 1;
                if (n_split == 1) {
                    bind(d, {value_slice(x, T, false), kc, vc, value_slice(n.out, T, true)});
                    launch(d, k.main, (uint32_t)n.p.n_head, (uint32_t)T);
                    push(out, d, &a, sizeof a);
                    break;
                }
                a.n_split = (int32_t)n_split;
                const int64_t part = T * n.p.n_head * n_split * (n.p.head_dim + 2) * 4;
                const BufferSlice partial{Region::Q8, false, -1, partial_offset_, part};
                BufferSlice partial_w = partial;
                partial_w.written = true;
                bind(d, {value_slice(x, T, false), kc, vc, partial_w});
                launch(d, k.main, (uint32_t)n.p.n_head, (uint32_t)T, (uint32_t)n_split);
                push(out, d, &a, sizeof a);
                Dispatch merge;
                merge.node = (int32_t)i;
                bind(merge, {partial, value_slice(n.out, T, true)});
                launch(merge, k.merge, (uint32_t)n.p.n_head, (uint32_t)T);
                push(out, merge, &a, sizeof a);
                break;
            }
            case Op::LastRow: {
                const int64_t W = width_[x], first = all_rows ? 0 : T - 1, kept = T - first;
                const CopyArgs a{(int32_t)kept, (int32_t)W, 0, (int32_t)W};
                bind(d, {value_slice(x, kept, false, first), value_slice(n.out, kept, true)});
                launch(d, k.main, ceil_div(W, threads(k.main)), (uint32_t)kept);
                push(out, d, &a, sizeof a);
                break;
            }
            case Op::Slice: {
                const CopyArgs a{(int32_t)rows, (int32_t)width_[x], n.p.offset, n.p.width};
                bind(d, {value_slice(x, rows, false), value_slice(n.out, rows, true)});
                launch(d, k.main, ceil_div(n.p.width, threads(k.main)), (uint32_t)rows);
                push(out, d, &a, sizeof a);
                break;
            }
        }
    }
}

void MetalPlan::encode_argmax(int64_t T, bool all_rows, std::vector<Dispatch>& out) {
    if (out.empty()) pending_.clear();  // a command buffer of its own
    const int64_t rows = rows_of(output_, T, all_rows);
    const ArgmaxArgs a{(int32_t)width_[output_], 1};
    Dispatch d;  // node -1: not a graph node
    bind(d, {value_slice(output_, 1, false, rows - 1), BufferSlice{Region::Arena, true, -1, argmax_offset_, 4}});
    d.pipeline = argmax_pipeline_;
    d.threads[0] = (uint32_t)pipelines_[argmax_pipeline_].kernel->threads;
    push(out, d, &a, sizeof a);
}

bool MetalPlan::can_truncate(int64_t n_past, int64_t n) const {
    // A ring buffer has overwritten positions before n_past - capacity; the next token (at
    // position n) needs positions from n - window + 1 on.
    for (const Node& node : nodes_) {
        if (node.op != Op::Attention || node.p.window <= 0) continue;
        const KvSlot& s = kv_[node.p.kv_slot];
        if (std::max<int64_t>(0, n - node.p.window + 1) < n_past - s.capacity) return false;
    }
    return true;
}

}  // namespace strata::metal
