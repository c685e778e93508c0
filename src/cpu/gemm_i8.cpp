#include "cpu/gemm_i8.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#include "core/check.h"
#include "cpu/matmul.h"
#include "cpu/phases.h"
#include "cpu/tiles.h"
#include "cpu/transpose.h"
#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/quant.h"
#include "quant/simd_scales.h"
#include "quant/unpack.h"
#include "quant/vec_dot.h"

namespace tandem::cpu {

namespace {

#define TANDEM_I8_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
// NOTES: GCC 12's _mm512_undefined_epi32 (behind inserti64x4 and the reductions) is
// `__m512i __Y = __Y;`, which -W(maybe-)uninitialized reports once inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

constexpr int64_t kQK = 256;
constexpr int64_t kQuadBytes = 4096;               // [64 quads][16 tokens][4] int8 per block and group
constexpr int64_t kSumsAt = kQuadBytes;            // [4 pairs][16 tokens][2] int16: sums of 32 values
constexpr int64_t kSums16At = kSumsAt + 256;       // [8 pairs][16 tokens][2] int16: sums of 16 values
constexpr int64_t kScalesAt = kSums16At + 512;     // [16] float
static_assert(kI8BlockBytes == kScalesAt + 64);

// How a format's 256-block splits into integer scales (I8Block).
enum class Scales { per256, per32, per32_folded, per16, per16_mins };

// One weight row's 256-block, unpacked (w unsigned bytes): its dot with a Q8_K block (q, the
// sums of q per group of 32 or 16, the activation scale a) is
//   per256 (IQ1_S_U2, IQ1_S):   d a (sum_e w_e q_e + sum_g c_g qsum32_g);
//   per32 (Q4_K):               d a sum_g s_g (sum_{e in g} w_e q_e) - dmin a sum_g c_g qsum32_g;
//   per32_folded (IQ2_XXS(_U3), IQ3_XXS_U4): d a (sum_g s_g (sum_{e in g} w_e q_e) + sum_g c_g qsum32_g);
//   per16 (Q6_K, Q3_K(_U16), IQ1_M_U2): d a (sum_j s_j (sum_{e in j} w_e q_e) + sum_j c16_j qsum16_j);
//   per16_mins (Q2_K(_U16)):    d a sum_j s_j (sum_{e in j} w_e q_e) - dmin a sum_j c16_j qsum16_j.
struct I8Block {
    uint8_t w[256];
    int16_t c[8];
    int16_t c16[16];
    int32_t s[16];
    float d, dmin;
    uint8_t pad[8];  // to 384 bytes, a multiple of 32
};
static_assert(sizeof(I8Block) == 384);

// The formats of the int8 products and how each one multiplies: its scale kind, the quads the
// AVX2 path sums in int16 (block_product_avx2: the most whose sums cannot overflow, |sum| <=
// chain * 2 * 127 * max w <= 32767), and the fewest tokens for which the product beats the
// per-token path on each vector unit (i8_min_tokens, measured as gemm_i8.h says).
struct I8Format {
    GgmlType type;
    Scales kind;         // IQ1_S(_U2) is per32_folded on the AVX2 path (w = u, the scale per 32)
    int avx2_chain;
    int64_t min_avx512, min_avx2;
};
constexpr I8Format kI8Formats[] = {
    {GgmlType::IQ1_S_U2, Scales::per256, 8, 5, 7},        // u <= 2 on AVX2
    {GgmlType::IQ1_S, Scales::per256, 8, 3, 3},           // as IQ1_S_U2 (no rows kernel: per-token gathers)
    {GgmlType::Q4_K, Scales::per32, 8, 5, 6},             // w <= 15
    {GgmlType::IQ2_XXS, Scales::per32_folded, 1, 3, 3},   // w <= 86 (no rows kernel: per-token dots)
    {GgmlType::Q6_K, Scales::per16, 2, 7, 6},             // w <= 63
    {GgmlType::Q2_K, Scales::per16_mins, 4, 6, 6},        // w <= 3
    {GgmlType::Q2_K_U16, Scales::per16_mins, 4, 6, 7},    // w as Q2_K's (thresholds: gemm_i8.h)
    {GgmlType::Q3_K, Scales::per16, 4, 7, 6},             // w <= 7 (AVX-512 threshold: 6 would just pass)
    {GgmlType::Q3_K_U16, Scales::per16, 4, 7, 7},         // w as Q3_K's (thresholds: gemm_i8.h)
    {GgmlType::IQ1_M_U2, Scales::per16, 4, 8, 8},         // w <= 18
    {GgmlType::IQ2_XXS_U3, Scales::per32_folded, 1, 8, 7},  // as IQ2_XXS
    {GgmlType::IQ3_XXS_U4, Scales::per32_folded, 1, 7, 3},  // w <= 124
};

const I8Format* i8_format(GgmlType type) {
    for (const I8Format& f : kI8Formats)
        if (f.type == type) return &f;
    return nullptr;
}

uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
uint64_t load_u64(const void* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// NOTES: the K-format and IQ2_XXS unpackers are AVX2 code that both vector paths run; forced
// inline into unpack_rows_avx512 (below), they are compiled for AVX-512 there (vpternlog and
// the like: Q6_K's took ~8 fewer instructions per block).
#define TANDEM_I8_UNPACK inline __attribute__((always_inline))

// IQ1_S_U2 (quant/blocks.h): x = d * (2 sc + 1) * (u - 1 + delta), delta = +-1/8 per group of
// 32, so x * 8 / d = w + c with w = 8 (2 sc + 1) u in [0, 240] and c = +-(2 sc + 1) - 8 (2 sc + 1)
// per group, block factor d / 8. The w are written in the layout's own order (u2_position: byte
// 64 c + p is field c of qs[p]), which is Q8_K_U2's, so the activations packed from those rows
// as they are (packs_u2_order) pair with them: a 256-block's integer does not depend on the order of
// its terms, and the group sums come from the activations' natural 16-value sums. Every byte p
// is group p / 8's in each chunk, so one register of scales serves all four.
TANDEM_I8_TARGET void unpack_iq1su2(const quant::BlockIq1SU2& b, I8Block& out) {
    __m128i scale8, off;
    quant::iq1su2_scales(b, scale8, off);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.c), off);
    const __m512i x = _mm512_loadu_si512(b.qs);
    // word k (bytes 2k, 2k + 1): group k / 4's 8 (2 sc + 1)
    const __m512i s16 = _mm512_permutexvar_epi16(
        _mm512_srli_epi16(_mm512_setr_epi32(0x00010000, 0x00030002, 0x00050004, 0x00070006, 0x00090008, 0x000B000A, 0x000D000C,
                                            0x000F000E, 0x00110010, 0x00130012, 0x00150014, 0x00170016, 0x00190018, 0x001B001A,
                                            0x001D001C, 0x001F001E),
                          2),
        _mm512_castsi128_si512(scale8));
    for (int c = 0; c < 4; ++c) {
        const __m512i u = _mm512_and_si512(c ? _mm512_srli_epi16(x, 2 * c) : x, _mm512_set1_epi8(3));
        // u * s <= 240: the low byte's product never carries into the high byte of a 16-bit lane.
        _mm512_storeu_si512(out.w + 64 * c, _mm512_mullo_epi16(u, s16));
    }
    out.d = quant::fp16_to_f32(b.d) * 0.125f;
}

// IQ1_S_U2 for the AVX2 products: the same integer as unpack_iq1su2's, in the per32_folded form
// (w = u in {0, 1, 2}, s_g = 8 (2 sc + 1), c as there), in natural order: the AVX2 products
// take each group's 32 weights together, so their activations are packed back into natural
// order (packs_u2_order). Group g is qs word g, field c its weights 8c .. 8c + 7. NOTES: VPMADDUBSW
// sums two byte products into int16 with saturation, which u * 8 (2 sc + 1) <= 240 against
// values up to 128 would overflow; u cannot.
void unpack_iq1su2_u(const quant::BlockIq1SU2& b, I8Block& out) {
    __m128i scale8, off;
    quant::iq1su2_scales(b, scale8, off);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.c), off);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s), _mm256_cvtepi16_epi32(scale8));
    for (int g = 0; g < 8; ++g) {
        const __m256i word = _mm256_set1_epi64x(static_cast<long long>(load_u64(b.qs + 8 * g)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 32 * g),
                            _mm256_and_si256(_mm256_srlv_epi64(word, _mm256_setr_epi64x(0, 2, 4, 6)), _mm256_set1_epi8(3)));
    }
    out.d = quant::fp16_to_f32(b.d) * 0.125f;
}

