// The CUDA backend's host-side entry points. Plain C++ (no CUDA headers), so the bindings
// compile without the toolkit; the definitions live in cuda_backend.cu, which is built only
// when CMake finds a CUDA compiler (STRATA_HAVE_CUDA).
//
// The module links the CUDA runtime statically, and the runtime opens the driver
// (libcuda.so.1) only when first asked: a build with CUDA imports and runs on machines with
// no GPU and no driver, where cuda_available() is simply false.
#pragma once

#include <memory>
#include <string>

#include "../../core/backend.h"

namespace strata::cuda {

// True when the CUDA runtime finds at least one device (cudaGetDeviceCount succeeds).
// Never throws: a missing driver or device is "not available".
bool cuda_available();

// One line about the device the backend would use ("NVIDIA H100 80GB HBM3, sm_90, ...").
std::string device_description();

// A backend on device STRATA_CUDA_DEVICE (default 0). Throws StrataError when no device.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace strata::cuda
