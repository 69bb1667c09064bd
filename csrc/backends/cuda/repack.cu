// A q4_0 / q8_0 weight rewritten into split rows (weight_split.cuh) in place, once at load.
//
// One block per row: the row is staged in shared memory, then written back in the split
// order, 2 bytes per thread and step (blocks start 2-byte aligned, so every field is a
// whole number of 2-byte units). Rows are independent, so the weight needs no second copy.
#include "common.cuh"
#include "weight_split.cuh"

namespace strata::cuda {

namespace {

__global__ void split_rows_kernel(uint8_t* __restrict__ w, int64_t row_bytes, int64_t nb, int qs_bytes) {
    extern __shared__ uint16_t staged[];
    uint16_t* row = reinterpret_cast<uint16_t*>(w + (int64_t)blockIdx.x * row_bytes);
    const int64_t units = row_bytes / 2;
    for (int64_t h = threadIdx.x; h < units; h += blockDim.x) staged[h] = row[h];
    __syncthreads();
    for (int64_t h = threadIdx.x; h < units; h += blockDim.x) row[h] = staged[split_source_unit(h, nb, qs_bytes)];
}

}  // namespace

void launch_split_rows(DType t, uint8_t* w, int64_t rows, int64_t K, cudaStream_t s) {
    const int qs = split_qs_bytes(t);
    const int64_t nb = K / 32, row_bytes = nb * (qs + 2);
    // One block per row: grid.x allows 2^31 - 1, far more rows than any weight has.
    split_rows_kernel<<<(unsigned)rows, 256, (size_t)row_bytes, s>>>(w, row_bytes, nb, qs);
}

}  // namespace strata::cuda
