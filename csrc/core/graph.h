// The step graph: what a model file describes once and the core runs many times.
//
// A graph computes one step for a batch of T tokens of one sequence (T = the prompt chunk
// during prefill, 1 during decode). Every activation is a matrix of T rows (or 1 row after
// `last_row`) by `width` f32 columns, so the same graph serves every T up to the planned
// maximum: shapes are fixed per row, only the row count varies per step.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"

namespace strata {

enum class Op : uint8_t {
    Embedding,   // in: weight table, tokens            -> rows of the table, as f32
    RmsNorm,     // in: x, [weight]                     -> x / rms(x) (* weight), per row or
                 //     per head_dim-wide group of a row (q/k norms) when p.head_dim is set
    LayerNorm,   // in: x, [weight], [bias]             -> (x - mean) / std (* weight + bias)
    MatMul,      // in: x, weight (rows x width)        -> x @ weight^T
    Add,         // in: a, b (b may be a 1-row weight: broadcast)
    Mul,         // in: a, b (b may be a 1-row weight: broadcast)
    Scale,       // in: x                               -> x * p.scale
    Activation,  // in: x                               -> act(x)
    Glu,         // in: gate, up                        -> act(gate) * up
    Rope,        // in: x (n_head * head_dim wide), [freq factors: n_rot/2 divisors of each angle]
    Attention,   // in: q, k, v (rope already applied)  -> softmax(q k^T * scale) v over the KV cache
    LastRow,     // in: x                               -> its last row (all rows when asked)
    Slice,       // in: x                               -> columns [p.offset, p.offset + p.width)
};
constexpr int kNumOps = 13;

enum class Activation : uint8_t { Silu = 0, Gelu = 1, GeluTanh = 2 };
enum class RopeMode : uint8_t { Normal = 0, Neox = 1 };  // adjacent pairs vs. halves

const char* op_name(Op op);

struct OpParams {
    float eps = 1e-5f;           // norms
    float scale = 1.0f;          // Scale
    float attn_scale = 0.0f;     // Attention: scale of q.k (0 = 1/sqrt(head_dim))
    Activation act = Activation::Silu;
    int32_t n_head = 0;          // Rope, Attention
    int32_t n_head_kv = 0;       // Attention
    int32_t head_dim = 0;        // Rope, Attention
    int32_t n_rot = 0;           // Rope: rotated dims per head (0 = head_dim)
    RopeMode rope_mode = RopeMode::Normal;
    float rope_base = 10000.0f;
    float rope_freq_scale = 1.0f;  // linear scaling: position * freq_scale
    int32_t window = 0;          // Attention: sliding window in tokens (0 = full causal)
    float softcap = 0.0f;        // Attention: logit soft-cap (0 = off)
    int32_t kv_slot = -1;        // Attention: which KV cache slot (set by the graph)
    int32_t offset = 0;          // Slice: first column
    int32_t width = 0;           // Slice: number of columns
    float rope_attn_factor = 1.0f;  // Rope: scales cos and sin (LongRoPE / YaRN magnitude)
};

enum class ValueKind : uint8_t { Weight, Tokens, Positions, Activation };

// A weight lives in the model file, read in place: [offset, offset + nbytes) of the mapping.
struct WeightRef {
    std::string name;
    DType type;
    int64_t offset;
    int64_t nbytes;
    int64_t width;  // elements per row (GGUF ne[0])
    int64_t rows;   // number of rows (product of the other dims)
};

struct Value {
    ValueKind kind;
    int64_t width = 0;        // f32 elements per row (weights: per row of the weight)
    bool single_row = false;  // activation derived from a LastRow (1 row per step)
    int32_t weight = -1;      // index into Graph::weights for kind == Weight
};

struct Node {
    Op op;
    std::array<int32_t, 3> in{-1, -1, -1};
    int32_t out = -1;
    OpParams p;
};

class Graph {
public:
    // Declares a weight; the range is checked against the mapping when an engine is built.
    int32_t weight(const std::string& name, DType type, int64_t offset, int64_t nbytes,
                   int64_t width, int64_t rows);
    // The step's token ids (int32, one row per token). At most one per graph.
    int32_t tokens();
    // The step's absolute positions n_past + row (int32), e.g. for learned position
    // embeddings. At most one per graph.
    int32_t positions();
    // Appends a node, checks its inputs' shapes and returns its output value.
    int32_t add(Op op, const std::vector<int32_t>& inputs, OpParams p);
    void set_output(int32_t value);

    const std::vector<Value>& values() const { return values_; }
    const std::vector<Node>& nodes() const { return nodes_; }
    const std::vector<WeightRef>& weights() const { return weights_; }
    int32_t output() const { return output_; }
    int32_t tokens_value() const { return tokens_; }
    int32_t positions_value() const { return positions_; }
    int32_t n_kv_slots() const { return n_kv_slots_; }

private:
    const Value& value(int32_t id, const char* what) const;
    std::vector<Value> values_;
    std::vector<Node> nodes_;
    std::vector<WeightRef> weights_;
    int32_t tokens_ = -1;
    int32_t positions_ = -1;
    int32_t output_ = -1;
    int32_t n_kv_slots_ = 0;
};

}  // namespace strata
