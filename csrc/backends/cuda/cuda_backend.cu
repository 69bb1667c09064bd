// The CUDA backend: weights uploaded once into one device allocation, the activation
// arena and the fp16 KV cache on the device, every kernel on one stream, and the decode
// step (one row) captured once as a CUDA graph and replayed.
//
// The graph is constant: what changes per step (n_past, the token ids) is copied into
// device memory before each launch, and kernels read n_past from there (StepParams). Row
// counts are fixed per captured graph (1), so only decode steps use it; prefill steps
// launch the same kernels directly. A decode step's kernels are programmatic dependent
// launches (common.cuh: pdl_begin), and its last one takes the argmax of the logits, so that
// the step copies 4 bytes back; the logits follow only when output() asks for them. Other
// steps copy their output rows to a pinned host buffer as they finish.
//
// Environment switches (read when a backend is made; for tests and first-contact debugging):
//   STRATA_CUDA_DEVICE=n      device index (default 0)
//   STRATA_CUDA_GRAPH=0       launch decode steps kernel by kernel instead of a CUDA graph
//   STRATA_CUDA_SYNC=1        synchronise after every node and name the node in any error
//   STRATA_CUDA_MMA=0         prefill matmuls in f32 FMA instead of f16 tensor cores
//   STRATA_CUDA_GEMM=mma      the prefill GEMM on gemm_f16.cu's own mma.sync tiles, not cuBLAS
//                             (the default is cuBLAS where a libcublas loads, else those tiles)
//   STRATA_CUDA_GEMM=wmma     prefill matmuls on the WMMA kernel (matmul.cu), not gemm_f16.cu
//   STRATA_CUBLAS=path|0      the libcublas to load (cublas.cu), or 0: none
//   STRATA_CUDA_MATVEC=f32    decode matvecs in f32 (dequantize x f32) instead of int8 dp4a
//   STRATA_CUDA_MATVEC=v1     decode matvecs on the one-warp-per-row kernels (matvec.cu), not
//                             the 16-byte-load kernel (matvec_wide.cu)
//   STRATA_CUDA_MATVEC=wide   the wide kernel for every type it serves (also q4_1, q5_0, q5_1,
//                             iq4_nl), =wide-smem: its split-K build (shared memory) at every tile
//   STRATA_CUDA_MATVEC_TILE=nr,split[,unroll]  the wide kernel's tile for every shape (tests, tuning)
//   STRATA_CUDA_PREFETCH=0    no work before a decode kernel's PDL wait: decode attention does
//                             not ask L2 for its keys' K and V rows (attention.cu), the norm does
//                             not load its weights (elementwise.cu) nor the rope take its angles
//                             (rope.cu) while the kernel before runs; =kv: only the K and V rows
//   STRATA_CUDA_MV_EARLY=0    the wide decode matvec waits for the kernel before it before its
//                             first weight loads, not after them (matvec_wide.cuh)
//   STRATA_CUDA_SPREAD=0      the decode add + rms_norm and rope + KV append in one block each,
//                             not spread over several (elementwise.cu, rope.cu)
//   STRATA_CUDA_ATTN_SPLITS=n decode attention splits over the keys, at most (default: enough
//                             for n_ctx keys in stretches of STRATA_CUDA_ATTN_SPLIT_KEYS, <= 64)
//   STRATA_CUDA_ATTN_SPLIT_KEYS=n  the fewest keys a decode split takes (default 16): a step
//                             uses as many splits as its position needs; =0: every split at
//                             every position, n_ctx / 256 of them (the count before round 9)
//   STRATA_CUDA_ATTN_ROUND=8|16  decode attention loads 8 or 16 keys a round, not 4
//   STRATA_CUDA_ATTN=f32      prefill attention on the f32 tiles (attention.cu), =rows: on the
//                             one-warp-per-row kernel; default: on tensor cores where the head
//                             fits (head_dim 64 / 128, no soft-cap), else the f32 tiles
//   STRATA_CUDA_FUSE=0        decode steps launch every node on its own (A/B of the fusions);
//                             =a,b,...: only the fusions named (norm add glu merge rope mv
//                             mvglu mvrope mvropef; all = those nine; the default = all but
//                             mvropef), see plan_decode_fusion
//   STRATA_CUDA_PDL=0         decode kernels as plain launches, not programmatic dependent ones
//   STRATA_CUDA_DEVICE_ARGMAX=0  no argmax kernel: device_argmax() returns -1 and every decode
//                             step copies its logits back
//   STRATA_CUDA_REPACK=0      q4_0 / q8_0 weights kept as the file has them (default: rewritten
//                             at load into split rows, quants apart from scales, where K % 256
//                             == 0 and every reader knows the layout; weight_split.cuh)
//   STRATA_CUDA_DEVICE_TOPK=0 top-k sampling copies the whole logits row back rather than
//                             selecting its k best on the device (device_top_k returns -1)
#include "cuda_backend.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../../core/errors.h"
#include "../../quants/blocks.h"
#include "common.cuh"
#include "quant.cuh"
#include "runtime.cuh"
#include "weight_split.cuh"

