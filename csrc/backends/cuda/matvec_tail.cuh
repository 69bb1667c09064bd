// The end of a decode matvec launch that finishes a later node in its own blocks (MatvecTail,
// common.cuh): gate/up with the glu after it, q/k/v with the rope and KV append after them.
// Device code only (matvec_wide.cu).
//
// Each warp (or block, with split-K) counts itself, once its rows are written, in the counter
// of the group its rows belong to (a 32-element chunk of the glu's output, a head); the one
// whose arrival completes the group computes it, reading the rows others wrote through L2.
// So the work a separate kernel did after a PDL wait (~3-6 us a layer on the H100, with its
// launch) runs while other blocks still stream weights, and the next kernel waits for one
// grid, not two.
#pragma once

#include "common.cuh"
#include "glu.cuh"
#include "rope.cuh"

namespace strata::cuda {

// The group (counter) of rows first_row.. of `part`, and how many arrivals complete it when
// each arrival brings `rows` rows. Selects, not t.first_group[part]: a parameter array
// indexed at run time goes to local memory.
struct TailGroup {
    int group;
    unsigned arrivals;
};
__device__ __forceinline__ TailGroup tail_group(const MatvecTail& t, int part, int first_row, int rows) {
    const int first = part == 0 ? t.first_group[0] : part == 1 ? t.first_group[1] : t.first_group[2];
    const int parts = part == 0 ? t.group_parts[0] : part == 1 ? t.group_parts[1] : t.group_parts[2];
    return {first + first_row / t.group_rows, (unsigned)(parts * (t.group_rows / rows))};
}

// The group's work, by threads tid of nt (after the arrival that completed it).
template <int kKind>
__device__ __forceinline__ void tail_work(const MatvecTail& t, int group, int tid, int nt) {
    __threadfence();
    if constexpr (kKind == MatvecTail::kGlu) {
        if (tid < 32) glu_chunk32(t.act, t.gate, t.up, t.h, group, t.q8);
    } else {
        rope_append_head(t.rope, group, t.sp->n_past, tid, nt, false, float2{});
    }
}

// One warp's arrival (the kernel without split-K: lane 0 wrote the warp's `rows` rows from
// first_row): lane 0 adds to the counter with acquire-release order, which publishes its
// writes and, for the last arrival, makes every other warp's visible; no block barrier, so
// warps retire on their own. Whole warps.
template <int kKind>
__device__ __forceinline__ void matvec_tail_warp(const MatvecTail& t, int part, int first_row, int rows) {
    const TailGroup g = tail_group(t, part, first_row, rows);
    const int lane = threadIdx.x & 31;
    unsigned last = 0;
    if (lane == 0) {
        unsigned old;
#if defined(__CUDA_ARCH__)
        asm volatile("atom.add.acq_rel.gpu.u32 %0, [%1], 1;" : "=r"(old) : "l"(t.count + g.group) : "memory");
#endif
        last = old == g.arrivals - 1;
        if (last) t.count[g.group] = 0;  // every arrival is in: zero for the next launch
    }
    if (!__shfl_sync(0xffffffffu, last, 0)) return;
    tail_work<kKind>(t, g.group, lane, 32);
}

// A block's arrival (the split-K kernel, whose block writes its rows after a barrier): every
// thread that wrote fenced its writes; thread 0 counts the block after a barrier.
template <int kKind>
__device__ __forceinline__ void matvec_tail_block(const MatvecTail& t, int part, int first_row, int rows) {
    const TailGroup g = tail_group(t, part, first_row, rows);
    __syncthreads();
    int last = 0;
    if (threadIdx.x == 0) {
        last = atomicAdd(t.count + g.group, 1u) == g.arrivals - 1;
        if (last) t.count[g.group] = 0;
    }
    if (!__syncthreads_or(last)) return;
    tail_work<kKind>(t, g.group, threadIdx.x, blockDim.x);
}

}  // namespace strata::cuda
