// strata._core: the nanobind module. It translates between Python and the core and holds
// no logic of its own: graphs, engines and kernel entry points for tests and tools.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/vector.h>

#if defined(__APPLE__)
#include <malloc/malloc.h>
#else
#include <malloc.h>
#endif

#include <cstring>

#include "../backends/cpu/cpu_backend.h"
#if defined(STRATA_HAVE_CUDA)
#include "../backends/cuda/cuda_backend.h"
#endif
#if defined(STRATA_HAVE_METAL)
#include "../backends/metal/metal_backend.h"
#endif
#include "../backends/metal/metal_plan.h"
#include "../core/engine.h"
#include "../core/errors.h"
#include "../core/thread_pool.h"

namespace nb = nanobind;
using namespace nb::literals;
using namespace strata;

namespace {

using ByteArray = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using TokenArray = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using FloatArray = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// A new float32 NumPy array that owns its memory.
nb::ndarray<nb::numpy, float> new_float_array(std::initializer_list<size_t> shape) {
    size_t n = 1;
    for (size_t s : shape) n *= s;
    float* data = new float[n > 0 ? n : 1];
    nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    return nb::ndarray<nb::numpy, float>(data, shape, owner);
}

std::span<const int32_t> as_span(const TokenArray& a) { return {a.data(), a.shape(0)}; }

// An engine plus the Python object that owns the memory its weights point into (the
// mmap of the model file), which must outlive it.
struct PyEngine {
    nb::object mapping_owner;
    std::unique_ptr<Engine> engine;
};

std::unique_ptr<Backend> make_backend(const std::string& name, int n_threads, const std::string& isa) {
    if (name == "cpu") return cpu::make_cpu_backend(n_threads, isa);
#if defined(STRATA_HAVE_CUDA)
    if (name == "cuda") return cuda::make_cuda_backend();
#endif
#if defined(STRATA_HAVE_METAL)
    if (name == "metal") return metal::make_metal_backend();
#endif
    throw UnsupportedError("backend '" + name + "' is not built into this strata");
}

// Heap bytes in use, for the "nothing is allocated per token" test hook.
size_t heap_in_use() {
#if defined(__APPLE__)
    malloc_statistics_t stats{};
    malloc_zone_statistics(nullptr, &stats);  // all zones
    return stats.size_in_use;
#else
    return mallinfo2().uordblks;
#endif
}

// The planner's arena ranges, per node: (inputs in the arena, output) as [offset, end) pairs
// (test hook: tests/test_engine.py checks that no output shares memory with an input of its
// node or of the node before it, which the fused decode kernels rely on).
nb::list memory_plan(const Graph& g, int64_t max_rows) {
    const Plan plan = make_plan(g, max_rows);
    auto range = [&](int32_t v) {
        const Value& val = g.values()[v];
        const int64_t rows = val.single_row ? plan.max_single_rows : plan.max_rows;
        return std::make_pair(plan.offset[v], plan.offset[v] + rows * value_row_bytes(val));
    };
    nb::list nodes;
    for (const Node& n : g.nodes()) {
        std::vector<std::pair<int64_t, int64_t>> ins;
        for (int32_t in : n.in)
            if (in >= 0 && plan.offset[in] >= 0) ins.push_back(range(in));
        nodes.append(nb::make_tuple(ins, range(n.out)));
    }
    return nodes;
}

// The Metal backend's dispatch list for one step of `g`, as plain Python data (test hook:
// tests/metal/test_metal_plan.py checks it and runs it through the MSL harness on Linux).
// argmax: "" the step alone; "fused" the step with kernel_argmax_f32 appended (its command
// buffer, as device_argmax finds it after a greedy step); "alone" the argmax by itself (the
// command buffer device_argmax commits after a step that had none).
nb::dict metal_dispatch_plan(const Graph& g, int64_t n_ctx, int64_t max_rows, int64_t n_rows, int64_t n_past,
                             bool all_rows, const std::string& argmax) {
    if (argmax != "" && argmax != "fused" && argmax != "alone")
        throw StrataError("argmax must be \"\", \"fused\" or \"alone\", got \"" + argmax + "\"");
    const Plan plan = make_plan(g, max_rows);
    metal::MetalPlan mp(g, plan, n_ctx);
    std::vector<metal::Dispatch> list;
    mp.encode(n_rows, n_past, all_rows, list);
    if (argmax == "alone") list.clear();
    if (!argmax.empty()) mp.encode_argmax(n_rows, all_rows, list);
    nb::list dispatches;
    for (const metal::Dispatch& d : list) {
        const metal::Specialisation& s = mp.pipelines()[(size_t)d.pipeline];
        nb::list buffers, fc;
        for (int b = 0; b < d.n_buffers; ++b) {
            const metal::BufferSlice& x = d.buffers[b];
            // Weights as absolute ranges of the model file.
            const int64_t base = x.region == metal::Region::Weight ? g.weights()[(size_t)x.weight].offset : 0;
            buffers.append(nb::make_tuple(metal::region_name(x.region), base + x.offset, x.bytes, x.written));
        }
        for (const auto& [index, value] : s.fc) fc.append(nb::make_tuple(index, value));
        nb::dict e;
        e["node"] = d.node;
        e["op"] = d.node >= 0 ? op_name(g.nodes()[(size_t)d.node].op) : "argmax";
        e["kernel"] = s.kernel->name;
        e["fc"] = fc;
        e["args"] = nb::bytes(reinterpret_cast<const char*>(d.args), s.kernel->args_size);
        e["buffers"] = buffers;
        e["groups"] = nb::make_tuple(d.groups[0], d.groups[1], d.groups[2]);
        e["threads"] = nb::make_tuple(d.threads[0], d.threads[1], d.threads[2]);
        e["barrier"] = d.barrier;
        dispatches.append(e);
    }
    nb::dict r;
    r["dispatches"] = dispatches;
    r["arena_bytes"] = mp.arena_bytes();
    r["kv_bytes"] = mp.kv_bytes();
    r["q8_bytes"] = mp.q8_bytes();
    r["tokens_offset"] = g.tokens_value() >= 0 ? mp.offset_of(g.tokens_value()) : -1;
    r["positions_offset"] = g.positions_value() >= 0 ? mp.offset_of(g.positions_value()) : -1;
    r["output_offset"] = mp.offset_of(g.output());
    r["argmax_offset"] = mp.argmax_offset();
    r["output_rows"] = mp.rows_of(g.output(), n_rows, all_rows);
    r["output_width"] = g.values()[(size_t)g.output()].width;
    return r;
}

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "strata native core (graph, planner, engine, CPU backend)";