namespace strata::cuda {

namespace {

struct KvSlot {
    __half* k = nullptr;
    __half* v = nullptr;
    int64_t width = 0;
    int64_t capacity = 0;
};

bool supported_weight_type(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q4_1:
        case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: case DType::Q2_K: case DType::Q3_K:
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::IQ4_NL: case DType::IQ4_XS:
            return true;
        default: return false;
    }
}

// "nr,split[,unroll]", each 1, 2 or 4 (empty: chosen by shape).
void parse_tile(const std::string& v, MatvecConfig* c) {
    if (v.empty()) return;
    std::vector<int> f;
    bool ok = true;
    for (size_t i = 0;;) {
        const size_t j = v.find(',', i);
        const std::string part = v.substr(i, j == std::string::npos ? std::string::npos : j - i);
        if (part == "1" || part == "2" || part == "4") f.push_back(part[0] - '0');
        else ok = false;
        if (j == std::string::npos) break;
        i = j + 1;
    }
    if (!ok || f.size() < 2 || f.size() > 3)
        throw StrataError("STRATA_CUDA_MATVEC_TILE must be nr,split[,unroll] with each 1, 2 or 4, got '" + v + "'");
    c->nr = f[0];
    c->split = f[1];
    c->unroll = f.size() > 2 ? f[2] : 0;
}

// Decode-step fusions (STRATA_CUDA_FUSE), each one launch fewer per use.
enum : unsigned {
    kFuseNorm = 1,     // rms_norm quantizes its output for the int8 matvec that reads it
    kFuseAdd = 2,      // a residual add and the rms_norm of its sum in one launch
    kFuseGlu = 4,      // glu quantizes its output for the int8 matvec
    kFuseMerge = 8,    // the attention merge quantizes its output for the int8 matvec
    kFuseRope = 16,    // rope of q, rope of k and the KV append of the attention in one launch
    kFuseMatvec = 32,  // consecutive matvecs of one input, type and width (q/k/v, gate/up) in one launch
    kFuseMvGlu = 64,   // f16 / bf16 gate/up: that launch applies the glu and writes only its output
    kFuseMvRope = 128, // int8 q/k/v: that launch does the rope of q and k and the KV append (rope's work)
    kFuseMvRopeF = 256, // the same for the f32-activation q/k/v (f16 / bf16 weights): not by default
    kFuseAll = 511,
    // mvropef lost 2.2% of tg128 on 1B F16 where mvrope gained 1-4% on the quantized files
    // (benchmarks/cuda_notes.md round 16), so the default leaves it out.
    kFuseDefault = kFuseAll & ~kFuseMvRopeF,
};

unsigned parse_fuse(const std::string& v) {
    if (v.empty() || v == "1") return kFuseDefault;
    if (v == "0" || v == "none") return 0;
    static const std::pair<const char*, unsigned> names[] = {{"norm", kFuseNorm}, {"add", kFuseAdd},
                                                             {"glu", kFuseGlu},   {"merge", kFuseMerge},
                                                             {"rope", kFuseRope}, {"mv", kFuseMatvec},
                                                             {"mvglu", kFuseMvGlu}, {"mvrope", kFuseMvRope},
                                                             {"mvropef", kFuseMvRopeF}, {"all", kFuseAll}};
    unsigned bits = 0;
    for (size_t i = 0;;) {
        const size_t j = v.find(',', i);
        const std::string part = v.substr(i, j == std::string::npos ? std::string::npos : j - i);
        unsigned b = 0;
        for (const auto& [name, bit] : names)
            if (part == name) b = bit;
        if (!b)
            throw StrataError(
                "STRATA_CUDA_FUSE must be 0, 1 or a list of all, norm, add, glu, merge, rope, mv, mvglu, mvrope, "
                "mvropef; "
                "got '" + v + "'");
        bits |= b;
        if (j == std::string::npos) break;
        i = j + 1;
    }
    return bits;
}

// How a node runs in a decode step (one row) when fused with its neighbours.
struct DecodeNode {
    bool skip = false;      // computed by an earlier node's launch
    bool quant = false;     // rms_norm (or add + rms_norm), glu, attention: also writes the q8 buffer
    int32_t norm = -1;      // Add: the RmsNorm of its sum, in the same launch
    int32_t rope_k = -1;    // Rope of q: the Rope of k and the Attention whose KV append
    int32_t attn = -1;      //   run in the same launch
    bool appended = false;  // Attention: its KV append was done by that launch
    int n_more = 0;         // MatMul: later MatMul nodes of the same input done in the same launch
    int32_t more[kMaxMatvecParts - 1] = {-1, -1};
    int32_t glu = -1;        // MatMul (gate/up, f16 / bf16): the Glu its launch computes instead of
    bool gate_first = true;  //   writing gate and up; whether this node's weight is the gate
    int32_t rope = -1;       // MatMul (q of q/k/v): the Rope of q whose launch (rope_k, attn) this
                             //   launch does instead of writing q, k and v (plan_mv_rope),
    int32_t angles = -1;     //   with the angles of rope_tables_[angles]
};

// The angles of one rope setting at a decode step's position (launch_rope_angles), read by
// the q/k/v launches that apply that rope: one table per distinct setting, not per layer.
struct RopeTable {
    RopeArgs a;
    int32_t factors;  // value of the frequency factors, or -1
};
constexpr int64_t kRopeTableBytes = 128 * sizeof(float2);  // n_rot / 2 <= 128 (head_dim <= 256)

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int device) : device_(device) {
        check(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
        check(cudaGetDeviceProperties(&props_, device_), "cudaGetDeviceProperties");
        fuse_ = parse_fuse(env("STRATA_CUDA_FUSE"));  // before anything the destructor would release
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
        use_graphs_ = env("STRATA_CUDA_GRAPH") != "0";
        sync_debug_ = env("STRATA_CUDA_SYNC") == "1";
        if (sync_debug_) use_graphs_ = false;
        use_tc_ = env("STRATA_CUDA_MMA") != "0";
        const std::string gemm = env("STRATA_CUDA_GEMM");
        use_gemm_ = gemm != "wmma";
        // cuBLAS's GEMMs ran 1B prefill 1.7-1.9x faster than our mma.sync tiles on the H100
        // (benchmarks/cuda_notes.md round 5); the tiles stay for machines without a libcublas.
        if (use_tc_ && use_gemm_ && gemm != "mma") blas_ = std::make_unique<Cublas>(stream_);
        matvec_f32_ = env("STRATA_CUDA_MATVEC") == "f32";
        matvec_.v1 = env("STRATA_CUDA_MATVEC") == "v1";
        matvec_.wide_all = env("STRATA_CUDA_MATVEC") == "wide" || env("STRATA_CUDA_MATVEC") == "wide-smem";
        matvec_.split_kernel = env("STRATA_CUDA_MATVEC") == "wide-smem";
        matvec_.num_sms = props_.multiProcessorCount;
        parse_tile(env("STRATA_CUDA_MATVEC_TILE"), &matvec_);
        forced_splits_ = env_int("STRATA_CUDA_ATTN_SPLITS", 0);
        split_keys_ = std::max(0, env_int("STRATA_CUDA_ATTN_SPLIT_KEYS", kDecodeSplitKeys));
        keys_per_round_ = env_int("STRATA_CUDA_ATTN_ROUND", 4);
        if (keys_per_round_ != 8 && keys_per_round_ != 16) keys_per_round_ = 4;
        const std::string prefetch = env("STRATA_CUDA_PREFETCH");
        if (!prefetch.empty() && prefetch != "0" && prefetch != "1" && prefetch != "kv")
            throw StrataError("STRATA_CUDA_PREFETCH must be 0, kv or 1, got '" + prefetch + "'");
        attn_prefetch_ = prefetch != "0";
        early_ = prefetch.empty() || prefetch == "1";
        // Its first weight loads before the wait: 1B tg128 +2.1% (F16) to +7.6% (Q8_0) on the
        // H100 (benchmarks/cuda_notes.md round 13).
        matvec_.early_weights = env_on("STRATA_CUDA_MV_EARLY");
        spread_ = env_on("STRATA_CUDA_SPREAD");
        // Tensor cores: 8B pp512 +27% (F16) and +18% (Q4_0) on the H100 (cuda_notes.md round 8).
        prefill_attn_ = env("STRATA_CUDA_ATTN") == "rows"  ? PrefillAttn::Rows
                        : env("STRATA_CUDA_ATTN") == "f32" ? PrefillAttn::F32Tiles
                                                           : PrefillAttn::Mma;
        // PDL needs sm_90 hardware and kernels built for it (their griddepcontrol.wait).
        pdl_ = env("STRATA_CUDA_PDL") != "0" && props_.major >= 9 && pdl_kernels_built();
        argmax_on_ = env("STRATA_CUDA_DEVICE_ARGMAX") != "0";
        topk_on_ = argmax_on_ && env("STRATA_CUDA_DEVICE_TOPK") != "0";  // needs the logits left on the device
        repack_ = env("STRATA_CUDA_REPACK") != "0";  // 8B Q4_0 tg128 +4% on the H100 (round 8)
    }

    ~CudaBackend() override {
        cudaSetDevice(device_);
        if (stream_) cudaStreamSynchronize(stream_);
        for (cudaEvent_t e : events_) cudaEventDestroy(e);
        if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
        blas_.reset();  // its handle is bound to the stream
        if (stream_) cudaStreamDestroy(stream_);
        cudaGetLastError();
    }

    std::string name() const override { return "cuda"; }

    std::string describe() const override {
        std::string s = std::string("cuda (") + props_.name + ", sm_" + std::to_string(props_.major) +
                        std::to_string(props_.minor) + ", " + std::to_string(props_.multiProcessorCount) +
                        " SMs; decode " + (matvec_f32_ ? "f32" : "int8 dp4a") +
                        (matvec_.v1 ? " v1" : matvec_.wide_all ? " wide" : "") + ", prefill " +
                        (use_tc_ ? (use_gemm_ ? (cublas() ? "f16 cuBLAS" : "f16 mma.sync") : "f16 wmma") : "f32") + ", graphs " + (use_graphs_ ? "on" : "off") +
                        ", pdl " + (pdl_ ? "on" : "off") + (argmax_on_ ? ", greedy on device" : "") +
                        (topk_on_ ? ", top-k on device" : "") + (any_split_ ? ", q4_0/q8_0 split rows" : "") +
                        (attn_prefetch_ ? "" : ", no KV prefetch") + (early_ ? "" : ", no early weights") +
                        (matvec_.early_weights ? "" : ", matvec weights after the wait") +
                        (spread_ ? "" : ", norm and rope in one block") + mv_glu_str() + mv_rope_str() +
                        (fuse_ == kFuseDefault ? "" : fuse_ == 0 ? ", decode unfused" : ", decode fusions 0x" + hex_str(fuse_));
        if (blas_ && !blas_->ok()) s += ", cuBLAS " + blas_->note();
        if (!graph_note_.empty()) s += " (" + graph_note_ + ")";
        return s + ")";
    }

    void prepare(const Graph& g, const Plan& plan, const uint8_t* file, int64_t file_size, int64_t n_ctx) override {
        check(cudaSetDevice(device_), "cudaSetDevice");
        if (std::memcmp(kIq4nlValues, quants::kvalues_iq4nl, sizeof kIq4nlValues) != 0)
            throw StrataError("internal: the CUDA iq4_nl table differs from csrc/quants/blocks.h");
        const auto& values = g.values();
        const auto& weights = g.weights();
        const size_t nv = values.size();
        nodes_ = g.nodes();
        n_ctx_ = n_ctx;
        max_rows_ = plan.max_rows;
        tokens_value_ = g.tokens_value();
        positions_value_ = g.positions_value();
        output_value_ = g.output();

        // ---- what this graph needs, checked before anything is allocated ----
        if (n_ctx > (int64_t)INT32_MAX - plan.max_rows)
            throw UnsupportedError("n_ctx = " + std::to_string(n_ctx) +
                                   " is too large for the CUDA backend (positions are 32-bit)");
        for (const WeightRef& w : weights)
            if (!supported_weight_type(w.type))
                throw UnsupportedError("tensor " + w.name + " has type " + dtype_name(w.type) +
                                       ", which the CUDA backend does not support");
        int64_t max_q8_k = 0, partial_floats = 0, gemm_halves = 0;
        for (const Node& n : nodes_) {
            if (n.op == Op::Attention) {
                if (!attention_supported(n.p.head_dim))
                    throw UnsupportedError("the CUDA backend's attention needs an even head_dim of at most 256, got " +
                                           std::to_string(n.p.head_dim));
                partial_floats = std::max<int64_t>(partial_floats, (int64_t)n.p.n_head * (n.p.head_dim + 2));
            }
            if (n.op == Op::MatMul) {
                const WeightRef& w = weights[values[n.in[1]].weight];
                if (matvec_q8_supported(w.type)) max_q8_k = std::max(max_q8_k, w.width);
                if (plan.max_rows > 1 && use_tc_ && use_gemm_ && gemm_f16_supported(w.type, w.width))
                    gemm_halves = std::max(gemm_halves, gemm_f16_scratch_halves(w.type, w.width, w.rows, plan.max_rows));
            }
        }
        // Enough splits for a full context; a step uses those its position needs (attention.cu).
        // Up to 64: after 2048 positions 64 splits of 32 keys beat 32 of 64 by 4-5% on the H100,
        // and from an empty cache they cost nothing (cuda_notes.md round 11).
        decode_splits_ = forced_splits_ > 0 ? forced_splits_
                         : split_keys_ > 0  ? (int)std::clamp<int64_t>(ceil_div(n_ctx, split_keys_), 1, kMaxAttnSplits)
                                            : (int)std::clamp<int64_t>(n_ctx / 256, 1, 32);
        decode_splits_ = std::min(decode_splits_, kMaxAttnSplits);

        // Weights: each unique file range once, at a 256-byte aligned offset.
        std::map<std::pair<int64_t, int64_t>, int64_t> placed;
        std::vector<int64_t> weight_offset(weights.size());
        int64_t weight_bytes = 0;
        for (size_t i = 0; i < weights.size(); ++i) {
            const WeightRef& w = weights[i];
            if (w.offset < 0 || w.nbytes < 0 || w.offset > file_size || w.nbytes > file_size - w.offset)
                throw StrataError("weight " + w.name + " lies outside the model file");
            auto it = placed.find({w.offset, w.nbytes});
            if (it != placed.end()) {
                weight_offset[i] = it->second;
                continue;
            }
            weight_offset[i] = weight_bytes;
            placed[{w.offset, w.nbytes}] = weight_bytes;
            weight_bytes = checked_add(weight_bytes, align_up(w.nbytes, 256), "weight size");
        }
        kv_slots_.assign(g.n_kv_slots(), KvSlot{});
        int64_t kv_bytes = 0;
        for (const Node& n : nodes_)
            if (n.op == Op::Attention) {
                KvSlot& s = kv_slots_[n.p.kv_slot];
                s.width = (int64_t)n.p.n_head_kv * n.p.head_dim;
                s.capacity = n.p.window > 0 ? std::min<int64_t>(n_ctx, n.p.window + plan.max_rows - 1) : n_ctx;
                const int64_t b = checked_mul(checked_mul(4, s.capacity, "KV cache"), s.width, "KV cache");
                kv_bytes = checked_add(kv_bytes, align_up(b, 256), "KV cache");
            }
        const int64_t q8_rows = 1;  // the int8 matvec serves single-row matmuls
        const int64_t q8_bytes =
            max_q8_k > 0 ? align_up(q8_rows * max_q8_k, 256) + 2 * align_up(q8_rows * max_q8_k / 8, 256) : 0;
        const int64_t partial_bytes = decode_splits_ > 1 ? partial_floats * decode_splits_ * 4 : 0;
        const int64_t arena_bytes = std::max<int64_t>(plan.arena_bytes, 64);
        const int64_t gemm_bytes = checked_mul(gemm_halves, 2, "prefill scratch");
        int64_t total = 256;
        for (int64_t part : {weight_bytes, kv_bytes, arena_bytes, q8_bytes, partial_bytes, gemm_bytes})
            total = checked_add(total, part, "device memory");

        size_t free_b = 0, total_b = 0;
        check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
        if ((uint64_t)total > (uint64_t)free_b)
            throw StrataError("out of GPU memory: the model needs " + std::to_string(total) + " bytes on the device (" +
                              gib(total) + ": weights " + gib(weight_bytes) + ", KV cache " + gib(kv_bytes) +
                              " for n_ctx = " + std::to_string(n_ctx) + ", activations " + gib(arena_bytes) +
                              ", prefill scratch " + gib(gemm_bytes) +
                              "), and " + props_.name + " has " + std::to_string(free_b) + " bytes free (" +
                              gib((int64_t)free_b) + " of " + gib((int64_t)total_b) + ")");

        weights_.allocate(weight_bytes, "the weights", total);
        kv_.allocate(kv_bytes, "the KV cache", total);
        arena_.allocate(arena_bytes, "the activations", total);
        q8_.allocate(q8_bytes, "the quantized activations", total);
        partial_.allocate(partial_bytes, "attention partials", total);
        gemm_.allocate(gemm_bytes, "the prefill matmul scratch", total);
        params_.allocate(sizeof(StepParams), "step parameters", total);
        argmax_.allocate(sizeof(int32_t), "the argmax", total);
        if (topk_on_) topk_.allocate(kTopKBytes, "top-k candidates", total);
        kv_bytes_ = kv_bytes;

        upload_weights(placed, file);
        const std::vector<uint8_t> split = choose_split_weights(g, plan, weight_offset);
        std::set<int64_t> split_done;  // device offsets of the ranges rewritten (shared bytes once)
        for (size_t i = 0; i < weights.size(); ++i) {
            if (!split[i] || !split_done.insert(weight_offset[i]).second) continue;
            launch_split_rows(weights[i].type, weights_.get() + weight_offset[i], weights[i].rows, weights[i].width,
                              stream_);
            check(cudaGetLastError(), "splitting the rows of " + weights[i].name);
        }
        any_split_ = !split_done.empty();
        check(cudaMemsetAsync(kv_.get(), 0, (size_t)kv_.bytes(), stream_), "cudaMemset (KV cache)");
        check(cudaMemsetAsync(arena_.get(), 0, (size_t)arena_.bytes(), stream_), "cudaMemset (activations)");

        uint8_t* kvp = kv_.get();
        for (KvSlot& s : kv_slots_) {
            if (s.capacity == 0) continue;
            s.k = reinterpret_cast<__half*>(kvp);
            s.v = s.k + s.capacity * s.width;
            kvp += align_up(4 * s.capacity * s.width, 256);
        }
        if (max_q8_k > 0) {
            q8_act_.q = reinterpret_cast<int8_t*>(q8_.get());
            q8_act_.d = reinterpret_cast<float*>(q8_.get() + align_up(q8_rows * max_q8_k, 256));
            q8_act_.s = reinterpret_cast<int32_t*>(q8_.get() + align_up(q8_rows * max_q8_k, 256) +
                                                   align_up(q8_rows * max_q8_k / 8, 256));
        }

        // Per value: device pointer, type, width, weight rows and row bytes, single row.
        data_.assign(nv, nullptr);
        type_.assign(nv, DType::F32);
        width_.assign(nv, 0);
        weight_rows_.assign(nv, 0);
        row_bytes_.assign(nv, 0);
        single_row_.assign(nv, 0);
        is_weight_.assign(nv, 0);
        split_.assign(nv, 0);
        names_.assign(nv, std::string());
        for (size_t v = 0; v < nv; ++v) {
            const Value& val = values[v];
            width_[v] = val.width;
            single_row_[v] = val.single_row;
            if (val.kind == ValueKind::Weight) {
                const WeightRef& w = weights[val.weight];
                data_[v] = weights_.get() + weight_offset[val.weight];
                type_[v] = w.type;
                weight_rows_[v] = w.rows;
                row_bytes_[v] = row_bytes(w.type, w.width);
                is_weight_[v] = 1;
                split_[v] = split[val.weight];
                names_[v] = w.name;
            } else {
                data_[v] = arena_.get() + plan.offset[v];
                type_[v] = val.kind == ValueKind::Activation ? DType::F32 : DType::I32;
            }
        }

        plan_decode_fusion();
        const int64_t angle_bytes = (int64_t)rope_tables_.size() * kRopeTableBytes;
        angles_.allocate(angle_bytes, "rope angles", angle_bytes);

        const Value& out = values[output_value_];
        const int64_t out_rows = out.single_row ? plan.max_single_rows : plan.max_rows;
        host_out_.allocate(checked_mul(out_rows, out.width * 4, "output"), "output");
        host_tokens_.allocate(plan.max_rows * 4, "tokens");
        host_params_.allocate(sizeof(StepParams), "step parameters");
        host_argmax_.allocate(sizeof(int32_t), "the argmax");
        if (topk_on_) host_topk_.allocate(2 * Backend::kMaxDeviceTopK * 4, "top-k candidates");
        check(cudaStreamSynchronize(stream_), "loading the model");
    }

    void run(const StepShape& step) override {
        if (step.n_rows <= 0 || step.n_rows > max_rows_) throw StrataError("step larger than planned");
        if (step.n_past < 0 || step.n_past + step.n_rows > n_ctx_) throw ContextOverflow("step past the KV cache");
        check(cudaSetDevice(device_), "cudaSetDevice");
        const int64_t T = step.n_rows;
        out_on_host_ = argmax_ready_ = false;
        StepParams* hp = reinterpret_cast<StepParams*>(host_params_.get());
        *hp = StepParams{};
        hp->n_past = (int32_t)step.n_past;
        check(cudaMemcpyAsync(params_.get(), hp, sizeof(StepParams), cudaMemcpyHostToDevice, stream_),
              "copying step parameters");
        if (tokens_value_ >= 0) {
            std::memcpy(host_tokens_.get(), step.tokens, sizeof(int32_t) * T);
            check(cudaMemcpyAsync(data_[tokens_value_], host_tokens_.get(), sizeof(int32_t) * T,
                                  cudaMemcpyHostToDevice, stream_),
                  "copying tokens");
        }
        const bool graph = T == 1 && use_graphs_ && !profiling_;
        if (graph && !graph_exec_) capture_decode_graph();
        if (graph && graph_exec_) {
            check(cudaGraphLaunch(graph_exec_, stream_), "cudaGraphLaunch (decode step)");
        } else {
            enqueue(T, step.all_rows);
        }
        out_rows_ = (single_row_[output_value_] && !step.all_rows) ? 1 : T;
        // A decode step ran the argmax kernel (enqueue): 4 bytes back, the logits on demand
        // (output()). Other steps copy the output as before: the host reads it next.
        const bool argmax = device_argmax_step(T);
        if (argmax)
            check(cudaMemcpyAsync(host_argmax_.get(), argmax_.get(), sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
                  "copying the argmax");
        else
            copy_output_async();
        check(cudaStreamSynchronize(stream_), "running a step");
        argmax_ready_ = argmax;
        out_on_host_ = !argmax;
        if (profiling_) {
            for (size_t i = 0; i < nodes_.size(); ++i) {
                float ms = 0.0f;
                check(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]), "cudaEventElapsedTime");
                node_seconds_[i] += 1e-3 * ms;
            }
        }
    }

    // STRATA_PROFILE: device time of every node (events around each), decode steps launched
    // one by one rather than as a graph while profiling.
    void set_profiling(bool on) override {
        check(cudaSetDevice(device_), "cudaSetDevice");
        if (on && events_.size() != nodes_.size() + 1) {
            for (cudaEvent_t e : events_) cudaEventDestroy(e);
            events_.assign(nodes_.size() + 1, nullptr);
            for (cudaEvent_t& e : events_) check(cudaEventCreate(&e), "cudaEventCreate");
        }
        profiling_ = on;
        node_seconds_.assign(nodes_.size(), 0.0);
    }
    std::vector<double> node_seconds() const override { return node_seconds_; }

    // The last step's output rows; copied here (synchronously) after a decode step that left
    // them on the device. The arena still holds them: nothing runs between steps.
    const float* output(int64_t* rows) override {
        if (!out_on_host_) {
            check(cudaSetDevice(device_), "cudaSetDevice");
            copy_output_async();
            check(cudaStreamSynchronize(stream_), "copying the output");
            out_on_host_ = true;
        }
        *rows = out_rows_;
        return reinterpret_cast<const float*>(host_out_.get());
    }

    // The argmax of the last decode step's last row (-1 when that step did not compute one, or
    // when every logit was NaN: the engine then samples on the host).
    int32_t device_argmax() override {
        return argmax_ready_ ? *reinterpret_cast<const int32_t*>(host_argmax_.get()) : -1;
    }

    // Top-k sampling's candidates: the k best logits of the last decode step's row, selected
    // where the logits are (that step left them on the device: argmax_ready_), 8k bytes back.
    int32_t device_top_k(int32_t k, float* values, int32_t* ids) override {
        const int64_t W = width_[output_value_];
        if (!topk_on_ || !argmax_ready_ || k < 1 || k > Backend::kMaxDeviceTopK || !top_k_fits(W, k)) return -1;
        check(cudaSetDevice(device_), "cudaSetDevice");
        float* scratch_v = reinterpret_cast<float*>(topk_.get());
        int32_t* scratch_i = reinterpret_cast<int32_t*>(scratch_v + kTopKScratch);
        float* out_v = reinterpret_cast<float*>(scratch_i + kTopKScratch);
        int32_t* out_i = reinterpret_cast<int32_t*>(out_v + Backend::kMaxDeviceTopK);
        launch_top_k(f32(output_value_) + (out_rows_ - 1) * W, W, k, scratch_v, scratch_i, out_v, out_i, stream_);
        check(cudaGetLastError(), "launching the top-k selection");
        check(cudaMemcpyAsync(host_topk_.get(), out_v, 2 * Backend::kMaxDeviceTopK * 4, cudaMemcpyDeviceToHost, stream_),
              "copying the top-k candidates");
        check(cudaStreamSynchronize(stream_), "selecting the top-k candidates");
        const float* hv = reinterpret_cast<const float*>(host_topk_.get());
        const int32_t* hi = reinterpret_cast<const int32_t*>(hv + Backend::kMaxDeviceTopK);
        int32_t n = 0;
        while (n < k && hi[n] >= 0) {
            values[n] = hv[n];
            ids[n] = hi[n];
            ++n;
        }
        return n;
    }

    int64_t kv_cache_bytes() const override { return kv_bytes_; }

    // Steps of 2 or more tokens run every matmul on the tiled kernels, single tokens on the
    // matvec (see run()).
    int64_t batch_kernel_rows() const override { return 2; }

    bool can_truncate(int64_t n_past, int64_t n) const override {
        for (const Node& node : nodes_) {
            if (node.op != Op::Attention || node.p.window <= 0) continue;
            const KvSlot& s = kv_slots_[node.p.kv_slot];
            if (std::max<int64_t>(0, n - node.p.window + 1) < n_past - s.capacity) return false;
        }
        return true;
    }

