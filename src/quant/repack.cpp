#include "quant/repack.h"

#include <bit>
#include <cstring>

#include "core/check.h"
#include "quant/blocks.h"
#include "quant/grids.h"

namespace tandem::quant {
namespace {

static_assert(std::endian::native == std::endian::little, "qs is assembled as little-endian words");

BlockIq1SU2 repack(const BlockIq1S& b) {
    BlockIq1SU2 r{};
    r.d = b.d;
    // Entry l of group g holds weights e = 32 g + 8 l .. +7: chunk c = g / 2 (bits 2c..2c+1)
    // of qs bytes 32 (g % 2) + 8 l .. +7, i.e. qs as 8 little-endian words, word 4 (g % 2) + l
    // ORed with the entry's u bytes shifted by 2c (u <= 2, so no bits cross into the next byte).
    uint64_t words[8];
    for (int g = 0; g < 8; ++g) {
        const int nibble = b.qh[g] >> 12;  // scale bits 12..14, delta sign 15
        r.sc[g / 2] = static_cast<uint8_t>(r.sc[g / 2] | (nibble << (4 * (g % 2))));
    }
    for (int w = 0; w < 8; ++w) {  // word w = 4 (g % 2) + l: entry l of groups g = w / 4, + 2, + 4, + 6
        uint64_t word = 0;
        for (int c = 0; c < 4; ++c) {
            const int g = 2 * c + w / 4, l = w % 4;
            word |= kIq1sGridU[b.qs[4 * g + l] | (((b.qh[g] >> (3 * l)) & 7) << 8)] << (2 * c);
        }
        words[w] = word;
    }
    std::memcpy(r.qs, words, sizeof words);
    return r;
}

BlockIq1MU2 repack(const BlockIq1M& b) {
    BlockIq1MU2 r{};
    std::memcpy(r.scales, b.scales, sizeof r.scales);
    // Entry k (weights 8k .. 8k + 7) is chunk c = k / 8 of qs bytes 8 (k % 8) .. +7: word k % 8
    // of qs ORed with the entry's u bytes shifted by 2c; its delta sign is bit k of the 32 delta
    // bits (bit k % 8 of delta[c]). Each word is assembled in a register, from its 4 entries.
    uint64_t words[8];
    uint32_t minus = 0;
    for (int l = 0; l < 8; ++l) {
        uint64_t word = 0;
        for (int c = 0; c < 4; ++c) {
            const int k = 8 * c + l;
            const int nibble = (b.qh[k / 2] >> (4 * (k % 2))) & 0x0F;
            word |= kIq1sGridU[b.qs[k] | ((nibble & 7) << 8)] << (2 * c);
            minus |= static_cast<uint32_t>(nibble >> 3) << k;
        }
        words[l] = word;
    }
    std::memcpy(r.qs, words, sizeof words);
    std::memcpy(r.delta, &minus, sizeof minus);
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
    return std::nullopt;
}

void repack_blocks(GgmlType from, const void* src, void* dst, int64_t n_blocks) {
    if (from == GgmlType::IQ1_S) return repack_all<BlockIq1S>(src, dst, n_blocks);
    if (from == GgmlType::IQ1_M) return repack_all<BlockIq1M>(src, dst, n_blocks);
    fail("repack: no repacked layout for type {}", ggml_type_name(from));
}

}  // namespace tandem::quant
