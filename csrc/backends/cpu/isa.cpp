// Run-time choice of the CPU kernel build, from CPUID (x86-64) or the hwcaps (arm64).
#include <cstdlib>
#include <string>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "../../core/errors.h"
#include "cpu_backend.h"

namespace strata::cpu {

#define STRATA_DECLARE_ISA(name) \
    namespace name {             \
    const KernelTable* kernel_table(); \
    }
#if defined(STRATA_HAVE_ISA_avx512)
STRATA_DECLARE_ISA(avx512)
#endif
#if defined(STRATA_HAVE_ISA_avx2)
STRATA_DECLARE_ISA(avx2)
#endif
#if defined(STRATA_HAVE_ISA_neon)
STRATA_DECLARE_ISA(neon)
#endif
STRATA_DECLARE_ISA(scalar)

#if defined(STRATA_HAVE_ISA_neon)
// The `neon` build is compiled for armv8.2-a+dotprod+fp16 (the baseline arm64 build,
// `scalar`, serves CPUs without the 8-bit dot product, e.g. Cortex-A53/A72).
static bool cpu_has_neon_dotprod() {
#if defined(__aarch64__) && defined(__linux__)
    constexpr unsigned long kFphp = 1ul << 9, kAsimdhp = 1ul << 10, kAsimddp = 1ul << 20;  // asm/hwcap.h
    const unsigned long hw = getauxval(AT_HWCAP);
    return (hw & kAsimddp) && (hw & kFphp) && (hw & kAsimdhp);
#elif defined(__APPLE__)
    return true;  // every Apple Silicon Mac has both
#else
    return false;
#endif
}
#endif

std::vector<const KernelTable*> available_kernel_tables() {
    std::vector<const KernelTable*> tables;
#if defined(__x86_64__)
    __builtin_cpu_init();
#if defined(STRATA_HAVE_ISA_avx512)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        tables.push_back(avx512::kernel_table());
#endif
#if defined(STRATA_HAVE_ISA_avx2)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        tables.push_back(avx2::kernel_table());
#endif
#endif
#if defined(STRATA_HAVE_ISA_neon)
    if (cpu_has_neon_dotprod()) tables.push_back(neon::kernel_table());
#endif
    tables.push_back(scalar::kernel_table());
    return tables;
}

const KernelTable* select_kernel_table(const std::string& forced_arg) {
    std::string forced = forced_arg;
    if (forced.empty())
        if (const char* env = std::getenv("STRATA_CPU_ISA")) forced = env;
    const auto tables = available_kernel_tables();
    if (forced.empty() || forced == "auto") return tables.front();
    std::string have;
    for (const KernelTable* t : tables) {
        if (forced == t->isa) return t;
        have += std::string(have.empty() ? "" : ", ") + t->isa;
    }
    throw StrataError("CPU kernel set '" + forced + "' is not available on this machine (have: " + have + ")");
}

}  // namespace strata::cpu
