// Shared by the CUDA backend's sources: error checks, the per-step parameters that live in
// device memory, small warp helpers, programmatic dependent launch (pdl_begin, launch_kernel),
// and the launchers each kernel file provides.
//
// Every launcher only enqueues work on the given stream and never throws: the host side
// (cuda_backend.cu) checks cudaGetLastError after each node, and a failure becomes a
// StrataError carrying cudaGetErrorString's text.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <algorithm>
#include <string>
#include <utility>

#include "../../core/dtype.h"
#include "../../core/graph.h"

namespace strata::cuda {

// Per-step values that kernels read from device memory, so that a captured decode graph
// stays valid for every step: the host copies a new StepParams in before each launch.
struct StepParams {
    int32_t n_past;  // position of the step's first token
    int32_t pad[3];
};

// An activation matrix quantized to 8 bits for the integer (dp4a) matvec: per row, K int8
// values; per 32 of them an fp32 scale d (x ~= d * q, d = amax / 127, rounded to nearest
// even exactly as the CPU backend's block_q8_act) and the sums of the first and second
// 16 quants, packed as two int16 in one int32 (low half first).
struct ActQ8 {
    int8_t* q;   // rows x K
    float* d;    // rows x K/32
    int32_t* s;  // rows x K/32
};

// ---- device helpers --------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- programmatic dependent launch (PDL, sm_90) ------------------------------------------
// A decode step's kernels are launched with the programmatic stream serialization attribute
// (launch_kernel with Launch::pdl), so that the GPU schedules a kernel's blocks while the
// kernel before it drains instead of after it has fully retired. Every kernel launched through
// launch_kernel (all that a decode step may run; the prefill matmuls keep <<< >>>) calls
// pdl_begin() first, before any read or write of global memory (n_past included), and before
// any early return: griddepcontrol.wait returns once the previous kernel on the stream
// has completed and its writes are visible, so this kernel can neither read what that one has
// not written yet nor overwrite what it still reads (RAW and WAR safe), and by induction the
// same holds for every earlier kernel. launch_dependents then lets the next kernel's blocks be
// scheduled (they wait in their own pdl_begin). The exceptions read, before the wait, only
// memory no kernel of a step writes, and write nothing: n_past (copied in before the step's
// first kernel), the weights (written at load, before any step), and prefetches (which
// return no value): decode attention asks L2 for the K and V rows it will read
// (attention.cu, prefetch_keys), the decode norm loads its weights (elementwise.cu) and the
// spread rope takes its angles (rope.cu), each only where the switch STRATA_CUDA_PREFETCH
// allows it, and the wide decode matvec loads its first steps of weights (matvec_wide.cuh,
// wide_lane_sums) unless STRATA_CUDA_MV_EARLY=0. For a kernel launched without the attribute
// both instructions do nothing; below sm_90 they do not exist, and the backend leaves PDL off
// (pdl_kernels_built()).
__device__ __forceinline__ void pdl_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 for the 128-byte line holding address a (a hint: no value changes, no fault).
__device__ __forceinline__ void prefetch_l2_line(uintptr_t a) {
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
#endif
}

// Where a launcher enqueues its kernels: the stream, and whether they are launched as
// programmatic dependents of the kernel before them (decode steps, not their first kernel).
// Implicit from a stream, so that callers outside the step (tools) pass a stream as before.
struct Launch {
    cudaStream_t stream = nullptr;
    bool pdl = false;
    Launch(cudaStream_t s = nullptr, bool p = false) : stream(s), pdl(p) {}
};

// kernel<<<grid, block, smem, l.stream>>>(args...), with the PDL attribute when l.pdl. The
// kernel must start with pdl_begin(). Errors are left for cudaGetLastError, as with <<< >>>.
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Launch l, Args&&... args) {
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = l.stream;
    cfg.attrs = attr;
    cfg.numAttrs = l.pdl ? 1 : 0;
    (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// ---- launchers -------------------------------------------------------------------------
// Launchers taking a Launch may run in a decode step (their kernels start with pdl_begin);
// those taking a plain stream (prefill matmuls) never do.

// pdl.cu: whether the kernels as loaded on the current device were compiled for sm_90 or
// later, where pdl_begin's instructions exist (PTX JIT-compiled from an older virtual
// architecture has none, and a programmatic launch of it would race).
bool pdl_kernels_built();

// argmax.cu (greedy decoding on the device, Backend::device_argmax): *out = the first index of
// the largest of x[0, n), NaN never winning; -1 when every value is NaN. One block.
void launch_argmax(const float* x, int64_t n, int32_t* out, Launch s);

// topk.cu (top-k sampling's candidates on the device, Backend::device_top_k): out_v / out_i =
// the k best (value, index) pairs of x[0, n), best first, equal values by smaller index, NaN
// never taken, unfilled slots (NaN, -1). scratch_v / scratch_i hold kTopKScratch pairs; only
// for top_k_fits(n, k). Two plain launches (never in a captured decode step).
constexpr int kTopKScratch = 4096;
bool top_k_fits(int64_t n, int k);
void launch_top_k(const float* x, int64_t n, int k, float* scratch_v, int32_t* scratch_i, float* out_v,
                  int32_t* out_i, cudaStream_t s);

// elementwise.cu
// out[t, :] = row ids[t] of the table, dequantized to f32 (`width` elements of `type`).
void launch_embedding(DType type, const uint8_t* table, int64_t row_bytes, int64_t table_rows,
                      int64_t width, const int32_t* ids, int64_t rows, float* out, Launch s);
// pos[t] = n_past + t
void launch_positions(int32_t* pos, int64_t rows, const StepParams* sp, Launch s);
// `groups` independent groups of W elements (rows, or heads of rows), optional weight[W].
void launch_rms_norm(const float* x, const float* w, float* y, int64_t groups, int64_t W, float eps,
                     Launch s);
void launch_layer_norm(const float* x, const float* w, const float* b, float* y, int64_t rows,
                       int64_t W, float eps, Launch s);
enum class Binary : int { Add = 0, Mul = 1, Glu = 2 };
// y = a op b over rows x W; b is one row of W broadcast to every row when `broadcast`.
void launch_binary(Binary op, Activation act, const float* a, const float* b, bool broadcast,
                   float* y, int64_t rows, int64_t W, Launch s);
void launch_scale(const float* x, float* y, int64_t n, float scale, Launch s);
void launch_activation(Activation act, const float* x, float* y, int64_t n, Launch s);
// y[t, 0:w] = x[t, col0:col0 + w] for `rows` rows (x rows are x_width wide): slice, last_row.
void launch_copy_cols(const float* x, int64_t x_width, int64_t col0, float* y, int64_t w,
                      int64_t rows, Launch s);

// Decode-step fusions (one row; cuda_backend.cu's decode plan says when each applies). Each
// computes what the unfused launches compute, in the same order per element, and writes the
// same outputs: the bytes are identical, only launches are saved.
// sum = x + b (when b), then y = rms_norm(sum or x) (* w), and, when q8 is given (q8.q not
// null, W % 32 == 0), y quantized into it as launch_quantize_q8 would. One row of W. One
// block reads all the inputs before it writes any of y, so y may share memory with x or b;
// spread (several blocks, each writing a stretch of the row) needs y and sum apart from x and b.
// w_early: w is a weight, loaded before the PDL wait (elementwise.cu).
void launch_add_rms_norm_q8(const float* x, const float* b, float* sum, const float* w, float* y, int64_t W,
                            float eps, ActQ8 q8, bool spread, bool w_early, Launch s);
// y = act(gate) * up over n elements (n % 32 == 0), quantized into q8 in the same pass.
void launch_glu_q8(Activation act, const float* gate, const float* up, float* y, int64_t n, ActQ8 q8,
                   Launch s);

// rope.cu
struct RopeArgs {
    int32_t n_head, head_dim, n_rot;
    int32_t neox;  // RopeMode::Neox
    float base, freq_scale, attn_factor;
};
void launch_rope(const RopeArgs& a, const float* x, const float* factors, float* y, int64_t rows,
                 const StepParams* sp, Launch s);
// Decode (one row): rope of q (a.n_head heads) and of k (n_head_k heads, same angles) and the
// KV append of the roped k and of v at position n_past (cache row n_past % capacity). Spread:
// a block a head, so ko must not share memory with q; else one block that reads q, k and v
// before it writes anything (ko may share memory with q).
// rope_qk_append_fits: false when q and k do not fit the one block's shared memory. early
// (spread only; factors null or a weight): the angles are taken before the PDL wait (rope.cu).
bool rope_qk_append_fits(const RopeArgs& a, int n_head_k);
// Decode: table[i] = the cos and sin (times the magnitude factor) of pair i < n_rot / 2 at
// position n_past, as the rope kernels take them (rope.cuh), for launch_matvec_wide_rope.
void launch_rope_angles(const RopeArgs& a, const float* factors, float2* table, const StepParams* sp, Launch s);
void launch_rope_qk_append(const RopeArgs& a, int n_head_k, const float* q, const float* k, const float* v,
                           const float* factors, float* qo, float* ko, __half* kc, __half* vc, int64_t capacity,
                           bool spread, bool early, const StepParams* sp, Launch s);

// attention.cu
// Which kernel a prefill step's attention runs on (STRATA_CUDA_ATTN): Mma = tensor cores
// where the head fits (head_dim 64 or 128, no soft-cap; the default), F32Tiles = f32 tiles
// (head_dim 64 or 128), Rows = one warp per row; a head that does not fit a kernel takes the
// next.
enum class PrefillAttn : int32_t { Mma, F32Tiles, Rows };

// Decode attention: the fewest keys a split takes by default (STRATA_CUDA_ATTN_SPLIT_KEYS).
inline constexpr int32_t kDecodeSplitKeys = 16;
// Decode attention: the most splits a step may use (the merge kernel keeps one weight a split
// in shared memory).
inline constexpr int32_t kMaxAttnSplits = 64;

struct AttnArgs {
    int32_t n_head, n_head_kv, head_dim;
    int32_t window;      // 0 = full causal
    int64_t capacity;    // cache rows (position p lives in row p % capacity)
    float scale, softcap;
    PrefillAttn prefill = PrefillAttn::Mma;
    // Decode: the fewest keys a split takes (STRATA_CUDA_ATTN_SPLIT_KEYS). A row that sees
    // len keys uses ceil(len / split_keys) of the n_split splits, at most all; 0: all of them
    // whatever the length (the keys cut into n_split equal stretches).
    int32_t split_keys = kDecodeSplitKeys;
    // The one-warp-per-row kernel's keys per round (4, 8 or 16; STRATA_CUDA_ATTN_ROUND): a
    // round loads its keys' K and V rows at once, so more keys a round, fewer waits on memory.
    int32_t keys_per_round = 4;
    // Decode: each warp asks L2 for its keys' K and V rows before it waits for the kernel
    // before it (STRATA_CUDA_PREFETCH=0: off; attention.cu, prefetch_keys, says why it is safe).
    bool prefetch = true;
};
// Appends this step's K and V rows (f32, rows x n_head_kv*head_dim) to the fp16 cache.
void launch_kv_append(const AttnArgs& a, const float* k, const float* v, __half* kc, __half* vc,
                      int64_t rows, const StepParams* sp, Launch s);
// out = softmax(scale * q k^T) v over each row's visible cache positions. With n_split > 1
// each (row, head) is split over up to that many stretches of keys (a.split_keys says how
// many a row's length uses), written to `partial` (rows * n_head * n_split * (head_dim + 2)
// floats) and merged by a second kernel.
// With q8 given (q8.q not null; decode, n_split > 1, head_dim % 32 == 0) the merge kernel
// also quantizes the output into it, as launch_quantize_q8 would.
bool attention_supported(int32_t head_dim);
void launch_attention(const AttnArgs& a, const float* q, const __half* kc, const __half* vc,
                      float* out, int64_t rows, int n_split, float* partial,
                      const StepParams* sp, Launch s, ActQ8 q8 = ActQ8{});

// Decode matvec settings: the backend fills them from the environment when it is made
// (STRATA_CUDA_MATVEC=v1 | wide | wide-smem, STRATA_CUDA_MATVEC_TILE=nr,split[,unroll]); tools
// set them directly.
struct MatvecConfig {
    int num_sms = 132;
    bool v1 = false;        // the one-warp-per-row kernels of matvec.cu for every type
    bool wide_all = false;  // the wide kernel for every type it serves, not only its defaults
    int nr = 0, split = 0, unroll = 0;  // wide kernel: rows per warp (1, 2, 4), K splits (1, 2, 4),
                                        // steps of loads in flight (1, 2, 4); 0: wide_tile's
    bool split_kernel = false;  // the split-K kernel (shared memory) even at split 1 (A/B only)
    bool early_weights = true;  // wide kernel: the first weight loads before the PDL wait
};

// matvec.cu (decode: one activation row per weight row pass, or a few). Both launchers take
// the wide kernel (matvec_wide.cu) for the types it is the default for (matvec_wide_default),
// or every type it serves with cfg.wide_all, never with cfg.v1.
void launch_quantize_q8(const float* x, int64_t rows, int64_t K, ActQ8 out, Launch s);
bool matvec_q8_supported(DType t);
void launch_matvec_q8(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R,
                      ActQ8 x, int64_t rows, float* y, const MatvecConfig& cfg, Launch s);
void launch_matvec_f32(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R,
                       const float* x, int64_t rows, float* y, const MatvecConfig& cfg, Launch s);

// matvec_wide.cu: 16-byte weight loads, NR rows per warp, split-K over the warps of a block.
struct WideTile {
    int nr, split, unroll;
};
// The tile for a weight type (cfg's non-zero fields override it).
WideTile wide_tile(DType type, const MatvecConfig& cfg);
// q8: the int8 path (quantized weights against ActQ8); else the f32 path (f16 / bf16 weights).
bool matvec_wide_supported(DType t, int64_t K, bool q8);
// Whether a supported type takes the wide kernel by default (the types where it was measured
// faster on the H100: f16, bf16, q8_0, q4_0, q4_K, q6_K; q4_1 measured mixed, q5_0, q5_1 and
// iq4_nl not measured: they stay on matvec.cu unless STRATA_CUDA_MATVEC=wide).
bool matvec_wide_default(DType t);
// Whether launch_matvec_q8 / launch_matvec_f32 take the wide kernel for this type and width.
bool matvec_takes_wide(DType t, int64_t K, bool q8, const MatvecConfig& cfg);
void launch_matvec_wide_q8(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, ActQ8 x,
                           int64_t rows, float* y, const MatvecConfig& cfg, Launch s);
void launch_matvec_wide_f32(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                            int64_t rows, float* y, const MatvecConfig& cfg, Launch s);
// Several weights of one type and width against the same activations in one launch (q/k/v,
// gate/up in a decode step): the blocks of weight i follow those of weight i - 1, and every
// row is computed exactly as a launch of its own would compute it. For types and widths that
// matvec_takes_wide accepts; at most kMaxMatvecParts weights.
constexpr int kMaxMatvecParts = 3;
struct MatvecPart {
    const uint8_t* w;
    int64_t R;
    float* y;
};
// split: the weights are in split rows (weight_split.cuh; q4_0 / q8_0 with K % 256 == 0).
void launch_matvec_wide_q8_parts(DType t, int64_t row_bytes, int64_t K, const MatvecPart* parts, int n_parts,
                                 ActQ8 x, int64_t rows, const MatvecConfig& cfg, Launch s, bool split);
void launch_matvec_wide_f32_parts(DType t, int64_t row_bytes, int64_t K, const MatvecPart* parts, int n_parts,
                                  const float* x, int64_t rows, const MatvecConfig& cfg, Launch s);
// q/k/v (qkv[0..2], one type and width) and the rope of q and k and the KV append of the
// attention after them in one decode launch (matvec_wide.cu): q' to qo, k' and v to the f16
// cache row n_past % capacity, as launch_rope_qk_append writes them, bit for bit; k' is not
// written as f32. The angles come from `angles` (launch_rope_angles, earlier in the step).
// x for f16 / bf16, x8 for the quantized types (split as above). Supported where
// matvec_takes_wide takes the type at one K split and a block's rows hold whole pairs.
bool matvec_rope_supported(DType t, int64_t K, bool q8, const RopeArgs& a, int n_head_k, const MatvecConfig& cfg);
void launch_matvec_wide_rope(DType t, int64_t row_bytes, int64_t K, const MatvecPart* qkv, const float* x,
                             ActQ8 x8, bool split, const RopeArgs& a, const float2* angles, float* qo, __half* kc,
                             __half* vc, int64_t capacity, const StepParams* sp, const MatvecConfig& cfg, Launch s);

// Decode gate/up and the glu after them in one launch (f16 / bf16 weights on the wide kernel,
// no split-K): h[r] = act(gate row r . x) * (up row r . x), gate and up not written; the
// bits of the two matvecs and the glu launched apart.
bool matvec_glu_supported(DType t, int64_t K, const MatvecConfig& cfg);
void launch_matvec_wide_glu(DType t, const uint8_t* w_gate, const uint8_t* w_up, int64_t row_bytes, int64_t K,
                            int64_t R, const float* x, Activation act, float* h, const MatvecConfig& cfg, Launch s);

// matmul.cu (prefill: tiles of 128 activation rows x 128 weight rows)
// tensor_cores: f16 operands (weights dequantized into shared memory, activations rounded
// to f16) on WMMA with f32 accumulation; otherwise f32 FMA throughout.
bool matmul_tc_exact_enough(DType t);
void launch_matmul(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                   int64_t rows, float* y, bool tensor_cores, cudaStream_t s);

// gemm_f16.cu (prefill on mma.sync: activations and weights rounded to f16 once per matmul
// into `scratch`, then a pipelined tensor-core GEMM). For tensor-core types with K % 32 == 0.
bool gemm_f16_supported(DType t, int64_t K);
// Weight rows dequantized per chunk, and the scratch (in halves) one matmul needs.
int64_t gemm_f16_chunk_rows(int64_t K, int64_t R);
int64_t gemm_f16_scratch_halves(DType t, int64_t K, int64_t R, int64_t max_rows);
// cublas.cu: cuBLAS loaded at run time (dlopen), one handle per backend on its stream.
class Cublas {
public:
    explicit Cublas(cudaStream_t s);
    ~Cublas();
    Cublas(const Cublas&) = delete;
    Cublas& operator=(const Cublas&) = delete;
    bool ok() const { return handle_ != nullptr; }
    const std::string& note() const { return note_; }  // the library in use, or why none is
    // Row-major y[t * ldy + r] = sum_k x[t * K + k] * w[r * K + k], r < n, t < rows.
    void gemm_f16(const __half* w, const __half* x, float* y, int64_t n, int64_t rows, int64_t K,
                  int64_t ldy) const;

private:
    void* handle_ = nullptr;
    std::string note_;
};

// `blas`: the GEMM itself on cuBLAS where given, else on this file's mma.sync tiles.
// split: the weight is in split rows (weight_split.cuh).
void launch_gemm_f16(DType t, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t R, const float* x,
                     int64_t rows, float* y, __half* scratch, int num_sms, const Cublas* blas, cudaStream_t s,
                     bool split);

// repack.cu: a q4_0 / q8_0 weight of `rows` rows of K elements into split rows, in place
// (split_rows_supported(t, K) must hold).
void launch_split_rows(DType t, uint8_t* w, int64_t rows, int64_t K, cudaStream_t s);

}  // namespace strata::cuda
