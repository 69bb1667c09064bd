// embedding: row `token` of the table, dequantized to f32.
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

void op_embedding(Exec& ex, const Node& n, int ith, int nth) {
    const int32_t wv = n.in[0];
    const int32_t* tokens = (const int32_t*)ex.data[n.in[1]];
    const int64_t width = ex.width[wv];
    const DType t = ex.type[wv];
    const DTypeTraits* tr = dtype_traits((uint32_t)t);
    const int64_t rb = width / tr->block_size * tr->type_size;
    float* out = f32_of(ex, n.out);
    int64_t r0, r1;
    split_range(ex.n_rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; ++r)  // token ids were checked against the table by the engine
        dequantize_row(t, ex.data[wv] + tokens[r] * rb, out + r * width, width);
}

}  // namespace strata::cpu::STRATA_ISA
