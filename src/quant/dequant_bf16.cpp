// Dequantization to bfloat16 for the tile-unit matrix products (cpu/gemm.h).
//
// A weight panel is dequantized once per matrix product and then multiplied with every token
// of the batch, so this runs at the speed of the unpacking, not of the memory: the formats
// DeepSeek quants use have AVX-512 versions that unpack 32 values at a time (the same bit
// layouts as simd_kernels.h) into 8-bit integers u and write a * u + b per value, where a and
// b are the float scale and offset of u's 16- or 32-value sub-block. Other formats go through
// the scalar reference dequantizer and a conversion.
//
// Every header is included before the target pragma (see simd_kernels.h for why).
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/quant.h"
#include "quant/unpack.h"

#pragma GCC push_options
// GCC 12's AVX-512 conversion intrinsics start from _mm512_undefined_*(), which its
// -Wmaybe-uninitialized reports as a use of an uninitialised value (a known false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")

namespace tandem::quant {
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Writes 32 bf16 values: lo (elements 0..15) and hi (16..31).
inline void store_bf16(uint16_t* dst, __m512 lo, __m512 hi) {
    _mm512_storeu_si512(dst, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
}

// 32 values a * u + b from 32 bytes u (signed or unsigned); (a_lo, b_lo) apply to the first
// 16, (a_hi, b_hi) to the last 16.
template <bool Signed>
inline void emit32(uint16_t* dst, __m256i u, float a_lo, float b_lo, float a_hi, float b_hi) {
    const __m128i l = _mm256_castsi256_si128(u), h = _mm256_extracti128_si256(u, 1);
    const __m512i il = Signed ? _mm512_cvtepi8_epi32(l) : _mm512_cvtepu8_epi32(l);
    const __m512i ih = Signed ? _mm512_cvtepi8_epi32(h) : _mm512_cvtepu8_epi32(h);
    store_bf16(dst, _mm512_fmadd_ps(_mm512_cvtepi32_ps(il), _mm512_set1_ps(a_lo), _mm512_set1_ps(b_lo)),
               _mm512_fmadd_ps(_mm512_cvtepi32_ps(ih), _mm512_set1_ps(a_hi), _mm512_set1_ps(b_hi)));
}

inline __m256i grid_chunk(uint64_t e0, uint64_t e1, uint64_t e2, uint64_t e3) {
    return _mm256_set_epi64x(static_cast<int64_t>(e3), static_cast<int64_t>(e2), static_cast<int64_t>(e1),
                             static_cast<int64_t>(e0));
}

// ---- one block of each format into bf16 ----

void block_bf16(const BlockQ8_0& b, uint16_t* y) {  // y: [32]
    const float d = fp16_to_f32(b.d);
    emit32<true>(y, load32(b.qs), d, 0.0f, d, 0.0f);
}

void block_bf16(const BlockQ4_0& b, uint16_t* y) {  // low nibbles: elements 0..15, high: 16..31
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    const __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(0x0f)), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f));
    const float d = fp16_to_f32(b.d);
    emit32<false>(y, _mm256_setr_m128i(lo, hi), d, -8.0f * d, d, -8.0f * d);
}

void block_bf16(const BlockQ5_0& b, uint16_t* y) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    const __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(0x0f)), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f));
    uint32_t bits;
    std::memcpy(&bits, b.qh, 4);
    // bit j of qh is element j's fifth bit: a byte mask, 16 where set
    const __m256i fifth = _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(16));
    const float d = fp16_to_f32(b.d);
    emit32<false>(y, _mm256_or_si256(_mm256_setr_m128i(lo, hi), fifth), d, -16.0f * d, d, -16.0f * d);
}

void block_bf16(const BlockQ2K& b, uint16_t* y) {  // y: [256]
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    const __m256i mask2 = _mm256_set1_epi8(3);
    for (int half = 0; half < 2; ++half) {
        // qs bytes half*32 .. +31; bits 2s..2s+1 hold chunk 4*half + s (elements 32c ..).
        const __m256i q = load32(b.qs + 32 * half);
        for (int s = 0; s < 4; ++s) {
            const int c = 4 * half + s;
            const uint8_t s0 = b.scales[2 * c], s1 = b.scales[2 * c + 1];
            emit32<false>(y + 32 * c, _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), mask2),
                          d * static_cast<float>(s0 & 0x0F), -(dmin * static_cast<float>(s0 >> 4)),
                          d * static_cast<float>(s1 & 0x0F), -(dmin * static_cast<float>(s1 >> 4)));
        }
    }
}

