// Dequantization to bfloat16 for the tile-unit matrix products (cpu/gemm.h).
//
// A weight panel is dequantized once per matrix product and then multiplied with every token
// of the batch, so this runs at the speed of the unpacking, not of the memory: the formats
// DeepSeek quants use have AVX-512 versions that unpack 32 values at a time (the same bit
// layouts as simd_kernels.h) into 8-bit integers u and write a * u + b per value, where a and
// b are the float scale and offset of u's 16- or 32-value sub-block. Other formats go through
// the scalar reference dequantizer and a conversion.
//
// Where a block has few distinct values (IQ1_S and IQ1_S_U2: 3 per 32 weights; Q4_K: 16;
// Q2_K: 4 per 16; Q3_K: 8 per 16), they are computed once into a table of 32 bf16 values and
// every weight is one table lookup (vpermw): 2 uops per 32 values instead of the 7 of
// int -> float -> fma -> bf16.
//
// Only reached from the bf16 path (cpu/gemm.h), on CPUs whose gemm_unit() is AMX or
// AVX512-BF16: both imply AVX-512 BF16 and VNNI. Every header is included before the target
// pragma (see simd_kernels.h for why).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <vector>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/quant.h"
#include "quant/unpack.h"
#include "quant/vec_dot_impl.h"

#pragma GCC push_options
// GCC 12's AVX-512 conversion intrinsics start from _mm512_undefined_*(), which its
// -Wmaybe-uninitialized reports as a use of an uninitialised value (a known false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,f16c,fma")
#include "quant/simd_kernels.h"

namespace tandem::quant {
namespace {

constexpr Isa kIsa = Isa::Avx512Vnni;

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

// 32 bf16 values lut[u] for 32 byte indices u < 32.
inline void lookup32(uint16_t* dst, __m256i u, __m512i lut) {
    _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(u), lut));
}

// The bf16 table of 32 values: a_lo * i + b_lo for i < 16, then a_hi * (i - 16 + hi_first) +
// b_hi (hi_first 0: two 16-value tables; 16: one 32-value table when a_hi, b_hi = a_lo, b_lo).
inline __m512i table32(float a_lo, float b_lo, float a_hi, float b_hi, float hi_first = 0.0f) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 iota_hi = _mm512_add_ps(iota, _mm512_set1_ps(hi_first));
    return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_fmadd_ps(iota_hi, _mm512_set1_ps(a_hi), _mm512_set1_ps(b_hi)),
                                                         _mm512_fmadd_ps(iota, _mm512_set1_ps(a_lo), _mm512_set1_ps(b_lo))));
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

template <typename Block>  // Q2_K, Q2_K_U16 (q2k_chunk: either's values in natural order)
void q2k_bf16(const Block& b, uint16_t* y) {  // y: [256]
    // Each half (8 sub-blocks of 16, 128 values) has 32 distinct values: table entry 4 s + q =
    // d * scale_s * q - dmin * min_s for its sub-block s and q < 4, so a value is one lookup of
    // 4 s + q.
    const __m512 d = _mm512_set1_ps(fp16_to_f32(b.d)), neg_dmin = _mm512_set1_ps(-fp16_to_f32(b.dmin));
    const __m512 q = _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    // Scale byte 4 e + k (e < 4 entries' groups of the 128-bit lane) <- byte e of the lane's 4.
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,  //
                                            4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
    // 4 s in byte j of a chunk: sub-block 2 c4 for values 0..15, 2 c4 + 1 for 16..31.
    const __m256i sub = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
                                         4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4);
    for (int half = 0; half < 2; ++half) {
        uint64_t sc8;
        std::memcpy(&sc8, b.scales + 8 * half, 8);
        const __m256i rep = _mm256_shuffle_epi8(_mm256_set1_epi64x(static_cast<int64_t>(sc8)), spread);
        __m512 t[2];
        for (int h = 0; h < 2; ++h) {
            const __m512i sc = _mm512_cvtepu8_epi32(h ? _mm256_extracti128_si256(rep, 1) : _mm256_castsi256_si128(rep));
            const __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(0x0F))), d);
            const __m512 m = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4)), neg_dmin);
            t[h] = _mm512_fmadd_ps(q, a, m);
        }
        const __m512i table = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(t[1], t[0]));
