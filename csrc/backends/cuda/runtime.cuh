// Host-side helpers of the CUDA backend (cuda_backend.cu): CUDA errors as StrataError,
// environment switches, and RAII owners of device and page-locked host memory.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "../../core/errors.h"

namespace strata::cuda {

inline std::string cuda_message(cudaError_t e) {
    return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// `what` is a C string so that the per-step calls allocate nothing while all is well.
inline void check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for it
    throw StrataError(std::string("CUDA error in ") + what + ": " + cuda_message(e));
}
inline void check(cudaError_t e, const std::string& what) { check(e, what.c_str()); }

inline std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

inline int env_int(const char* name, int fallback) {
    const std::string v = env(name);
    if (v.empty()) return fallback;
    char* end = nullptr;
    const long x = std::strtol(v.c_str(), &end, 10);
    if (!end || *end) throw StrataError(std::string(name) + " must be an integer, got '" + v + "'");
    return (int)x;
}

// A switch that is on unless set to 0; anything but unset, 0 or 1 is an error naming it.
inline bool env_on(const char* name) {
    const std::string v = env(name);
    if (!v.empty() && v != "0" && v != "1")
        throw StrataError(std::string(name) + " must be 0 or 1, got '" + v + "'");
    return v != "0";
}

inline std::string gib(int64_t bytes) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f GiB", (double)bytes / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

inline int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

// Device memory, freed with its owner.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { reset(); }
    void reset() {
        if (ptr_) cudaFree(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
    }
    void allocate(int64_t bytes, const std::string& what, int64_t total_needed) {
        reset();
        if (bytes <= 0) return;
        const cudaError_t e = cudaMalloc(&ptr_, (size_t)bytes);
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            ptr_ = nullptr;
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            throw StrataError("out of GPU memory allocating " + what + ": " + std::to_string(bytes) +
                              " bytes needed (" + gib(bytes) + "; " + gib(total_needed) +
                              " for the model in all), " + std::to_string(free_b) + " bytes free (" +
                              gib((int64_t)free_b) + " of " + gib((int64_t)total_b) + ")");
        }
        check(e, "cudaMalloc (" + what + ")");
        bytes_ = bytes;
    }
    uint8_t* get() const { return static_cast<uint8_t*>(ptr_); }
    int64_t bytes() const { return bytes_; }

private:
    void* ptr_ = nullptr;
    int64_t bytes_ = 0;
};

// Page-locked host memory (fast, asynchronous copies), freed with its owner.
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    ~PinnedBuffer() { reset(); }
    void reset() {
        if (ptr_) cudaFreeHost(ptr_);
        ptr_ = nullptr;
    }
    void allocate(int64_t bytes, const std::string& what) {
        reset();
        check(cudaMallocHost(&ptr_, (size_t)std::max<int64_t>(bytes, 64)), "cudaMallocHost (" + what + ")");
    }
    uint8_t* get() const { return static_cast<uint8_t*>(ptr_); }

private:
    void* ptr_ = nullptr;
};

}  // namespace strata::cuda
