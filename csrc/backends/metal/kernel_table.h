// The kernel table of metal/kernels.def as C++ data: name, shader file, argument struct size,
// buffer names by index, function constants and the threads per threadgroup the host uses.
// The Linux harness (tests/metal/harness/msl.py) parses the same file, so host and tests
// cannot disagree about a kernel's buffers or constants.
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "../../../metal/strata_args.h"

namespace strata::metal {

struct KernelInfo {
    const char* name;
    const char* source;
    size_t args_size;
    const char* buffers;          // space-separated; index 0 is "args", "-" is unused
    const char* function_consts;  // "NAME=index ..."
    int threads;
};

inline constexpr KernelInfo kKernels[] = {
#define STRATA_METAL_KERNEL(name, source, args, buffers, fcs, threads) \
    {#name, source, sizeof(args), buffers, fcs, threads},
#include "../../../metal/kernels.def"
};

// Function-constant values of one specialisation, by index (all int in strata's shaders).
using ConstValues = std::vector<std::pair<int, int32_t>>;

inline const KernelInfo* find_kernel(std::string_view name) {
    for (const KernelInfo& k : kKernels)
        if (name == k.name) return &k;
    return nullptr;
}

// Index of function constant `fc` ("NR") of kernel k, or -1.
inline int function_constant_index(const KernelInfo& k, std::string_view fc) {
    std::string_view s = k.function_consts;
    while (!s.empty()) {
        const size_t sp = s.find(' ');
        const std::string_view item = s.substr(0, sp);
        const size_t eq = item.find('=');
        if (eq != std::string_view::npos && item.substr(0, eq) == fc) {
            int v = 0;
            for (char c : item.substr(eq + 1)) v = v * 10 + (c - '0');
            return v;
        }
        if (sp == std::string_view::npos) break;
        s.remove_prefix(sp + 1);
    }
    return -1;
}

}  // namespace strata::metal
