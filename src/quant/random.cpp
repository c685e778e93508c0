// Random but valid blocks, for synthetic models and tests.
//
// Every bit of a block that indexes something (grid indices, sign indices, packed values) is
// random, which exercises every table entry; the scale fields are then set so that the
// largest value a block can produce is about `scale` (d drawn in [0.5, 1] of that), and the
// redundant fields (Q8_K bsums, Q8_1 s) agree with the values.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/repack.h"
#include "quant/unpack.h"

namespace tandem::quant {
namespace {

// splitmix64: tiny, fast, and good enough to make test blocks.
struct Rng {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    float uniform() { return static_cast<float>(next() >> 40) * 0x1.0p-24f; }  // [0, 1)
    float around(float top) { return top * (0.5f + 0.5f * uniform()); }        // [top/2, top)
    void bytes(void* dst, size_t n) {
        auto* p = static_cast<uint8_t*>(dst);
        for (size_t i = 0; i < n; i += 8) {
            const uint64_t v = next();
            std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
        }
    }
};

// d such that d * max_multiplier is about `scale`.
uint16_t scale16(Rng& rng, float scale, float max_multiplier) { return f32_to_fp16(rng.around(scale / max_multiplier)); }

template <typename Block>
void fix_scales(Block& b, Rng& rng, float scale);

template <> void fix_scales(BlockQ4_0& b, Rng& rng, float s) { b.d = scale16(rng, s, 8); }
template <> void fix_scales(BlockQ4_1& b, Rng& rng, float s) {
    b.d = scale16(rng, s, 7.5f);
    b.m = f32_to_fp16(-7.5f * fp16_to_f32(b.d));  // centre the 16 levels on zero
}
template <> void fix_scales(BlockQ5_0& b, Rng& rng, float s) { b.d = scale16(rng, s, 16); }
template <> void fix_scales(BlockQ5_1& b, Rng& rng, float s) {
    b.d = scale16(rng, s, 15.5f);
    b.m = f32_to_fp16(-15.5f * fp16_to_f32(b.d));
}
template <> void fix_scales(BlockQ8_0& b, Rng& rng, float s) { b.d = scale16(rng, s, 127); }
template <> void fix_scales(BlockQ8_1& b, Rng& rng, float s) {
    b.d = rng.around(s / 127.0f);
    int sum = 0;
    for (int8_t q : b.qs) sum += q;
    b.s = b.d * static_cast<float>(sum);
}
template <> void fix_scales(BlockIq4Nl& b, Rng& rng, float s) { b.d = scale16(rng, s, 127); }
template <> void fix_scales(BlockMxfp4& b, Rng& rng, float s) {
    // value = 2^(e - 128) * v, |v| <= 12.
    const int e = 128 + static_cast<int>(std::lround(std::log2(rng.around(s) / 12.0f)));
    b.e = static_cast<uint8_t>(std::clamp(e, 2, 252));
}
template <> void fix_scales(BlockQ2K& b, Rng& rng, float s) {
    b.d = scale16(rng, s, 15 * 3 / 2.0f);  // values span [-dmin*15, d*45]: centre them
    b.dmin = scale16(rng, s, 15 * 2.0f);
}
template <> void fix_scales(BlockQ3K& b, Rng& rng, float s) { b.d = scale16(rng, s, 32 * 4); }
template <> void fix_scales(BlockQ4K& b, Rng& rng, float s) {
    b.d = scale16(rng, s, 63 * 15 / 2.0f);
    b.dmin = scale16(rng, s, 63 * 2.0f);
}
template <> void fix_scales(BlockQ5K& b, Rng& rng, float s) {
    b.d = scale16(rng, s, 63 * 31 / 2.0f);
    b.dmin = scale16(rng, s, 63 * 2.0f);
}
template <> void fix_scales(BlockQ6K& b, Rng& rng, float s) { b.d = scale16(rng, s, 128 * 32); }
template <> void fix_scales(BlockQ8K& b, Rng& rng, float s) {
    b.d = rng.around(s / 127.0f);
    for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) sum += b.qs[16 * g + j];
        b.bsums[g] = static_cast<int16_t>(sum);
    }
}
template <> void fix_scales(BlockTq1_0& b, Rng& rng, float s) { b.d = scale16(rng, s, 1); }
template <> void fix_scales(BlockTq2_0& b, Rng& rng, float s) {
    // A 2-bit field of 3 is not a trit; map it to 1 (zero).
    for (uint8_t& q : b.qs)
        for (int k = 0; k < 4; ++k)
            if (((q >> (2 * k)) & 3) == 3) q = static_cast<uint8_t>(q ^ (2 << (2 * k)));
    b.d = scale16(rng, s, 1);
}
template <> void fix_scales(BlockIq2Xxs& b, Rng& rng, float s) { b.d = scale16(rng, s, 15.5f * 0.25f * 43); }
template <> void fix_scales(BlockIq2Xs& b, Rng& rng, float s) { b.d = scale16(rng, s, 15.5f * 0.25f * 43); }
template <> void fix_scales(BlockIq2S& b, Rng& rng, float s) { b.d = scale16(rng, s, 15.5f * 0.25f * 43); }
template <> void fix_scales(BlockIq3Xxs& b, Rng& rng, float s) { b.d = scale16(rng, s, 15.5f * 0.5f * 62); }
template <> void fix_scales(BlockIq3S& b, Rng& rng, float s) { b.d = scale16(rng, s, 31 * 15); }
template <> void fix_scales(BlockIq1S& b, Rng& rng, float s) { b.d = scale16(rng, s, 15 * 1.125f); }
template <> void fix_scales(BlockIq1M& b, Rng& rng, float s) {
    // The f16 super-scale lives in the top nibble of each little-endian uint16 of scales.
    const uint16_t d = scale16(rng, s, 15 * 1.125f);
    for (int k = 0; k < 4; ++k) {
        const uint16_t nib = static_cast<uint16_t>((d >> (4 * k)) & 0x0F);
        b.scales[2 * k + 1] = static_cast<uint8_t>((b.scales[2 * k + 1] & 0x0F) | (nib << 4));
    }
}
template <> void fix_scales(BlockIq4Xs& b, Rng& rng, float s) { b.d = scale16(rng, s, 32 * 127); }

