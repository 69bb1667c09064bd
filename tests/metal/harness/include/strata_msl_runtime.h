// The launch context the Linux MSL prelude (metal_stdlib) reads: which GPU thread is
// running, its buffers, and the collective operations that make the lanes of a simdgroup
// and the threads of a threadgroup meet. Implemented by runtime.cpp (ucontext fibers).
#pragma once
#include <stddef.h>
#include <stdint.h>

extern "C" {

enum StrataBuiltin {
    STRATA_BI_THREAD_POSITION_IN_GRID,       // uint3
    STRATA_BI_THREADGROUP_POSITION_IN_GRID,  // uint3
    STRATA_BI_THREAD_POSITION_IN_THREADGROUP,// uint3
    STRATA_BI_THREADS_PER_THREADGROUP,       // uint3
    STRATA_BI_THREADGROUPS_PER_GRID,         // uint3
    STRATA_BI_THREADS_PER_GRID,              // uint3
    STRATA_BI_THREAD_INDEX_IN_THREADGROUP,   // uint
    STRATA_BI_THREAD_INDEX_IN_SIMDGROUP,     // uint
    STRATA_BI_SIMDGROUP_INDEX_IN_THREADGROUP,// uint
    STRATA_BI_THREADS_PER_SIMDGROUP,         // uint
    STRATA_BI_SIMDGROUPS_PER_THREADGROUP,    // uint
    STRATA_BI_COUNT
};

// Three uint32 values of builtin `which` for the running GPU thread (scalars in [0]).
const uint32_t* strata_builtin(int which);
// Buffer bound at index i ([[buffer(i)]]); null when none is bound.
void* strata_buffer(int i);

// Collective rendezvous of the running lane with the other live lanes of its simdgroup.
// `value` (size <= 64 bytes) is published; on return all[l * size] holds lane l's value for
// every lane whose bit is set in *mask (the lanes that reached this same collective), and
// *mask says which. op and site identify the call; lanes reaching different collectives
// fail the launch (the harness cannot model divergent collectives, see docs/metal.md).
void strata_simd_collective(const void* value, size_t size, int op, int site, void* all,
                            uint64_t* mask);
// A collective that acts once for the whole simdgroup (simdgroup_matrix load, store,
// multiply): like strata_simd_collective, then fn(all, mask, simd width) runs exactly once,
// over every lane's published value, as soon as the last lane arrives and before any lane
// moves on, so memory is read and written as the lockstep simdgroup would.
typedef void (*strata_simd_once_fn)(const void* all, uint64_t mask, int simd_width);
void strata_simd_once(const void* value, size_t size, int op, int site, strata_simd_once_fn fn);
// threadgroup_barrier: every thread of the threadgroup must reach it (else the launch fails).
void strata_threadgroup_barrier(int site);
// simdgroup_barrier: a collective with no data.
void strata_simdgroup_barrier(int site);
// Fail the launch with a message (e.g. a shuffle from an inactive lane).
void strata_harness_fail(const char* msg);
}
