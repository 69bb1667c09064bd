// Compile-time proof that metal/strata_args.h's block structs (the C++ side of the header
// the shaders include) match csrc/quants/blocks.h byte for byte. Compiled (syntax only) by
// tests/metal/test_harness.py::test_block_layouts_match_csrc.
#include <stddef.h>

#include "../../../csrc/quants/blocks.h"
#include "../../../metal/strata_args.h"

#define SAME(T, F) static_assert(offsetof(T, F) == offsetof(strata::quants::T, F), #T "." #F)
#define SIZE(T) static_assert(sizeof(T) == sizeof(strata::quants::T), #T " size")

SIZE(block_q4_0); SAME(block_q4_0, d); SAME(block_q4_0, qs);
SIZE(block_q4_1); SAME(block_q4_1, d); SAME(block_q4_1, m); SAME(block_q4_1, qs);
SIZE(block_q5_0); SAME(block_q5_0, d); SAME(block_q5_0, qh); SAME(block_q5_0, qs);
SIZE(block_q5_1); SAME(block_q5_1, d); SAME(block_q5_1, m); SAME(block_q5_1, qh); SAME(block_q5_1, qs);
SIZE(block_iq4_nl); SAME(block_iq4_nl, d); SAME(block_iq4_nl, qs);
SIZE(block_q8_0); SAME(block_q8_0, d); SAME(block_q8_0, qs);
SIZE(block_q4_K); SAME(block_q4_K, d); SAME(block_q4_K, dmin); SAME(block_q4_K, scales); SAME(block_q4_K, qs);
SIZE(block_q5_K); SAME(block_q5_K, d); SAME(block_q5_K, dmin); SAME(block_q5_K, scales); SAME(block_q5_K, qh); SAME(block_q5_K, qs);
SIZE(block_q6_K); SAME(block_q6_K, ql); SAME(block_q6_K, qh); SAME(block_q6_K, scales); SAME(block_q6_K, d);
SIZE(block_q2_K); SAME(block_q2_K, scales); SAME(block_q2_K, qs); SAME(block_q2_K, d); SAME(block_q2_K, dmin);
SIZE(block_q3_K); SAME(block_q3_K, hmask); SAME(block_q3_K, qs); SAME(block_q3_K, scales); SAME(block_q3_K, d);
SIZE(block_iq4_xs); SAME(block_iq4_xs, d); SAME(block_iq4_xs, scales_h); SAME(block_iq4_xs, scales_l); SAME(block_iq4_xs, qs);
SIZE(block_q8_act); SAME(block_q8_act, d); SAME(block_q8_act, s); SAME(block_q8_act, qs);
static_assert(STRATA_QK == strata::quants::QK8_0, "block size");
static_assert(STRATA_QK_K == strata::quants::QK_K, "super-block size");

int main() { return 0; }
