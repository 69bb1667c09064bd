// The planner: turns a graph into a memory plan once, before any step runs.
//
// Every activation gets an offset in one arena sized for `max_rows` tokens per step.
// Values whose lifetimes do not overlap share memory, so the arena holds only a few layers'
// worth of activations, and nothing is allocated per token. Backends allocate the arena
// in their own memory (host RAM, device memory) from `arena_bytes`.
#pragma once

#include <cstdint>
#include <vector>

#include "graph.h"

namespace strata {

struct Plan {
    int64_t max_rows = 0;
    // Rows planned for values after a LastRow (the logits): 1 in a normal step, but when
    // every position's logits are wanted the engine runs steps of at most this many rows.
    int64_t max_single_rows = 0;
    std::vector<int64_t> offset;     // per value: arena offset, -1 for weights
    std::vector<int32_t> last_use;   // per value: index of the last node reading it
    int64_t arena_bytes = 0;
    int64_t max_width = 0;           // widest activation (scratch sizing)
};

constexpr int64_t kArenaAlign = 64;

// Bytes of one row of a value in the arena: f32 activations, int32 tokens.
inline int64_t value_row_bytes(const Value& v) { return v.width * 4; }

Plan make_plan(const Graph& g, int64_t max_rows, int64_t max_single_rows = 64);

}  // namespace strata
