#include "cpu_backend.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>

#include "../../core/errors.h"
#include "../../core/thread_pool.h"

namespace strata::cpu {

namespace {

// 64-byte aligned buffer, freed with its owner.
struct AlignedBuffer {
    struct Free {
        void operator()(void* p) const { std::free(p); }
    };
    std::unique_ptr<uint8_t, Free> ptr;
    int64_t bytes = 0;
    void allocate(int64_t n, const char* what) {
        const int64_t rounded = (n + 63) / 64 * 64;
        void* p = rounded ? std::aligned_alloc(64, (size_t)rounded) : nullptr;
        if (rounded && !p)
            throw StrataError(std::string("out of memory allocating ") + what + " (" + std::to_string(n) + " bytes)");
        if (p) std::memset(p, 0, (size_t)rounded);
        ptr.reset(static_cast<uint8_t*>(p));
        bytes = n;
    }
    uint8_t* get() const { return ptr.get(); }
};

// Fewest tokens in a step for the prefill tile matmul (kernels/gemm_vnni.cpp): below 16,
// unpacking the weight tiles for every matmul costs more than it saves over the 4-token
// dots. STRATA_CPU_GEMM_MIN_ROWS overrides it (0 or a huge number turns the tiles off), for
// comparisons and tests.
int64_t gemm_min_rows() {
    const char* v = std::getenv("STRATA_CPU_GEMM_MIN_ROWS");
    if (!v || !*v) return 16;
    const long long n = std::atoll(v);
    return n <= 0 ? std::numeric_limits<int64_t>::max() : (int64_t)n;
}

// Bytes of memory this process could ever get: physical RAM, or less under a cgroup v2
// limit. An allocation larger than this would only succeed through overcommit and end in
// the OOM killer once the pages are touched, so it is refused up front.
int64_t memory_limit_bytes() {
    int64_t limit = std::numeric_limits<int64_t>::max();
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0 && pages <= limit / page) limit = (int64_t)pages * page;
    std::ifstream cgroup("/sys/fs/cgroup/memory.max");  // "max" (no limit) does not parse
    int64_t cg = 0;
    if (cgroup >> cg && cg > 0) limit = std::min(limit, cg);
    return limit;
}

class CpuBackend final : public Backend {
public:
    CpuBackend(int n_threads, const std::string& isa)
        : table_(select_kernel_table(isa)), pool_(n_threads < 1 ? ThreadPool::default_threads() : n_threads) {}

    std::string name() const override { return "cpu"; }
    std::string describe() const override {
        return std::string("cpu (") + table_->isa + ", " + std::to_string(pool_.size()) + " threads)";
    }