#pragma GCC unroll 4
        for (int c4 = 0; c4 < 4; ++c4) {
            const int c = 4 * half + c4;
            const __m256i at = _mm256_add_epi8(sub, _mm256_set1_epi8(static_cast<char>(8 * c4)));
            lookup32(y + 32 * c, _mm256_or_si256(q2k_chunk(b, c), at), table);
        }
    }
}

void block_bf16(const BlockQ2K& b, uint16_t* y) { q2k_bf16(b, y); }
void block_bf16(const BlockQ2KU16& b, uint16_t* y) { q2k_bf16(b, y); }

template <typename Block>  // Q3_K, Q3_K_U16 (q3k_chunk: either's u in natural order)
void q3k_bf16(const Block& b, uint16_t* y) {  // the value is scale * (u - 4)
    // Each pair of chunks (4 sub-blocks of 16, 64 values) has 32 distinct values: table entry
    // 8 s + u = d * scale_s * (u - 4) for its sub-block s and u < 8, so a value is one lookup.
    const float d = fp16_to_f32(b.d);
    const __m512 u = _mm512_setr_ps(-4, -3, -2, -1, 0, 1, 2, 3, -4, -3, -2, -1, 0, 1, 2, 3);
    // 8 s in byte j of a chunk: sub-block 2 (c % 2) for values 0..15, 2 (c % 2) + 1 for 16..31.
    const __m256i sub = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
                                         8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8);
    // The 16 sub-blocks' d * scale, and lane picks [s x 8, s + 1 x 8] for s = 0.
    const __m512 scales =
        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(q3k_scales(b.scales))), _mm512_set1_ps(d));
    const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    // chunk c's u in natural order: Q3_K's decoder, or Q3_K_U16's 64 weights per register
    __m512i nat[4];
    if constexpr (std::is_same_v<Block, BlockQ3KU16>)
        for (int k = 0; k < 4; ++k) nat[k] = q3ku16_natural64(b, k);
    const auto chunk = [&](int c) {
        if constexpr (std::is_same_v<Block, BlockQ3KU16>) return c % 2 ? _mm512_extracti64x4_epi64(nat[c / 2], 1) : _mm512_castsi512_si256(nat[c / 2]);
        else return q3k_chunk(b, c);
    };
    for (int pair = 0; pair < 4; ++pair) {
        const __m512 a_lo = _mm512_permutexvar_ps(_mm512_add_epi32(pick, _mm512_set1_epi32(4 * pair)), scales);
        const __m512 a_hi = _mm512_permutexvar_ps(_mm512_add_epi32(pick, _mm512_set1_epi32(4 * pair + 2)), scales);
        const __m512i table =
            reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_mul_ps(u, a_hi), _mm512_mul_ps(u, a_lo)));
        for (int k = 0; k < 2; ++k) {
            const int c = 2 * pair + k;
            const __m256i at = _mm256_add_epi8(sub, _mm256_set1_epi8(static_cast<char>(16 * k)));
            lookup32(y + 32 * c, _mm256_or_si256(chunk(c), at), table);
        }
    }
}

void block_bf16(const BlockQ3K& b, uint16_t* y) { q3k_bf16(b, y); }
void block_bf16(const BlockQ3KU16& b, uint16_t* y) { q3k_bf16(b, y); }

template <typename Block>
void k4_block_bf16(const Block& b, uint16_t* y) {
    // ab[c] = d * scale_c, ab[8 + c] = -dmin * min_c: value = ab[c] * u + ab[8 + c], u < 16 (Q4_K)
    // or < 32 (Q5_K, the fifth bit of chunk c is bit c of qh[l]).
    alignas(64) float ab[16];
    const __m512 dd = _mm512_castsi512_ps(_mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_castps_si256(_mm256_set1_ps(fp16_to_f32(b.d)))),
        _mm256_castps_si256(_mm256_set1_ps(-fp16_to_f32(b.dmin))), 1));
    _mm512_store_ps(ab, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(k4_scales_mins(b.scales))), dd));
    for (int k = 0; k < 4; ++k) {
        __m256i lo, hi;
        k4_chunks(b, k, lo, hi);
        const int c0 = 2 * k, c1 = 2 * k + 1;
        if constexpr (sizeof(Block) == sizeof(BlockQ5K)) {
            // 32 values per chunk: two tables, one per chunk (lanes 16..31 continue i = 16..31).
            const __m512i t0 = table32(ab[c0], ab[8 + c0], ab[c0], ab[8 + c0], 16.0f);
            const __m512i t1 = table32(ab[c1], ab[8 + c1], ab[c1], ab[8 + c1], 16.0f);
            lookup32(y + 64 * k, lo, t0);
            lookup32(y + 64 * k + 32, hi, t1);
        } else {
            const __m512i t = table32(ab[c0], ab[8 + c0], ab[c1], ab[8 + c1]);
            lookup32(y + 64 * k, lo, t);
            lookup32(y + 64 * k + 32, _mm256_or_si256(hi, _mm256_set1_epi8(16)), t);
        }
    }
}
void block_bf16(const BlockQ4K& b, uint16_t* y) { k4_block_bf16(b, y); }
void block_bf16(const BlockQ5K& b, uint16_t* y) { k4_block_bf16(b, y); }

