// Prefill matmul for float weights (F32, F16, BF16) on AVX-512: 32 weight rows at a time,
// widened to f32 once into a per-thread tile laid out element-major (element k of the 32
// rows is one 128-byte line), against 8 tokens at a time whose 32 x 8 outputs stay in 16
// registers while k runs: per element, two weight vectors and eight broadcast activations
// feed 16 fused multiply-adds, with no horizontal sums. The 4-token kernel
// (quant_dot_x4.cpp) converts every weight vector once per 4 tokens and ends each output
// with a horizontal sum; this converts each weight once per matmul.
//
// Each output is the fp32 sum over k in order (one accumulator per output).
#include "kernel_common.h"

namespace strata::cpu::STRATA_ISA {

#if defined(__AVX512F__)
namespace {

constexpr int kRows = kGemmFloatTileRows;
constexpr int kTokens = 8;

static inline float widen(const float* w, int64_t i) { return w[i]; }
template <bool BF16>
static inline float widen(const uint16_t* w, int64_t i) {
    if constexpr (BF16) {
        const uint32_t u = (uint32_t)w[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    } else {
        return fp16_to_f32(w[i]);
    }
}

// 16 consecutive weights of one row as f32.
template <typename W, bool BF16>
static inline __m512 load16(const W* w) {
    if constexpr (sizeof(W) == 4) {
        return _mm512_loadu_ps((const float*)w);
    } else {
        const __m256i h = _mm256_loadu_si256((const __m256i*)w);
        if constexpr (BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        else return _mm512_cvtph_ps(h);
    }
}

// Rows [r0, r0 + 32) of W (K wide) to tile[k * 32 + r]: 16 x 16 blocks transposed in
// registers (the widened rows are written to a small buffer and read back by column).
template <typename W, bool BF16>
void repack_tile(const W* w, int64_t K, int64_t r0, float* tile) {
    alignas(64) float blk[16][16];
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
        for (int h = 0; h < kRows; h += 16) {
            for (int r = 0; r < 16; ++r) _mm512_store_ps(blk[r], load16<W, BF16>(w + (r0 + h + r) * K + k));
            for (int c = 0; c < 16; ++c) {
                const __m512i idx = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208,
                                                      224, 240);
                _mm512_store_ps(tile + (k + c) * kRows + h, _mm512_i32gather_ps(idx, &blk[0][c], 4));
            }
        }
    for (; k < K; ++k)
        for (int r = 0; r < kRows; ++r) {
            if constexpr (sizeof(W) == 4) tile[k * kRows + r] = widen((const float*)w + (r0 + r) * K, k);
            else tile[k * kRows + r] = widen<BF16>((const uint16_t*)w + (r0 + r) * K, k);
        }
}

// NT tokens (x: f32 rows ldx floats apart) against the tile: y[j * ldy + 0..31].
template <int NT>
void tile_tokens(const float* tile, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy) {
    __m512 acc[NT][2];
    for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const __m512 w0 = _mm512_load_ps(tile + k * kRows), w1 = _mm512_load_ps(tile + k * kRows + 16);
        for (int j = 0; j < NT; ++j) {
            const __m512 xv = _mm512_set1_ps(x[j * ldx + k]);
            acc[j][0] = _mm512_fmadd_ps(w0, xv, acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(w1, xv, acc[j][1]);
        }
    }
    for (int j = 0; j < NT; ++j) {
        _mm512_storeu_ps(y + j * ldy, acc[j][0]);
        _mm512_storeu_ps(y + j * ldy + 16, acc[j][1]);
    }
}

template <typename W, bool BF16>
void gemm_float_tiles(const W* w, int64_t K, int64_t r0, int64_t r1, const float* x, int64_t n_tok, float* y,
                      int64_t ldy, float* tile) {
    for (int64_t rt = r0; rt + kRows <= r1; rt += kRows) {
        repack_tile<W, BF16>(w, K, rt, tile);
        int64_t t = 0;
        for (; t + kTokens <= n_tok; t += kTokens) tile_tokens<kTokens>(tile, K, x + t * K, K, y + t * ldy + rt, ldy);
        for (; t < n_tok; ++t) tile_tokens<1>(tile, K, x + t * K, K, y + t * ldy + rt, ldy);
    }
}

}  // namespace
#endif

bool gemm_float_supported(DType t) {
#if defined(__AVX512F__)
    return t == DType::F32 || t == DType::F16 || t == DType::BF16;
#else
    (void)t;
    return false;
#endif
}

void gemm_float_rows(DType t, const uint8_t* w, int64_t K, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                     float* y, int64_t ldy, uint8_t* tile) {
#if defined(__AVX512F__)
    float* ft = (float*)tile;
    switch (t) {
        case DType::F32: gemm_float_tiles<float, false>((const float*)w, K, r0, r1, x, n_tok, y, ldy, ft); return;
        case DType::F16: gemm_float_tiles<uint16_t, false>((const uint16_t*)w, K, r0, r1, x, n_tok, y, ldy, ft); return;
        case DType::BF16: gemm_float_tiles<uint16_t, true>((const uint16_t*)w, K, r0, r1, x, n_tok, y, ldy, ft); return;
        default: return;
    }
#else
    (void)t, (void)w, (void)K, (void)r0, (void)r1, (void)x, (void)n_tok, (void)y, (void)ldy, (void)tile;
#endif
}

}  // namespace strata::cpu::STRATA_ISA
