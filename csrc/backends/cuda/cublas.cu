// cuBLAS for the prefill GEMM, loaded at run time with dlopen.
//
// Why cuBLAS: on Hopper its f16 GEMMs run on wgmma at about twice the rate of gemm_f16.cu's
// mma.sync tiles (an 8B F16 prompt: 0.51x of llama.cpp on our tiles, whose F16 path is
// cuBLAS). Why at run time: the build then needs no cuBLAS headers or libraries (the CI
// machine's toolkit has none), the wheel does not carry a 500 MB library, and a machine
// without cuBLAS still runs on gemm_f16.cu. The few declarations below are transcribed from
// cublas_api.h (CUDA 12/13; the ABI of these entry points has not changed since CUDA 11).
//
// Where it is looked for: $STRATA_CUBLAS (a path; "0" = do not use cuBLAS), which the Python
// package sets to the NVIDIA wheel's library when one is installed (torch's), then the
// sonames libcublas.so.13 / .12 / libcublas.so on the loader's path, then /usr/local/cuda.
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "common.cuh"
#include "runtime.cuh"

namespace strata::cuda {

namespace {

using cublasHandle_t = void*;
using cublasStatus_t = int;
constexpr int kOpN = 0, kOpT = 1;            // cublasOperation_t
constexpr int kCompute32F = 68;              // cublasComputeType_t CUBLAS_COMPUTE_32F
constexpr int kGemmDefault = -1;             // cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT

struct Api {
    void* lib = nullptr;
    std::string note;  // the library loaded, or what was tried
    cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
    cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, int, int, int, int, int, const void*, const void*, cudaDataType,
                              int, const void*, cudaDataType, int, const void*, void*, cudaDataType, int, int,
                              int) = nullptr;
};

template <typename F>
bool resolve(void* lib, const char* name, F* out) {
    *out = reinterpret_cast<F>(dlsym(lib, name));
    return *out != nullptr;
}

const Api& api() {
    static Api a;
    static std::once_flag once;
    std::call_once(once, [] {
        const std::string forced = env("STRATA_CUBLAS");
        if (forced == "0") {
            a.note = "off (STRATA_CUBLAS=0)";
            return;
        }
        std::string tried;
        for (const std::string& name : {forced, std::string("libcublas.so.13"), std::string("libcublas.so.12"),
                                        std::string("libcublas.so"), std::string("/usr/local/cuda/lib64/libcublas.so")}) {
            if (name.empty()) continue;
            void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (!lib) {
                tried += (tried.empty() ? "" : ", ") + name;
                continue;
            }
            if (resolve(lib, "cublasCreate_v2", &a.create) && resolve(lib, "cublasDestroy_v2", &a.destroy) &&
                resolve(lib, "cublasSetStream_v2", &a.set_stream) && resolve(lib, "cublasGemmEx", &a.gemm_ex)) {
                a.lib = lib;
                a.note = name;
                return;
            }
            tried += (tried.empty() ? "" : ", ") + name + " (missing symbols)";
            dlclose(lib);
        }
        a.note = "not found (tried " + tried + ")";
    });
    return a;
}

}  // namespace

Cublas::Cublas(cudaStream_t s) {
    const Api& a = api();
    note_ = a.note;
    if (!a.lib) return;
    cublasHandle_t h = nullptr;
    if (a.create(&h) != 0) {
        note_ = a.note + ": cublasCreate failed";
        return;
    }
    if (a.set_stream(h, s) != 0) {
        a.destroy(h);
        note_ = a.note + ": cublasSetStream failed";
        return;
    }
    handle_ = h;
}

Cublas::~Cublas() {
    if (handle_) api().destroy(handle_);
}

// Row-major Y[t, ldy] (columns [0, n)) = X[t, :] . W[r, :] over K, i.e. in cuBLAS's
// column-major terms C (n x rows, ldc = ldy) = W^T' (W stored K x n, transposed) * X (K x rows).
void Cublas::gemm_f16(const __half* w, const __half* x, float* y, int64_t n, int64_t rows, int64_t K,
                      int64_t ldy) const {
    const float one = 1.0f, zero = 0.0f;
    const cublasStatus_t st = api().gemm_ex(handle_, kOpT, kOpN, (int)n, (int)rows, (int)K, &one, w, CUDA_R_16F,
                                            (int)K, x, CUDA_R_16F, (int)K, &zero, y, CUDA_R_32F, (int)ldy,
                                            kCompute32F, kGemmDefault);
    if (st != 0)
        throw StrataError("cublasGemmEx failed with status " + std::to_string(st) + " (n = " + std::to_string(n) +
                          ", rows = " + std::to_string(rows) + ", K = " + std::to_string(K) + ")");
}

}  // namespace strata::cuda