    nb::enum_<Op>(m, "Op")
        .value("embedding", Op::Embedding).value("rms_norm", Op::RmsNorm)
        .value("layer_norm", Op::LayerNorm).value("matmul", Op::MatMul).value("add", Op::Add)
        .value("mul", Op::Mul).value("scale", Op::Scale).value("activation", Op::Activation)
        .value("glu", Op::Glu).value("rope", Op::Rope).value("attention", Op::Attention)
        .value("last_row", Op::LastRow).value("slice", Op::Slice);
    nb::enum_<Activation>(m, "Activation")
        .value("silu", Activation::Silu).value("gelu", Activation::Gelu).value("gelu_tanh", Activation::GeluTanh);
    nb::enum_<RopeMode>(m, "RopeMode").value("normal", RopeMode::Normal).value("neox", RopeMode::Neox);

    nb::class_<OpParams>(m, "OpParams")
        .def(nb::init<>())
        .def_rw("eps", &OpParams::eps).def_rw("scale", &OpParams::scale).def_rw("attn_scale", &OpParams::attn_scale).def_rw("act", &OpParams::act)
        .def_rw("n_head", &OpParams::n_head).def_rw("n_head_kv", &OpParams::n_head_kv)
        .def_rw("head_dim", &OpParams::head_dim).def_rw("n_rot", &OpParams::n_rot)
        .def_rw("rope_mode", &OpParams::rope_mode).def_rw("rope_base", &OpParams::rope_base)
        .def_rw("rope_freq_scale", &OpParams::rope_freq_scale).def_rw("window", &OpParams::window)
        .def_rw("softcap", &OpParams::softcap)
        .def_rw("offset", &OpParams::offset).def_rw("width", &OpParams::width)
        .def_rw("rope_attn_factor", &OpParams::rope_attn_factor).def_ro("kv_slot", &OpParams::kv_slot);

    nb::class_<Graph>(m, "Graph")
        .def(nb::init<>())
        .def("weight", [](Graph& g, const std::string& name, uint32_t type, int64_t offset, int64_t nbytes,
                          int64_t width, int64_t rows) {
                 if (!dtype_traits(type)) throw StrataError("unknown tensor type id " + std::to_string(type));
                 return g.weight(name, static_cast<DType>(type), offset, nbytes, width, rows);
             }, "name"_a, "type"_a, "offset"_a, "nbytes"_a, "width"_a, "rows"_a)
        .def("tokens", &Graph::tokens)
        .def("positions", &Graph::positions)
        .def("add", &Graph::add, "op"_a, "inputs"_a, "params"_a)
        .def("set_output", &Graph::set_output)
        .def("width", [](const Graph& g, int32_t v) { return g.values().at(v).width; })
        .def_prop_ro("n_nodes", [](const Graph& g) { return g.nodes().size(); })
        .def_prop_ro("n_kv_slots", &Graph::n_kv_slots);

