// The end of a decode matvec launch that finishes a later node in its own blocks (MatvecTail,
// common.cuh): gate/up with the glu after it, q/k/v with the rope and KV append after them.
// Device code only (matvec_wide.cu).
//
// Each block counts itself, once its rows are written, in the counter of the group its rows
// belong to (a 32-element chunk of the glu's output, a head); the block whose arrival
// completes the group computes it, reading the rows other blocks wrote through L2. So the
// work a separate kernel did after a PDL wait (~3-6 us a layer on the H100, with its launch)
// runs while other blocks still stream weights, and the next kernel waits for one grid, not
// two. The order, as in CUDA's threadfence reduction: every thread that wrote output fences
// (__threadfence) before the block's barrier, thread 0 adds to the counter after it, and the
// completing block fences again before its reads.
#pragma once

#include "common.cuh"
#include "glu.cuh"
#include "rope.cuh"

namespace strata::cuda {

// Called by every thread of every block of a launch with a tail, after the block's writes.
// part: the block's part; first_row, block_rows: its rows in that part.
__device__ __forceinline__ void matvec_tail(const MatvecTail& t, int part, int first_row, int block_rows) {
    // Selects, not t.first_group[part]: a parameter array indexed at run time goes to local memory.
    const int first = part == 0 ? t.first_group[0] : part == 1 ? t.first_group[1] : t.first_group[2];
    const int parts = part == 0 ? t.group_parts[0] : part == 1 ? t.group_parts[1] : t.group_parts[2];
    const int group = first + first_row / t.group_rows;
    const unsigned arrivals = (unsigned)(parts * (t.group_rows / block_rows));
    __syncthreads();  // the block's writes are fenced
    int last = 0;
    if (threadIdx.x == 0) {
        last = atomicAdd(t.count + group, 1u) == arrivals - 1;
        if (last) t.count[group] = 0;  // every block of the group has arrived: zero for the next launch
    }
    if (!__syncthreads_or(last)) return;
    __threadfence();
    if (t.kind == MatvecTail::kGlu) {
        if (threadIdx.x < 32) glu_chunk32(t.act, t.gate, t.up, t.h, group, t.q8);
    } else {
        rope_append_head(t.rope, group, t.sp->n_past, false, float2{});
    }
}

}  // namespace strata::cuda