// IQ1_S (quant/blocks.h) as the file has it (machines short of memory do not repack it): each
// grid entry gathered once per block and panel (the per-token kernel gathers them once per
// token), then the integers of IQ1_S_U2 above: w = 8 (2 sc + 1) u, or with u_form (the AVX2
// path) w = u and that scale per 32; c the delta offsets (the nibble is qh >> 12, as repacking
// takes it).
TANDEM_I8_UNPACK void unpack_iq1s(const quant::BlockIq1S& b, I8Block& out, bool u_form) {
    const auto* table = reinterpret_cast<const long long*>(quant::kIq1sGridU.data());
    for (int j = 0; j < 4; ++j) {
        // Entries 8j .. 8j + 7 (groups 2j, 2j + 1; 8 weights each): index qs[k] | bits 3l .. 3l + 2
        // of qh[k / 4] << 8 (l = k % 4), from qh[2j] | qh[2j + 1] << 16 in every lane.
        const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * j)));
        const __m256i qh2 = _mm256_set1_epi32(static_cast<int>(load_u32(b.qh + 2 * j)));
        const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(qh2, _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25)), _mm256_set1_epi32(7));
        const __m256i idx = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8));
        for (int h = 0; h < 2; ++h) {  // group 2j + h: four entries, 32 weights
            const int g = 2 * j + h;
            const int nibble = b.qh[g] >> 12;  // the scale (bits 12..14) and delta sign (15)
            __m256i u = _mm256_i32gather_epi64(table, h ? _mm256_extracti128_si256(idx, 1) : _mm256_castsi256_si128(idx), 8);
            // w = u * 8 (2 sc + 1) <= 240: the 16-bit products do not carry into the high byte.
            if (!u_form) u = _mm256_mullo_epi16(u, _mm256_set1_epi16(static_cast<int16_t>(quant::iq1su2_scale8(nibble))));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 32 * g), u);
            out.s[g] = quant::iq1su2_scale8(nibble);
            out.c[g] = static_cast<int16_t>(quant::iq1su2_offset(nibble));
        }
    }
    out.d = quant::fp16_to_f32(b.d) * 0.125f;
}

// Q4_K (quant/blocks.h): x = d sc_g q - dmin m_g, q in [0, 15], the per-token kernel's integers
// (simd_kernels.h k4_block_dot: sum_g sc_g (q . a) and the mins against the group sums).
TANDEM_I8_UNPACK void unpack_q4k(const quant::BlockQ4K& b, I8Block& out) {
    for (int k = 0; k < 4; ++k) {
        // Groups 2k, 2k + 1: the low, then the high nibbles of qs[32k .. 32k + 31].
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * k));
        const __m256i mask = _mm256_set1_epi8(0x0F);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 64 * k), _mm256_and_si256(q, mask));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 64 * k + 32), _mm256_and_si256(_mm256_srli_epi16(q, 4), mask));
    }
    const __m128i sm = quant::k4_scales_mins(b.scales);  // [8] scales, then [8] mins, as bytes
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s), _mm256_cvtepu8_epi32(sm));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.c), _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)));
    out.d = quant::fp16_to_f32(b.d);
    out.dmin = quant::fp16_to_f32(b.dmin);
}

// IQ2_XXS (quant/blocks.h): x = d/8 s_g grid sign per group g of 32 weights (s_g = 2 ls + 1,
// grid magnitudes 8, 25 or 43 from kIq2xxsGrid, signs from kKsignsMul): w = grid sign + 43
// (unsigned) and c_g = -43 s_g against the group sums, in the same integer: the per-token
// kernel's integer exactly (43 s_g qsum_g - 43 s_g qsum_g = 0).
TANDEM_I8_UNPACK void unpack_iq2xxs(const quant::BlockIq2Xxs& b, I8Block& out) {
    const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
    for (int g = 0; g < 8; ++g) {
        // Bytes 8g .. 8g + 3: four grid indices; 8g + 4 .. + 7: four 7-bit sign indices, the scale.
        const uint32_t aux0 = load_u32(qs + 8 * g), aux1 = load_u32(qs + 8 * g + 4);
        const auto entry = [](uint64_t v) { return static_cast<long long>(v); };
        const __m256i grid = _mm256_setr_epi64x(entry(quant::kIq2xxsGrid[aux0 & 0xFF]), entry(quant::kIq2xxsGrid[(aux0 >> 8) & 0xFF]),
                                                entry(quant::kIq2xxsGrid[(aux0 >> 16) & 0xFF]), entry(quant::kIq2xxsGrid[aux0 >> 24]));
        const __m256i sign = _mm256_setr_epi64x(entry(quant::kKsignsMul[aux1 & 0x7F]), entry(quant::kKsignsMul[(aux1 >> 7) & 0x7F]),
                                                entry(quant::kKsignsMul[(aux1 >> 14) & 0x7F]),
                                                entry(quant::kKsignsMul[(aux1 >> 21) & 0x7F]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 32 * g),
                            _mm256_add_epi8(_mm256_sign_epi8(grid, sign), _mm256_set1_epi8(43)));
        const int scale = 2 * static_cast<int>(aux1 >> 28) + 1;
        out.s[g] = scale;
        out.c[g] = static_cast<int16_t>(-43 * scale);
    }
    out.d = quant::fp16_to_f32(b.d) * 0.125f;
}

// IQ2_XXS_U3 (quant/blocks.h): IQ2_XXS's integers (above) from the written-out values.
TANDEM_I8_UNPACK void unpack_iq2xxsu3(const quant::BlockIq2XxsU3& b, I8Block& out) {
    for (int g = 0; g < 8; ++g) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 32 * g),
                            _mm256_add_epi8(quant::iq2xxsu3_values(b, g), _mm256_set1_epi8(43)));
        const int scale = 2 * quant::group_nibble(b, g) + 1;
        out.s[g] = scale;
        out.c[g] = static_cast<int16_t>(-43 * scale);
    }
    out.d = quant::fp16_to_f32(b.d) * 0.125f;
}

// IQ3_XXS_U4 (quant/blocks.h): x * 4 / d = (2 ls + 1) v per group of 32 with v = u - 62: w = u in
// [0, 124] and c_g = -62 s_g, the per-token kernel's integers (grid_block), block factor d / 4.
TANDEM_I8_UNPACK void unpack_iq3xxsu4(const quant::BlockIq3XxsU4& b, I8Block& out) {
    for (int g = 0; g < 8; ++g) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 32 * g), quant::iq3xxsu4_u(b, g));
        const int scale = 2 * quant::group_nibble(b, g) + 1;
        out.s[g] = scale;
        out.c[g] = static_cast<int16_t>(-62 * scale);
    }
    out.d = quant::fp16_to_f32(b.d) * 0.25f;
}