    void prepare(const Graph& g, const Plan& plan, const uint8_t* file, int64_t, int64_t n_ctx) override {
        const auto& values = g.values();
        const size_t nv = values.size();
        nodes_ = g.nodes();
        arena_.allocate(plan.arena_bytes, "activations");
        data_.assign(nv, nullptr);
        type_.assign(nv, DType::F32);
        width_.assign(nv, 0);
        weight_rows_.assign(nv, 0);
        single_row_.assign(nv, 0);
        int64_t max_act_width = 1;
        for (size_t v = 0; v < nv; ++v) {
            const Value& val = values[v];
            width_[v] = val.width;
            single_row_[v] = val.single_row;
            if (val.kind == ValueKind::Weight) {
                const WeightRef& w = g.weights()[val.weight];
                data_[v] = const_cast<uint8_t*>(file + w.offset);  // kernels never write weights
                type_[v] = w.type;
                weight_rows_[v] = w.rows;
                const DTypeTraits* tr = dtype_traits((uint32_t)w.type);
                if (!tr || !supported_weight_type(w.type))
                    throw UnsupportedError("tensor " + w.name + " has type " + dtype_name(w.type) +
                                           ", which the CPU backend does not support yet");
            } else {
                data_[v] = arena_.get() + plan.offset[v];
                type_[v] = val.kind == ValueKind::Activation ? DType::F32 : DType::I32;
                max_act_width = std::max(max_act_width, val.width);
            }
        }
        // KV cache: one fp16 K and V matrix per attention node; n_ctx rows, or only the
        // window (plus one step) for sliding-window layers.
        int64_t kv_halfs = 0, partial_floats = 0;
        int32_t max_head_dim = 0;
        kv_slots_.assign(g.n_kv_slots(), KvSlot{});
        int64_t kv_bytes = 0, need = 0;
        try {
            for (const Node& n : nodes_)
                if (n.op == Op::Attention) {
                    KvSlot& s = kv_slots_[n.p.kv_slot];
                    s.width = (int64_t)n.p.n_head_kv * n.p.head_dim;
                    s.capacity = n.p.window > 0 ? std::min<int64_t>(n_ctx, n.p.window + plan.max_rows - 1) : n_ctx;
                    max_head_dim = std::max(max_head_dim, n.p.head_dim);
                    partial_floats = std::max(partial_floats, attn_partial_floats(n.p.n_head, n.p.head_dim, n_ctx));
                    const int64_t halfs = checked_mul(checked_mul(2, s.capacity, "KV cache"), s.width, "KV cache");
                    kv_halfs = checked_add(kv_halfs, halfs, "KV cache");
                }
            kv_bytes = checked_mul(kv_halfs, 2, "KV cache");
            const int64_t attn_floats = (int64_t)max_head_dim * kAttnScratchPerDim + kAttnScratchFixed;
            const int64_t scratch = checked_add(
                checked_mul(checked_add(attn_floats, 4096, "scratch"), 4 * (int64_t)pool_.size(), "scratch"),
                checked_mul(partial_floats, 4, "scratch"), "scratch");
            need = checked_add(checked_add(kv_bytes, scratch, "KV cache"), plan.arena_bytes, "KV cache");
        } catch (const StrataError&) {
            throw StrataError("n_ctx = " + std::to_string(n_ctx) + " needs more than 2^63 bytes of KV cache");
        }
        // Refuse an n_ctx whose buffers cannot fit in memory before allocating anything big.
        const int64_t have = memory_limit_bytes();
        if (need > have)
            throw StrataError("n_ctx = " + std::to_string(n_ctx) + " needs " + std::to_string(need) +
                              " bytes (KV cache " + std::to_string(kv_bytes) + " bytes), more than the " +
                              std::to_string(have) + " bytes of memory available; use a smaller n_ctx");
        kv_.allocate(kv_bytes, "the KV cache");
        uint16_t* p = reinterpret_cast<uint16_t*>(kv_.get());
        for (KvSlot& s : kv_slots_) {
            s.k = p;
            s.v = p + s.capacity * s.width;
            p += 2 * s.capacity * s.width;
        }
        n_ctx_ = n_ctx;
        // Scratch per thread: one attention query block and its tiles, rope tables.
        const int64_t attn_floats = (int64_t)max_head_dim * kAttnScratchPerDim + kAttnScratchFixed;
        scratch_floats_ = (attn_floats + max_act_width + 63) / 64 * 64;
        scratch_.allocate(checked_mul(scratch_floats_ * 4, pool_.size(), "scratch"), "scratch");
        attn_partial_.allocate(std::max<int64_t>(partial_floats, 16) * 4, "attention chunk results");
        act_q_.allocate(checked_mul(plan.max_rows, max_act_width * 4 + 64, "activation buffer"), "activation buffer");
        gemm_tile_bytes_ = (max_act_width * kGemmTileBytesPerElement + 4096 + 63) / 64 * 64;
        gemm_tile_.allocate(checked_mul(gemm_tile_bytes_, pool_.size(), "matmul tiles"), "matmul tiles");
        act_q_value_.assign(pool_.size(), -1);
        act_q_format_.assign(pool_.size(), 0);

        ex_ = Exec{};
        ex_.nodes = nodes_.data();
        ex_.n_nodes = (int32_t)nodes_.size();
        ex_.data = data_.data();
        ex_.type = type_.data();
        ex_.width = width_.data();
        ex_.weight_rows = weight_rows_.data();
        ex_.single_row = single_row_.data();
        ex_.n_ctx = n_ctx_;
        ex_.kv = kv_slots_.data();
        ex_.scratch = reinterpret_cast<float*>(scratch_.get());
        ex_.scratch_floats = scratch_floats_;
        ex_.attn_partial = reinterpret_cast<float*>(attn_partial_.get());
        ex_.act_q = act_q_.get();
        ex_.act_q_value = act_q_value_.data();
        ex_.act_q_format = act_q_format_.data();
        ex_.gemm_tile = gemm_tile_.get();
        ex_.gemm_tile_bytes = gemm_tile_bytes_;
        ex_.gemm_min_rows = gemm_min_rows();
        ex_.barrier = [](void* pool) { static_cast<ThreadPool*>(pool)->barrier(); };
        ex_.pool = &pool_;
        tokens_value_ = g.tokens_value();
        positions_value_ = g.positions_value();
        output_value_ = g.output();
        max_rows_ = plan.max_rows;
    }