void block_bf16(const BlockQ6K& b, uint16_t* y) {  // the value is scale * (u - 32)
    const float d = fp16_to_f32(b.d);
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
        const float a0 = d * static_cast<float>(b.scales[2 * c]), a1 = d * static_cast<float>(b.scales[2 * c + 1]);
        emit32<false>(y + 32 * c, q6k_chunk(b, c), a0, -32.0f * a0, a1, -32.0f * a1);
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

void block_bf16(const BlockIq2XxsU3& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 8; ++g) {
        const float db = d * (0.5f + static_cast<float>(group_nibble(b, g))) * 0.25f;  // as BlockIq2Xxs's
        emit32<true>(y + 32 * g, iq2xxsu3_values(b, g), db, 0.0f, db, 0.0f);
    }
}

// IQ3_XXS_U4: db * u - 62 db = db * v exactly (db has at most 16 significant bits, u at most 7),
// so one rounding to IQ3_XXS's float db * m * sign, then its bf16.
void block_bf16(const BlockIq3XxsU4& b, uint16_t* y) {
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 8; ++g) {
        const float db = d * (0.5f + static_cast<float>(group_nibble(b, g))) * 0.5f;  // as BlockIq3Xxs's
        emit32<false>(y + 32 * g, iq3xxsu4_u(b, g), db, -62.0f * db, db, -62.0f * db);
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

// IQ1_S and IQ1_S_U2, group i (32 weights): x = dl_i * (g + delta_i), g in {-1, 0, 1},
// dl_i = d * (2 sc_i + 1), delta_i = +-1/8. Table entry 3 i + u (u = g + 1) holds x, exactly as
// fma(dl_i, g, dl_i * delta_i) rounds it (dl_i * delta_i is exact). s: [8] 2 sc_i + 1,
// minus: [8] sign bits (bit 31 set where delta_i < 0).
inline __m512i iq1_table(uint16_t d, __m256i s, __m256i minus) {
    const __m256 dl = _mm256_mul_ps(_mm256_set1_ps(fp16_to_f32(d)), _mm256_cvtepi32_ps(s));
    const __m256 off = _mm256_xor_ps(_mm256_mul_ps(dl, _mm256_set1_ps(kIq1Delta)), _mm256_castsi256_ps(minus));
    const __m512i grp_lo = _mm512_setr_epi32(0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5);
    const __m512i grp_hi = _mm512_setr_epi32(5, 5, 6, 6, 6, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512 g_lo = _mm512_setr_ps(-1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1);
    const __m512 g_hi = _mm512_setr_ps(0, 1, -1, 0, 1, -1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512 dl16 = _mm512_castps256_ps512(dl), off16 = _mm512_castps256_ps512(off);
    return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(
        _mm512_fmadd_ps(_mm512_permutexvar_ps(grp_hi, dl16), g_hi, _mm512_permutexvar_ps(grp_hi, off16)),
        _mm512_fmadd_ps(_mm512_permutexvar_ps(grp_lo, dl16), g_lo, _mm512_permutexvar_ps(grp_lo, off16))));
}

// Weights 64j .. 64j+63 (groups 2j, 2j + 1) from their 64 bytes u: table indices u + 6j for
// the first 32, u + 6j + 3 for the last 32.
inline void iq1_lookup64(uint16_t* y, __m512i u, int j, __m512i lut) {
    const __m512i t = _mm512_add_epi8(u, _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(6 * j)),
                                                           _mm256_set1_epi8(static_cast<char>(6 * j + 3)), 1));
    lookup32(y + 64 * j, _mm512_castsi512_si256(t), lut);
    lookup32(y + 64 * j + 32, _mm512_extracti64x4_epi64(t, 1), lut);
}

