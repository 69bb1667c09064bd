// q4_0 and q8_0 weights in "split rows" on the device (the default; STRATA_CUDA_REPACK=0 keeps
// the file's layout): each row's quants apart from its scales, so every block's quants start
// 16-byte aligned.
//
// A GGUF q4_0 / q8_0 row is nb blocks of [d: f16][qs: 16 or 32 bytes], 18 or 34 bytes, so
// its blocks start only 2-byte aligned and a lane of the decode matvec needs two or three
// 16-byte loads and a run of shifts to get one block's quants into registers (matvec_wide.cuh:
// align_words), which is what holds 8B q4_0 decode below the bandwidth the other types reach.
// Split, the same row is the nb blocks' qs (kQBytes each) followed by the nb scales:
//
//   GGUF:   d0 qs0 | d1 qs1 | ... | d(nb-1) qs(nb-1)
//   split:  qs0 qs1 ... qs(nb-1) | d0 d1 ... d(nb-1)
//
// Same bytes and the same row length, so a row stays where it was; with rows 16-byte
// aligned (row bytes a multiple of 16: K % 256 == 0, weights uploaded 256-byte aligned)
// block b's quants are one (q4_0) or two (q8_0) aligned 16-byte loads at qs + kQBytes b and
// its scale a 2-byte load at qs + kQBytes nb + 2 b. The backend splits a weight once after
// the upload (launch_split_rows) when every use of it is a matmul whose decode takes the wide
// kernel and whose prefill takes gemm_f16's dequantization: the two readers that know this
// layout (WideSplit in matvec_wide.cuh, deq8_split below).
//
// The host functions here are compiled by the host checks too (tools/wide_host_check.cpp).
#pragma once

#include <stdint.h>

#include "../../core/dtype.h"

namespace strata::cuda {

// Bytes of one block's quants (the block minus its f16 scale).
constexpr int split_qs_bytes(DType t) { return t == DType::Q4_0 ? 16 : t == DType::Q8_0 ? 32 : 0; }

// Whether a weight of type t and width K can be held in split rows (the in-place repack
// stages one row in 48 KiB of shared memory).
inline bool split_rows_supported(DType t, int64_t K) {
    const int q = split_qs_bytes(t);
    return q > 0 && K % 256 == 0 && K / 32 * (q + 2) <= 48 * 1024;
}

// Split rows are moved in 2-byte units: unit h of a split row of nb blocks comes from unit
// split_source_unit(h) of the GGUF row.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline int64_t split_source_unit(int64_t h, int64_t nb, int qs_bytes) {
    const int64_t per_block = qs_bytes / 2 + 1, qs_units = nb * (qs_bytes / 2);
    if (h < qs_units) return h / (qs_bytes / 2) * per_block + 1 + h % (qs_bytes / 2);
    return (h - qs_units) * per_block;
}

// The same rewrite on the host, from src to dst (the host checks build their split weights
// with it, so they test the very mapping the device kernel applies).
inline void split_rows_host(const uint8_t* src, uint8_t* dst, int64_t rows, int64_t K, int qs_bytes) {
    const int64_t nb = K / 32, units = nb * (qs_bytes / 2 + 1);
    const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t h = 0; h < units; ++h) d[r * units + h] = s[r * units + split_source_unit(h, nb, qs_bytes)];
}

}  // namespace strata::cuda
