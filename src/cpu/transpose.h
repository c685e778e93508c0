// The products' results from their accumulator layout (a weight row's 16 or 8 tokens side by
// side, as the tile unit stores C and the vector units keep it) to token rows, 8 x 8 floats at
// a time with AVX2 shuffles.
//
// NOTES: the scalar loop this replaces (one load and one store per value) cost as much as the
// products themselves where a row is short: W_uk of an MLA prefill (rows of 128) spent 20% of
// its time there on Zen 4 (bench_cpu gemm/BF16/512x128/tok512), and on the tile unit, which
// multiplies ~4x faster, more than the products. 24 shuffles per 64 values instead.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace tandem::cpu {

// dst[j * dst_stride + i] = src[i * src_stride + j] for i < 8, j < n_dst_rows (<= 8): eight
// rows of eight floats, transposed, of which the first n_dst_rows are written.
inline void transpose_8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t n_dst_rows) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves: column j of
    // the rows ends up in t[j].
    __m256 u[8];
    for (int i = 0; i < 8; i += 2) {
        u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
        u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
    }
    __m256 v[8];
    for (int i = 0; i < 8; i += 4)
        for (int h = 0; h < 2; ++h) {
            v[i + 2 * h] = _mm256_shuffle_ps(u[i + h], u[i + 2 + h], 0x44);      // a b c d of column 2h (| 2h + 4)
            v[i + 2 * h + 1] = _mm256_shuffle_ps(u[i + h], u[i + 2 + h], 0xEE);  // column 2h + 1 (| 2h + 5)
        }
    __m256 t[8];
    for (int j = 0; j < 4; ++j) {
        t[j] = _mm256_permute2f128_ps(v[j], v[4 + j], 0x20);
        t[4 + j] = _mm256_permute2f128_ps(v[j], v[4 + j], 0x31);
    }
    for (int64_t j = 0; j < n_dst_rows; ++j) _mm256_storeu_ps(dst + j * dst_stride, t[j]);
}

// out[t * out_stride + r] = c[r * c_row + t] for r < 8 * n_row_blocks, t < n_tok (a multiple of
// 8 columns are read, so c must hold round_up(n_tok, 8) of them).
inline void columns_to_rows(const float* c, int64_t c_row, int64_t n_row_blocks, int64_t n_tok, float* out, int64_t out_stride) {
    for (int64_t t0 = 0; t0 < n_tok; t0 += 8)
        for (int64_t rb = 0; rb < n_row_blocks; ++rb)
            transpose_8x8(c + rb * 8 * c_row + t0, c_row, out + t0 * out_stride + rb * 8, out_stride,
                          n_tok - t0 < 8 ? n_tok - t0 : 8);
}

}  // namespace tandem::cpu
