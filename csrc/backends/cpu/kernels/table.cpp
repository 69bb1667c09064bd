// This ISA build's kernel table, indexed by Op.
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

const KernelTable* kernel_table() {
    static const KernelTable table = {
        .isa = STRATA_ISA_NAME,
        .op = {op_embedding, op_rms_norm, op_layer_norm, op_matmul, op_add, op_mul, op_scale,
               op_activation, op_glu, op_rope, op_attention, op_last_row, op_slice},
        .dequantize_row = dequantize_row,
        .matvec = matvec,
    };
    return &table;
}

}  // namespace strata::cpu::STRATA_ISA
