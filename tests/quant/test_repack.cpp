// In-memory layouts (quant/repack.h): a repacked block holds exactly the weights of the block it
// came from. test_exact checks the repacked gguf vectors against the gguf package; these tests
// cover every grid entry, the dot products and the bf16 unpacking against the source format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/repack.h"
#include "quant/vec_dot.h"

namespace tandem::quant {
namespace {

// IQ1_S blocks that together use every grid index (in a shuffled order, so the four high-bit
// fields of a group differ), every scale and both delta signs.
std::vector<BlockIq1S> iq1s_blocks_covering_the_grid() {
    std::vector<int> order(2048);
    for (int i = 0; i < 2048; ++i) order[static_cast<size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(5));
    std::vector<BlockIq1S> blocks;
    for (int k = 0; k < 2048; k += 32) {
        BlockIq1S b{};
        b.d = 0x2E66;  // f16 0.1
        for (int g = 0; g < 8; ++g) {
            uint16_t qh = static_cast<uint16_t>(((g + k / 32) % 8) << 12);  // scale
            if ((k / 32 + g / 2) % 2) qh |= 0x8000;                        // delta sign
            for (int l = 0; l < 4; ++l) {
                const int idx = order[static_cast<size_t>(k + 4 * g + l)];
                b.qs[4 * g + l] = static_cast<uint8_t>(idx & 0xFF);
                qh = static_cast<uint16_t>(qh | ((idx >> 8) << (3 * l)));
            }
            b.qh[g] = qh;
        }
        blocks.push_back(b);
    }
    return blocks;
}

TEST(Repack, EachFormatHasItsLayout) {
    EXPECT_EQ(repacked_type(GgmlType::IQ1_S), GgmlType::IQ1_S_U2);
    EXPECT_EQ(repacked_type(GgmlType::IQ1_M), GgmlType::IQ1_M_U2);
    EXPECT_EQ(ggml_traits(GgmlType::IQ1_M_U2).type_size, sizeof(BlockIq1MU2));
    EXPECT_FALSE(ggml_type_traits(static_cast<uint32_t>(GgmlType::IQ1_M_U2)).has_value());
    EXPECT_EQ(repacked_type(GgmlType::IQ2_XXS), GgmlType::IQ2_XXS_U3);
    EXPECT_EQ(ggml_traits(GgmlType::IQ2_XXS_U3).type_size, sizeof(BlockIq2XxsU3));
    EXPECT_FALSE(ggml_type_traits(static_cast<uint32_t>(GgmlType::IQ2_XXS_U3)).has_value());
    EXPECT_EQ(repacked_type(GgmlType::IQ3_XXS), GgmlType::IQ3_XXS_U4);
    EXPECT_EQ(ggml_traits(GgmlType::IQ3_XXS_U4).type_size, sizeof(BlockIq3XxsU4));
    EXPECT_FALSE(ggml_type_traits(static_cast<uint32_t>(GgmlType::IQ3_XXS_U4)).has_value());
    EXPECT_EQ(repacked_type(GgmlType::Q2_K), GgmlType::Q2_K_U16);
    EXPECT_EQ(ggml_traits(GgmlType::Q2_K_U16).type_size, sizeof(BlockQ2KU16));
    EXPECT_FALSE(ggml_type_traits(static_cast<uint32_t>(GgmlType::Q2_K_U16)).has_value());
    EXPECT_EQ(repacked_type(GgmlType::Q3_K), GgmlType::Q3_K_U16);
    EXPECT_EQ(ggml_traits(GgmlType::Q3_K_U16).type_size, sizeof(BlockQ3KU16));
    EXPECT_FALSE(ggml_type_traits(static_cast<uint32_t>(GgmlType::Q3_K_U16)).has_value());
    EXPECT_FALSE(repacked_type(GgmlType::Q4_K).has_value());
    EXPECT_EQ(ggml_traits(GgmlType::IQ1_S_U2).type_size, sizeof(BlockIq1SU2));
    // An in-memory layout is never accepted as a file's tensor type.
    EXPECT_FALSE(ggml_type_traits(static_cast<uint32_t>(GgmlType::IQ1_S_U2)).has_value());
    std::vector<uint8_t> src(144), dst(144);
    EXPECT_THROW(repack_blocks(GgmlType::Q4_K, src.data(), dst.data(), 1), Error);
}

// IQ1_M blocks that together use every grid index (shuffled), every scale, both delta signs in
// varied patterns, and the f16 d spread over the scales' top nibbles.
std::vector<BlockIq1M> iq1m_blocks_covering_the_grid() {
    std::vector<int> order(2048);
    for (int i = 0; i < 2048; ++i) order[static_cast<size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(6));
    std::mt19937 rng(7);
    std::vector<BlockIq1M> blocks;
    for (int k0 = 0; k0 < 2048; k0 += 32) {
        BlockIq1M b{};
        const uint16_t d = static_cast<uint16_t>(0x2E66 + k0 / 32);  // f16 near 0.1
        for (int q = 0; q < 4; ++q) {
            uint16_t u = static_cast<uint16_t>(((d >> (4 * q)) & 0xF) << 12);
            for (int i = 0; i < 4; ++i) u = static_cast<uint16_t>(u | (((4 * q + i + k0 / 32) % 8) << (3 * i)));
            b.scales[2 * q] = static_cast<uint8_t>(u & 0xFF);
            b.scales[2 * q + 1] = static_cast<uint8_t>(u >> 8);
        }
        for (int k = 0; k < 32; ++k) {
            const int idx = order[static_cast<size_t>(k0 + k)];
            b.qs[k] = static_cast<uint8_t>(idx & 0xFF);
            const int nibble = (idx >> 8) | (rng() % 2 ? 8 : 0);
            b.qh[k / 2] = static_cast<uint8_t>(b.qh[k / 2] | (nibble << (4 * (k % 2))));
        }
        blocks.push_back(b);
    }
    return blocks;
}

// IQ2_XXS blocks that together use every grid index and every sign index (each many times, in
// shuffled orders) and every scale.
std::vector<BlockIq2Xxs> iq2xxs_blocks_covering_the_grid() {
    std::mt19937 rng(8);
    std::vector<BlockIq2Xxs> blocks;
    for (int k0 = 0; k0 < 1024; k0 += 32) {  // 32 entries per block: every grid index 4 times
        BlockIq2Xxs b{};
        b.d = static_cast<uint16_t>(0x2E66 + k0 / 32);
        auto* qs = reinterpret_cast<uint8_t*>(b.qs);
        for (int g = 0; g < 8; ++g) {
            uint32_t aux0 = 0, aux1 = static_cast<uint32_t>((g + k0 / 32) % 16) << 28;
            for (int l = 0; l < 4; ++l) {
                aux0 |= static_cast<uint32_t>((k0 + 4 * g + l) * 37 % 256) << (8 * l);
                aux1 |= static_cast<uint32_t>(rng() % 128) << (7 * l);
            }
            std::memcpy(qs + 8 * g, &aux0, 4);
            std::memcpy(qs + 8 * g + 4, &aux1, 4);
        }
        blocks.push_back(b);
    }
    // Every sign index in one more block set: index i at entry i % 32 of block i / 32.
    for (int k0 = 0; k0 < 128; k0 += 32) {
        BlockIq2Xxs b = blocks[static_cast<size_t>(k0 / 32)];
        auto* qs = reinterpret_cast<uint8_t*>(b.qs);
        for (int g = 0; g < 8; ++g) {
            uint32_t aux1 = load_u32(qs + 8 * g + 4) & 0xF0000000u;
            for (int l = 0; l < 4; ++l) aux1 |= static_cast<uint32_t>(k0 + 4 * g + l) << (7 * l);
            std::memcpy(qs + 8 * g + 4, &aux1, 4);
        }
        blocks.push_back(b);
    }
    return blocks;
}

// IQ3_XXS blocks that together use every grid index (64 per block: each 4 times over 16 blocks),
// every sign index (random, then each one in 4 more blocks) and every scale.
std::vector<BlockIq3Xxs> iq3xxs_blocks_covering_the_grid() {
    std::mt19937 rng(12);
    std::vector<BlockIq3Xxs> blocks;
    for (int k0 = 0; k0 < 1024; k0 += 64) {
        BlockIq3Xxs b{};
        b.d = static_cast<uint16_t>(0x2E66 + k0 / 64);
        for (int i = 0; i < 64; ++i) b.qs[i] = static_cast<uint8_t>((k0 + i) * 37 % 256);
        for (int g = 0; g < 8; ++g) {
            uint32_t aux = static_cast<uint32_t>((g + k0 / 64) % 16) << 28;
            for (int l = 0; l < 4; ++l) aux |= static_cast<uint32_t>(rng() % 128) << (7 * l);
            std::memcpy(b.qs + 64 + 4 * g, &aux, 4);
        }
        blocks.push_back(b);
    }
    for (int k0 = 0; k0 < 128; k0 += 32) {  // sign index k0 + 4g + l at entry l of group g
        BlockIq3Xxs b = blocks[static_cast<size_t>(k0 / 32)];
        for (int g = 0; g < 8; ++g) {
            uint32_t aux = load_u32(b.qs + 64 + 4 * g) & 0xF0000000u;
            for (int l = 0; l < 4; ++l) aux |= static_cast<uint32_t>(k0 + 4 * g + l) << (7 * l);
            std::memcpy(b.qs + 64 + 4 * g, &aux, 4);
        }
        blocks.push_back(b);
    }
    return blocks;
}

// Q2_K or Q3_K blocks of random bytes (every 2-bit value and high bit in every position, every
// scale, min and 6-bit scale many times over 64 blocks), with d (and Q2_K's dmin) normal f16 values
// near 0.01 .. 0.1.
template <typename Block>
std::vector<Block> random_k_blocks(uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<Block> blocks(64);
    for (Block& b : blocks) {
        uint8_t bytes[sizeof(Block)];
        for (uint8_t& v : bytes) v = static_cast<uint8_t>(rng());
        std::memcpy(&b, bytes, sizeof b);
        b.d = static_cast<uint16_t>(0x2000 + rng() % 0xE00);
        if constexpr (std::is_same_v<Block, BlockQ2K>) b.dmin = static_cast<uint16_t>(0x2000 + rng() % 0xE00);
    }
    return blocks;
}

// A file format's covering blocks (above) and their repacked layout, as bytes.
struct Covering {
    GgmlType from, to;
    std::vector<uint8_t> blocks, repacked;
    int64_t n_blocks, n;
};

template <typename Block>
Covering covering(GgmlType from, const std::vector<Block>& blocks) {
    Covering c{from, *repacked_type(from), {}, {}, static_cast<int64_t>(blocks.size()), static_cast<int64_t>(blocks.size()) * 256};
    c.blocks.resize(blocks.size() * sizeof(Block));
    std::memcpy(c.blocks.data(), blocks.data(), c.blocks.size());
    c.repacked.resize(blocks.size() * ggml_traits(c.to).type_size);
    repack_blocks(from, c.blocks.data(), c.repacked.data(), c.n_blocks);
    return c;
}

Covering covering_of(GgmlType from) {
    if (from == GgmlType::IQ1_S) return covering(from, iq1s_blocks_covering_the_grid());
    if (from == GgmlType::IQ1_M) return covering(from, iq1m_blocks_covering_the_grid());
    if (from == GgmlType::IQ2_XXS) return covering(from, iq2xxs_blocks_covering_the_grid());
    if (from == GgmlType::Q2_K) return covering(from, random_k_blocks<BlockQ2K>(13));
    if (from == GgmlType::Q3_K) return covering(from, random_k_blocks<BlockQ3K>(14));
    return covering(from, iq3xxs_blocks_covering_the_grid());
}

class RepackedFormat : public ::testing::TestWithParam<GgmlType> {};

// Every weight of the covering blocks dequantizes to the same float32 bits in both layouts.
TEST_P(RepackedFormat, DequantizesIdentically) {
    const Covering c = covering_of(GetParam());
    std::vector<float> want(c.n), got(c.n);
    dequantize_row(c.from, c.blocks.data(), want.data(), c.n);
    dequantize_row(c.to, c.repacked.data(), got.data(), c.n);
    for (int64_t i = 0; i < c.n; ++i)
        ASSERT_EQ(std::memcmp(&want[i], &got[i], 4), 0) << "weight " << i << ": " << want[i] << " vs " << got[i];
}

// The dot kernels of both layouts compute the same integers, so their scalar references agree
// exactly, and every SIMD kernel of the repacked layout this CPU has agrees with them up to
// float summation order.
TEST_P(RepackedFormat, DotEqualsTheFileFormats) {
    const Covering c = covering_of(GetParam());
    std::vector<float> x(c.n);
    std::mt19937 rng(9);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x) v = normal(rng);
    std::vector<BlockQ8K> a(static_cast<size_t>(c.n_blocks));
    quantize_row(GgmlType::Q8_K, x.data(), a.data(), c.n);
    // the same values in the order the repacked layout's kernels take (Q8_K_U2 for IQ1_S_U2)
    std::vector<uint8_t> a_to(static_cast<size_t>(c.n_blocks) * ggml_traits(vec_dot_type(c.to)).type_size);
    quantize_row(vec_dot_type(c.to), x.data(), a_to.data(), c.n);
    const float ref = vec_dot_fn(c.from, Isa::Scalar)(c.blocks.data(), a.data(), c.n);
    EXPECT_EQ(vec_dot_fn(c.to, Isa::Scalar)(c.repacked.data(), a_to.data(), c.n), ref);
    for (Isa isa : {Isa::Avx2, Isa::Avx512Vnni}) {
        if (isa == Isa::Avx512Vnni && active_isa() != Isa::Avx512Vnni) continue;
        const float simd = vec_dot_fn(c.to, isa)(c.repacked.data(), a_to.data(), c.n);
        EXPECT_NEAR(simd, ref, 1e-5 * std::abs(ref) + 1e-4) << isa_name(isa);
    }
}

// The bf16 unpacking (the tile products') of the repacked layout: its own fast path, the same
// bits as the file format's.
TEST_P(RepackedFormat, Bf16EqualsTheFileFormats) {
    if (!__builtin_cpu_supports("avx512bf16")) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
    const Covering c = covering_of(GetParam());
    std::vector<uint16_t> want(c.n), got(c.n);
    dequantize_row_bf16(c.from, c.blocks.data(), want.data(), c.n);
    dequantize_row_bf16(c.to, c.repacked.data(), got.data(), c.n);
    EXPECT_TRUE(has_fast_bf16_dequant(c.to));
    for (int64_t i = 0; i < c.n; ++i) ASSERT_EQ(want[i], got[i]) << "weight " << i;
}

INSTANTIATE_TEST_SUITE_P(Formats, RepackedFormat, ::testing::Values(GgmlType::IQ1_S, GgmlType::IQ1_M, GgmlType::IQ2_XXS, GgmlType::IQ3_XXS, GgmlType::Q2_K, GgmlType::Q3_K),
                         [](const auto& p) { return std::string(ggml_type_name(p.param)); });

}  // namespace
}  // namespace tandem::quant
