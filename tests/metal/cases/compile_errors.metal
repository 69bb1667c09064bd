// Each CASE must fail to compile under the harness, as it would under Metal's compiler.
#include "strata_args.h"

#if CASE == 1  // writing through a constant-space reference
kernel void case_bad(constant RmsNormArgs& args [[buffer(0)]]) { args.W = 3; }
#elif CASE == 2  // a threadgroup pointer where a device pointer is expected
kernel void case_bad(device float* y [[buffer(1)]]) {
    threadgroup float sh[4];
    device float* p = sh;
    p[0] = y[0];
}
#elif CASE == 3  // a device pointer converted to a constant pointer's space implicitly
kernel void case_bad(device float* y [[buffer(1)]], constant float* c [[buffer(2)]]) {
    device const float* p = c;
    y[0] = p[0];
}
#elif CASE == 4  // a function constant with no value in this specialisation
constant int UNSET_FC [[function_constant(5)]];
kernel void case_bad(device float* y [[buffer(1)]]) { y[0] = UNSET_FC; }
#endif