// Q2_K and Q2_K_U16 (quant/blocks.h): x = d sc_j q - dmin m_j per 16 weights j, q in [0, 3]: w =
// q (in natural order: q2k_chunk), s_j = sc_j and c16_j = m_j (the mins, against the 16-value
// sums): the per-token kernels' integers (simd_kernels.h block_dot, dot_q2ku16_row).
template <typename Block>
TANDEM_I8_UNPACK void unpack_q2k(const Block& b, I8Block& out) {
    for (int c = 0; c < 8; ++c) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 32 * c), quant::q2k_chunk(b, c));
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));  // low nibble scale, high min
    const __m128i sc = _mm_and_si128(raw, _mm_set1_epi8(0x0F));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s), _mm256_cvtepu8_epi32(sc));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s + 8), _mm256_cvtepu8_epi32(_mm_srli_si128(sc, 8)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.c16), _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F))));
    out.d = quant::fp16_to_f32(b.d);
    out.dmin = quant::fp16_to_f32(b.dmin);
}

// Q2_K_U16 and Q3_K_U16 on the AVX-512 units: unpack_q2k's and unpack_q3k's integers, 64
// natural-order weights per register (quant/simd_scales.h).
TANDEM_I8_TARGET void unpack_q2ku16_zmm(const quant::BlockQ2KU16& b, I8Block& out) {
    for (int k = 0; k < 4; ++k) _mm512_storeu_si512(out.w + 64 * k, quant::u16_low2_natural64(b.qs, k));
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));  // low nibble scale, high min
    _mm512_storeu_si512(out.s, _mm512_cvtepu8_epi32(_mm_and_si128(raw, _mm_set1_epi8(0x0F))));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.c16), _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F))));
    out.d = quant::fp16_to_f32(b.d);
    out.dmin = quant::fp16_to_f32(b.dmin);
}
TANDEM_I8_TARGET void unpack_q3ku16_zmm(const quant::BlockQ3KU16& b, I8Block& out) {
    for (int k = 0; k < 4; ++k) _mm512_storeu_si512(out.w + 64 * k, quant::q3ku16_natural64(b, k));
    const __m256i sc16 = quant::q3k_scales(b.scales);
    _mm512_storeu_si512(out.s, _mm512_cvtepi16_epi32(sc16));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.c16), _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-4)));
    out.d = quant::fp16_to_f32(b.d);
}

// Q3_K (quant/blocks.h): x = d sc_j (q - 4) per 16 weights j, q in [0, 7] the low 2 bits and
// the hmask bit (sc_j signed 6-bit, minus 32): w = q, c16_j = -4 sc_j, the per-token kernel's
// integers (simd_kernels.h block_dot: the offset against the 16-value sums).
template <typename Block>  // Q3_K, Q3_K_U16 (q3k_chunk: either's u in natural order)
TANDEM_I8_UNPACK void unpack_q3k(const Block& b, I8Block& out) {
    for (int c = 0; c < 8; ++c) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 32 * c), quant::q3k_chunk(b, c));
    const __m256i sc16 = quant::q3k_scales(b.scales);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s), _mm256_cvtepi16_epi32(_mm256_castsi256_si128(sc16)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s + 8), _mm256_cvtepi16_epi32(_mm256_extracti128_si256(sc16, 1)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.c16), _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-4)));
    out.d = quant::fp16_to_f32(b.d);
}

// Q6_K (quant/blocks.h): x = d sc_j (q - 32) per 16 weights j, q in [0, 63] the low nibble of
// ql and two bits of qh: w = q, c16_j = -32 sc_j, the per-token kernel's integers
// (simd_kernels.h block_dot: the offset against the 16-value sums).
TANDEM_I8_UNPACK void unpack_q6k(const quant::BlockQ6K& b, I8Block& out) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
    for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
        const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
        // Weights 128h + 32i + l: nibble i / 2 of ql[64h + 32 (i % 2) + l], bits 2i of qh[32h + l].
        const __m256i lo[4] = {_mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4)};
        for (int i = 0; i < 4; ++i) {
            const __m256i hi = _mm256_and_si256(i ? _mm256_srli_epi16(qh, 2 * i) : qh, low2);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 128 * h + 32 * i),
                                _mm256_or_si256(lo[i], _mm256_slli_epi16(hi, 4)));
        }
    }
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));  // [16] int8
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s), _mm256_cvtepi8_epi32(sc));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s + 8), _mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)));
    const __m256i c16 = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(sc), _mm256_set1_epi16(-32));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.c16), c16);
    out.d = quant::fp16_to_f32(b.d);
}

// IQ1_M_U2 (quant/blocks.h): x * 8 / d = (2 sc + 1) (8 (u - 1) +- 1) = s_j (w - 9) with w = 8 u
// + 1 +- 1 in [0, 18] per weight and s_j = 2 sc_j + 1 per 16: per16 with c16_j = -9 s_j, the
// integers of the per-token kernel (quant/simd_kernels.h grid_block), block factor d / 8.
TANDEM_I8_UNPACK void unpack_iq1mu2(const quant::BlockIq1MU2& b, I8Block& out) {
    const __m256i s16 = quant::iq1m_scales16(b.scales);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s), _mm256_cvtepi16_epi32(_mm256_castsi256_si128(s16)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.s + 8), _mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.c16), _mm256_mullo_epi16(s16, _mm256_set1_epi16(-9)));
    const __m256i delta = quant::iq1mu2_delta_bits(b);
#pragma GCC unroll 4  // constant c, h: iq1mu2_chunk's shifts and entry masks are immediates
    for (int c = 0; c < 4; ++c)
        for (int h = 0; h < 2; ++h)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.w + 64 * c + 32 * h), quant::iq1mu2_chunk(b, delta, c, h));
    out.d = quant::fp16_to_f32(quant::iq1m_scale_bits(b)) * 0.125f;
}

// The 256-blocks at `blocks` of n_rows rows (row_bytes apart) unpacked into recs[0 .. n_rows),
// IQ1_S and IQ1_S_U2 in the AVX2 products' form where u2_as_u (which is also what says whether
// this is the AVX2 or the AVX-512 path). With prefetch_next, each row's next block
// a step ahead: 32 rows read a block at a time, each row_bytes apart, are more streams than the
// hardware prefetchers follow (without this, loads in the unpacking took most of its time in a
// prefill profile).
TANDEM_I8_UNPACK void unpack_rows(GgmlType type, const uint8_t* blocks, uint64_t row_bytes, int64_t n_rows, bool prefetch_next,
                                  bool u2_as_u, I8Block* recs) {
    const uint64_t block_bytes = ggml_traits(type).type_size;
    for (int64_t r = 0; r < n_rows; ++r) {
        const uint8_t* b = blocks + static_cast<uint64_t>(r) * row_bytes;
        if (prefetch_next) prefetch_bytes(b + block_bytes, block_bytes);
        if (type == GgmlType::IQ2_XXS) unpack_iq2xxs(*reinterpret_cast<const quant::BlockIq2Xxs*>(b), recs[r]);
        else if (type == GgmlType::Q4_K) unpack_q4k(*reinterpret_cast<const quant::BlockQ4K*>(b), recs[r]);
        else if (type == GgmlType::Q6_K) unpack_q6k(*reinterpret_cast<const quant::BlockQ6K*>(b), recs[r]);
        else if (type == GgmlType::Q2_K) unpack_q2k(*reinterpret_cast<const quant::BlockQ2K*>(b), recs[r]);
        else if (type == GgmlType::Q2_K_U16 && u2_as_u) unpack_q2k(*reinterpret_cast<const quant::BlockQ2KU16*>(b), recs[r]);
        else if (type == GgmlType::Q2_K_U16) unpack_q2ku16_zmm(*reinterpret_cast<const quant::BlockQ2KU16*>(b), recs[r]);
        else if (type == GgmlType::Q3_K) unpack_q3k(*reinterpret_cast<const quant::BlockQ3K*>(b), recs[r]);
        else if (type == GgmlType::Q3_K_U16 && u2_as_u) unpack_q3k(*reinterpret_cast<const quant::BlockQ3KU16*>(b), recs[r]);
        else if (type == GgmlType::Q3_K_U16) unpack_q3ku16_zmm(*reinterpret_cast<const quant::BlockQ3KU16*>(b), recs[r]);
        else if (type == GgmlType::IQ1_S) unpack_iq1s(*reinterpret_cast<const quant::BlockIq1S*>(b), recs[r], u2_as_u);
        else if (type == GgmlType::IQ1_M_U2) unpack_iq1mu2(*reinterpret_cast<const quant::BlockIq1MU2*>(b), recs[r]);
        else if (type == GgmlType::IQ2_XXS_U3) unpack_iq2xxsu3(*reinterpret_cast<const quant::BlockIq2XxsU3*>(b), recs[r]);
        else if (type == GgmlType::IQ3_XXS_U4) unpack_iq3xxsu4(*reinterpret_cast<const quant::BlockIq3XxsU4*>(b), recs[r]);
        else if (type != GgmlType::IQ1_S_U2) fail("int8 products: no unpacking for {}", ggml_type_name(type));
        else if (u2_as_u) unpack_iq1su2_u(*reinterpret_cast<const quant::BlockIq1SU2*>(b), recs[r]);
        else unpack_iq1su2(*reinterpret_cast<const quant::BlockIq1SU2*>(b), recs[r]);
    }
}
TANDEM_I8_TARGET void unpack_rows_avx512(GgmlType type, const uint8_t* blocks, uint64_t row_bytes, int64_t n_rows,
                                         bool prefetch_next, I8Block* recs) {
    unpack_rows(type, blocks, row_bytes, n_rows, prefetch_next, false, recs);
}
void unpack_rows_avx2(GgmlType type, const uint8_t* blocks, uint64_t row_bytes, int64_t n_rows, bool prefetch_next,
                      I8Block* recs) {
    unpack_rows(type, blocks, row_bytes, n_rows, prefetch_next, true, recs);
}

