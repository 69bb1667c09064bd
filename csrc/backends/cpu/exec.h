// The state one CPU step runs on, shared by the host side (cpu_backend.cpp) and the
// kernels, which are compiled once per instruction set (kernels/*.cpp, see CMakeLists.txt).
//
// Plain data only: the kernels are built several times with different -m flags, and any
// inline function or template shared between those builds could be linked in its AVX-512
// flavour and then run on a CPU without it. So nothing here has code.
#pragma once

#include <cstdint>

#include "../../core/graph.h"

namespace strata::cpu {

// One attention layer's cache. Position p lives in row p % capacity: full layers have
// capacity n_ctx; sliding-window layers keep window + max_rows - 1 rows, enough for any
// step's queries to see their whole window while the step writes its own keys.
struct KvSlot {
    uint16_t* k;  // [capacity][width] fp16
    uint16_t* v;  // [capacity][width] fp16
    int64_t width;
    int64_t capacity;
};

// Prefill attention (kernels/attention.cpp) runs blocks of up to kAttnQueryBlock query
// vectors (heads of one KV group x tokens) against tiles of kAttnKeyTile cached positions;
// per thread it needs kAttnScratchPerDim floats per head_dim element plus kAttnScratchFixed.
inline constexpr int32_t kAttnQueryBlock = 24;
inline constexpr int32_t kAttnKeyTile = 32;
inline constexpr int32_t kAttnScratchPerDim = 3 * kAttnQueryBlock + 2 * kAttnKeyTile;
inline constexpr int32_t kAttnScratchFixed = kAttnKeyTile * kAttnQueryBlock;
// Positions [k C, (k + 1) C) form chunk k (C = kAttnChunk, a multiple of the key tile): each
// query's softmax runs per chunk and the chunks' results are folded in order, so decode can
// give a long cache's chunks to different threads and still match prefill bit for bit. The
// threads' chunk results meet in a shared buffer of attn_partial_floats(...) floats.
inline constexpr int32_t kAttnChunk = 512;
inline int64_t attn_partial_floats(int32_t n_head, int32_t head_dim, int64_t n_ctx) {
    return (int64_t)n_head * (head_dim + 2) * ((n_ctx + kAttnChunk - 1) / kAttnChunk);
}

// Activation formats for integer dot products (which one a weight type wants): none (fp32),
// 8-bit per 32 elements (quants::block_q8_act), 8-bit per 256 (quants::block_q8_256), and
// 8-bit per 32 with half sums (quants::block_q8_halves) for the prefill tile matmul, and
// Q8_32 followed by each block's negated lane sums (8 int32 per block: minus the sum of
// quants 4i..4i+3 in lane i), which the 32-element formats take on AVX2 and up (q4_0 and
// q5_0 start their integer dot product from them; see dot_q_nibbles).
enum class ActFormat : int32_t { None = 0, Q8_32 = 1, Q8_256 = 2, Q8_Halves = 3, Q8_32_Lanes = 4 };

// The prefill tile matmuls repack weight rows into a per-thread buffer of at most
// kGemmTileBytesPerElement bytes per input element: kGemmTileRows rows of 8-bit values and
// scales for quantized weights (kernels/gemm_vnni.cpp, 24 bytes per element),
// kGemmFloatTileRows rows of f32 for float weights (kernels/gemm_float.cpp, 128).
inline constexpr int32_t kGemmTileRows = 16;
inline constexpr int32_t kGemmFloatTileRows = 32;
inline constexpr int32_t kGemmTileBytesPerElement = 4 * kGemmFloatTileRows;

struct Exec {
    const Node* nodes;
    int32_t n_nodes;
    // Per value: data pointer (activations in the arena, weights in the file mapping),
    // element type (F32 for activations, I32 for tokens), width, rows of a weight,
    // and whether the value has a single row per step.
    uint8_t* const* data;
    const DType* type;
    const int64_t* width;
    const int64_t* weight_rows;
    const uint8_t* single_row;

    int64_t n_rows;   // tokens in this step
    int64_t n_past;   // position of the first one
    int32_t all_rows; // LastRow keeps every row

    int64_t n_ctx;
    KvSlot* kv;

    float* scratch;            // per thread: scratch_floats floats each
    int64_t scratch_floats;
    float* attn_partial;       // shared: decode attention's per-chunk results (kAttnChunk)
    uint8_t* act_q;            // quantized copy of a matmul input, shared by all threads
    int32_t* act_q_value;      // per thread: which value act_q holds (-1: none)
    int32_t* act_q_format;     // per thread: in which format
    uint8_t* gemm_tile;        // per thread: gemm_tile_bytes bytes each (repacked weight rows)
    int64_t gemm_tile_bytes;
    int64_t gemm_min_rows;     // steps of at least this many tokens use the tile matmul

    void (*barrier)(void* pool);
    void* pool;
};

using NodeKernel = void (*)(Exec& ex, const Node& node, int ith, int nth);

struct KernelTable {
    const char* isa;
    NodeKernel op[kNumOps];  // indexed by Op
    // Exposed for tests and tools: dequantize `n` elements, and y = W x for one row set.
    void (*dequantize_row)(DType t, const void* src, float* dst, int64_t n);
    // out[r] = dot(row r of W, x) for rows [r0, r1), x quantized as the type requires.
    void (*matvec)(DType t, const uint8_t* w, int64_t width, int64_t r0, int64_t r1,
                   const float* x, float* out, uint8_t* act_scratch);
};

}  // namespace strata::cpu