private:
    // Whether a step of T rows ends with the argmax kernel (enqueue) instead of copying its
    // output back: decode steps, the ones greedy generation runs.
    bool device_argmax_step(int64_t T) const { return T == 1 && argmax_on_; }

    void copy_output_async() {
        check(cudaMemcpyAsync(host_out_.get(), data_[output_value_], sizeof(float) * out_rows_ * width_[output_value_],
                              cudaMemcpyDeviceToHost, stream_),
              "copying the output");
    }

    // Per weight: whether it is held in split rows (unless STRATA_CUDA_REPACK=0). Only where every
    // reader of its bytes knows that layout: its type and width allow it, every use of every
    // weight sharing its bytes is a matmul's weight, decode takes the wide int8 matvec and
    // prefill (if any) gemm_f16's dequantization. Weights sharing bytes (a tied embedding)
    // decide together.
    std::vector<uint8_t> choose_split_weights(const Graph& g, const Plan& plan,
                                              const std::vector<int64_t>& weight_offset) const {
        const auto& values = g.values();
        const auto& weights = g.weights();
        std::vector<uint8_t> ok(weights.size(), 0);
        if (!repack_ || matvec_f32_) return ok;
        for (size_t i = 0; i < weights.size(); ++i) {
            const WeightRef& w = weights[i];
            ok[i] = split_rows_supported(w.type, w.width) && matvec_takes_wide(w.type, w.width, true, matvec_) &&
                    (plan.max_rows == 1 || (use_tc_ && use_gemm_ && gemm_f16_supported(w.type, w.width)));
        }
        for (const Node& n : g.nodes())
            for (size_t k = 0; k < n.in.size(); ++k) {
                const int32_t v = n.in[k];
                if (v >= 0 && values[v].kind == ValueKind::Weight && !(n.op == Op::MatMul && k == 1))
                    ok[values[v].weight] = 0;
            }
        std::map<int64_t, uint8_t> range_ok;  // per device range: every weight on it may be split
        for (size_t i = 0; i < weights.size(); ++i) {
            const auto [it, first] = range_ok.emplace(weight_offset[i], ok[i]);
            if (!first) it->second &= ok[i];
        }
        for (size_t i = 0; i < weights.size(); ++i) ok[i] = range_ok[weight_offset[i]];
        return ok;
    }

    void upload_weights(const std::map<std::pair<int64_t, int64_t>, int64_t>& placed, const uint8_t* file) {
        // Two pinned staging buffers: the CPU copies (and page-faults in) the next chunk of
        // the mapping while the previous one is on its way to the device.
        int64_t largest = 1;
        for (const auto& entry : placed) largest = std::max(largest, entry.first.second);
        const int64_t kChunk = std::min<int64_t>(64 << 20, align_up(largest, 4096));
        PinnedBuffer staging[2];
        cudaEvent_t done[2] = {nullptr, nullptr};
        for (int i = 0; i < 2; ++i) {
            staging[i].allocate(kChunk, "upload staging");
            check(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming), "cudaEventCreate");
        }
        bool pending[2] = {false, false};
        int which = 0;
        try {
            for (const auto& [range, dev_off] : placed) {
                const auto [file_off, nbytes] = range;
                for (int64_t done_b = 0; done_b < nbytes; done_b += kChunk) {
                    const int64_t n = std::min(kChunk, nbytes - done_b);
                    if (pending[which]) check(cudaEventSynchronize(done[which]), "uploading weights");
                    std::memcpy(staging[which].get(), file + file_off + done_b, (size_t)n);
                    check(cudaMemcpyAsync(weights_.get() + dev_off + done_b, staging[which].get(), (size_t)n,
                                          cudaMemcpyHostToDevice, stream_),
                          "uploading weights");
                    check(cudaEventRecord(done[which], stream_), "cudaEventRecord");
                    pending[which] = true;
                    which ^= 1;
                }
            }
            check(cudaStreamSynchronize(stream_), "uploading weights");
        } catch (...) {
            cudaStreamSynchronize(stream_);
            for (auto& e : done) cudaEventDestroy(e);
            throw;
        }
        for (auto& e : done) cudaEventDestroy(e);
    }

    // ", glu in n gate/up launches" (plan_mv_glu), or nothing.
    std::string mv_glu_str() const {
        int n = 0;
        for (const DecodeNode& d : decode_) n += d.glu >= 0;
        return n ? ", glu in " + std::to_string(n) + " gate/up launches" : "";
    }

    // ", rope in n q/k/v launches" (plan_mv_rope), or nothing.
    std::string mv_rope_str() const {
        int n = 0;
        for (const DecodeNode& d : decode_) n += d.rope >= 0;
        return n ? ", rope in " + std::to_string(n) + " q/k/v launches" : "";
    }

    static std::string hex_str(unsigned v) {
        static const char* d = "0123456789abcdef";
        std::string s;
        do {
            s.insert(s.begin(), d[v & 15]);
            v >>= 4;
        } while (v);
        return s;
    }

    // Whether a single-row matmul with weight w takes the int8 path (and so reads the q8 buffer).
    bool q8_path(int32_t w) const { return !matvec_f32_ && matvec_q8_supported(type_[w]); }
    // Whether some matmul reads value v on the int8 path.
    bool q8_read(int32_t v) const {
        for (const Node& n : nodes_)
            if (n.op == Op::MatMul && n.in[0] == v && q8_path(n.in[1])) return true;
        return false;
    }

    // Which neighbouring nodes of a decode step run as one launch (decode_, used when T == 1).
    // Patterns, each needing its nodes to be consecutive (nothing else runs between them):
    //   add(a, b) -> rms_norm(sum) [-> int8 matmuls]: one block adds, writes the sum, normalizes,
    //     writes the norm and, when an int8 matvec reads it, its q8 form (rms_norm alone likewise);
    //   glu / attention (merge, decode splits > 1) -> int8 matmul: the output is quantized by the
    //     kernel that writes it;
    //   rope(q), rope(k), attention(q', k', v): the two ropes and the KV append in one block;
    //   matmul(x, w1), matmul(x, w2)[, matmul(x, w3)] of one type and width on the wide kernel:
    //     one launch over the rows of all (q/k/v, gate/up);
    //   that launch of f16 / bf16 gate/up -> glu(gate, up): the launch applies the glu
    //     (plan_mv_glu);
    //   that launch of q/k/v -> the rope launch above: the matvec launch does the ropes and the
    //     KV append (plan_mv_rope; by default for the int8 path only, see kFuseDefault).
    // Every fused kernel computes each element as the unfused ones do: the outputs and the q8
    // bytes are the same (tests/test_cuda.py compares them bit for bit).
    void plan_decode_fusion() {
        const size_t N = nodes_.size();
        decode_.assign(N, DecodeNode{});
        rope_tables_.clear();
        auto whole_row_norm = [&](const Node& n) {
            return n.op == Op::RmsNorm && (n.p.head_dim == 0 || n.p.head_dim == width_[n.in[0]]);
        };
        for (size_t i = 0; i < N; ++i) {
            const Node& n = nodes_[i];
            DecodeNode& d = decode_[i];
            if (d.skip) continue;
            switch (n.op) {
                case Op::Add: {
                    if (!(fuse_ & kFuseAdd) || i + 1 >= N) break;
                    const Node& nn = nodes_[i + 1];
                    if (!whole_row_norm(nn) || nn.in[0] != n.out || is_weight_[n.in[0]] || is_weight_[n.in[1]]) break;
                    d.norm = (int32_t)(i + 1);
                    decode_[i + 1].skip = true;
                    d.quant = (fuse_ & kFuseNorm) && width_[n.out] % 32 == 0 && q8_read(nn.out);
                    break;
                }
                case Op::RmsNorm:
                    d.quant = (fuse_ & kFuseNorm) && whole_row_norm(n) && width_[n.out] % 32 == 0 && q8_read(n.out);
                    break;
                case Op::Glu:
                    d.quant = (fuse_ & kFuseGlu) && !is_weight_[n.in[1]] && width_[n.out] % 32 == 0 && q8_read(n.out);
                    break;
                case Op::Attention:
                    d.quant = (fuse_ & kFuseMerge) && decode_splits_ > 1 && n.p.head_dim % 32 == 0 && q8_read(n.out);
                    break;
                case Op::Rope: {
                    if (!(fuse_ & kFuseRope) || i + 2 >= N) break;
                    const Node& nk = nodes_[i + 1];
                    const Node& na = nodes_[i + 2];
                    const OpParams& p = n.p;
                    const OpParams& pk = nk.p;
                    if (nk.op != Op::Rope || na.op != Op::Attention || na.in[0] != n.out || na.in[1] != nk.out) break;
                    if (pk.head_dim != p.head_dim || pk.n_rot != p.n_rot || pk.rope_mode != p.rope_mode ||
                        pk.rope_base != p.rope_base || pk.rope_freq_scale != p.rope_freq_scale ||
                        pk.rope_attn_factor != p.rope_attn_factor || nk.in[1] != n.in[1])
                        break;
                    if (p.n_head != na.p.n_head || pk.n_head != na.p.n_head_kv || p.head_dim != na.p.head_dim) break;
                    if (!rope_qk_append_fits(rope_args(n), pk.n_head)) break;
                    d.rope_k = (int32_t)(i + 1);
                    d.attn = (int32_t)(i + 2);
                    decode_[i + 1].skip = true;
                    decode_[i + 2].appended = true;
                    break;
                }
                case Op::MatMul: {
                    if (!(fuse_ & kFuseMatvec)) break;
                    const int32_t x = n.in[0], w = n.in[1];
                    if (!matvec_takes_wide(type_[w], width_[x], q8_path(w), matvec_)) break;
                    for (size_t j = i + 1; j < N && d.n_more < kMaxMatvecParts - 1; ++j) {
                        const Node& m = nodes_[j];
                        if (m.op != Op::MatMul || m.in[0] != x || type_[m.in[1]] != type_[w] ||
                            width_[m.in[1]] != width_[w] || split_[m.in[1]] != split_[w])
                            break;
                        d.more[d.n_more++] = (int32_t)j;
                        decode_[j].skip = true;
                    }
                    plan_mv_glu(i);
                    break;
                }
                default: break;
            }
        }
        for (size_t i = 0; i < N; ++i)
            if (nodes_[i].op == Op::MatMul && !decode_[i].skip) plan_mv_rope(i);
    }

    // Whether the launch of matmul i and of the one after it (same input: d.more) can apply the
    // glu that follows and write only its output (launch_matvec_wide_glu): f16 / bf16 weights
    // on the wide kernel without split-K, the two outputs the glu's operands (so as wide as it:
    // the graph checks) and read by it alone, and no int8 copy of the glu wanted (the quantized
    // types need one, and its scales span 32 outputs a block does not hold).
    void plan_mv_glu(size_t i) {
        DecodeNode& d = decode_[i];
        const size_t next = i + 2;
        if (!(fuse_ & kFuseMvGlu) || d.n_more != 1 || next >= nodes_.size()) return;
        const Node& a = nodes_[i];
        const Node& b = nodes_[i + 1];
        const Node& g = nodes_[next];
        if (g.op != Op::Glu || q8_path(a.in[1]) || q8_read(g.out) ||
            !matvec_glu_supported(type_[a.in[1]], width_[a.in[0]], matvec_))
            return;
        const bool ab = g.in[0] == a.out && g.in[1] == b.out, ba = g.in[0] == b.out && g.in[1] == a.out;
        if (!(ab || ba) || !read_once(a.out) || !read_once(b.out)) return;
        d.glu = (int32_t)next;
        d.gate_first = ab;
        decode_[next].skip = true;
    }

    // Whether the launch of q/k/v (matmul i and the two after it) can also do the rope launch
    // planned after them (rope(q), rope(k), attention(q', k', v): d.rope_k) and write only q'
    // and the cache (launch_matvec_wide_rope): q, k and v read by those ropes and the
    // attention alone, k' by the attention alone (it reads the cache once appended), so none
    // of the four needs to be in memory. q' cannot share memory with x, which the launch reads:
    // the rope of q is the node right after x's last read (core/plan.cpp keeps the slot).
    void plan_mv_rope(size_t i) {
        DecodeNode& d = decode_[i];
        const size_t r = i + 3;
        if (d.n_more != 2 || r >= nodes_.size() || decode_[r].rope_k != (int32_t)(r + 1) ||
            d.more[0] != (int32_t)(i + 1) || d.more[1] != (int32_t)(i + 2))
            return;
        const Node& nq = nodes_[r];
        const Node& nk = nodes_[r + 1];
        const Node& na = nodes_[decode_[r].attn];
        const Node& mq = nodes_[i];
        const Node& mk = nodes_[i + 1];
        const Node& mv = nodes_[i + 2];
        if (nq.in[0] != mq.out || nk.in[0] != mk.out || na.in[2] != mv.out || !weight_or_none(nq.in[1])) return;
        if (!read_once(mq.out) || !read_once(mk.out) || !read_once(mv.out) || !read_once(nk.out)) return;
        const int32_t w = mq.in[1];
        if (!(fuse_ & (q8_path(w) ? kFuseMvRope : kFuseMvRopeF))) return;  // the setting of this path
        const RopeArgs a = rope_args(nq);
        if (!matvec_rope_supported(type_[w], width_[mq.in[0]], q8_path(w), a, nk.p.n_head, matvec_)) return;
        d.rope = (int32_t)r;
        decode_[r].skip = true;
        for (size_t t = 0; t < rope_tables_.size() && d.angles < 0; ++t) {
            const RopeTable& e = rope_tables_[t];
            if (e.factors == nq.in[1] && e.a.n_rot == a.n_rot && e.a.base == a.base &&
                e.a.freq_scale == a.freq_scale && e.a.attn_factor == a.attn_factor)
                d.angles = (int32_t)t;  // the angles depend on nothing else of the setting
        }
        if (d.angles < 0) {
            d.angles = (int32_t)rope_tables_.size();
            rope_tables_.push_back({a, nq.in[1]});
        }
    }

    // Whether value v is read by exactly one node and is not the graph's output.
    bool read_once(int32_t v) const {
        int readers = 0;
        for (const Node& m : nodes_)
            for (int32_t in : m.in) readers += in == v;
        return readers == 1 && v != output_value_;
    }

    static RopeArgs rope_args(const Node& n) {
        return RopeArgs{n.p.n_head, n.p.head_dim, n.p.n_rot, n.p.rope_mode == RopeMode::Neox ? 1 : 0,
                        n.p.rope_base, n.p.rope_freq_scale, n.p.rope_attn_factor};
    }

    // Captures a decode step (enqueue(1)) into graph_exec_. If that fails with PDL on (a
    // driver that cannot capture programmatic launches), PDL goes off and it is tried once
    // more; if it still fails, decode steps are launched directly. describe() says which.
    void capture_decode_graph() {
        std::string error = try_capture();
        if (!error.empty() && pdl_) {
            pdl_ = false;
            graph_note_ = "pdl off: capture failed with it: " + error;
            error = try_capture();
        }
        if (!error.empty()) {
            // Run without graphs rather than fail: the same kernels, launched one by one.
            use_graphs_ = false;
            graph_note_ = "capture failed: " + error;
        }
    }

    // One capture and instantiation; the error, or empty on success.
    std::string try_capture() {
        cudaGraph_t graph = nullptr;
        graph_exec_ = nullptr;
        check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        std::string error;
        try {
            enqueue(1, false);
        } catch (const StrataError& x) {  // a launch refused while capturing
            error = x.what();
        } catch (...) {
            cudaStreamEndCapture(stream_, &graph);
            if (graph) cudaGraphDestroy(graph);
            cudaGetLastError();
            throw;
        }
        cudaError_t e = cudaStreamEndCapture(stream_, &graph);
        if (error.empty() && e == cudaSuccess) e = cudaGraphInstantiate(&graph_exec_, graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (error.empty() && e != cudaSuccess) error = cuda_message(e);
        if (!error.empty()) {
            cudaGetLastError();
            graph_exec_ = nullptr;  // never instantiated
        }
        return error;
    }

    int64_t rows_of(int32_t v, int64_t T, bool all_rows) const { return (single_row_[v] && !all_rows) ? 1 : T; }
    float* f32(int32_t v) const { return reinterpret_cast<float*>(data_[v]); }
    const float* opt_f32(int32_t v) const { return v >= 0 ? reinterpret_cast<const float*>(data_[v]) : nullptr; }
    // Whether optional input v is absent or a weight: memory no kernel of a step writes, so a
    // decode kernel may read it before its PDL wait (common.cuh).
    bool weight_or_none(int32_t v) const { return v < 0 || is_weight_[v]; }

    // Enqueues one step of T rows on the stream (also what a decode graph captures).
    void enqueue(int64_t T, bool all_rows) {
        const StepParams* sp = reinterpret_cast<const StepParams*>(params_.get());
        // Where the next kernel goes: a programmatic dependent launch in decode steps (not
        // while profiling: events sit between the kernels), but for the step's first kernel,
        // whose predecessor on the stream is the copy of the step's parameters and tokens.
        const bool pdl = pdl_ && T == 1 && !profiling_;
        bool first_launch = true;
        auto L = [&] {
            const Launch l{stream_, pdl && !first_launch};
            first_launch = false;
            return l;
        };
        int32_t q8_value = -1;  // the value whose int8 copy the q8 buffer holds
        if (positions_value_ >= 0) {
            launch_positions(reinterpret_cast<int32_t*>(data_[positions_value_]), T, sp, L());
            after_launch(-1, "positions");
        }
        const ActQ8 no_q8{};
        // The angle tables of the q/k/v launches that apply the rope, once a step: after the
        // step's first kernel, so that their angles (taken before the PDL wait) overlap it.
        bool angles_pending = T == 1 && !rope_tables_.empty();
        for (size_t i = 0; i < nodes_.size(); ++i) {
            const Node& n = nodes_[i];
            const int32_t x = n.in[0];
            if (profiling_) check(cudaEventRecord(events_[i], stream_), "cudaEventRecord");
            const DecodeNode* d = T == 1 ? &decode_[i] : nullptr;  // how it is fused in a decode step
            if (d && d->skip) continue;  // done by an earlier node's launch
            if (angles_pending && (!first_launch || d->rope >= 0)) {
                for (size_t t = 0; t < rope_tables_.size(); ++t) {
                    launch_rope_angles(rope_tables_[t].a, opt_f32(rope_tables_[t].factors), angle_table(t), sp, L());
                    after_launch(-1, "rope angles");
                }
                angles_pending = false;
            }
            switch (n.op) {
                case Op::Embedding: {
                    const int32_t w = n.in[0];
                    launch_embedding(type_[w], data_[w], row_bytes_[w], weight_rows_[w], width_[w],
                                     reinterpret_cast<const int32_t*>(data_[n.in[1]]), T, f32(n.out), L());
                    break;
                }
                case Op::RmsNorm: {
                    if (d && d->quant) {
                        launch_add_rms_norm_q8(f32(x), nullptr, nullptr, opt_f32(n.in[1]), f32(n.out), width_[x],
                                               n.p.eps, q8_act_, spread_, early_ && weight_or_none(n.in[1]), L());
                        q8_value = n.out;
                        break;
                    }
                    const int64_t W = n.p.head_dim > 0 ? n.p.head_dim : width_[x];
                    launch_rms_norm(f32(x), opt_f32(n.in[1]), f32(n.out), rows_of(x, T, all_rows) * (width_[x] / W), W,
                                    n.p.eps, L());
                    break;
                }
                case Op::LayerNorm:
                    launch_layer_norm(f32(x), opt_f32(n.in[1]), opt_f32(n.in[2]), f32(n.out), rows_of(x, T, all_rows),
                                      width_[x], n.p.eps, L());
                    break;
                case Op::MatMul: {
                    const int32_t w = n.in[1];
                    const int64_t K = width_[x], R = weight_rows_[w], rows = rows_of(x, T, all_rows);
                    const DType t = type_[w];
                    // Decode steps take the matvec; every matmul of a prefill step (the
                    // single-row lm_head too) takes the tiled kernels, so the logits of a
                    // position do not depend on how the prompt was split into steps.
                    // With d->n_more, the matvecs of the next nodes (same input, type, width) run in
                    // the same launch.
                    MatvecPart parts[kMaxMatvecParts] = {{data_[w], R, f32(n.out)}};
                    const int n_parts = d ? 1 + d->n_more : 1;
                    for (int k = 1; k < n_parts; ++k) {
                        const Node& m = nodes_[d->more[k - 1]];
                        parts[k] = {data_[m.in[1]], weight_rows_[m.in[1]], f32(m.out)};
                    }
                    if (T == 1 && !matvec_f32_ && matvec_q8_supported(t)) {
                        if (q8_value != x) {
                            launch_quantize_q8(f32(x), 1, K, q8_act_, L());
                            after_launch((int)i, "quantize");
                            q8_value = x;
                        }
                        if (d && d->rope >= 0)
                            launch_mv_rope(*d, t, row_bytes_[w], K, parts, nullptr, q8_act_, split_[w], sp, L());
                        else if (n_parts > 1 || split_[w])
                            launch_matvec_wide_q8_parts(t, row_bytes_[w], K, parts, n_parts, q8_act_, 1, matvec_, L(),
                                                        split_[w]);
                        else
                            launch_matvec_q8(t, data_[w], row_bytes_[w], K, R, q8_act_, 1, f32(n.out), matvec_, L());
                    } else if (T == 1) {
                        if (d && d->glu >= 0) {  // gate/up and the glu (plan_mv_glu)
                            const Node& g = nodes_[d->glu];
                            const uint8_t* w_gate = d->gate_first ? data_[w] : parts[1].w;
                            const uint8_t* w_up = d->gate_first ? parts[1].w : data_[w];
                            launch_matvec_wide_glu(t, w_gate, w_up, row_bytes_[w], K, R, f32(x), g.p.act, f32(g.out),
                                                   matvec_, L());
                        } else if (d && d->rope >= 0)
                            launch_mv_rope(*d, t, row_bytes_[w], K, parts, f32(x), no_q8, false, sp, L());
                        else if (n_parts > 1)
                            launch_matvec_wide_f32_parts(t, row_bytes_[w], K, parts, n_parts, f32(x), 1, matvec_, L());
                        else
                            launch_matvec_f32(t, data_[w], row_bytes_[w], K, R, f32(x), 1, f32(n.out), matvec_, L());
                    } else if (gemm_.get() && gemm_f16_supported(t, K)) {
                        launch_gemm_f16(t, data_[w], row_bytes_[w], K, R, f32(x), rows, f32(n.out),
                                        reinterpret_cast<__half*>(gemm_.get()), props_.multiProcessorCount, cublas(), stream_,
                                        split_[w]);
                    } else {
                        launch_matmul(t, data_[w], row_bytes_[w], K, R, f32(x), rows, f32(n.out),
                                      use_tc_ && matmul_tc_exact_enough(t), stream_);
                    }
                    break;
                }
                case Op::Add:
                case Op::Mul:
                case Op::Glu: {
                    const int32_t b = n.in[1];
                    if (d && d->quant && n.op == Op::Glu) {
                        launch_glu_q8(n.p.act, f32(x), f32(b), f32(n.out), width_[x], q8_act_, L());
                        q8_value = n.out;
                        break;
                    }
                    if (d && d->norm >= 0) {  // add, then the rms_norm of the sum
                        const Node& nn = nodes_[d->norm];
                        launch_add_rms_norm_q8(f32(x), f32(b), f32(n.out), opt_f32(nn.in[1]), f32(nn.out), width_[x],
                                               nn.p.eps, d->quant ? q8_act_ : no_q8, spread_,
                                               early_ && weight_or_none(nn.in[1]), L());
                        if (d->quant) q8_value = nn.out;
                        break;
                    }
                    const Binary op = n.op == Op::Add ? Binary::Add : n.op == Op::Mul ? Binary::Mul : Binary::Glu;
                    const bool broadcast = is_weight_[b] && type_[b] == DType::F32 && weight_rows_[b] == 1;
                    launch_binary(op, n.p.act, f32(x), f32(b), broadcast, f32(n.out), rows_of(x, T, all_rows),
                                  width_[x], L());
                    break;
                }
                case Op::Scale:
                    launch_scale(f32(x), f32(n.out), width_[x] * rows_of(x, T, all_rows), n.p.scale, L());
                    break;
                case Op::Activation:
                    launch_activation(n.p.act, f32(x), f32(n.out), width_[x] * rows_of(x, T, all_rows), L());
                    break;
                case Op::Rope: {
                    if (d && d->rope_k >= 0) {  // rope of q and k, the KV append of the attention
                        const Node& nk = nodes_[d->rope_k];
                        const Node& na = nodes_[d->attn];
                        const KvSlot& s = kv_slots_[na.p.kv_slot];
                        launch_rope_qk_append(rope_args(n), nk.p.n_head, f32(x), f32(nk.in[0]), f32(na.in[2]),
                                              opt_f32(n.in[1]), f32(n.out), f32(nk.out), s.k, s.v, s.capacity,
                                              spread_, early_ && weight_or_none(n.in[1]), sp, L());
                        break;
                    }
                    launch_rope(rope_args(n), f32(x), opt_f32(n.in[1]), f32(n.out), T, sp, L());
                    break;
                }
                case Op::Attention: {
                    const KvSlot& s = kv_slots_[n.p.kv_slot];
                    AttnArgs a{n.p.n_head, n.p.n_head_kv, n.p.head_dim, n.p.window, s.capacity, n.p.attn_scale,
                               n.p.softcap, prefill_attn_, split_keys_, keys_per_round_, attn_prefetch_};
                    if (!(d && d->appended)) {
                        launch_kv_append(a, f32(n.in[1]), f32(n.in[2]), s.k, s.v, T, sp, L());
                        after_launch((int)i, "kv append");
                    }
                    const int splits = T == 1 ? decode_splits_ : 1;
                    const bool quant = d && d->quant;  // the merge kernel quantizes (splits > 1)
                    launch_attention(a, f32(x), s.k, s.v, f32(n.out), T, splits,
                                     reinterpret_cast<float*>(partial_.get()), sp, L(), quant ? q8_act_ : no_q8);
                    if (quant) q8_value = n.out;
                    break;
                }
                case Op::LastRow: {
                    const int64_t W = width_[x], first = all_rows ? 0 : T - 1;
                    launch_copy_cols(f32(x) + first * W, W, 0, f32(n.out), W, T - first, L());
                    break;
                }
                case Op::Slice:
                    launch_copy_cols(f32(x), width_[x], n.p.offset, f32(n.out), n.p.width, rows_of(x, T, all_rows),
                                     L());
                    break;
            }
            after_launch((int)i, op_name(n.op));
        }
        if (profiling_) check(cudaEventRecord(events_[nodes_.size()], stream_), "cudaEventRecord");
        if (device_argmax_step(T)) {  // greedy decoding reads 4 bytes instead of the logits (run())
            const int64_t W = width_[output_value_], rows = rows_of(output_value_, T, all_rows);
            launch_argmax(f32(output_value_) + (rows - 1) * W, W, reinterpret_cast<int32_t*>(argmax_.get()), L());
            after_launch(-1, "argmax");
        }
    }

    // q/k/v with the rope launch planned after them (plan_mv_rope): x for f16 / bf16, x8 for
    // the quantized types.
    void launch_mv_rope(const DecodeNode& d, DType t, int64_t row_bytes, int64_t K, const MatvecPart* qkv,
                        const float* x, ActQ8 x8, bool split, const StepParams* sp, Launch l) {
        const Node& nq = nodes_[d.rope];
        const KvSlot& s = kv_slots_[nodes_[decode_[d.rope].attn].p.kv_slot];
        launch_matvec_wide_rope(t, row_bytes, K, qkv, x, x8, split, rope_args(nq), angle_table(d.angles), f32(nq.out),
                                s.k, s.v, s.capacity, sp, matvec_, l);
    }

    float2* angle_table(size_t t) const { return reinterpret_cast<float2*>(angles_.get() + t * kRopeTableBytes); }

    // Launch errors (bad configuration) surface at once; with STRATA_CUDA_SYNC=1 so do faults.
    void after_launch(int node, const char* what) {
        std::string where;
        auto describe_node = [&] {
            where = std::string(what);
            if (node >= 0) {
                where += " (node " + std::to_string(node);
                const Node& n = nodes_[node];
                if (n.op == Op::MatMul) where += ", " + names_[n.in[1]];
                where += ")";
            }
        };
        cudaError_t e = cudaGetLastError();
        if (e == cudaSuccess && sync_debug_) e = cudaStreamSynchronize(stream_);
        if (e != cudaSuccess) {
            describe_node();
            throw StrataError("CUDA error in " + where + ": " + cuda_message(e));
        }
    }

    int device_;
    cudaDeviceProp props_{};
    cudaStream_t stream_ = nullptr;
    cudaGraphExec_t graph_exec_ = nullptr;
    bool use_graphs_ = true, sync_debug_ = false, use_tc_ = true, use_gemm_ = true, matvec_f32_ = false, profiling_ = false;
    bool pdl_ = false;           // STRATA_CUDA_PDL: decode kernels as programmatic dependent launches
    bool argmax_on_ = false;      // STRATA_CUDA_DEVICE_ARGMAX: decode steps end with the argmax kernel
    bool argmax_ready_ = false;  // the last step computed the argmax (host_argmax_ holds it)
    bool topk_on_ = false;        // STRATA_CUDA_DEVICE_TOPK: device_top_k selects on the device
    bool repack_ = true;          // STRATA_CUDA_REPACK: q4_0 / q8_0 weights in split rows where they can be
    bool any_split_ = false;      // some weight of this model is
    PrefillAttn prefill_attn_ = PrefillAttn::Mma;  // STRATA_CUDA_ATTN=f32|rows
    // top-k scratch: stage-1 lists (kTopKScratch values, then ids), the k best (values, ids)
    static constexpr int64_t kTopKBytes = 2 * kTopKScratch * 4 + 2 * Backend::kMaxDeviceTopK * 4;
    bool out_on_host_ = false;   // host_out_ holds the last step's output
    std::vector<cudaEvent_t> events_;   // profiling: before each node, and after the last
    std::vector<double> node_seconds_;  // profiling: per node, summed over steps
    int forced_splits_ = 0, decode_splits_ = 1, split_keys_ = kDecodeSplitKeys, keys_per_round_ = 4;
    bool attn_prefetch_ = true;  // STRATA_CUDA_PREFETCH
    bool early_ = true;          // STRATA_CUDA_PREFETCH=1: norm weights and rope angles before the wait
    bool spread_ = true;         // STRATA_CUDA_SPREAD
    unsigned fuse_ = kFuseDefault;             // STRATA_CUDA_FUSE
    std::vector<DecodeNode> decode_;       // per node: its fusion in decode steps
    std::string graph_note_;

    std::vector<Node> nodes_;
    DeviceBuffer weights_, kv_, arena_, q8_, partial_, params_, gemm_, argmax_, topk_;
    DeviceBuffer angles_;                  // rope_tables_.size() tables of kRopeTableBytes
    std::vector<RopeTable> rope_tables_;   // plan_mv_rope
    std::unique_ptr<Cublas> blas_;  // the prefill GEMM's cuBLAS, where it loaded
    const Cublas* cublas() const { return blas_ && blas_->ok() ? blas_.get() : nullptr; }
    PinnedBuffer host_out_, host_tokens_, host_params_, host_argmax_, host_topk_;
    ActQ8 q8_act_{};
    MatvecConfig matvec_{};
    std::vector<KvSlot> kv_slots_;
    std::vector<uint8_t*> data_;
    std::vector<DType> type_;
    std::vector<int64_t> width_, weight_rows_, row_bytes_;
    std::vector<uint8_t> single_row_, is_weight_, split_;  // split_: a weight in split rows
    std::vector<std::string> names_;
    int64_t n_ctx_ = 0, max_rows_ = 0, out_rows_ = 0, kv_bytes_ = 0;
    int32_t tokens_value_ = -1, positions_value_ = -1, output_value_ = -1;
};

}  // namespace

bool cuda_available() {
    if (env("STRATA_NO_CUDA") == "1") return false;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return n > 0;
}

std::string device_description() {
    if (!cuda_available()) return "no CUDA device";
    const int device = env_int("STRATA_CUDA_DEVICE", 0);
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
        cudaGetLastError();
        return "CUDA device " + std::to_string(device) + " unavailable";
    }
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    return std::string(p.name) + ", sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
           std::to_string(p.multiProcessorCount) + " SMs, " + gib((int64_t)p.totalGlobalMem) + ", runtime " +
           std::to_string(runtime) + ", driver " + std::to_string(driver);
}

std::unique_ptr<Backend> make_cuda_backend() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        throw UnsupportedError("the CUDA backend found no usable device: " + cuda_message(e));
    }
    const int device = env_int("STRATA_CUDA_DEVICE", 0);
    if (device < 0 || device >= n)
        throw UnsupportedError("STRATA_CUDA_DEVICE=" + std::to_string(device) + " but " + std::to_string(n) +
                               " CUDA device(s) found");
    return std::make_unique<CudaBackend>(device);
}

}  // namespace strata::cuda