void block_bf16(const BlockQ3K& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d);
    const __m256i mask2 = _mm256_set1_epi8(3);
    const __m256i hm = load32(b.hmask);
    for (int half = 0; half < 2; ++half) {
        const __m256i q = load32(b.qs + 32 * half);
        for (int s = 0; s < 4; ++s) {
            const int c = 4 * half + s;
            // u = q + 4 * (bit c of hmask[l]) in [0, 7]; the value is scale * (u - 4)
            const __mmask32 high = _mm256_test_epi8_mask(hm, _mm256_set1_epi8(static_cast<char>(1 << c)));
            const __m256i u = _mm256_mask_add_epi8(_mm256_and_si256(_mm256_srli_epi16(q, 2 * s), mask2), high,
                                                   _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), mask2),
                                                   _mm256_set1_epi8(4));
            const float a0 = d * static_cast<float>(q3k_scale(b.scales, 2 * c));
            const float a1 = d * static_cast<float>(q3k_scale(b.scales, 2 * c + 1));
            emit32<false>(y + 32 * c, u, a0, -4.0f * a0, a1, -4.0f * a1);
        }
    }
}

template <typename Block>
void k4_block_bf16(const Block& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    const __m256i mask4 = _mm256_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
        // qs bytes 32k .. 32k+31: low nibbles are chunk 2k, high nibbles chunk 2k+1.
        const __m256i q = load32(b.qs + 32 * k);
        __m256i lo = _mm256_and_si256(q, mask4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask4);
        if constexpr (sizeof(Block) == sizeof(BlockQ5K)) {
            // Fifth bit of chunk c is bit c of qh[l].
            const __m256i qh = load32(b.qh);
            const __m256i sixteen = _mm256_set1_epi8(16);
            lo = _mm256_mask_add_epi8(lo, _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << (2 * k)))), lo, sixteen);
            hi = _mm256_mask_add_epi8(hi, _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << (2 * k + 1)))), hi,
                                     sixteen);
        }
        const auto [sc0, m0] = k4_scale_min(b.scales, 2 * k);
        const auto [sc1, m1] = k4_scale_min(b.scales, 2 * k + 1);
        const float a0 = d * static_cast<float>(sc0), b0 = -(dmin * static_cast<float>(m0));
        const float a1 = d * static_cast<float>(sc1), b1 = -(dmin * static_cast<float>(m1));
        emit32<false>(y + 64 * k, lo, a0, b0, a0, b0);
        emit32<false>(y + 64 * k + 32, hi, a1, b1, a1, b1);
    }
}
void block_bf16(const BlockQ4K& b, uint16_t* y) { k4_block_bf16(b, y); }
void block_bf16(const BlockQ5K& b, uint16_t* y) { k4_block_bf16(b, y); }

void block_bf16(const BlockQ6K& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d);
    const __m256i mask4 = _mm256_set1_epi8(0x0F), mask2 = _mm256_set1_epi8(3);
    for (int half = 0; half < 2; ++half) {
        // ql bytes half*64 + [0, 64), qh bytes half*32 + [0, 32): chunk 4*half + t, t = 2n + r,
        // takes nibble n of ql[half*64 + 32r + l] and bits 2t..2t+1 of qh[half*32 + l].
        const __m256i ql0 = load32(b.ql + 64 * half), ql1 = load32(b.ql + 64 * half + 32);
        const __m256i qh = load32(b.qh + 32 * half);
        for (int t = 0; t < 4; ++t) {
            const int c = 4 * half + t;
            const __m256i ql = (t % 2) ? ql1 : ql0;
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ql, 4 * (t / 2)), mask4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * t), mask2);
            const float a0 = d * static_cast<float>(b.scales[2 * c]), a1 = d * static_cast<float>(b.scales[2 * c + 1]);
            emit32<false>(y + 32 * c, _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), a0, -32.0f * a0, a1, -32.0f * a1);
        }
    }
}

void block_bf16(const BlockIq2Xxs& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d);
    const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
    for (int i = 0; i < 8; ++i) {
        // Bytes 8i .. 8i+3: four grid indices; 8i+4 .. 8i+7: four 7-bit sign indices, scale.
        const uint32_t aux0 = load_u32(qs + 8 * i), aux1 = load_u32(qs + 8 * i + 4);
        const __m256i u = grid_chunk(kIq2xxsGrid[aux0 & 0xFF], kIq2xxsGrid[(aux0 >> 8) & 0xFF],
                                     kIq2xxsGrid[(aux0 >> 16) & 0xFF], kIq2xxsGrid[aux0 >> 24]);
        const __m256i signs = grid_chunk(kKsignsMul[aux1 & 0x7F], kKsignsMul[(aux1 >> 7) & 0x7F],
                                         kKsignsMul[(aux1 >> 14) & 0x7F], kKsignsMul[(aux1 >> 21) & 0x7F]);
        const float db = d * (0.5f + static_cast<float>(aux1 >> 28)) * 0.25f;
        emit32<true>(y + 32 * i, _mm256_sign_epi8(u, signs), db, 0.0f, db, 0.0f);
    }
}

