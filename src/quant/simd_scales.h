// Vector unpacking of block scales and values shared by the per-ISA kernels (simd_kernels.h,
// dequant_bf16.cpp) and the int8 products (cpu/gemm_i8.cpp): Q2_K's, Q3_K's, Q4_K/Q5_K's,
// IQ1_S_U2's and IQ1_M(_U2)'s. AVX2 intrinsics only (but for the few AVX-512 helpers at the end,
// which carry their own target), and internal linkage (anonymous namespace): every translation
// unit, whatever its target, compiles its own copy, so the linker can never hand a CPU a copy
// built for a wider instruction set.
//
// NOTES: simd_kernels.h includes this under an AVX-512 target pragma; the standard headers
// below must already have been included before that pragma (vec_dot_avx512.cpp and
// dequant_bf16.cpp include <array> and <cstdint> first), or their inline functions would be
// compiled for AVX-512 and could reach an AVX2 CPU through the linker.
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>

#include "quant/blocks.h"

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


// The 8 nibbles of the 4 bytes at p as bytes 0..7 (low nibble of p[0] first): IQ1_S_U2's and
// IQ2_XXS_U3's group nibbles. Vector ops, not pdep: pdep is microcoded on Zen 1/2 (the AVX2
// machines this also runs on).
inline __m128i nibbles8(const uint8_t* p) {
    const __m128i v = _mm_cvtsi32_si128(static_cast<int>(load_u32(p)));
    return _mm_and_si128(_mm_unpacklo_epi8(v, _mm_srli_epi16(v, 4)), _mm_set1_epi8(0x0F));
}
inline __m128i iq1su2_nibbles(const BlockIq1SU2& b) { return nibbles8(b.sc); }

// IQ2_XXS_U3, IQ3_XXS_U4: [8] int32 2 ls + 1, one per 32 weights, from the 8 nibbles at sc.
inline __m256i nibble_scales32(const uint8_t* sc) {
    return _mm256_or_si256(_mm256_slli_epi32(_mm256_cvtepu8_epi32(nibbles8(sc)), 1), _mm256_set1_epi32(1));
}

// IQ3_XXS_U4: u = value + 62 in [0, 124] (unsigned, for VPMADDUBSW and the int8 products) of each
// nibble (bit 3 the sign, bits 0..2 the magnitude code of 4, 12, .., 52, 62), for VPSHUFB.
inline __m128i iq3xxsu4_u_table() { return _mm_setr_epi8(66, 74, 82, 90, 98, 106, 114, 124, 58, 50, 42, 34, 26, 18, 10, 0); }

// IQ3_XXS_U4: u of group g (weights 32g .. 32g + 31): nibble g / 4 of q[32 (g % 4) ..].
inline __m256i iq3xxsu4_u(const BlockIq3XxsU4& b, int g) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.q + 32 * (g % 4)));
    const __m256i nib = _mm256_and_si256(g >= 4 ? _mm256_srli_epi16(x, 4) : x, _mm256_set1_epi8(0x0F));
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(iq3xxsu4_u_table()), nib);
}

// IQ2_XXS_U3: the magnitudes (8, 25, 43) of its codes 0, 1, 2, by a VPSHUFB.
inline __m256i iq2xxsu3_lut() {
    return _mm256_setr_epi8(8, 25, 43, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 25, 43, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}
// IQ2_XXS_U3: 0xFF in each byte whose bit of `bits` is set, where byte k of the 32 takes bit k % 8
// of byte k / 8 of `bits` spread over the lanes by `spread_idx` (a VPSHUFB index).
inline __m256i sign_bytes(__m256i bits, __m256i spread_idx) {
    const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    return _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(bits, spread_idx), bit), bit);
}

