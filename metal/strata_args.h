// Argument structs and quantized block layouts shared by the Metal host (Objective-C++,
// csrc/backends/metal/) and the shaders (metal/*.metal). One header, two languages:
// MSL-only syntax is guarded by __METAL_VERSION__ (which the Linux harness's prelude also
// defines, so the harness compiles exactly what Metal compiles).
//
// Layout rules that make one struct mean the same bytes on both sides: only 4-byte scalars
// (int32_t, uint32_t, float) in argument structs, no vectors, no bool, no pointers. Block
// structs are transcribed from csrc/quants/blocks.h (field for field; fp16 fields are
// `half` in MSL and uint16_t in C++); tests/metal/harness/layout_check.cpp proves at compile
// time that every offset and size matches that header.
#pragma once

#ifdef __METAL_VERSION__
#include <metal_stdlib>
using namespace metal;
typedef half strata_f16;
#else
#include <stdint.h>
typedef uint16_t strata_f16;
#endif

// ---- quantized blocks (ggml layouts, 32 elements each) ---------------------------------
#define STRATA_QK 32

struct block_q4_0 {
    strata_f16 d;       // scale
    uint8_t qs[16];     // low nibble: element j, high nibble: element j + 16; value q - 8
};
struct block_q4_1 {
    strata_f16 d;       // scale
    strata_f16 m;       // minimum: x = d * q + m
    uint8_t qs[16];
};
struct block_q5_0 {
    strata_f16 d;
    uint8_t qh[4];      // 5th bit of element j: bit j of the little-endian uint32 qh
    uint8_t qs[16];     // low 4 bits, nibble layout as q4_0; value q - 16
};
struct block_q5_1 {
    strata_f16 d;
    strata_f16 m;       // x = d * q + m
    uint8_t qh[4];
    uint8_t qs[16];
};
struct block_iq4_nl {
    strata_f16 d;
    uint8_t qs[16];     // 4-bit indices into kvalues_iq4nl (matvec.metal), nibbles as q4_0
};
struct block_q8_0 {
    strata_f16 d;
    int8_t qs[32];
};
// ---- super-blocks of 256 ("K" formats): 8 sub-blocks of 32, each of which meets one
// block_q8_act (the 32-element blocks above and the K formats share the activations).
#define STRATA_QK_K 256

struct block_q4_K {
    strata_f16 d;          // scale of the sub-block scales
    strata_f16 dmin;       // scale of the sub-block mins: x = d * sc[j] * q - dmin * m[j]
    uint8_t scales[12];    // 8 six-bit scales + 8 six-bit mins (scale_min_k4, matvec.metal)
    uint8_t qs[128];       // element 32*j + l: (qs[32*(j/2) + l] >> 4*(j&1)) & 15
};
struct block_q5_K {
    strata_f16 d;
    strata_f16 dmin;
    uint8_t scales[12];
    uint8_t qh[32];        // 5th bit of element 32*j + l: bit j of qh[l]
    uint8_t qs[128];       // low 4 bits, as q4_K
};
struct block_q6_K {
    uint8_t ql[128];       // low 4 bits: element 128*h + 64*s + l is (ql[64*h + l] >> 4s) & 15
    uint8_t qh[64];        // high 2 bits: element 128*h + 32*s + l is (qh[32*h + l] >> 2s) & 3
    int8_t scales[16];     // one per 16 elements: x = d * scales[i/16] * (q - 32)
    strata_f16 d;
};

// q2_K / q3_K: 16 scales per super-block (one per 16 elements); element 32*j + l
// (sub-block j = 4h + s, l < 32) has its low 2 bits at (qs[32*h + l] >> 2s) & 3.
struct block_q2_K {
    uint8_t scales[16];    // per 16 elements: low nibble scale, high nibble min
    uint8_t qs[64];        // x = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3
    strata_f16 d;
    strata_f16 dmin;
};
struct block_q3_K {
    uint8_t hmask[32];     // 3rd bit of element 32*j + l: bit j of hmask[l]; clear means -4
    uint8_t qs[64];        // low 2 bits, as q2_K
    uint8_t scales[12];    // 16 six-bit scales (scale_q3_K, matvec.metal), offset by 32
    strata_f16 d;          // x = d * (sc - 32) * (lo - 4 * !hbit)
};
// iq4_xs: 8 sub-blocks of 32 indices into kvalues_iq4nl, six-bit scales offset by 32.
struct block_iq4_xs {
    strata_f16 d;
    uint16_t scales_h;     // high 2 bits of scale j at bits 2j, 2j + 1
    uint8_t scales_l[4];   // low 4 bits of scale j: nibble j & 1 of byte j / 2
    uint8_t qs[128];       // sub-block j: nibbles as q4_0 over qs[16*j .. 16*j + 15]
};

// Activations quantized per 32 (csrc/quants/blocks.h block_q8_act): fp32 scale and
// fp32 scaled sum d * sum(qs), as the CPU and CUDA backends compute them.
struct block_q8_act {
    float d;
    float s;
    int8_t qs[32];
};

// Checked by both compilers (MSL is C++14-based and has static_assert).
static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl layout");
static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
static_assert(sizeof(block_q2_K) == 84, "q2_K layout");
static_assert(sizeof(block_q3_K) == 110, "q3_K layout");
static_assert(sizeof(block_iq4_xs) == 136, "iq4_xs layout");
static_assert(sizeof(block_q8_act) == 40, "q8_act layout");

// ---- argument structs (buffer index 0 of every kernel, `constant T& args`) -------------