    nb::class_<SamplingParams>(m, "SamplingParams")
        .def(nb::init<>())
        .def_rw("temperature", &SamplingParams::temperature).def_rw("top_k", &SamplingParams::top_k)
        .def_rw("top_p", &SamplingParams::top_p).def_rw("min_p", &SamplingParams::min_p)
        .def_rw("repetition_penalty", &SamplingParams::repetition_penalty)
        .def_rw("penalty_last_n", &SamplingParams::penalty_last_n);

    nb::class_<PyEngine>(m, "Engine")
        .def("__init__", [](PyEngine* self, Graph graph, nb::object mapping, int64_t n_ctx, int64_t n_batch,
                            int n_threads, const std::string& backend, const std::string& isa) {
                 ByteArray bytes = nb::cast<ByteArray>(mapping);
                 new (self) PyEngine{mapping, nullptr};
                 self->engine = std::make_unique<Engine>(std::move(graph), make_backend(backend, n_threads, isa),
                                                         bytes.data(), (int64_t)bytes.shape(0),
                                                         EngineConfig{n_ctx, n_batch});
             }, "graph"_a, "mapping"_a, "n_ctx"_a, "n_batch"_a = 512, "n_threads"_a = 0,
             "backend"_a = "cpu", "isa"_a = "")
        .def("eval", [](PyEngine& e, TokenArray tokens, bool all_logits) -> nb::object {
                 const size_t n = tokens.shape(0);
                 if (!all_logits) {
                     nb::gil_scoped_release release;
                     e.engine->eval(as_span(tokens), false, nullptr);
                     return nb::none();
                 }
                 auto out = new_float_array({n, (size_t)e.engine->n_vocab()});
                 {
                     nb::gil_scoped_release release;
                     e.engine->eval(as_span(tokens), true, out.data());
                 }
                 return nb::cast(out);
             }, "tokens"_a, "all_logits"_a = false)
        .def("step_sample", [](PyEngine& e, int32_t token, const SamplingParams& p, TokenArray recent) {
                 nb::gil_scoped_release release;
                 return e.engine->step_sample(token, p, as_span(recent));
             })
        .def("sample", [](PyEngine& e, const SamplingParams& p, TokenArray recent) {
                 nb::gil_scoped_release release;
                 return e.engine->sample(p, as_span(recent));
             })
        .def("last_logits", [](PyEngine& e) {
                 auto out = new_float_array({(size_t)e.engine->n_vocab()});
                 std::memcpy(out.data(), e.engine->last_logits(), sizeof(float) * e.engine->n_vocab());
                 return out;
             })
        .def("truncate", [](PyEngine& e, int64_t n) { e.engine->truncate(n); })
        .def("set_profiling", [](PyEngine& e, bool on) { e.engine->set_profiling(on); })
        .def("profile", [](PyEngine& e) {
                 // [(op name, seconds)] per node, in graph order.
                 std::vector<std::pair<std::string, double>> rows;
                 const auto secs = e.engine->backend().node_seconds();
                 const auto& nodes = e.engine->graph().nodes();
                 for (size_t i = 0; i < secs.size() && i < nodes.size(); ++i) rows.emplace_back(op_name(nodes[i].op), secs[i]);
                 return rows;
             })
        .def("heap_growth_over_decode", [](PyEngine& e, int32_t token, int n_steps) {
                 // Test hook for "nothing is allocated per token": heap bytes in use
                 // (heap_in_use) before and after n native decode steps, GIL held so no
                 // other Python thread allocates meanwhile. Returns the difference.
                 SamplingParams greedy;
                 greedy.temperature = 0.0f;
                 std::vector<int32_t> none;
                 int32_t t = e.engine->step_sample(token, greedy, none);  // warm-up
                 const size_t before = heap_in_use();
                 for (int i = 0; i < n_steps; ++i) t = e.engine->step_sample(t, greedy, none);
                 return (int64_t)heap_in_use() - (int64_t)before;
             })
        .def("seed", [](PyEngine& e, uint64_t s) { e.engine->seed(s); })
        .def_prop_ro("n_past", [](PyEngine& e) { return e.engine->n_past(); })
        .def_prop_ro("n_ctx", [](PyEngine& e) { return e.engine->n_ctx(); })
        .def_prop_ro("n_batch", [](PyEngine& e) { return e.engine->n_batch(); })
        .def_prop_ro("n_vocab", [](PyEngine& e) { return e.engine->n_vocab(); })
        .def_prop_ro("tokens_evaluated", [](PyEngine& e) { return e.engine->tokens_evaluated(); })
        .def_prop_ro("arena_bytes", [](PyEngine& e) { return e.engine->plan().arena_bytes; })
        .def_prop_ro("kv_cache_bytes", [](PyEngine& e) { return e.engine->backend().kv_cache_bytes(); })
        .def_prop_ro("batch_kernel_rows", [](PyEngine& e) { return e.engine->backend().batch_kernel_rows(); })
        .def_prop_ro("description", [](PyEngine& e) { return e.engine->backend().describe(); });