// IQ2_XXS_U3: the signed values of group g (weights 32g .. 32g + 31) in natural order: field c
// of qs word g (weights 32g + 8c ..) and their signs, byte 8c + g of signs (the VPSHUFB takes
// bytes g, 8 + g of each 128-bit lane, c = 0, 1 then 2, 3).
inline __m256i iq2xxsu3_values(const BlockIq2XxsU3& b, int g) {
    const __m256i word = _mm256_set1_epi64x(static_cast<long long>(load_u64(b.qs + 8 * g)));
    const __m256i code = _mm256_and_si256(_mm256_srlv_epi64(word, _mm256_setr_epi64x(0, 2, 4, 6)), _mm256_set1_epi8(3));
    const long long lo = 0x0101010101010101LL * g, hi = 0x0101010101010101LL * (8 + g);
    const __m256i neg = sign_bytes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.signs)), _mm256_setr_epi64x(lo, hi, lo, hi));
    return _mm256_sign_epi8(_mm256_shuffle_epi8(iq2xxsu3_lut(), code), _mm256_or_si256(neg, _mm256_set1_epi8(1)));
}

// IQ1_S_U2's group scale of a group nibble n: s = 2 (n & 7) + 1, with w = 8 s u per weight (u
// in {0, 1, 2}) and an offset +-s - 8 s (minus where bit 3 of n is set) against the group's
// activation sum, the block's integer is sum w q + sum_g offset_g (sum of q over group g).
constexpr int iq1su2_scale8(int n) { return 8 * (2 * (n & 7) + 1); }
constexpr int iq1su2_signed_s(int n) { return (n & 8 ? -1 : 1) * (2 * (n & 7) + 1); }
constexpr int iq1su2_offset(int n) { return iq1su2_signed_s(n) - iq1su2_scale8(n); }
template <typename T, int (*F)(int)>
constexpr std::array<T, 16> nibble_table() {
    std::array<T, 16> t{};
    for (int n = 0; n < 16; ++n) t[static_cast<size_t>(n)] = static_cast<T>(F(n));
    return t;
}
// Indexed by the nibble, bytes for vpshufb.
alignas(16) constexpr std::array<int8_t, 16> kIq1su2Scale8Bytes = nibble_table<int8_t, iq1su2_scale8>();
alignas(16) constexpr std::array<int8_t, 16> kIq1su2SignedSBytes = nibble_table<int8_t, iq1su2_signed_s>();

// Group g's scale8 and offset as [8] int16, by table lookups on its nibble.
inline void iq1su2_scales(const BlockIq1SU2& b, __m128i& scale8, __m128i& off) {
    const __m128i nib = iq1su2_nibbles(b);
    const auto table = [](const std::array<int8_t, 16>& t) { return _mm_load_si128(reinterpret_cast<const __m128i*>(t.data())); };
    scale8 = _mm_cvtepu8_epi16(_mm_shuffle_epi8(table(kIq1su2Scale8Bytes), nib));
    off = _mm_sub_epi16(_mm_cvtepi8_epi16(_mm_shuffle_epi8(table(kIq1su2SignedSBytes), nib)), scale8);
}

// IQ1_M, IQ1_M_U2 (`scales` as both have it): [16] int16 2 sc + 1, one per 16 weights. uint16
// g / 4 goes to words g, and its field g % 4 (bits 3 (g % 4) ..) to bits 9..11 by a multiply
// (AVX2 has no per-word shift).
inline __m256i iq1m_scales16(const uint8_t* scales) {
    const __m256i rep = _mm256_shuffle_epi8(
        _mm256_set1_epi64x(static_cast<int64_t>(load_u64(scales))),
        _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7));
    const __m256i at9 = _mm256_mullo_epi16(rep, _mm256_setr_epi16(512, 64, 8, 1, 512, 64, 8, 1, 512, 64, 8, 1, 512, 64, 8, 1));
    const __m256i sc = _mm256_and_si256(_mm256_srli_epi16(at9, 9), _mm256_set1_epi16(7));
    return _mm256_or_si256(_mm256_add_epi16(sc, sc), _mm256_set1_epi16(1));
}