template <typename Block>
void fill_blocks(std::span<uint8_t> out, Rng& rng, float scale) {
    const size_t n = out.size() / sizeof(Block);
    for (size_t i = 0; i < n; ++i) {
        Block b;
        rng.bytes(&b, sizeof(b));
        fix_scales(b, rng, scale);
        std::memcpy(out.data() + i * sizeof(Block), &b, sizeof(Block));
    }
}

void fill_float(std::span<uint8_t> out, Rng& rng, float scale, GgmlType type) {
    const size_t elem = type == GgmlType::F32 ? 4 : 2;
    for (size_t i = 0; i < out.size() / elem; ++i) {
        const float v = scale * (2.0f * rng.uniform() - 1.0f);
        if (type == GgmlType::F32) {
            std::memcpy(out.data() + 4 * i, &v, 4);
        } else {
            const uint16_t h = type == GgmlType::F16 ? f32_to_fp16(v) : f32_to_bf16(v);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
    }
}

}  // namespace

void fill_random(GgmlType type, std::span<uint8_t> out, uint64_t seed, float scale) {
    const GgmlTypeTraits& t = ggml_traits(type);
    if (out.size() % t.type_size != 0)
        fail("fill_random: {} bytes is not a whole number of {} blocks of {} bytes", out.size(), t.name, t.type_size);
    Rng rng{seed};
    using T = GgmlType;
    switch (type) {
        case T::F32:
        case T::F16:
        case T::BF16: return fill_float(out, rng, scale, type);
        case T::Q4_0: return fill_blocks<BlockQ4_0>(out, rng, scale);
        case T::Q4_1: return fill_blocks<BlockQ4_1>(out, rng, scale);
        case T::Q5_0: return fill_blocks<BlockQ5_0>(out, rng, scale);
        case T::Q5_1: return fill_blocks<BlockQ5_1>(out, rng, scale);
        case T::Q8_0: return fill_blocks<BlockQ8_0>(out, rng, scale);
        case T::Q8_1: return fill_blocks<BlockQ8_1>(out, rng, scale);
        case T::IQ4_NL: return fill_blocks<BlockIq4Nl>(out, rng, scale);
        case T::MXFP4: return fill_blocks<BlockMxfp4>(out, rng, scale);
        case T::Q2_K: return fill_blocks<BlockQ2K>(out, rng, scale);
        case T::Q3_K: return fill_blocks<BlockQ3K>(out, rng, scale);
        case T::Q4_K: return fill_blocks<BlockQ4K>(out, rng, scale);
        case T::Q5_K: return fill_blocks<BlockQ5K>(out, rng, scale);
        case T::Q6_K: return fill_blocks<BlockQ6K>(out, rng, scale);
        case T::Q8_K: return fill_blocks<BlockQ8K>(out, rng, scale);
        case T::TQ1_0: return fill_blocks<BlockTq1_0>(out, rng, scale);
        case T::TQ2_0: return fill_blocks<BlockTq2_0>(out, rng, scale);
        case T::IQ2_XXS: return fill_blocks<BlockIq2Xxs>(out, rng, scale);
        case T::IQ2_XS: return fill_blocks<BlockIq2Xs>(out, rng, scale);
        case T::IQ2_S: return fill_blocks<BlockIq2S>(out, rng, scale);
        case T::IQ3_XXS: return fill_blocks<BlockIq3Xxs>(out, rng, scale);
        case T::IQ3_S: return fill_blocks<BlockIq3S>(out, rng, scale);
        case T::IQ1_S: return fill_blocks<BlockIq1S>(out, rng, scale);
        case T::IQ1_M: return fill_blocks<BlockIq1M>(out, rng, scale);
        case T::IQ4_XS: return fill_blocks<BlockIq4Xs>(out, rng, scale);
        case T::IQ1_S_U2:  // random blocks of the file's format, repacked
        case T::IQ1_M_U2:
        case T::IQ2_XXS_U3:
        case T::IQ3_XXS_U4:
        case T::Q2_K_U16:
        case T::Q3_K_U16: {
            const GgmlType from = t.type == T::IQ1_S_U2 ? T::IQ1_S : t.type == T::IQ1_M_U2 ? T::IQ1_M
                                : t.type == T::IQ2_XXS_U3 ? T::IQ2_XXS : t.type == T::Q2_K_U16 ? T::Q2_K
                                : t.type == T::Q3_K_U16 ? T::Q3_K : T::IQ3_XXS;
            const int64_t n_blocks = static_cast<int64_t>(out.size() / t.type_size);
            std::vector<uint8_t> src(static_cast<size_t>(n_blocks) * ggml_traits(from).type_size);
            if (from == T::IQ1_S) fill_blocks<BlockIq1S>(src, rng, scale);
            else if (from == T::IQ1_M) fill_blocks<BlockIq1M>(src, rng, scale);
            else if (from == T::IQ2_XXS) fill_blocks<BlockIq2Xxs>(src, rng, scale);
            else if (from == T::Q2_K) fill_blocks<BlockQ2K>(src, rng, scale);
            else if (from == T::Q3_K) fill_blocks<BlockQ3K>(src, rng, scale);
            else fill_blocks<BlockIq3Xxs>(src, rng, scale);
            return repack_blocks(from, src.data(), out.data(), n_blocks);
        }
        default: fail("fill_random: no random blocks for type {}", t.name);
    }
}

}  // namespace tandem::quant
