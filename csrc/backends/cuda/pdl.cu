// Whether programmatic dependent launch is safe with this build on this device. The kernels'
// pdl_begin (common.cuh) holds griddepcontrol.wait only where they were compiled for sm_90 or
// later; a build whose code for this device is JIT-compiled from older PTX has no wait in its
// kernels, and launching them as programmatic dependents would let them race. Every .cu file
// is compiled for the same architectures, so an empty kernel of this one tells for all.
#include "common.cuh"

namespace strata::cuda {

namespace {

__global__ void pdl_probe_kernel() {}

}  // namespace

bool pdl_kernels_built() {
    cudaFuncAttributes a{};
    if (cudaFuncGetAttributes(&a, pdl_probe_kernel) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return a.ptxVersion >= 90;  // the virtual architecture, major * 10 + minor
}

}  // namespace strata::cuda
