// copy_cols: y[t, c] = x[t, offset + c] for c < width, t < T, rows of x src_width floats
// wide. Serves last_row (the host points x at the first row kept, offset 0, width =
// src_width) and slice (a column range, e.g. q/k/v out of a fused qkv matmul).
// Reference: csrc/backends/cpu/kernels/elementwise.cpp op_last_row / op_slice.
//
// One thread per output element: grid x = columns, y = rows.
#include "strata_args.h"

kernel void kernel_copy_cols_f32(
        constant CopyArgs& args [[buffer(0)]],
        device const float* x [[buffer(1)]],
        device float* y [[buffer(2)]],
        uint2 gid [[thread_position_in_grid]]) {
    const int c = (int)gid.x, t = (int)gid.y;
    if (c >= args.width || t >= args.T) return;
    y[(long)t * args.width + c] = x[(long)t * args.src_width + args.offset + c];
}