    // ---- kernel entry points, for tests and `strata info --system` -----------------------
    m.def("cpu_isas", [] {
        std::vector<std::string> names;
        for (const auto* t : cpu::available_kernel_tables()) names.push_back(t->isa);
        return names;
    }, "Kernel builds this CPU can run, best first.");
#if defined(STRATA_HAVE_CUDA)
    m.attr("cuda_built") = true;
#else
    m.attr("cuda_built") = false;
#endif
    m.def("cuda_available", [] {
#if defined(STRATA_HAVE_CUDA)
        return cuda::cuda_available();
#else
        return false;
#endif
    }, "Whether this build has the CUDA backend and the CUDA runtime finds a device.");
#if defined(STRATA_HAVE_METAL)
    m.attr("metal_built") = true;
#else
    m.attr("metal_built") = false;
#endif
    m.def("metal_available", [] {
#if defined(STRATA_HAVE_METAL)
        return metal::metal_available();
#else
        return false;
#endif
    }, "Whether this build has the Metal backend and the system has a Metal device.");
    m.def("metal_dispatch_plan", &metal_dispatch_plan, "graph"_a, "n_ctx"_a, "max_rows"_a, "n_rows"_a, "n_past"_a,
          "all_rows"_a = false, "argmax"_a = "",
          "Test hook: the Metal backend's dispatches for one step (any platform; nothing runs).");
    m.def("memory_plan", &memory_plan, "graph"_a, "max_rows"_a,
          "Test hook: the planner's arena ranges of each node's inputs and output.");
    m.def("default_threads", &ThreadPool::default_threads);
    m.def("cpu_dequantize", [](uint32_t type, ByteArray data, int64_t n, const std::string& isa) {
        const int64_t need = row_bytes(static_cast<DType>(type), n);
        if ((int64_t)data.shape(0) < need) throw StrataError("not enough bytes for " + std::to_string(n) + " elements");
        auto out = new_float_array({(size_t)n});
        cpu::select_kernel_table(isa)->dequantize_row(static_cast<DType>(type), data.data(), out.data(), n);
        return out;
    }, "type"_a, "data"_a, "n"_a, "isa"_a = "");
    m.def("cpu_matvec", [](uint32_t type, ByteArray w, int64_t width, int64_t rows, FloatArray x, const std::string& isa) {
        const int64_t rb = row_bytes(static_cast<DType>(type), width);
        if ((int64_t)w.shape(0) != checked_mul(rb, rows, "weight") || (int64_t)x.shape(0) != width)
            throw StrataError("cpu_matvec: weight or input size does not match width x rows");
        auto out = new_float_array({(size_t)rows});
        std::vector<uint8_t> scratch((size_t)width * 4 + 64);
        cpu::select_kernel_table(isa)->matvec(static_cast<DType>(type), w.data(), width, 0, rows, x.data(),
                                              out.data(), scratch.data());
        return out;
    }, "type"_a, "weight"_a, "width"_a, "rows"_a, "x"_a, "isa"_a = "");

    // Native errors become the matching strata.errors classes.
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const ContextOverflow& e) {
            nb::object cls = nb::module_::import_("strata.errors").attr("ContextOverflowError");
            PyErr_SetString(cls.ptr(), e.what());
        } catch (const UnsupportedError& e) {
            nb::object cls = nb::module_::import_("strata.errors").attr("UnsupportedModelError");
            PyErr_SetString(cls.ptr(), e.what());
        } catch (const StrataError& e) {
            nb::object cls = nb::module_::import_("strata.errors").attr("StrataError");
            PyErr_SetString(cls.ptr(), e.what());
        }
    });
}