void block_bf16(const BlockIq1S& b, uint16_t* y) {
    const __m256i qh = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qh)));  // [8]
    const __m256i s = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(qh, 11), _mm256_set1_epi32(14)), _mm256_set1_epi32(1));
    const __m512i lut = iq1_table(b.d, s, _mm256_slli_epi32(_mm256_and_si256(qh, _mm256_set1_epi32(0x8000)), 16));
    const __m256i qhd = iq1s_qh_per16<kIsa>(b);
    for (int h = 0; h < 2; ++h) {
        const __m512i idx = iq1s_indices16<kIsa>(b, qhd, h);
        for (int half = 0; half < 2; ++half)
            iq1_lookup64(y, gather8x64<kIsa>(kIq1sGridU.data(), half ? _mm512_extracti64x4_epi64(idx, 1) : _mm512_castsi512_si256(idx)),
                         2 * h + half, lut);
    }
}

void block_bf16(const BlockIq1SU2& b, uint16_t* y) {
    const __m256i nib = _mm256_cvtepu8_epi32(iq1su2_nibbles(b));
    const __m256i s = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(nib, _mm256_set1_epi32(7)), 1), _mm256_set1_epi32(1));
    const __m512i lut = iq1_table(b.d, s, _mm256_slli_epi32(_mm256_and_si256(nib, _mm256_set1_epi32(8)), 28));
    const __m512i x = _mm512_loadu_si512(b.qs);
    // Weights 64j .. (groups 2j, 2j + 1) in order: qword q of the chunk is field q % 4 of qs
    // word 2j + q / 4 (bytes 8g .. 8g + 7 hold group g, field c its weights 8c ..).
    const __m512i fields = _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6);
    for (int j = 0; j < 4; ++j) {
        const __m512i words = _mm512_permutexvar_epi64(_mm512_setr_epi64(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1), x);
        iq1_lookup64(y, _mm512_and_si512(_mm512_srlv_epi64(words, fields), _mm512_set1_epi8(3)), j, lut);
    }
}

// IQ1_M_U2: x = (d/8) (2 sc + 1) (w - 9) per 16 weights, w = 8 (g + 1) + 1 +- 1 (iq1mu2_chunk).
// a = (d/8) (2 sc + 1) has at most 15 significant bits, so a * w and b = -9 a are exact and their
// sum needs at most 20: one rounding, to IQ1_M's float d (2 sc + 1) (g + delta), then its bf16.
void block_bf16(const BlockIq1MU2& b, uint16_t* y) {
    const float d8 = fp16_to_f32(iq1m_scale_bits(b)) * 0.125f;
    const __m256i delta = iq1mu2_delta_bits(b);
#pragma GCC unroll 4  // constant c, h: iq1mu2_chunk's shifts and entry masks are immediates
    for (int c = 0; c < 4; ++c)
        for (int h = 0; h < 2; ++h) {
            const int g = 4 * c + 2 * h;  // the two 16-weight groups of weights 64c + 32h ..
            const float a0 = d8 * static_cast<float>(2 * iq1m_sub_scale(b, g) + 1);
            const float a1 = d8 * static_cast<float>(2 * iq1m_sub_scale(b, g + 1) + 1);
            emit32<false>(y + 64 * c + 32 * h, iq1mu2_chunk(b, delta, c, h), a0, -9.0f * a0, a1, -9.0f * a1);
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
        case T::Q2_K_U16: return blocks_bf16<BlockQ2KU16, kQK>;
        case T::Q3_K: return blocks_bf16<BlockQ3K, kQK>;
        case T::Q3_K_U16: return blocks_bf16<BlockQ3KU16, kQK>;
        case T::Q4_K: return blocks_bf16<BlockQ4K, kQK>;
        case T::Q5_K: return blocks_bf16<BlockQ5K, kQK>;
        case T::Q6_K: return blocks_bf16<BlockQ6K, kQK>;
        case T::IQ2_XXS: return blocks_bf16<BlockIq2Xxs, kQK>;
        case T::IQ3_XXS: return blocks_bf16<BlockIq3Xxs, kQK>;
        case T::IQ1_S: return blocks_bf16<BlockIq1S, kQK>;
        case T::IQ1_S_U2: return blocks_bf16<BlockIq1SU2, kQK>;
        case T::IQ1_M_U2: return blocks_bf16<BlockIq1MU2, kQK>;
        case T::IQ2_XXS_U3: return blocks_bf16<BlockIq2XxsU3, kQK>;
        case T::IQ3_XXS_U4: return blocks_bf16<BlockIq3XxsU4, kQK>;
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
