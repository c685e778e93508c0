#include "quant/repack.h"

#include <immintrin.h>

#include <array>
#include <bit>
#include <cstring>

#include "core/check.h"
#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/unpack.h"

namespace tandem::quant {
namespace {

static_assert(std::endian::native == std::endian::little, "qs is assembled as little-endian words");

BlockIq1SU2 repack(const BlockIq1S& b) {
    BlockIq1SU2 r{};
    r.d = b.d;
    // Entry l of group g holds weights e = 32 g + 8 l .. +7: bits 2l..2l+1 of qs bytes 8g .. 8g
    // + 7 (u2_position), i.e. qs as 8 little-endian words, word g the group's four entries' u
    // bytes shifted by 2l and ORed (u <= 2, so no bits cross into the next byte).
    uint64_t words[8];
    for (int g = 0; g < 8; ++g) {
        const int nibble = b.qh[g] >> 12;  // scale bits 12..14, delta sign 15
        r.sc[g / 2] = static_cast<uint8_t>(r.sc[g / 2] | (nibble << (4 * (g % 2))));
        uint64_t word = 0;
        for (int l = 0; l < 4; ++l) word |= kIq1sGridU[b.qs[4 * g + l] | (((b.qh[g] >> (3 * l)) & 7) << 8)] << (2 * l);
        words[g] = word;
    }
    std::memcpy(r.qs, words, sizeof words);
    return r;
}

BlockIq1MU2 repack(const BlockIq1M& b) {
    BlockIq1MU2 r{};
    std::memcpy(r.scales, b.scales, sizeof r.scales);
    // Entry k (weights 8k .. 8k + 7: group j = k / 2 of 16, its weights 8 (k % 2) ..) sits at
    // u16_position: weights 4c .. 4c + 3 of group j (c = 2 (k % 2), then + 1) in bits 2c, 2c + 1
    // of qs bytes 4j .. 4j + 3. Its delta sign is bit k of the 32 delta bits.
    uint8_t qs[64] = {};
    uint32_t minus = 0;
    for (int k = 0; k < 32; ++k) {
        const int nibble = (b.qh[k / 2] >> (4 * (k % 2))) & 0x0F;
        const uint64_t u = kIq1sGridU[b.qs[k] | ((nibble & 7) << 8)];  // 8 bytes u
        minus |= static_cast<uint32_t>(nibble >> 3) << k;
        for (int i = 0; i < 8; ++i) {
            const int c = 2 * (k % 2) + i / 4;
            qs[4 * (k / 2) + i % 4] = static_cast<uint8_t>(qs[4 * (k / 2) + i % 4] | (((u >> (8 * i)) & 3) << (2 * c)));
        }
    }
    std::memcpy(r.qs, qs, sizeof qs);
    std::memcpy(r.delta, &minus, sizeof minus);
    return r;
}

// Q2_K's and Q3_K's 2-bit fields (qs) into u16_position order. Group j (weights 16 j ..: h = j /
// 8, field f = (j % 8) / 2, bytes 16 (j % 2) .. + 15 of the 32-byte half h, the field at bits 2f)
// goes to dword j, weights 16 j + 4 c + r at byte r, bits 2c: dword c of those 16 bytes, shifted
// down by 2f, masked and shifted up by 2c.
void regroup_low2(const uint8_t* in, uint8_t* out) {
    for (int j = 0; j < 16; ++j) {
        const uint8_t* src = in + 32 * (j / 8) + 16 * (j % 2);
        const int f = (j % 8) / 2;
        uint32_t word = 0;
        for (int c = 0; c < 4; ++c) word |= ((load_u32(src + 4 * c) >> (2 * f)) & 0x03030303u) << (2 * c);
        std::memcpy(out + 4 * j, &word, sizeof word);
    }
}

BlockQ2KU16 repack(const BlockQ2K& b) {
    BlockQ2KU16 r;
    std::memcpy(r.scales, b.scales, sizeof r.scales);
    r.d = b.d;
    r.dmin = b.dmin;
    regroup_low2(b.qs, r.qs);
    return r;
}

BlockQ3KU16 repack(const BlockQ3K& b) {
    BlockQ3KU16 r;
    std::memcpy(r.scales, b.scales, sizeof r.scales);
    r.d = b.d;
    regroup_low2(b.qs, r.qs);
    // The high bit of weight e = 32 k + l is bit k of hmask[l]: plane k (the 32 bytes' bit k) is
    // bits 32k .. 32k + 31 of a 256-bit map H in natural order. Chunk c's 64 bits take, for each
    // group j, H's 4 bits from 16 j + 4 c: in each 64-bit word of H (groups 4w .. 4w + 3) the
    // nibbles at 4c, 16 + 4c, 32 + 4c, 48 + 4c, gathered by shifts and masks.
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
    uint64_t h[4];
    for (int w = 0; w < 4; ++w) {
        const auto plane = [&](int k) { return static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(hm, 7 - k))); };
        h[w] = plane(2 * w) | uint64_t{plane(2 * w + 1)} << 32;
    }
    for (int c = 0; c < 4; ++c) {
        uint64_t bits = 0;
        for (int w = 0; w < 4; ++w) {
            uint64_t t = (h[w] >> (4 * c)) & 0x000F000F000F000Full;
            t = (t | t >> 12) & 0x000000FF000000FFull;
            t = (t | t >> 24) & 0xFFFFull;
            bits |= t << (16 * w);
        }
        std::memcpy(r.hmask + 8 * c, &bits, sizeof bits);
    }
    return r;
}