    void run(const StepShape& step) override {
        if (step.n_rows <= 0 || step.n_rows > max_rows_) throw StrataError("step larger than planned");
        if (step.n_past < 0 || step.n_past + step.n_rows > n_ctx_) throw ContextOverflow("step past the KV cache");
        if (tokens_value_ >= 0) std::memcpy(data_[tokens_value_], step.tokens, sizeof(int32_t) * step.n_rows);
        if (positions_value_ >= 0) {
            int32_t* pos = reinterpret_cast<int32_t*>(data_[positions_value_]);
            for (int64_t i = 0; i < step.n_rows; ++i) pos[i] = (int32_t)(step.n_past + i);
        }
        ex_.n_rows = step.n_rows;
        ex_.n_past = step.n_past;
        ex_.all_rows = step.all_rows;
        for (auto& v : act_q_value_) v = -1;
        pool_.run(
            [](void* ctx, int ith, int nth) {
                auto* self = static_cast<CpuBackend*>(ctx);
                Exec& ex = self->ex_;
                const bool timed = ith == 0 && self->profiling_;
                auto t0 = std::chrono::steady_clock::now();
                for (int32_t i = 0; i < ex.n_nodes; ++i) {
                    const Node& node = ex.nodes[i];
                    self->table_->op[(int)node.op](ex, node, ith, nth);
                    self->pool_.barrier();
                    if (timed) {  // node i ends at the barrier: time between barriers
                        const auto t1 = std::chrono::steady_clock::now();
                        self->node_seconds_[i] += std::chrono::duration<double>(t1 - t0).count();
                        t0 = t1;
                    }
                }
            },
            this);
        out_rows_ = (single_row_[output_value_] && !step.all_rows) ? 1 : step.n_rows;
    }

    const float* output(int64_t* rows) override {
        *rows = out_rows_;
        return reinterpret_cast<const float*>(data_[output_value_]);
    }

    int64_t kv_cache_bytes() const override { return kv_.bytes; }

    void set_profiling(bool on) override {
        profiling_ = on;
        node_seconds_.assign(nodes_.size(), 0.0);
    }
    std::vector<double> node_seconds() const override { return node_seconds_; }

    int64_t batch_kernel_rows() const override {
        return ex_.gemm_min_rows == std::numeric_limits<int64_t>::max() ? 1 : ex_.gemm_min_rows;
    }

    bool can_truncate(int64_t n_past, int64_t n) const override {
        // A ring buffer has overwritten positions before n_past - capacity; the next token
        // (at position n) needs positions from n - window + 1 on.
        for (const Node& node : nodes_) {
            if (node.op != Op::Attention || node.p.window <= 0) continue;
            const KvSlot& s = kv_slots_[node.p.kv_slot];
            if (std::max<int64_t>(0, n - node.p.window + 1) < n_past - s.capacity) return false;
        }
        return true;
    }

private:
    static bool supported_weight_type(DType t) {
        switch (t) {
            case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q4_1:
            case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: case DType::Q2_K: case DType::Q3_K:
            case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::IQ4_NL: case DType::IQ4_XS:
                return true;
            default: return false;
        }
    }

    const KernelTable* table_;
    ThreadPool pool_;
    std::vector<Node> nodes_;
    AlignedBuffer arena_, kv_, scratch_, attn_partial_, act_q_, gemm_tile_;
    std::vector<uint8_t*> data_;
    std::vector<DType> type_;
    std::vector<int64_t> width_, weight_rows_;
    std::vector<uint8_t> single_row_;
    std::vector<KvSlot> kv_slots_;
    std::vector<int32_t> act_q_value_, act_q_format_;
    int64_t n_ctx_ = 0, scratch_floats_ = 0, gemm_tile_bytes_ = 0, max_rows_ = 0, out_rows_ = 0;
    int32_t tokens_value_ = -1, positions_value_ = -1, output_value_ = -1;
    bool profiling_ = false;
    std::vector<double> node_seconds_;  // per node, summed over profiled steps
    Exec ex_{};
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int n_threads, const std::string& isa) {
    return std::make_unique<CpuBackend>(n_threads, isa);
}

}  // namespace strata::cpu
