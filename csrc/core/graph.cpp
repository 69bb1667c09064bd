#include "graph.h"

#include "errors.h"

namespace strata {

const char* op_name(Op op) {
    switch (op) {
        case Op::Embedding: return "embedding";
        case Op::RmsNorm: return "rms_norm";
        case Op::LayerNorm: return "layer_norm";
        case Op::MatMul: return "matmul";
        case Op::Add: return "add";
        case Op::Mul: return "mul";
        case Op::Scale: return "scale";
        case Op::Activation: return "activation";
        case Op::Glu: return "glu";
        case Op::Rope: return "rope";
        case Op::Attention: return "attention";
        case Op::LastRow: return "last_row";
        case Op::Slice: return "slice";
    }
    return "?";
}

int32_t Graph::weight(const std::string& name, DType type, int64_t offset, int64_t nbytes,
                      int64_t width, int64_t rows) {
    if (width <= 0 || rows <= 0 || offset < 0)
        throw StrataError("weight " + name + ": bad shape or offset");
    const int64_t expect = checked_mul(row_bytes(type, width), rows, "weight size");
    if (expect != nbytes)
        throw StrataError("weight " + name + ": " + std::to_string(nbytes) + " bytes given, " +
                          std::to_string(expect) + " expected for its shape and type");
    weights_.push_back({name, type, offset, nbytes, width, rows});
    values_.push_back({ValueKind::Weight, width, false, (int32_t)weights_.size() - 1});
    return (int32_t)values_.size() - 1;
}

int32_t Graph::tokens() {
    if (tokens_ >= 0) throw StrataError("a graph has one tokens input");
    values_.push_back({ValueKind::Tokens, 1, false, -1});
    tokens_ = (int32_t)values_.size() - 1;
    return tokens_;
}

int32_t Graph::positions() {
    if (positions_ >= 0) throw StrataError("a graph has one positions input");
    values_.push_back({ValueKind::Positions, 1, false, -1});
    positions_ = (int32_t)values_.size() - 1;
    return positions_;
}

void Graph::set_output(int32_t v) {
    const Value& val = value(v, "output");
    if (val.kind != ValueKind::Activation) throw StrataError("graph output must be an activation");
    output_ = v;
}

const Value& Graph::value(int32_t id, const char* what) const {
    if (id < 0 || id >= (int32_t)values_.size())
        throw StrataError(std::string("unknown value for ") + what);
    return values_[id];
}

int32_t Graph::add(Op op, const std::vector<int32_t>& inputs, OpParams p) {
    const std::string where = std::string(op_name(op)) + " (node " + std::to_string(nodes_.size()) + ")";
    auto need = [&](size_t lo, size_t hi) {
        if (inputs.size() < lo || inputs.size() > hi)
            throw StrataError(where + ": wrong number of inputs");
    };
    auto act = [&](size_t i) -> const Value& {
        const Value& v = value(inputs[i], where.c_str());
        if (v.kind != ValueKind::Activation) throw StrataError(where + ": input " + std::to_string(i) + " must be an activation");
        return v;
    };
    auto wgt = [&](size_t i) -> const WeightRef& {
        const Value& v = value(inputs[i], where.c_str());
        if (v.kind != ValueKind::Weight) throw StrataError(where + ": input " + std::to_string(i) + " must be a weight");
        return weights_[v.weight];
    };
    // A per-channel vector (norm weight, bias): f32, one row, `width` wide.
    auto channel_vector = [&](size_t i, int64_t width) {
        const WeightRef& w = wgt(i);
        if (w.type != DType::F32 || w.rows != 1 || w.width != width)
            throw UnsupportedError(where + ": " + w.name + " must be an F32 vector of " + std::to_string(width));
    };

    Value out{ValueKind::Activation};
    switch (op) {
        case Op::Embedding: {
            need(2, 2);
            const WeightRef& w = wgt(0);
            const ValueKind k = value(inputs[1], "embedding").kind;
            if (k != ValueKind::Tokens && k != ValueKind::Positions)
                throw StrataError(where + ": input 1 must be the tokens or the positions");
            out.width = w.width;
            break;
        }
        case Op::RmsNorm:
        case Op::LayerNorm: {
            need(1, op == Op::RmsNorm ? 2 : 3);
            const Value& x = act(0);
            int64_t group = x.width;
            if (op == Op::RmsNorm && p.head_dim > 0) {
                group = p.head_dim;
                if (x.width % group) throw StrataError(where + ": width is not a multiple of head_dim");
            } else {
                p.head_dim = 0;
            }
            for (size_t i = 1; i < inputs.size(); ++i) channel_vector(i, group);
            out.width = x.width;
            out.single_row = x.single_row;
            break;
        }
        case Op::MatMul: {
            need(2, 2);
            const Value& x = act(0);
            const WeightRef& w = wgt(1);
            if (w.width != x.width)
                throw StrataError(where + ": " + w.name + " rows are " + std::to_string(w.width) + " wide, input is " + std::to_string(x.width));
            out.width = w.rows;
            out.single_row = x.single_row;
            break;
        }
        case Op::Add:
        case Op::Mul:
        case Op::Glu: {
            need(2, 2);
            const Value& a = act(0);
            const Value& b = value(inputs[1], where.c_str());
            if (b.kind == ValueKind::Weight && op != Op::Glu) channel_vector(1, a.width);
            else {
                const Value& bb = act(1);
                if (bb.width != a.width || bb.single_row != a.single_row) throw StrataError(where + ": input shapes differ");
            }
            out.width = a.width;
            out.single_row = a.single_row;
            break;
        }
        case Op::Scale:
        case Op::Activation:
        case Op::LastRow: {
            need(1, 1);
            const Value& x = act(0);
            out.width = x.width;
            out.single_row = op == Op::LastRow ? true : x.single_row;
            break;
        }
        case Op::Slice: {
            need(1, 1);
            const Value& x = act(0);
            if (p.offset < 0 || p.width <= 0 || (int64_t)p.offset + p.width > x.width)
                throw StrataError(where + ": columns out of range");
            out.width = p.width;
            out.single_row = x.single_row;
            break;
        }
        case Op::Rope: {
            need(1, 2);
            const Value& x = act(0);
            if (p.n_rot == 0) p.n_rot = p.head_dim;
            if (inputs.size() == 2) channel_vector(1, p.n_rot / 2);
            if (p.n_head <= 0 || p.head_dim <= 0 || (int64_t)p.n_head * p.head_dim != x.width || p.n_rot > p.head_dim || p.n_rot % 2)
                throw StrataError(where + ": n_head * head_dim must equal the input width, n_rot even and <= head_dim");
            if (x.single_row) throw StrataError(where + ": rope needs every row's position");
            out.width = x.width;
            break;
        }
        case Op::Attention: {
            need(3, 3);
            const Value& q = act(0);
            const Value& k = act(1);
            const Value& v = act(2);
            if (p.n_head <= 0 || p.n_head_kv <= 0 || p.head_dim <= 0 || p.n_head % p.n_head_kv)
                throw StrataError(where + ": n_head must be a positive multiple of n_head_kv");
            if (q.width != (int64_t)p.n_head * p.head_dim || k.width != (int64_t)p.n_head_kv * p.head_dim || v.width != k.width)
                throw StrataError(where + ": q/k/v widths do not match the head counts");
            if (q.single_row || k.single_row || v.single_row) throw StrataError(where + ": attention needs every row");
            if (p.attn_scale == 0.0f) p.attn_scale = 1.0f / __builtin_sqrtf((float)p.head_dim);
            if (p.window < 0) throw StrataError(where + ": negative window");
            p.kv_slot = n_kv_slots_++;
            out.width = q.width;
            break;
        }
    }
    Node n{op};
    for (size_t i = 0; i < inputs.size(); ++i) n.in[i] = inputs[i];
    n.p = p;
    values_.push_back(out);
    n.out = (int32_t)values_.size() - 1;
    nodes_.push_back(n);
    return n.out;
}

}  // namespace strata