// IQ1_M_U2: the 32 delta bits (bit k: entry k, weights 8k .. 8k + 7, has delta -1/8) in every
// dword, for iq1mu2_chunk.
inline __m256i iq1mu2_delta_bits(const BlockIq1MU2& b) { return _mm256_set1_epi32(static_cast<int>(load_u32(b.delta))); }

// The 2-bit fields of weights 32c .. 32c + 31 in natural order (groups 2c and 2c + 1) from qs in
// group-major order (Q2_K_U16, Q3_K_U16): qs dwords 2c, 2c + 1, each spread over four dwords and
// shifted by 0, 2, 4, 6 (dword 4h + f: weights 16 (2c + h) + 4f ..).
inline __m256i u16_low2_chunk(const uint8_t* qs, int c) {
    const __m256i pair = _mm256_castsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * c)));
    const __m256i spread = _mm256_permutevar8x32_epi32(pair, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    return _mm256_and_si256(_mm256_srlv_epi32(spread, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)), _mm256_set1_epi8(3));
}

// IQ1_M_U2: weights 64c + 32h .. + 31 (groups j = 4c + 2h, j + 1 of 16) in natural order as
// bytes 8 (g + 1) + (1 +- 1) in [0, 18] (the int8 products' and the bf16 unpacking's u): group
// j's u are u16_low2_chunk's fields (natural chunk 2c + h), times 8 (u <= 2: no carry out of the
// byte); + 2 on the 8-byte entries 8c + 4h .. + 3 whose delta is +1/8 (their bits of
// `delta_bits`, iq1mu2_delta_bits, clear: each 64-bit lane tests its entry's bit).
inline __m256i iq1mu2_chunk(const BlockIq1MU2& b, __m256i delta_bits, int c, int h) {
    const __m256i s = _mm256_slli_epi16(u16_low2_chunk(b.qs, 2 * c + h), 3);
    const int k = 8 * c + 4 * h;  // the first entry
    const __m256i entry = _mm256_setr_epi64x(int64_t{1} << k, int64_t{1} << (k + 1), int64_t{1} << (k + 2), int64_t{1} << (k + 3));
    const __m256i plus = _mm256_cmpeq_epi64(_mm256_and_si256(delta_bits, entry), _mm256_setzero_si256());
    return _mm256_add_epi8(s, _mm256_and_si256(plus, _mm256_set1_epi8(2)));
}

// Q3_K's 16 signed 6-bit scales as [16] int16 (see BlockQ3K): low nibbles from scales[0..7]
// (sub-block i: byte i % 8, nibble i / 8), high 2 bits from dword scales[8..11] shifted by
// 2 (i / 4), byte i % 4.
inline __m256i q3k_scales(const uint8_t* scales) {
    const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales));
    const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(raw, _mm_set1_epi8(0x0F)),
                                          _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(static_cast<int>(load_u32(scales + 8))),
                                                    _mm_setr_epi32(0, 2, 4, 6)),
                                     _mm_set1_epi8(3));
    return _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_or_si128(lo, _mm_slli_epi16(hi, 4))), _mm256_set1_epi16(32));
}

// ---- K-quant chunk decoders: the 32 unsigned values u of chunk c (weights 32c .. 32c+31).

// The 2-bit fields of chunk c: bits 2 (c % 4) of qs bytes 32 (c / 4) + l (Q2_K, Q3_K).
inline __m256i low2_chunk(const uint8_t* qs, int c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (c / 4)));
    return _mm256_and_si256(_mm256_srli_epi16(q, 2 * (c % 4)), _mm256_set1_epi8(3));
}

// Q2_K: u in [0, 3].
inline __m256i q2k_chunk(const BlockQ2K& b, int c) { return low2_chunk(b.qs, c); }
inline __m256i q2k_chunk(const BlockQ2KU16& b, int c) { return u16_low2_chunk(b.qs, c); }