void block_bf16(const BlockIq3Xxs& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d);
    for (int i = 0; i < 8; ++i) {
        const uint32_t aux = load_u32(b.qs + 64 + 4 * i);  // after the 64 grid indices
        const uint8_t* q = b.qs + 8 * i;
        const __m256i u = _mm256_setr_epi32(
            static_cast<int>(kIq3xxsGrid[q[0]]), static_cast<int>(kIq3xxsGrid[q[1]]), static_cast<int>(kIq3xxsGrid[q[2]]),
            static_cast<int>(kIq3xxsGrid[q[3]]), static_cast<int>(kIq3xxsGrid[q[4]]), static_cast<int>(kIq3xxsGrid[q[5]]),
            static_cast<int>(kIq3xxsGrid[q[6]]), static_cast<int>(kIq3xxsGrid[q[7]]));
        const __m256i signs = grid_chunk(kKsignsMul[aux & 0x7F], kKsignsMul[(aux >> 7) & 0x7F],
                                         kKsignsMul[(aux >> 14) & 0x7F], kKsignsMul[(aux >> 21) & 0x7F]);
        const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
        emit32<true>(y + 32 * i, _mm256_sign_epi8(u, signs), db, 0.0f, db, 0.0f);
    }
}

void block_bf16(const BlockIq1S& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d);
    for (int i = 0; i < 8; ++i) {
        // x = dl * (g + delta), g in {-1, 0, 1} from the grid: a = dl, b = dl * delta (exact).
        const uint32_t qh = b.qh[i];
        const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
        const float off = dl * ((qh & 0x8000) ? -kIq1Delta : kIq1Delta);
        const uint8_t* q = b.qs + 4 * i;
        const __m256i g = grid_chunk(kIq1sGrid[q[0] | ((qh << 8) & 0x700)], kIq1sGrid[q[1] | ((qh << 5) & 0x700)],
                                     kIq1sGrid[q[2] | ((qh << 2) & 0x700)], kIq1sGrid[q[3] | ((qh >> 1) & 0x700)]);
        emit32<true>(y + 32 * i, g, dl, off, dl, off);
    }
}

void row_f32(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) store_bf16(y + i, _mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16));
    for (; i < n; ++i) {  // the tail, rounded to nearest even as cvtne2ps2bf16 does
        const __m128bh one = _mm_cvtneps_pbh(_mm_set_ss(x[i]));
        uint16_t bits;
        std::memcpy(&bits, &one, 2);
        y[i] = bits;
    }
}

void row_f16(const uint16_t* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        store_bf16(y + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))),
                   _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16))));
    for (; i < n; ++i) {
        const float f = fp16_to_f32(x[i]);
        row_f32(&f, y + i, 1);
    }
}

template <typename Block, int kValues>
void blocks_bf16(const void* src, uint16_t* y, int64_t n) {
    const auto* b = static_cast<const Block*>(src);
    for (int64_t i = 0; i < n / kValues; ++i) block_bf16(b[i], y + i * kValues);
}

using RowFn = void (*)(const void*, uint16_t*, int64_t);

RowFn fast_row(GgmlType type) {
    using T = GgmlType;
    switch (type) {
        case T::F32: return [](const void* s, uint16_t* y, int64_t n) { row_f32(static_cast<const float*>(s), y, n); };
        case T::F16: return [](const void* s, uint16_t* y, int64_t n) { row_f16(static_cast<const uint16_t*>(s), y, n); };
        case T::BF16: return [](const void* s, uint16_t* y, int64_t n) { std::memcpy(y, s, static_cast<size_t>(n) * 2); };
        case T::Q8_0: return blocks_bf16<BlockQ8_0, kQ32>;
        case T::Q4_0: return blocks_bf16<BlockQ4_0, kQ32>;
        case T::Q5_0: return blocks_bf16<BlockQ5_0, kQ32>;
        case T::Q2_K: return blocks_bf16<BlockQ2K, kQK>;
        case T::Q3_K: return blocks_bf16<BlockQ3K, kQK>;
        case T::Q4_K: return blocks_bf16<BlockQ4K, kQK>;
        case T::Q5_K: return blocks_bf16<BlockQ5K, kQK>;
        case T::Q6_K: return blocks_bf16<BlockQ6K, kQK>;
        case T::IQ2_XXS: return blocks_bf16<BlockIq2Xxs, kQK>;
        case T::IQ3_XXS: return blocks_bf16<BlockIq3Xxs, kQK>;
        case T::IQ1_S: return blocks_bf16<BlockIq1S, kQK>;
        default: return nullptr;
    }
}

}  // namespace
}  // namespace tandem::quant

#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace tandem::quant {

void dequantize_row_bf16(GgmlType type, const void* src, uint16_t* dst, int64_t n) {
    if (const RowFn fn = fast_row(type)) return fn(src, dst, n);
    // Formats without their own unpacking: the reference dequantizer, then a conversion.
    thread_local std::vector<float> row;
    if (row.size() < static_cast<size_t>(n)) row.resize(static_cast<size_t>(n));
    dequantize_row(type, src, row.data(), n);
    row_f32(row.data(), dst, n);
}

bool has_fast_bf16_dequant(GgmlType type) { return fast_row(type) != nullptr; }

}  // namespace tandem::quant
