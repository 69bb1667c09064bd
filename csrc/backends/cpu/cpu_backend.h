// The CPU backend: weights read in place from the file mapping, one activation arena, an
// fp16 KV cache, a persistent thread pool, and the kernel table of the best instruction
// set this CPU has (or the one forced with STRATA_CPU_ISA=scalar|avx2|avx512|neon).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../../core/backend.h"
#include "exec.h"

namespace strata::cpu {

// The kernel tables built into this binary, best first, keeping only those this CPU runs.
std::vector<const KernelTable*> available_kernel_tables();
// The table a new backend uses: STRATA_CPU_ISA if set (error if unavailable), else the best.
const KernelTable* select_kernel_table(const std::string& forced = "");

std::unique_ptr<Backend> make_cpu_backend(int n_threads, const std::string& isa = "");

}  // namespace strata::cpu