// Q3_K_U16, natural order as q3k_chunk below: the low 2 bits as Q2_K_U16's, + 4 where the high
// bit is set (weight 16 (2c + h) + 4f + r: bit 4h + r of hmask[8f + c]).
inline __m256i q3k_chunk(const BlockQ3KU16& b, int c) {
    const uint32_t h4 = static_cast<uint32_t>(b.hmask[c] | b.hmask[8 + c] << 8 | b.hmask[16 + c] << 16 | b.hmask[24 + c] << 24);
    // byte i = 16h + 4f + r: byte f of h4, then its bit 4h + r
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(h4)),
                                              _mm256_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,  //
                                                               0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
    const __m256i bit = _mm256_setr_epi8(1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8,  //
                                         16, 32, 64, -128, 16, 32, 64, -128, 16, 32, 64, -128, 16, 32, 64, -128);
    const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(4));
    return _mm256_or_si256(u16_low2_chunk(b.qs, c), high);
}

// Q3_K: u = the Q2_K-style low 2 bits + 4 * bit c of hmask[l], in [0, 7] (the value is u - 4).
inline __m256i q3k_chunk(const BlockQ3K& b, int c) {
    // Bit c of each hmask byte moved to bit 2 (16-bit shifts: what crosses into the next byte
    // is masked off).
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
    const __m256i high = _mm256_and_si256(c >= 2 ? _mm256_srli_epi16(hm, c - 2) : _mm256_slli_epi16(hm, 2 - c),
                                          _mm256_set1_epi8(4));
    return _mm256_or_si256(low2_chunk(b.qs, c), high);
}

// ---- AVX-512, the group-major layouts' values in natural order, 64 weights per register (the
// int8 products' and the bf16 unpacking of Q2_K_U16 and Q3_K_U16). These carry their own
// target: only AVX-512 code calls them (cpu/gemm_i8.cpp's unpacking, dequant_bf16.cpp).
#define TANDEM_SCALES_AVX512 inline __attribute__((target("avx512f,avx512bw"), always_inline))

// The 2-bit fields of weights 64k .. 64k + 63 (groups 4k .. 4k + 3) from qs in u16_position order:
// each group's dword spread over four and shifted by 0, 2, 4, 6 (u16_low2_chunk's, twice as wide).
TANDEM_SCALES_AVX512 __m512i u16_low2_natural64(const uint8_t* qs, int k) {
    const __m512i dwords = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                                    _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16 * k))));
    return _mm512_and_si512(_mm512_srlv_epi32(dwords, _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6)),
                            _mm512_set1_epi8(3));
}
// Q3_K_U16: u of weights 64k .. 64k + 63 in natural order. Natural weight 16 g + 4 f + r (group 4k +
// g) has its high bit at position 64 f + 16 k + 4 g + r: bits 4g .. 4g + 3 of the uint16 at hmask +
// 8f + 2k, deposited (PDEP) at mask bits 16 g + 4 f ... (A VPERMW, VPSHUFB and VPTESTMB form
// measured slower on Zen 4: 15.4 against 18.1 G weights/s in bench_quant bf16/.)
TANDEM_SCALES_AVX512 __m512i q3ku16_natural64(const BlockQ3KU16& b, int k) {
    uint64_t m = 0;
    for (int f = 0; f < 4; ++f) {
        const uint8_t* h = b.hmask + 8 * f + 2 * k;
        m |= _pdep_u64(static_cast<uint64_t>(h[0] | h[1] << 8), 0x000F000F000F000Full << (4 * f));
    }
    return _mm512_or_si512(u16_low2_natural64(b.qs, k), _mm512_maskz_mov_epi8(_cvtu64_mask64(m), _mm512_set1_epi8(4)));
}
#undef TANDEM_SCALES_AVX512

}  // namespace
}  // namespace tandem::quant
