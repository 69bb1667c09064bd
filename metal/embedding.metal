// embedding: out[t, i] = dequant(table row tokens[t])[i], one thread per element
// (grid x = elements, y = rows). Reference: csrc/backends/cpu/kernels/embedding.cpp and
// csrc/quants/dequant.h (d * q products in float, bit-exact with the gguf package).
// A token outside [0, n_vocab) writes NaN instead of reading out of bounds.
#include "strata_args.h"

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

kernel void kernel_get_rows_q8_0(
        constant EmbeddingArgs& args [[buffer(0)]],
        device const uchar* table [[buffer(1)]],
        device const int* tokens [[buffer(2)]],
        device float* out [[buffer(3)]],
        uint2 gid [[thread_position_in_grid]]) {
    STRATA_GET_ROWS_PROLOGUE
    device const block_q8_0& b = ((device const block_q8_0*)row)[i / 32];
    *o = (float)b.d * (float)b.qs[i % 32];
}

kernel void kernel_get_rows_q4_0(
        constant EmbeddingArgs& args [[buffer(0)]],
        device const uchar* table [[buffer(1)]],
        device const int* tokens [[buffer(2)]],
        device float* out [[buffer(3)]],
        uint2 gid [[thread_position_in_grid]]) {
    STRATA_GET_ROWS_PROLOGUE
    device const block_q4_0& b = ((device const block_q4_0*)row)[i / 32];
    const int j = i % 32;
    const int q = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
    *o = (float)b.d * (float)(q - 8);
}
