// embedding: out[t, :] = dequant(table row tokens[t]). Reference:
// csrc/backends/cpu/kernels/embedding.cpp and csrc/quants/dequant.h (the same float
// operations, so rows are bit-identical to the CPU's and the gguf package's).
// A token outside [0, n_vocab) writes NaN instead of reading out of bounds.
//
// Float tables (f32, f16, bf16): one thread per element, grid (width, T).
// Quantized tables (every block format): one thread per 16 elements (quants.h dequant16_*),
// grid (width / 16, T); a row is whole blocks, so width % 32 == 0.
#include "strata_args.h"
#include "quants.h"

#define STRATA_GET_ROWS_PROLOGUE                                                     \
    const int i = (int)gid.x, t = (int)gid.y;                                        \
    if (i >= args.width || t >= args.T) return;                                      \
    const int tok = tokens[t];                                                       \
    device float* o = out + (long)t * args.width + i;                                \
    if (tok < 0 || tok >= args.n_vocab) { *o = NAN; return; }                        \
    device const uchar* row = table + (long)tok * args.row_bytes;

kernel void kernel_get_rows_f32(
        constant EmbeddingArgs& args [[buffer(0)]],
        device const uchar* table [[buffer(1)]],
        device const int* tokens [[buffer(2)]],
        device float* out [[buffer(3)]],
        uint2 gid [[thread_position_in_grid]]) {
    STRATA_GET_ROWS_PROLOGUE
    *o = ((device const float*)row)[i];
}

kernel void kernel_get_rows_f16(
        constant EmbeddingArgs& args [[buffer(0)]],
        device const uchar* table [[buffer(1)]],
        device const int* tokens [[buffer(2)]],
        device float* out [[buffer(3)]],
        uint2 gid [[thread_position_in_grid]]) {
    STRATA_GET_ROWS_PROLOGUE
    *o = (float)((device const half*)row)[i];
}

kernel void kernel_get_rows_bf16(
        constant EmbeddingArgs& args [[buffer(0)]],
        device const uchar* table [[buffer(1)]],
        device const int* tokens [[buffer(2)]],
        device float* out [[buffer(3)]],
        uint2 gid [[thread_position_in_grid]]) {
    STRATA_GET_ROWS_PROLOGUE
    *o = bf16_to_f32(((device const ushort*)row)[i]);
}

// Thread (g, t) writes elements 16 g .. 16 g + 15 of output row t.
#define STRATA_GET_ROWS16(NAME, DEQUANT16)                                           \
    kernel void NAME(                                                                \
            constant EmbeddingArgs& args [[buffer(0)]],                              \
            device const uchar* table [[buffer(1)]],                                 \
            device const int* tokens [[buffer(2)]],                                  \
            device float* out [[buffer(3)]],                                         \
            uint2 gid [[thread_position_in_grid]]) {                                 \
        const int g = (int)gid.x, t = (int)gid.y;                                    \
        if (g >= args.width / 16 || t >= args.T) return;                             \
        const int tok = tokens[t];                                                   \
        device float* o = out + (long)t * args.width + 16 * g;                       \
        if (tok < 0 || tok >= args.n_vocab) {                                        \
            for (int i = 0; i < 16; ++i) o[i] = NAN;                                 \
            return;                                                                  \
        }                                                                            \
        float v[16];                                                                 \
        DEQUANT16(table + (long)tok * args.row_bytes, g, v);                         \
        for (int i = 0; i < 16; ++i) o[i] = v[i];                                    \
    }

STRATA_GET_ROWS16(kernel_get_rows_q8_0, dequant16_q8_0)
STRATA_GET_ROWS16(kernel_get_rows_q4_0, dequant16_q4_0)
STRATA_GET_ROWS16(kernel_get_rows_q4_1, dequant16_q4_1)
STRATA_GET_ROWS16(kernel_get_rows_q5_0, dequant16_q5_0)
STRATA_GET_ROWS16(kernel_get_rows_q5_1, dequant16_q5_1)
STRATA_GET_ROWS16(kernel_get_rows_iq4_nl, dequant16_iq4_nl)
STRATA_GET_ROWS16(kernel_get_rows_q2_K, dequant16_q2_K)
STRATA_GET_ROWS16(kernel_get_rows_q3_K, dequant16_q3_K)
STRATA_GET_ROWS16(kernel_get_rows_q4_K, dequant16_q4_K)
STRATA_GET_ROWS16(kernel_get_rows_q5_K, dequant16_q5_K)
STRATA_GET_ROWS16(kernel_get_rows_q6_K, dequant16_q6_K)
STRATA_GET_ROWS16(kernel_get_rows_iq4_xs, dequant16_iq4_xs)