// A weight row's bytes at p in every lane of a token group's register: 4 bytes (one quad, a
// lane per token) or, in a half group, 8 (two quads: lanes 2t and 2t + 1 are token t's).
template <bool kHalf>
TANDEM_I8_TARGET inline __m512i broadcast_w(const void* p) {
    if constexpr (kHalf) return _mm512_set1_epi64(static_cast<long long>(load_u64(p)));
    else return _mm512_set1_epi32(static_cast<int>(load_u32(p)));
}

// acc[r][g] += the dot of rec[r]'s weights [4 q0, 4 q1) with group g's values (quads q0 .. q1 -
// 1): each VPDPBUSD a broadcast of a weight row's quad (unsigned) against 16 tokens' 4 values
// (signed), or in a half group two quads against 8 tokens' 8 values.
template <int kRows, int kGroups, bool kHalf>
TANDEM_I8_TARGET inline void dot_quads(const I8Block* rec, const uint8_t* const* acts, int q0, int q1,
                                       __m512i (&acc)[kRows][kGroups]) {
    constexpr int kStep = kHalf ? 2 : 1;  // quads per register row
#pragma GCC unroll 4
    for (int q = q0; q < q1; q += kStep) {
        __m512i a[kGroups];
#pragma GCC unroll 4
        for (int g = 0; g < kGroups; ++g) a[g] = _mm512_loadu_si512(acts[g] + 64 * (q / kStep));
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) {
            const __m512i w = broadcast_w<kHalf>(rec[r].w + 4 * q);
#pragma GCC unroll 4
            for (int g = 0; g < kGroups; ++g) acc[r][g] = _mm512_dpbusd_epi32(acc[r][g], w, a[g]);
        }
    }
}

// acc[r][g] += coef(rec[r]) (int16 per group of values) against group g's sums at sums_at
// (n_pairs pairs of groups; a half group's register row holds two pairs per token).
template <int kRows, int kGroups, bool kHalf, typename Coef>
TANDEM_I8_TARGET inline void group_sum_terms(const I8Block* rec, const uint8_t* const* acts, __m512i (&acc)[kRows][kGroups],
                                             int64_t sums_at, int n_pairs, Coef coef) {
    constexpr int kStep = kHalf ? 2 : 1;
    for (int p = 0; p < n_pairs; p += kStep) {
        __m512i s[kGroups];
        for (int g = 0; g < kGroups; ++g) s[g] = _mm512_loadu_si512(acts[g] + sums_at + 64 * (p / kStep));
        for (int r = 0; r < kRows; ++r) {
            const __m512i c = broadcast_w<kHalf>(coef(rec[r]) + 2 * p);
            for (int g = 0; g < kGroups; ++g) acc[r][g] = _mm512_dpwssd_epi32(acc[r][g], s[g], c);
        }
    }
}

// [lo, hi] as one register.
TANDEM_I8_TARGET inline __m512 halves_ps(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}

// A half group's two rows x, y (lanes 2t, 2t + 1: token t) as floats: x's 8 token sums, then y's.
TANDEM_I8_TARGET inline __m512 lane_pair_sums(__m512i x, __m512i y) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    return _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_permutex2var_epi32(x, even, y), _mm512_permutex2var_epi32(x, odd, y)));
}

