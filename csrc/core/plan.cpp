#include "plan.h"

#include <algorithm>

#include "errors.h"

namespace strata {

namespace {
int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }
}  // namespace

Plan make_plan(const Graph& g, int64_t max_rows, int64_t max_single_rows) {
    if (max_rows <= 0) throw StrataError("max_rows must be positive");
    if (g.output() < 0) throw StrataError("graph has no output");
    const auto& values = g.values();
    const auto& nodes = g.nodes();
    Plan plan;
    plan.max_rows = max_rows;
    plan.max_single_rows = std::max<int64_t>(1, std::min(max_rows, max_single_rows));
    plan.offset.assign(values.size(), -1);
    plan.last_use.assign(values.size(), -1);
    for (int32_t i = 0; i < (int32_t)nodes.size(); ++i)
        for (int32_t in : nodes[i].in)
            if (in >= 0) plan.last_use[in] = i;
    plan.last_use[g.output()] = (int32_t)nodes.size();  // read after the step

    auto bytes_of = [&](int32_t v) {
        const Value& val = values[v];
        const int64_t rows = val.single_row ? plan.max_single_rows : max_rows;
        return align_up(checked_mul(rows, value_row_bytes(val), "activation size"), kArenaAlign);
    };

    // Greedy slot assignment: a slot is reusable once the last reader of its value has run and
    // one node more. Outputs never alias their node's inputs (kernels are not in-place), nor the
    // inputs of the node before it: backends run a node and the next as one launch (add and
    // rms_norm, rope of q and of k) whose blocks may still read the first node's inputs while
    // others write the second node's output. It costs about one slot of the widest activation
    // (SmolLM2 at 512 rows: 21.2 -> 24.4 MB).
    struct Slot {
        int64_t bytes = 0;
        int32_t free_after = -1;  // node index of the last read of the value it holds
    };
    std::vector<Slot> slots;
    std::vector<int32_t> slot_of(values.size(), -1);
    auto take_slot = [&](int32_t v, int32_t node_index) {
        const int64_t need = bytes_of(v);
        int best = -1;
        for (int s = 0; s < (int)slots.size(); ++s) {
            if (slots[s].free_after + 1 >= node_index) continue;
            // Prefer the smallest slot that already fits, else the largest to grow.
            if (best < 0) { best = s; continue; }
            const bool fits = slots[s].bytes >= need, best_fits = slots[best].bytes >= need;
            if ((fits && (!best_fits || slots[s].bytes < slots[best].bytes)) ||
                (!fits && !best_fits && slots[s].bytes > slots[best].bytes))
                best = s;
        }
        if (best < 0) {
            slots.push_back({});
            best = (int)slots.size() - 1;
        }
        slots[best].bytes = std::max(slots[best].bytes, need);
        slots[best].free_after = plan.last_use[v] < 0 ? node_index : plan.last_use[v];
        slot_of[v] = best;
    };

    if (g.tokens_value() >= 0) take_slot(g.tokens_value(), -1);
    if (g.positions_value() >= 0) take_slot(g.positions_value(), -1);
    for (int32_t i = 0; i < (int32_t)nodes.size(); ++i) {
        take_slot(nodes[i].out, i);
        plan.max_width = std::max(plan.max_width, values[nodes[i].out].width);
    }

    std::vector<int64_t> slot_offset(slots.size());
    int64_t total = 0;
    for (size_t s = 0; s < slots.size(); ++s) {
        slot_offset[s] = total;
        total = checked_add(total, slots[s].bytes, "arena size");
    }
    for (size_t v = 0; v < values.size(); ++v)
        if (slot_of[v] >= 0) plan.offset[v] = slot_offset[slot_of[v]];
    plan.arena_bytes = total;
    return plan;
}

}  // namespace strata
