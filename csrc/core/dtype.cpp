#include "dtype.h"

#include "errors.h"

namespace strata {

const DTypeTraits* dtype_traits(uint32_t id) {
    static const DTypeTraits F32{"F32", 1, 4}, F16{"F16", 1, 2}, BF16{"BF16", 1, 2},
        Q4_0{"Q4_0", 32, 18}, Q4_1{"Q4_1", 32, 20}, Q5_0{"Q5_0", 32, 22}, Q5_1{"Q5_1", 32, 24},
        Q8_0{"Q8_0", 32, 34}, Q8_1{"Q8_1", 32, 36}, Q2_K{"Q2_K", 256, 84},
        Q3_K{"Q3_K", 256, 110}, Q4_K{"Q4_K", 256, 144}, Q5_K{"Q5_K", 256, 176},
        Q6_K{"Q6_K", 256, 210}, Q8_K{"Q8_K", 256, 292}, IQ4_NL{"IQ4_NL", 32, 18},
        IQ4_XS{"IQ4_XS", 256, 136}, I32{"I32", 1, 4};
    switch (static_cast<DType>(id)) {
        case DType::F32: return &F32;
        case DType::F16: return &F16;
        case DType::BF16: return &BF16;
        case DType::Q4_0: return &Q4_0;
        case DType::Q4_1: return &Q4_1;
        case DType::Q5_0: return &Q5_0;
        case DType::Q5_1: return &Q5_1;
        case DType::Q8_0: return &Q8_0;
        case DType::Q8_1: return &Q8_1;
        case DType::Q2_K: return &Q2_K;
        case DType::Q3_K: return &Q3_K;
        case DType::Q4_K: return &Q4_K;
        case DType::Q5_K: return &Q5_K;
        case DType::Q6_K: return &Q6_K;
        case DType::Q8_K: return &Q8_K;
        case DType::IQ4_NL: return &IQ4_NL;
        case DType::IQ4_XS: return &IQ4_XS;
        case DType::I32: return &I32;
    }
    return nullptr;
}

int64_t row_bytes(DType t, int64_t n) {
    const DTypeTraits* tr = dtype_traits(static_cast<uint32_t>(t));
    if (!tr) throw StrataError("unknown tensor type id " + std::to_string((uint32_t)t));
    if (n <= 0 || n % tr->block_size != 0)
        throw StrataError(std::string("row of ") + std::to_string(n) + " elements is not a " +
                          "multiple of the " + tr->name + " block size " +
                          std::to_string(tr->block_size));
    return n / tr->block_size * tr->type_size;
}

std::string dtype_name(DType t) {
    const DTypeTraits* tr = dtype_traits(static_cast<uint32_t>(t));
    return tr ? tr->name : "type#" + std::to_string((uint32_t)t);
}

}  // namespace strata