// facc[r][g] (16 floats at facc + r * 16 + g * 512) += rec[r]'s block times group g's block of
// activations (acts[g]), for kRows weight rows and kGroups token groups (kRows x kGroups
// accumulators). per32 and per16: each group of 32 or 16 weights takes its own accumulator,
// multiplied by its integer scale into the block's. per32's and per16_mins' group-sum terms (the
// mins) go apart, scaled by dmin; per32_folded's and per16's go into the block's integer.
// kHalf (one group of 8 tokens, two lanes each; kRows even): the lane pairs are added and rows
// r, r + 1 take the 16 floats at facc + r * 8. The integers and float steps are the 16-lane
// form's, so a token's results are the same bits in either form.
template <int kRows, int kGroups, Scales kS, bool kHalf>
TANDEM_I8_TARGET void block_product(const I8Block* rec, const uint8_t* const* acts, float* facc) {
    static_assert(kRows * kGroups <= 16 && (!kHalf || (kGroups == 1 && kRows % 2 == 0)));
    constexpr bool kMins = kS == Scales::per32 || kS == Scales::per16_mins;  // terms scaled by dmin, apart
    __m512i acc[kRows][kGroups];
    for (int r = 0; r < kRows; ++r)
        for (int g = 0; g < kGroups; ++g) acc[r][g] = _mm512_setzero_si512();
    if constexpr (kS == Scales::per256) {
        dot_quads<kRows, kGroups, kHalf>(rec, acts, 0, 64, acc);
        group_sum_terms<kRows, kGroups, kHalf>(rec, acts, acc, kSumsAt, 4, [](const I8Block& b) { return b.c; });
    } else {
        constexpr int kSub = kS == Scales::per16 || kS == Scales::per16_mins ? 16 : 8, kQuads = 64 / kSub;
        for (int j = 0; j < kSub; ++j) {
            __m512i part[kRows][kGroups];
            for (int r = 0; r < kRows; ++r)
                for (int g = 0; g < kGroups; ++g) part[r][g] = _mm512_setzero_si512();
            dot_quads<kRows, kGroups, kHalf>(rec, acts, kQuads * j, kQuads * j + kQuads, part);
            for (int r = 0; r < kRows; ++r) {
                const __m512i sc = _mm512_set1_epi32(rec[r].s[j]);
                for (int g = 0; g < kGroups; ++g) acc[r][g] = _mm512_add_epi32(acc[r][g], _mm512_mullo_epi32(part[r][g], sc));
            }
        }
        if constexpr (kS == Scales::per16)
            group_sum_terms<kRows, kGroups, kHalf>(rec, acts, acc, kSums16At, 8, [](const I8Block& b) { return b.c16; });
        if constexpr (kS == Scales::per32_folded)
            group_sum_terms<kRows, kGroups, kHalf>(rec, acts, acc, kSumsAt, 4, [](const I8Block& b) { return b.c; });
    }
    __m512i mins[kRows][kGroups];
    if constexpr (kMins) {
        for (int r = 0; r < kRows; ++r)
            for (int g = 0; g < kGroups; ++g) mins[r][g] = _mm512_setzero_si512();
        if constexpr (kS == Scales::per32)
            group_sum_terms<kRows, kGroups, kHalf>(rec, acts, mins, kSumsAt, 4, [](const I8Block& b) { return b.c; });
        else
            group_sum_terms<kRows, kGroups, kHalf>(rec, acts, mins, kSums16At, 8, [](const I8Block& b) { return b.c16; });
    }
    if constexpr (kHalf) {
        const __m256 s8 = _mm256_loadu_ps(reinterpret_cast<const float*>(acts[0] + kScalesAt));
        const __m512 scales = halves_ps(s8, s8);
        for (int r = 0; r < kRows; r += 2) {
            float* f = facc + r * 8;
            const __m512 d = halves_ps(_mm256_set1_ps(rec[r].d), _mm256_set1_ps(rec[r + 1].d));
            __m512 v = _mm512_fmadd_ps(lane_pair_sums(acc[r][0], acc[r + 1][0]), _mm512_mul_ps(d, scales), _mm512_loadu_ps(f));
            if constexpr (kMins) {
                const __m512 dmin = halves_ps(_mm256_set1_ps(rec[r].dmin), _mm256_set1_ps(rec[r + 1].dmin));
                v = _mm512_fnmadd_ps(lane_pair_sums(mins[r][0], mins[r + 1][0]), _mm512_mul_ps(dmin, scales), v);
            }
            _mm512_storeu_ps(f, v);
        }
        return;
    }
    for (int g = 0; g < kGroups; ++g) {
        const __m512 scales = _mm512_loadu_ps(reinterpret_cast<const float*>(acts[g] + kScalesAt));
        for (int r = 0; r < kRows; ++r) {
            float* f = facc + r * 16 + g * 512;
            __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][g]), _mm512_mul_ps(_mm512_set1_ps(rec[r].d), scales),
                                       _mm512_loadu_ps(f));
            if constexpr (kMins)
                v = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins[r][g]), _mm512_mul_ps(_mm512_set1_ps(rec[r].dmin), scales), v);
            _mm512_storeu_ps(f, v);
        }
    }
}

// block_product for a kind known at run time.
template <int kRows, int kGroups, bool kHalf = false>
void block_product_of(Scales kind, const I8Block* rec, const uint8_t* const* acts, float* facc) {
    switch (kind) {
        case Scales::per256: return block_product<kRows, kGroups, Scales::per256, kHalf>(rec, acts, facc);
        case Scales::per32: return block_product<kRows, kGroups, Scales::per32, kHalf>(rec, acts, facc);
        case Scales::per32_folded: return block_product<kRows, kGroups, Scales::per32_folded, kHalf>(rec, acts, facc);
        case Scales::per16: return block_product<kRows, kGroups, Scales::per16, kHalf>(rec, acts, facc);
        case Scales::per16_mins: return block_product<kRows, kGroups, Scales::per16_mins, kHalf>(rec, acts, facc);
    }
}

// ---- AVX2 (no VPDPBUSD): 8 tokens per register ----
//
// facc[r] (floats 8h .. 8h + 7 of 16 at facc + r * 16, h = h0 .. h0 + kHalves - 1) += rec[r]'s
// block times tokens 8h .. 8h + 7 of a 16-token group's block (act), for kRows weight rows. A
// register holds 8 tokens' 4
// values of a quad (half a 16-lane register row of the packed layout). Per quad and row:
// VPMADDUBSW of the broadcast weight quad (unsigned) against it gives two int16 sums of two
// products per token; kChain quads are summed in int16, then VPMADDWD by the group's integer
// scale adds each token's two sums into int32. kChain is the most quads whose sums cannot
// overflow int16 (I8Format::avx2_chain). The integers and float steps are block_product's, so
// both vector paths give the same bits.
template <int kRows, int kHalves, Scales kS, int kChain>
void block_product_avx2(const I8Block* rec, const uint8_t* act, int h0, float* facc) {
    static_assert(kS != Scales::per256, "IQ1_S(_U2) takes the per32_folded form here");
    static_assert(kRows * kHalves <= 4, "16 ymm registers: sums, block integers and mins per row and half");
    constexpr int kSub = kS == Scales::per16 || kS == Scales::per16_mins ? 16 : 8, kQuads = 64 / kSub;
    static_assert(kQuads % kChain == 0);
    __m256i acc[kRows][kHalves], mins[kRows][kHalves];
    for (int r = 0; r < kRows; ++r)
        for (int h = 0; h < kHalves; ++h) acc[r][h] = mins[r][h] = _mm256_setzero_si256();
    for (int j = 0; j < kSub; ++j) {
        for (int q0 = kQuads * j; q0 < kQuads * (j + 1); q0 += kChain) {
            __m256i part[kRows][kHalves];
            for (int r = 0; r < kRows; ++r)
                for (int h = 0; h < kHalves; ++h) part[r][h] = _mm256_setzero_si256();
            // NOTES: not unrolled: with the quads' loads hoisted GCC ran out of the 16 ymm
            // registers and spilled the sums to the stack (perf: most of the time in those).
#pragma GCC unroll 1
            for (int q = q0; q < q0 + kChain; ++q) {
                __m256i a[kHalves];
                for (int h = 0; h < kHalves; ++h)
                    a[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act + 64 * q + 32 * (h0 + h)));
#pragma GCC unroll 4
                for (int r = 0; r < kRows; ++r) {
                    const __m256i w = _mm256_set1_epi32(static_cast<int>(load_u32(rec[r].w + 4 * q)));
                    for (int h = 0; h < kHalves; ++h) part[r][h] = _mm256_add_epi16(part[r][h], _mm256_maddubs_epi16(w, a[h]));
                }
            }
            for (int r = 0; r < kRows; ++r) {
                const __m256i sc = _mm256_set1_epi16(static_cast<int16_t>(rec[r].s[j]));
                for (int h = 0; h < kHalves; ++h) acc[r][h] = _mm256_add_epi32(acc[r][h], _mm256_madd_epi16(part[r][h], sc));
            }
        }
    }
    // The offsets (into the block's integer) or Q4_K's and Q2_K's mins (apart), against the group
    // sums.
    const auto sum_terms = [&](__m256i(&into)[kRows][kHalves], int64_t sums_at, int n_pairs, auto coef) {
        for (int p = 0; p < n_pairs; ++p)
            for (int h = 0; h < kHalves; ++h) {
                const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act + sums_at + 64 * p + 32 * (h0 + h)));
                for (int r = 0; r < kRows; ++r)
                    into[r][h] = _mm256_add_epi32(into[r][h], _mm256_madd_epi16(s, _mm256_set1_epi32(static_cast<int>(load_u32(coef(rec[r]) + 2 * p)))));
            }
    };
    if constexpr (kS == Scales::per16) sum_terms(acc, kSums16At, 8, [](const I8Block& b) { return b.c16; });
    if constexpr (kS == Scales::per32_folded) sum_terms(acc, kSumsAt, 4, [](const I8Block& b) { return b.c; });
    if constexpr (kS == Scales::per32) sum_terms(mins, kSumsAt, 4, [](const I8Block& b) { return b.c; });
    if constexpr (kS == Scales::per16_mins) sum_terms(mins, kSums16At, 8, [](const I8Block& b) { return b.c16; });
    for (int h = 0; h < kHalves; ++h) {
        const __m256 scales = _mm256_loadu_ps(reinterpret_cast<const float*>(act + kScalesAt) + 8 * (h0 + h));
        for (int r = 0; r < kRows; ++r) {
            float* f = facc + r * 16 + 8 * (h0 + h);
            __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][h]), _mm256_mul_ps(_mm256_set1_ps(rec[r].d), scales), _mm256_loadu_ps(f));
            if constexpr (kS == Scales::per32 || kS == Scales::per16_mins)
                v = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins[r][h]), _mm256_mul_ps(_mm256_set1_ps(rec[r].dmin), scales), v);
            _mm256_storeu_ps(f, v);
        }
    }
}