// The code of a grid value: its index in the format's magnitudes (kIq2xxsMagnitudes: 8, 25, 43;
// kIq3xxsMagnitudes: 4, 12, .., 52, 62), -1 for any other value.
template <size_t N>
constexpr int magnitude_code(uint8_t v, const int (&magnitudes)[N]) {
    for (size_t c = 0; c < N; ++c)
        if (v == magnitudes[c]) return static_cast<int>(c);
    return -1;
}
// Whether every byte of every entry of `grid` is one of `magnitudes` (checked at compile time
// for the grids the repacks write as codes).
template <typename Entry, size_t M, size_t N>
constexpr bool grid_has_only(const Entry (&grid)[M], const int (&magnitudes)[N]) {
    for (Entry entry : grid)
        for (size_t j = 0; j < sizeof(Entry); ++j)
            if (magnitude_code(static_cast<uint8_t>(entry >> (8 * j)), magnitudes) < 0) return false;
    return true;
}
static_assert(grid_has_only(kIq2xxsGrid, kIq2xxsMagnitudes));
static_assert(grid_has_only(kIq3xxsGrid, kIq3xxsMagnitudes));

// kIq2xxsGrid's entries as codes: byte j of entry i is the code of byte j of kIq2xxsGrid[i].
constexpr std::array<uint64_t, 256> make_iq2xxs_codes() {
    std::array<uint64_t, 256> t{};
    for (size_t i = 0; i < t.size(); ++i)
        for (int j = 0; j < 8; ++j) {
            const int code = magnitude_code(static_cast<uint8_t>(kIq2xxsGrid[i] >> (8 * j)), kIq2xxsMagnitudes);
            t[i] |= static_cast<uint64_t>(code) << (8 * j);
        }
    return t;
}
constexpr std::array<uint64_t, 256> kIq2xxsCodes = make_iq2xxs_codes();

