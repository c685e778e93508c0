// The vector units' bf16 product shared by the matrix products (cpu/gemm.cpp) and the MLA
// attention (cpu/attention.cpp) on CPUs with AVX512-BF16 but no tile unit.
//
// A lane is one of 16 consecutive columns of the result; each VDPBF16PS broadcasts one bf16
// pair of a row of A against a 64-byte row of 16 pairs of B:
//   c[i, g, lane] (+)= sum_p a[i, 2p] b_g[p, lane, 0] + a[i, 2p + 1] b_g[p, lane, 1]
// for kRows rows of A (row i at a + i * a_stride, bf16) and kGroups column groups of B (b_g:
// [n_pairs][16][2] bf16, pair p at b_g + 32 p), c[i, g] the 16 floats at
// c + i * c_row + g * c_group. kRows x kGroups accumulators, at most 16 zmm registers: per pair
// one load per group and one 4-byte broadcast per row feed kRows x kGroups products.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace tandem::cpu {

template <int kRows, int kGroups>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void bf16_rows_by_pairs(
    const uint16_t* a, int64_t a_stride, const uint16_t* const* b, int64_t n_pairs, float* c, int64_t c_row,
    int64_t c_group, bool accumulate) {
    static_assert(kRows * kGroups <= 16 && kGroups <= 2);
    __m512 acc[kRows][kGroups];
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g)
            acc[i][g] = accumulate ? _mm512_loadu_ps(c + i * c_row + g * c_group) : _mm512_setzero_ps();
    for (int64_t p = 0; p < n_pairs; ++p) {
        __m512bh x[kGroups];
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g) x[g] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b[g] + p * 32));
#pragma GCC unroll 16
        for (int i = 0; i < kRows; ++i) {
            uint32_t pair;
            std::memcpy(&pair, a + i * a_stride + 2 * p, 4);
            const __m512bh w = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pair)));
#pragma GCC unroll 2
            for (int g = 0; g < kGroups; ++g) acc[i][g] = _mm512_dpbf16_ps(acc[i][g], w, x[g]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g) _mm512_storeu_ps(c + i * c_row + g * c_group, acc[i][g]);
}

}  // namespace tandem::cpu