// rms_norm: threadgroup g normalises the W floats at x + g * W (a row, or one head of a
// row when W = head_dim) and multiplies by w[0..W) when has_weight.
struct RmsNormArgs {
    int32_t n_groups;
    int32_t W;
    float eps;
    int32_t has_weight;
};

// add / mul / glu: y[i] = f(a[i], b[broadcast ? i % W : i]) for i < n.
// scale / activation: y[i] = f(a[i]) (b unused).
struct EltwiseArgs {
    int32_t n;
    int32_t W;
    int32_t broadcast;
    float scale;
};

// Activation kinds (function constant ACT, index 0, of the glu / activation kernels), the
// values of csrc/core/graph.h's Activation.
// Function-constant indices are unique across all shaders (one library): ACT 0,
// ROPE_NEOX 1, NR 2, MM_TYPE 3 (metal/kernels.def lists them per kernel).
#define STRATA_ACT_SILU 0
#define STRATA_ACT_GELU 1  // with erf
#define STRATA_ACT_GELU_TANH 2

// layer_norm: threadgroup r normalises row r (W floats at x + r * W) to zero mean and unit
// variance, then multiplies by w[0..W) when has_weight and adds b[0..W) when has_bias.
struct LayerNormArgs {
    int32_t n_rows;
    int32_t W;
    float eps;
    int32_t has_weight;
    int32_t has_bias;
};

// rope over T rows of width W = n_head * head_dim (rows at positions n_past + t).
// Function constant ROPE_NEOX (index 1) selects the layout (0 normal pairs, 1 neox halves).
struct RopeArgs {
    int32_t T;
    int32_t W;
    int32_t n_head;
    int32_t head_dim;
    int32_t n_rot;
    int32_t n_past;
    float freq_scale;
    float log2_base;     // log2(rope_base): theta_i = pos * freq_scale * 2^(-2i/n_rot * log2_base)
    float attn_factor;   // multiplies cos and sin (YaRN magnitude); 1 otherwise
    int32_t has_factors; // divide theta_i by factors[i] (Llama 3.1 rope_freqs)
};

// embedding: out[t, :] = dequant(table row tokens[t]); a token outside [0, n_vocab)
// writes NaN (the engine validates tokens first; the kernel never reads out of bounds).
struct EmbeddingArgs {
    int32_t T;
    int32_t width;
    int32_t n_vocab;
    int32_t row_bytes;
};

// quantize_q8_act: K-wide rows (K % 32 == 0) of T rows into block_q8_act.
// matvec: y[t, r] = dot(W[r, :], x[t, :]) for r < R, t < T; W rows of row_bytes bytes.
struct MatvecArgs {
    int32_t K;
    int32_t R;
    int32_t T;
    int32_t row_bytes;
};

// Weight formats of the prefill matmul (function constant MM_TYPE, index 3, of
// kernel_matmul, which takes MatvecArgs): float formats multiply f32 activations, block
// formats the block_q8_act activations of kernel_quantize_q8_act.
#define STRATA_MM_F32 0
#define STRATA_MM_F16 1
#define STRATA_MM_BF16 2
#define STRATA_MM_Q8_0 3
#define STRATA_MM_Q4_0 4
#define STRATA_MM_Q4_1 5
#define STRATA_MM_Q5_0 6
#define STRATA_MM_Q5_1 7
#define STRATA_MM_IQ4_NL 8
#define STRATA_MM_Q2_K 9
#define STRATA_MM_Q3_K 10
#define STRATA_MM_Q4_K 11
#define STRATA_MM_Q5_K 12
#define STRATA_MM_Q6_K 13
#define STRATA_MM_IQ4_XS 14

// kv_append: rows t < T of k and v (kv_width = n_head_kv * head_dim floats) into the fp16
// cache at row (n_past + t) % capacity.
// attention: for row t (position n_past + t) and head h, softmax over visible cache rows.
// attention_split / attention_merge: the visible rows in n_split ranges, one threadgroup
// each, then merged (metal/attention.metal); the other attention kernels ignore it.
struct AttnArgs {
    int32_t T;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_past;
    int32_t capacity;  // cache rows (ring buffer for sliding-window layers)
    int32_t window;    // 0: full causal
    float scale;       // usually 1/sqrt(head_dim)
    float softcap;     // 0: off
    int32_t n_split;   // key ranges per (row, head) of attention_split / attention_merge
};

// copy_cols (last_row, slice): y[t, c] = x[t, offset + c], c < width, t < T.
struct CopyArgs {
    int32_t T;
    int32_t src_width;
    int32_t offset;
    int32_t width;
};

// argmax: out[t] = first index of the largest value of row t (n floats), t < T.
struct ArgmaxArgs {
    int32_t n;
    int32_t T;
};

// Argument struct sizes, checked by Metal's compiler, the host's and the harness's
// (tests/metal/test_harness.py compares them with its ctypes mirrors).
static_assert(sizeof(RmsNormArgs) == 16, "RmsNormArgs layout");
static_assert(sizeof(EltwiseArgs) == 16, "EltwiseArgs layout");
static_assert(sizeof(RopeArgs) == 40, "RopeArgs layout");
static_assert(sizeof(EmbeddingArgs) == 16, "EmbeddingArgs layout");
static_assert(sizeof(MatvecArgs) == 16, "MatvecArgs layout");
static_assert(sizeof(AttnArgs) == 40, "AttnArgs layout");
static_assert(sizeof(LayerNormArgs) == 20, "LayerNormArgs layout");
static_assert(sizeof(CopyArgs) == 16, "CopyArgs layout");
static_assert(sizeof(ArgmaxArgs) == 8, "ArgmaxArgs layout");