// A 16-token group's block (act) against the 32 rows' blocks (facc: the group's [32 rows][16
// tokens]) for a format known at run time: both halves together, 2 rows at a time (each weight
// broadcast serves 16 tokens), or the first 8 tokens alone, 4 rows at a time.
template <Scales kS, int kChain>
void group_product_avx2(const I8Block* rec, int64_t rows_pad, const uint8_t* act, bool both, float* facc) {
    if (both)
        for (int64_t r0 = 0; r0 < rows_pad; r0 += 2) block_product_avx2<2, 2, kS, kChain>(rec + r0, act, 0, facc + r0 * 16);
    else
        for (int64_t r0 = 0; r0 < rows_pad; r0 += 4) block_product_avx2<4, 1, kS, kChain>(rec + r0, act, 0, facc + r0 * 16);
}
void group_product_avx2_of(const I8Format& f, const I8Block* rec, int64_t rows_pad, const uint8_t* act, bool both, float* facc) {
    const Scales kind = f.kind == Scales::per256 ? Scales::per32_folded : f.kind;
    if (kind == Scales::per32 && f.avx2_chain == 8) return group_product_avx2<Scales::per32, 8>(rec, rows_pad, act, both, facc);
    if (kind == Scales::per32_folded && f.avx2_chain == 8) return group_product_avx2<Scales::per32_folded, 8>(rec, rows_pad, act, both, facc);
    if (kind == Scales::per32_folded && f.avx2_chain == 1) return group_product_avx2<Scales::per32_folded, 1>(rec, rows_pad, act, both, facc);
    if (kind == Scales::per16 && f.avx2_chain == 2) return group_product_avx2<Scales::per16, 2>(rec, rows_pad, act, both, facc);
    if (kind == Scales::per16 && f.avx2_chain == 4) return group_product_avx2<Scales::per16, 4>(rec, rows_pad, act, both, facc);
    if (kind == Scales::per16_mins && f.avx2_chain == 4) return group_product_avx2<Scales::per16_mins, 4>(rec, rows_pad, act, both, facc);
    fail("int8 products on AVX2: no kernel for {}", ggml_type_name(f.type));
}

// The tile unit's part (AMX-INT8): C tiles 0, 1 (weight rows 0-15, 16-31) x token group g and
// tiles 2, 3 the same for group g + 1 (if two) = the 32 rows' blocks (A: 16 rows of 64 weight
// bytes, sizeof(I8Block) apart) times the groups' blocks (B: 16 quads of 16 tokens x 4 values),
// four K steps of 64, stored to c ([4][16 rows][16 tokens] int32).
// With one token group, tiles 2, 3 and 7 are free: odd K steps can load their A and B tiles there
// (double_a_b), so a step's loads need not wait for the previous step's products to finish
// reading tiles 4, 5 and 6 (cpu/gemm.cpp chunk_steps). TANDEM_I8_TILES=double turns it on: not
// yet measured on a tile unit (the emulation tests it), so off by default until a device call
// shows which is faster (`.dev/lead/call23.sh` runs both). The same products, the same bits.
bool double_a_b() {
    static const bool on = [] {
        const char* env = std::getenv("TANDEM_I8_TILES");
        if (!env) return false;
        const std::string_view v = env;
        if (v != "double" && v != "single") fail("TANDEM_I8_TILES: expected single or double, found '{}'", v);
        return v == "double";
    }();
    return on;
}

#define TANDEM_AMX_I8_TARGET __attribute__((target("amx-tile,amx-int8")))
TANDEM_AMX_I8_TARGET void tile_block(const I8Block* rec, const uint8_t* b0, const uint8_t* b1, bool two, int32_t* c) {
    // The groups' next blocks (their B tiles: 4 KiB of quads each, from L2) into L1 while these
    // products run (cpu/gemm.cpp chunk_steps: a tile load waits for the products reading its
    // register).
    prefetch_bytes(b0, kI8BlockBytes, kQuadBytes);
    if (two) prefetch_bytes(b1, kI8BlockBytes, kQuadBytes);
    tile::zero<0>();
    tile::zero<1>();
    if (two) {
        tile::zero<2>();
        tile::zero<3>();
    }
    if (!two && double_a_b()) {
        for (int k = 0; k < 4; k += 2) {
            tile::load<4>(rec[0].w + 64 * k, sizeof(I8Block));
            tile::load<5>(rec[16].w + 64 * k, sizeof(I8Block));
            tile::load<6>(b0 + 1024 * k, 64);
            tile::dpbusd<0, 4, 6>();
            tile::dpbusd<1, 5, 6>();
            tile::load<2>(rec[0].w + 64 * (k + 1), sizeof(I8Block));
            tile::load<3>(rec[16].w + 64 * (k + 1), sizeof(I8Block));
            tile::load<7>(b0 + 1024 * (k + 1), 64);
            tile::dpbusd<0, 2, 7>();
            tile::dpbusd<1, 3, 7>();
        }
    } else {
        for (int k = 0; k < 4; ++k) {
            tile::load<4>(rec[0].w + 64 * k, sizeof(I8Block));
            tile::load<5>(rec[16].w + 64 * k, sizeof(I8Block));
            tile::load<6>(b0 + 1024 * k, 64);
            tile::dpbusd<0, 4, 6>();
            tile::dpbusd<1, 5, 6>();
            if (two) {
                tile::load<7>(b1 + 1024 * k, 64);
                tile::dpbusd<2, 4, 7>();
                tile::dpbusd<3, 5, 7>();
            }
        }
    }
    tile::store<0>(c, 64);
    tile::store<1>(c + 256, 64);
    if (two) {
        tile::store<2>(c + 512, 64);
        tile::store<3>(c + 768, 64);
    }
}

// facc (16 floats per row at facc + r * 16) += the 32 rows' integers c (16 rows x 16 tokens
// per tile, rows 16-31 at c + 256) plus the offset terms against the group's sums, scaled:
// block_product's last two steps, so both units give the same bits.
TANDEM_I8_TARGET void tile_epilogue(const int32_t* c, const I8Block* rec, const uint8_t* acts, float* facc) {
    __m512i s[4];
    for (int p = 0; p < 4; ++p) s[p] = _mm512_loadu_si512(acts + kSumsAt + 64 * p);
    const __m512 scales = _mm512_loadu_ps(reinterpret_cast<const float*>(acts + kScalesAt));
    for (int r = 0; r < kPanelRows; ++r) {
        __m512i acc = _mm512_loadu_si512(c + r * 16);
        for (int p = 0; p < 4; ++p)
            acc = _mm512_dpwssd_epi32(acc, s[p], _mm512_set1_epi32(static_cast<int>(load_u32(rec[r].c + 2 * p))));
        float* f = facc + r * 16;
        const __m512 factor = _mm512_mul_ps(_mm512_set1_ps(rec[r].d), scales);
        _mm512_storeu_ps(f, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), factor, _mm512_loadu_ps(f)));
    }
}

