// The vector units' bf16 product shared by the matrix products (cpu/gemm.cpp) and the MLA
// attention (cpu/attention.cpp) on CPUs with AVX512-BF16 but no tile unit.
//
// A lane is one of 16 consecutive columns of the result; each VDPBF16PS broadcasts one bf16
// pair of a row of A against a 64-byte row of 16 pairs of B:
//   c[i, g, lane] (+)= sum_p a[i, 2p] b_g[p, lane, 0] + a[i, 2p + 1] b_g[p, lane, 1]
// for kRows rows of A (row i at a + i * a_stride, bf16) and kGroups column groups of B (b_g:
// [n_pairs][16][2] bf16, pair p at b_g + 32 p, or with run > 0 in runs of `run` pairs
// run_stride values apart: pair p at b_g + (p / run) run_stride + 32 (p % run)), c[i, g] the 16 floats at
// c + i * c_row + g * c_group. kRows x kGroups accumulators, at most 16 zmm registers: per pair
// one load per group and one 4-byte broadcast per row feed kRows x kGroups products.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace tandem::cpu {

template <int kRows, int kGroups>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void bf16_rows_by_pairs(
    const uint16_t* a, int64_t a_stride, const uint16_t* const* b, int64_t n_pairs, float* c, int64_t c_row,
    int64_t c_group, bool accumulate, int64_t run = 0, int64_t run_stride = 0) {
    static_assert(kRows * kGroups <= 16 && kGroups <= 2);
    __m512 acc[kRows][kGroups];
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g)
            acc[i][g] = accumulate ? _mm512_loadu_ps(c + i * c_row + g * c_group) : _mm512_setzero_ps();
    if (run <= 0) run = n_pairs;
    for (int64_t p0 = 0; p0 < n_pairs; p0 += run) {
        const int64_t offset = (p0 / run) * run_stride - p0 * 32;  // pair p of this run at b_g + offset + 32 p
        for (int64_t p = p0; p < std::min(n_pairs, p0 + run); ++p) {
            __m512bh x[kGroups];
#pragma GCC unroll 2
            for (int g = 0; g < kGroups; ++g) x[g] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b[g] + offset + p * 32));
#pragma GCC unroll 16
            for (int i = 0; i < kRows; ++i) {
                uint32_t pair;
                std::memcpy(&pair, a + i * a_stride + 2 * p, 4);
                const __m512bh w = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pair)));
#pragma GCC unroll 2
                for (int g = 0; g < kGroups; ++g) acc[i][g] = _mm512_dpbf16_ps(acc[i][g], w, x[g]);
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 2
        for (int g = 0; g < kGroups; ++g) _mm512_storeu_ps(c + i * c_row + g * c_group, acc[i][g]);
}

}  // namespace tandem::cpu