BlockIq2XxsU3 repack(const BlockIq2Xxs& b) {
    BlockIq2XxsU3 r{};
    r.d = b.d;
    const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
    // Entry l of group g (weights 32 g + 8 l .. + 7) sits at u2_position 64 l + 8 g ..: its codes
    // in bits 2l, 2l + 1 of qs bytes 8g .. 8g + 7 (word g of qs, ORed shifted by 2l), its 8 signs
    // in signs[8 l + g].
    uint64_t words[8] = {};
    for (int g = 0; g < 8; ++g) {
        const uint32_t aux0 = load_u32(qs + 8 * g), aux1 = load_u32(qs + 8 * g + 4);
        r.sc[g / 2] = static_cast<uint8_t>(r.sc[g / 2] | ((aux1 >> 28) << (4 * (g % 2))));
        for (int l = 0; l < 4; ++l) {
            words[g] |= kIq2xxsCodes[(aux0 >> (8 * l)) & 0xFF] << (2 * l);
            r.signs[8 * l + g] = kKsigns[(aux1 >> (7 * l)) & 0x7F];
        }
    }
    std::memcpy(r.qs, words, sizeof words);
    return r;
}

BlockIq3XxsU4 repack(const BlockIq3Xxs& b) {
    BlockIq3XxsU4 r{};
    r.d = b.d;
    // Group g (weights 32g ..): its uint32 after the 64 grid indices holds the scale and four
    // 7-bit sign indices (entry l: weights 32g + 8l .. + 7), each entry two grid indices of 4.
    for (int g = 0; g < 8; ++g) {
        const uint32_t aux = load_u32(b.qs + 64 + 4 * g);
        r.sc[g / 2] = static_cast<uint8_t>(r.sc[g / 2] | ((aux >> 28) << (4 * (g % 2))));
        for (int l = 0; l < 4; ++l) {
            const uint8_t signs = kKsigns[(aux >> (7 * l)) & 0x7F];
            const uint64_t entry =
                kIq3xxsGrid[b.qs[8 * g + 2 * l]] | (uint64_t{kIq3xxsGrid[b.qs[8 * g + 2 * l + 1]]} << 32);
            for (int j = 0; j < 8; ++j) {
                const int e = 32 * g + 8 * l + j;
                const int code = magnitude_code(static_cast<uint8_t>(entry >> (8 * j)), kIq3xxsMagnitudes);
                const int nibble = code | (((signs >> j) & 1) << 3);
                r.q[e % 128] = static_cast<uint8_t>(r.q[e % 128] | (nibble << (4 * (e / 128))));
            }
        }
    }
    return r;
}

template <typename From>
void repack_all(const void* src, void* dst, int64_t n_blocks) {
    const auto* in = static_cast<const uint8_t*>(src);
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n_blocks; ++i) {
        From b;
        std::memcpy(&b, in + i * sizeof(From), sizeof b);
        const auto r = repack(b);
        std::memcpy(out + i * sizeof r, &r, sizeof r);
    }
}

}  // namespace

std::optional<GgmlType> repacked_type(GgmlType type) {
    if (type == GgmlType::IQ1_S) return GgmlType::IQ1_S_U2;
    if (type == GgmlType::IQ1_M) return GgmlType::IQ1_M_U2;
    if (type == GgmlType::IQ2_XXS) return GgmlType::IQ2_XXS_U3;
    if (type == GgmlType::IQ3_XXS) return GgmlType::IQ3_XXS_U4;
    if (type == GgmlType::Q2_K) return GgmlType::Q2_K_U16;
    if (type == GgmlType::Q3_K) return GgmlType::Q3_K_U16;
    return std::nullopt;
}

void repack_blocks(GgmlType from, const void* src, void* dst, int64_t n_blocks) {
    if (from == GgmlType::IQ1_S) return repack_all<BlockIq1S>(src, dst, n_blocks);
    if (from == GgmlType::IQ1_M) return repack_all<BlockIq1M>(src, dst, n_blocks);
    if (from == GgmlType::IQ2_XXS) return repack_all<BlockIq2Xxs>(src, dst, n_blocks);
    if (from == GgmlType::IQ3_XXS) return repack_all<BlockIq3Xxs>(src, dst, n_blocks);
    if (from == GgmlType::Q2_K) return repack_all<BlockQ2K>(src, dst, n_blocks);
    if (from == GgmlType::Q3_K) return repack_all<BlockQ3K>(src, dst, n_blocks);
    fail("repack: no repacked layout for type {}", ggml_type_name(from));
}

}  // namespace tandem::quant