// The activations' order in a packing for weights of `type` on `unit`: IQ1_S_U2's own
// (u2_position: its rows come quantized that way, Q8_K_U2) where the products take a block's
// 256 terms in any order (the AVX-512 and tile units: one integer scale per block), else
// natural (the AVX2 products sum each group of 32 apart).
bool packs_u2_order(GgmlType type, I8Unit unit) { return type == GgmlType::IQ1_S_U2 && unit != I8Unit::avx2; }

#pragma GCC diagnostic pop
#undef TANDEM_I8_TARGET
#undef TANDEM_AMX_I8_TARGET
#undef TANDEM_I8_UNPACK

}  // namespace

bool i8_gemm_supports(GgmlType type, I8Unit unit) {
    if (!i8_format(type)) return false;
    switch (unit) {
        // Scales per 32 or 16 weights would need a tile product per group: the tile unit keeps
        // bf16 for those formats. IQ1_S unpacks to IQ1_S_U2's form (one scale per block) and
        // could take it; not measured there yet, so it keeps bf16 there too.
        case I8Unit::amx: return type == GgmlType::IQ1_S_U2;
        case I8Unit::avx512:
        case I8Unit::avx2: return true;
        case I8Unit::none: break;
    }
    return false;
}

bool i8_shares_packing(GgmlType a, GgmlType b, I8Unit unit) {
    return quant::vec_dot_type(a) == quant::vec_dot_type(b) && packs_u2_order(a, unit) == packs_u2_order(b, unit);
}

bool i8_gemm_takes(GgmlType type, int64_t n_in) { return n_in > 0 && n_in % kQK == 0 && i8_gemm_supports(type); }

int64_t i8_min_tokens(GgmlType type) {
    const I8Format* f = i8_format(type);
    switch (f ? i8_unit() : I8Unit::none) {
        case I8Unit::amx: return 6;
        case I8Unit::avx512: return f->min_avx512;
        case I8Unit::avx2: return f->min_avx2;
        case I8Unit::none: break;
    }
    return std::numeric_limits<int64_t>::max();
}

uint64_t packed_acts_i8_bytes(int64_t n_tok, int64_t n_in) {
    const int64_t n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    return static_cast<uint64_t>(n_groups * (n_in / kQK) * kI8BlockBytes);
}

namespace {


// Token t's lanes of every block of its group, from its row q of quantized activations (`act`:
// Q8_K, or Q8_K_U2 or Q8_K_U16, whose q come first; the padding: a zero row), their q taken back
// to natural order from the one `position` gives (null: as they are). A register row holds 4
// bytes per token (16-token groups) or 8 (a half group), so each of the three arrays (q, the
// 32-value sums, the 16-value sums) goes in consecutive pieces of that width, moved 4 bytes at a
// time where reordered (the orders keep runs of 4).
void pack_lane(const uint8_t* q, GgmlType act, int (*position)(int), int64_t t, int64_t nb, bool half, uint8_t* packed) {
    const int64_t lane = t % kTokenGroup, width = half ? 8 : 4;
    uint8_t* group = packed + (t / kTokenGroup) * nb * kI8BlockBytes;
    const auto put = [&](uint8_t* rows, const void* values, int64_t n_bytes, int (*at)(int)) {
        const auto* v = static_cast<const uint8_t*>(values);
        for (int64_t i = 0; i < n_bytes / width; ++i) {
            uint8_t* dst = rows + i * 64 + lane * width;
            if (!at) std::memcpy(dst, v + i * width, static_cast<size_t>(width));
            else
                for (int64_t k = 0; k < width; k += 4) std::memcpy(dst + k, v + at(static_cast<int>(i * width + k)), 4);
        }
    };
    const auto put_block = [&](uint8_t* blk, const auto& b) {
        int16_t sums32[8];
        for (int g = 0; g < 8; ++g) sums32[g] = static_cast<int16_t>(b.bsums[2 * g] + b.bsums[2 * g + 1]);
        put(blk, b.qs, 256, position);
        put(blk + kSumsAt, sums32, sizeof sums32, nullptr);
        put(blk + kSums16At, b.bsums, sizeof b.bsums, nullptr);
        std::memcpy(blk + kScalesAt + lane * 4, &b.d, 4);
    };
    for (int64_t k = 0; k < nb; ++k) {
        uint8_t* blk = group + k * kI8BlockBytes;
        if (act == GgmlType::Q8_K_U2) put_block(blk, reinterpret_cast<const quant::BlockQ8KU2*>(q)[k]);
        else if (act == GgmlType::Q8_K_U16) put_block(blk, reinterpret_cast<const quant::BlockQ8KU16*>(q)[k]);
        else put_block(blk, reinterpret_cast<const quant::BlockQ8K*>(q)[k]);
    }
}

// Whether n_tok's last token group is a half group (8 lanes of two quads each, block_product's
// kHalf): where it has 8 tokens or fewer, on the AVX-512 vector units (the tile unit reads 16
// lanes; the AVX2 products take 8 lanes at a time and skip a group's empty half).
bool half_last_group(int64_t n_tok, I8Unit unit) {
    const int64_t rest = n_tok % kTokenGroup;
    return rest != 0 && rest <= 8 && unit == I8Unit::avx512;
}

// Packs the rows row(t) of tokens [0, n_tok) (quantized as vec_dot_type(type)), then zero rows
// for the last group's padding.
template <typename Row>
void pack_tokens(GgmlType type, int64_t n_tok, int64_t nb, uint8_t* packed, I8Unit unit, Row&& row) {
    const bool half = half_last_group(n_tok, unit);
    const int64_t n_full = n_tok / kTokenGroup * kTokenGroup;
    const int64_t lanes = half ? n_full + 8 : (n_tok + kTokenGroup - 1) / kTokenGroup * kTokenGroup;
    const GgmlType act = quant::vec_dot_type(type);
    int (*position)(int) = nullptr;  // where the rows keep value e, when not where the packing wants it
    if (act == GgmlType::Q8_K_U2 && !packs_u2_order(type, unit)) position = [](int e) { return quant::u2_position(e); };
    if (act == GgmlType::Q8_K_U16) position = [](int e) { return quant::u16_position(e); };
    thread_local std::vector<uint8_t> zero;
    if (lanes > n_tok) zero.assign(static_cast<size_t>(nb) * ggml_traits(act).type_size, 0);
    for (int64_t t = 0; t < lanes; ++t)
        pack_lane(t < n_tok ? row(t) : zero.data(), act, position, t, nb, half && t >= n_full, packed);
}

void check_width(int64_t n_in) {
    if (n_in <= 0 || n_in % kQK) fail("int8 activations: rows of {} values are not whole 256-blocks", n_in);
}

// A unit asked for explicitly must exist on this CPU (the AVX-512 and tile code would fault).
void check_unit(I8Unit unit) {
    const bool ok = unit == I8Unit::avx2 || (unit == I8Unit::avx512 && quant::active_isa() == quant::Isa::Avx512Vnni) ||
                    (unit == I8Unit::amx && amx_int8_available());
    if (!ok) fail("int8 products: this CPU has no such unit (asked for unit {})", static_cast<int>(unit));
}

}  // namespace

void pack_acts_i8(GgmlType type, const float* x, int64_t x_stride, const int32_t* rows, int64_t n_tok, int64_t n_in,
                  uint8_t* packed, I8Unit unit) {
    check_width(n_in);
    const GgmlType act = quant::vec_dot_type(type);
    thread_local aligned_vector<uint8_t> q;
    q.resize(quant_row_bytes(act, n_in));
    pack_tokens(type, n_tok, n_in / kQK, packed, unit, [&](int64_t t) {
        quant::quantize_row(act, x + (rows ? rows[t] : t) * x_stride, q.data(), n_in);
        return q.data();
    });
}

