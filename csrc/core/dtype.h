// Tensor element types: the GGML type ids as GGUF files store them, and their block sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace strata {

// Values are GGML's type ids (ggml.h), which is what a GGUF tensor table stores.
enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ4_NL = 20,
    IQ4_XS = 23,
    I32 = 26,
    BF16 = 30,
};

struct DTypeTraits {
    const char* name;
    int64_t block_size;  // elements per block
    int64_t type_size;   // bytes per block
};

// Returns nullptr for an id strata does not know at all.
const DTypeTraits* dtype_traits(uint32_t id);

// Bytes of one row of `n` elements; throws StrataError if n is not a multiple of the
// block size or the type is unknown.
int64_t row_bytes(DType t, int64_t n);

std::string dtype_name(DType t);

}  // namespace strata
