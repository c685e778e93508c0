// Vector unpacking of block scales shared by the per-ISA kernels (simd_kernels.h) and the int8
// products (cpu/gemm_i8.cpp). AVX2 intrinsics only, and internal linkage (anonymous namespace):
// every translation unit, whatever its target, compiles its own copy, so the linker can never
// hand a CPU a copy built for a wider instruction set.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace tandem::quant {
namespace {

// Q4_K / Q5_K: the 8 6-bit scales (bytes 0..7) and mins (bytes 8..15) of the 12 packed bytes
// (see BlockQ4K), with dword masks as in ggml: with u0, u1, u2 the three dwords,
//   scales 0..3 = u0 & 0x3f..,  scales 4..7 = (u2 & 0x0f..) | (u0 >> 6 & 0x03..) << 4,
//   mins 0..3 = u1 & 0x3f..,    mins 4..7 = (u2 >> 4 & 0x0f..) | (u1 >> 6 & 0x03..) << 4.
// Reads 16 bytes at `scales` (Q4_K/Q5_K blocks go on past the scales).
inline __m128i k4_scales_mins(const uint8_t* scales) {
    const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales));
    const __m128i a = _mm_shuffle_epi32(u, 0x98);  // u0, u2, u1, u2
    const __m128i b = _mm_shuffle_epi32(u, 0x50);  // u0, u0, u1, u1
    const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                      _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i top = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(low, top);
}

}  // namespace
}  // namespace tandem::quant