void pack_q8k_i8(GgmlType type, const void* const* q8_rows, int64_t n_tok, int64_t n_in, uint8_t* packed, I8Unit unit) {
    check_width(n_in);
    pack_tokens(type, n_tok, n_in / kQK, packed, unit, [&](int64_t t) { return static_cast<const uint8_t*>(q8_rows[t]); });
}

void panel_gemm_i8(GgmlType type, const uint8_t* w, uint64_t row_bytes, int64_t n_rows, int64_t n_in, const uint8_t* packed,
                   int64_t n_tok, float* out, PanelScratch& ps, I8Unit unit) {
    if (unit != i8_unit()) check_unit(unit);
    if (!i8_gemm_supports(type, unit)) fail("panel_gemm_i8: no int8 product for {} on this CPU", ggml_type_name(type));
    if (n_rows <= 0 || n_rows > kPanelRows || n_in % kQK) fail("panel_gemm_i8: {} rows of {} values", n_rows, n_in);
    const I8Format& format = *i8_format(type);
    const int64_t nb = n_in / kQK, n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    const bool half = half_last_group(n_tok, unit);
    const int64_t n_full = half ? n_groups - 1 : n_groups;  // 16-token groups
    const int64_t rows_pad = (n_rows + 7) / 8 * 8;
    float* facc = grow(ps.acc, static_cast<uint64_t>(n_groups * kPanelRows * kTokenGroup));
    std::fill_n(facc, n_groups * kPanelRows * kTokenGroup, 0.0f);
    // Rows past n_rows are zero blocks (both units read whole groups of rows).
    auto* recs = reinterpret_cast<I8Block*>(grow(ps.i8_blocks, kPanelRows * sizeof(I8Block)));
    std::memset(static_cast<void*>(recs + n_rows), 0, static_cast<size_t>(kPanelRows - n_rows) * sizeof(I8Block));
    const bool amx = unit == I8Unit::amx, avx2 = unit == I8Unit::avx2;
    int32_t* tiles = nullptr;  // the tile unit's C tiles of one block: [4][16][16]
    if (amx) {
        tiles = reinterpret_cast<int32_t*>(grow(ps.i8_tiles, 4 * 256));
        amx_configure_tiles();
    }
    const Scales kind = format.kind;
    const uint64_t block_bytes = ggml_traits(type).type_size;
    phases::start();
    const int64_t group_bytes = nb * kI8BlockBytes;  // group g's block k at packed + g * group_bytes + k * kI8BlockBytes
    for (int64_t k = 0; k < nb; ++k) {
        const uint8_t* blocks = w + static_cast<uint64_t>(k) * block_bytes;
        if (avx2) unpack_rows_avx2(type, blocks, row_bytes, n_rows, k + 1 < nb, recs);
        else unpack_rows_avx512(type, blocks, row_bytes, n_rows, k + 1 < nb, recs);
        phases::mark(phases::kUnpack);
        const uint8_t* block0 = packed + k * kI8BlockBytes;
        if (avx2) {
            // Each 16-token group in two halves of 8; a second half past the last token is all
            // padding and skipped.
            for (int64_t g = 0; g < n_groups; ++g)
                group_product_avx2_of(format, recs, rows_pad, block0 + g * group_bytes, g * kTokenGroup + 8 < n_tok, facc + g * 512);
            phases::mark(phases::kVector);
            continue;
        }
        if (amx) {
            TANDEM_CHECK(kind == Scales::per256);  // tile_epilogue knows one scale per block
            for (int64_t g = 0; g < n_groups; g += 2) {
                const bool two = g + 1 < n_groups;
                const uint8_t* a0 = block0 + g * group_bytes;
                tile_block(recs, a0, two ? a0 + group_bytes : nullptr, two, tiles);
                phases::mark(phases::kTiles);
                tile_epilogue(tiles, recs, a0, facc + g * 512);
                if (two) tile_epilogue(tiles + 512, recs, a0 + group_bytes, facc + (g + 1) * 512);
                phases::mark(phases::kEpilogue);
            }
            continue;
        }
        int64_t g = 0;
        for (; g + 2 <= n_full; g += 2) {
            const uint8_t* a[2] = {block0 + g * group_bytes, block0 + (g + 1) * group_bytes};
            for (int64_t r0 = 0; r0 < rows_pad; r0 += 4) block_product_of<4, 2>(kind, recs + r0, a, facc + g * 512 + r0 * 16);
        }
        for (; g < n_full; ++g) {
            const uint8_t* a[1] = {block0 + g * group_bytes};
            for (int64_t r0 = 0; r0 < rows_pad; r0 += 8) block_product_of<8, 1>(kind, recs + r0, a, facc + g * 512 + r0 * 16);
        }
        if (half) {
            const uint8_t* a[1] = {block0 + g * group_bytes};
            for (int64_t r0 = 0; r0 < rows_pad; r0 += 8)
                block_product_of<8, 1, true>(kind, recs + r0, a, facc + g * 512 + r0 * 8);
        }
        phases::mark(phases::kVector);
    }
    if (amx) tile::release();
    for (int64_t g = 0; g < n_groups; ++g) {
        // 16 floats per row in a 16-token group, 8 in the half group
        const int64_t row = half && g == n_full ? 8 : 16;
        columns_to_rows(facc + g * 512, row, (n_rows + 7) / 8, std::min(kTokenGroup, n_tok - g * kTokenGroup),
                        out + g * kTokenGroup * kPanelRows, kPanelRows);
    }
    phases::mark(phases::kOutput);
}

void gemm_i8(ThreadPool& pool, GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
             const float* x, int64_t n_tok, float* y, GemmScratch& scratch) {
    if (!i8_gemm_supports(w_type)) fail("gemm_i8: no int8 product for {} on this CPU", ggml_type_name(w_type));
    check_width(n_in);
    const uint64_t w_row = quant_row_bytes(w_type, n_in);
    if (row_bytes < w_row) fail("gemm_i8: rows of {} bytes, but {} {} values need {}", row_bytes, n_in, ggml_type_name(w_type),
                                w_row);
    auto* packed = reinterpret_cast<uint8_t*>(grow(scratch.packed, (packed_acts_i8_bytes(n_tok, n_in) + 1) / 2));
    const int64_t n_groups = (n_tok + kTokenGroup - 1) / kTokenGroup;
    const uint64_t group_bytes = packed_acts_i8_bytes(kTokenGroup, n_in);
    pool.parallel_for(n_groups, [&](int64_t g0, int64_t g1, int) {
        for (int64_t g = g0; g < g1; ++g) {
            // A group packed alone is the same as its slice of the whole packing.
            const int64_t t0 = g * kTokenGroup;
            pack_acts_i8(w_type, x + t0 * n_in, n_in, nullptr, std::min(kTokenGroup, n_tok - t0), n_in,
                         packed + static_cast<uint64_t>(g) * group_bytes);
        }
    });
    if (scratch.threads.size() < static_cast<size_t>(pool.n_threads())) scratch.threads.resize(static_cast<size_t>(pool.n_threads()));
    const auto* wb = static_cast<const uint8_t*>(w);
    const int64_t n_panels = (n_out + kPanelRows - 1) / kPanelRows;
    pool.parallel_for(n_panels, [&](int64_t p0, int64_t p1, int tid) {
        PanelScratch& ps = scratch.threads[static_cast<size_t>(tid)];
        float* out = ps.out_for(n_tok);
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t o0 = p * kPanelRows, n_rows = std::min(kPanelRows, n_out - o0);
            panel_gemm_i8(w_type, wb + static_cast<uint64_t>(o0) * row_bytes, row_bytes, n_rows, n_in, packed, n_tok, out, ps);
            for (int64_t t = 0; t < n_tok; ++t) std::copy(out + t * kPanelRows, out + t * kPanelRows + n_rows, y + t * n_out + o0);
        }
    });
}

}  // namespace tandem::cpu
