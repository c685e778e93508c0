// Block sizes, random blocks and quantization round trips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "quant/blocks.h"
#include "core/check.h"
#include "quant/quant.h"

namespace tandem::quant {
namespace {

TEST(Blocks, SizesMatchTheTypeTable) {
    EXPECT_EQ(sizeof(BlockQ4_0), ggml_traits(GgmlType::Q4_0).type_size);
    EXPECT_EQ(sizeof(BlockQ4_1), ggml_traits(GgmlType::Q4_1).type_size);
    EXPECT_EQ(sizeof(BlockQ5_0), ggml_traits(GgmlType::Q5_0).type_size);
    EXPECT_EQ(sizeof(BlockQ5_1), ggml_traits(GgmlType::Q5_1).type_size);
    EXPECT_EQ(sizeof(BlockQ8_0), ggml_traits(GgmlType::Q8_0).type_size);
    EXPECT_EQ(sizeof(BlockQ8_1), ggml_traits(GgmlType::Q8_1).type_size);
    EXPECT_EQ(sizeof(BlockQ2K), ggml_traits(GgmlType::Q2_K).type_size);
    EXPECT_EQ(sizeof(BlockQ3K), ggml_traits(GgmlType::Q3_K).type_size);
    EXPECT_EQ(sizeof(BlockQ4K), ggml_traits(GgmlType::Q4_K).type_size);
    EXPECT_EQ(sizeof(BlockQ5K), ggml_traits(GgmlType::Q5_K).type_size);
    EXPECT_EQ(sizeof(BlockQ6K), ggml_traits(GgmlType::Q6_K).type_size);
    EXPECT_EQ(sizeof(BlockQ8K), ggml_traits(GgmlType::Q8_K).type_size);
    EXPECT_EQ(sizeof(BlockIq2Xxs), ggml_traits(GgmlType::IQ2_XXS).type_size);
    EXPECT_EQ(sizeof(BlockIq2Xs), ggml_traits(GgmlType::IQ2_XS).type_size);
    EXPECT_EQ(sizeof(BlockIq2S), ggml_traits(GgmlType::IQ2_S).type_size);
    EXPECT_EQ(sizeof(BlockIq3Xxs), ggml_traits(GgmlType::IQ3_XXS).type_size);
    EXPECT_EQ(sizeof(BlockIq3S), ggml_traits(GgmlType::IQ3_S).type_size);
    EXPECT_EQ(sizeof(BlockIq1S), ggml_traits(GgmlType::IQ1_S).type_size);
    EXPECT_EQ(sizeof(BlockIq1M), ggml_traits(GgmlType::IQ1_M).type_size);
    EXPECT_EQ(sizeof(BlockIq4Nl), ggml_traits(GgmlType::IQ4_NL).type_size);
    EXPECT_EQ(sizeof(BlockIq4Xs), ggml_traits(GgmlType::IQ4_XS).type_size);
    EXPECT_EQ(sizeof(BlockTq1_0), ggml_traits(GgmlType::TQ1_0).type_size);
    EXPECT_EQ(sizeof(BlockTq2_0), ggml_traits(GgmlType::TQ2_0).type_size);
    EXPECT_EQ(sizeof(BlockMxfp4), ggml_traits(GgmlType::MXFP4).type_size);
}

const std::vector<GgmlType> kAllTypes = {
    GgmlType::F32,    GgmlType::F16,     GgmlType::BF16,   GgmlType::Q4_0,    GgmlType::Q4_1,   GgmlType::Q5_0,
    GgmlType::Q5_1,   GgmlType::Q8_0,    GgmlType::Q8_1,   GgmlType::Q8_K,    GgmlType::Q2_K,   GgmlType::Q3_K,
    GgmlType::Q4_K,   GgmlType::Q5_K,    GgmlType::Q6_K,   GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S,
    GgmlType::IQ3_XXS, GgmlType::IQ3_S,  GgmlType::IQ1_S,  GgmlType::IQ1_M,   GgmlType::IQ4_NL, GgmlType::IQ4_XS,
    GgmlType::TQ1_0,  GgmlType::TQ2_0,   GgmlType::MXFP4};

class PerType : public ::testing::TestWithParam<GgmlType> {};

// Random blocks dequantize to finite values whose largest magnitude is within [scale/8,
// 4*scale]: the fixed-up scale fields land where fill_random promises.
TEST_P(PerType, FillRandomIsFiniteAndSane) {
    const GgmlTypeTraits& t = ggml_traits(GetParam());
    const int64_t n = 64 * 256;
    std::vector<uint8_t> raw(n / t.block_size * t.type_size);
    std::vector<float> y(n);
    for (float scale : {1e-3f, 1.0f, 100.0f}) {
        fill_random(GetParam(), raw, 42, scale);
        dequantize_row(GetParam(), raw.data(), y.data(), n);
        float amax = 0.0f;
        for (float v : y) {
            ASSERT_TRUE(std::isfinite(v)) << t.name;
            amax = std::max(amax, std::fabs(v));
        }
        EXPECT_GE(amax, scale / 8) << t.name << " scale " << scale;
        EXPECT_LE(amax, scale * 4) << t.name << " scale " << scale;
    }
    // Deterministic per seed, different across seeds.
    std::vector<uint8_t> again(raw.size()), other(raw.size());
    fill_random(GetParam(), again, 42, 100.0f);
    fill_random(GetParam(), other, 43, 100.0f);
    EXPECT_EQ(raw, again);
    EXPECT_NE(raw, other);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, PerType, ::testing::ValuesIn(kAllTypes),
                         [](const auto& p) { return std::string(ggml_type_name(p.param)); });

// Quantize -> dequantize of Gaussian data (a weight-like distribution with some outliers).
// Bound: RMS error over RMS value, per format. They follow from the bits per weight: each
// extra bit roughly halves the error; the values here are ~1.5x what the quantizers reach.
struct RoundTrip {
    GgmlType type;
    double max_rel_rms;
};

class QuantRoundTrip : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(QuantRoundTrip, DequantizeOfQuantizeIsClose) {
    const RoundTrip p = GetParam();
    const GgmlTypeTraits& t = ggml_traits(p.type);
    ASSERT_TRUE(can_quantize(p.type));
    const int64_t n = 7168 * 4;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(n);
    for (auto& v : x) v = normal(rng) * 0.02f;
    for (int64_t i = 0; i < n; i += 997) x[i] *= 8.0f;  // outliers
    std::vector<uint8_t> q(n / t.block_size * t.type_size);
    quantize_row(p.type, x.data(), q.data(), n);
    std::vector<float> y(n);
    dequantize_row(p.type, q.data(), y.data(), n);
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; ++i) {
        err += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
        ref += double(x[i]) * x[i];
    }
    const double rel = std::sqrt(err / ref);
    EXPECT_LE(rel, p.max_rel_rms) << t.name;
    RecordProperty("rel_rms", std::to_string(rel));
    std::printf("    %-6s relative RMS error %.4f (bound %.3f)\n", std::string(t.name).c_str(), rel, p.max_rel_rms);

    // All-zero input quantizes to zeros, not NaN.
    std::vector<float> zeros(n, 0.0f);
    quantize_row(p.type, zeros.data(), q.data(), n);
    dequantize_row(p.type, q.data(), y.data(), n);
    for (float v : y) ASSERT_EQ(v, 0.0f) << t.name;
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QuantRoundTrip,
    ::testing::Values(RoundTrip{GgmlType::F32, 0.0}, RoundTrip{GgmlType::F16, 1e-3}, RoundTrip{GgmlType::BF16, 5e-3},
                      RoundTrip{GgmlType::Q8_0, 0.01}, RoundTrip{GgmlType::Q8_K, 0.02},
                      RoundTrip{GgmlType::Q6_K, 0.03}, RoundTrip{GgmlType::Q5_K, 0.05},
                      RoundTrip{GgmlType::Q4_K, 0.10}, RoundTrip{GgmlType::Q4_0, 0.15},
                      RoundTrip{GgmlType::Q3_K, 0.25}, RoundTrip{GgmlType::Q2_K, 0.45}),
    [](const auto& p) { return std::string(ggml_type_name(p.param.type)); });

// Q8_0 element-wise: every value within half a quantization step of the block's f16 scale.
TEST(QuantRoundTrip, Q8_0WithinHalfStep) {
    const int64_t n = 2048;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-3.0f, 3.0f);
    std::vector<float> x(n);
    for (auto& v : x) v = u(rng);
    std::vector<BlockQ8_0> q(n / 32);
    quantize_row(GgmlType::Q8_0, x.data(), q.data(), n);
    std::vector<float> y(n);
    dequantize_row(GgmlType::Q8_0, q.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
        const float d = fp16_to_f32(q[i / 32].d);
        // Half a step, plus the f16 rounding of d (relative 2^-11) times the largest |q| (127).
        EXPECT_LE(std::fabs(y[i] - x[i]), 0.5f * d + 127.0f * d * 0x1.0p-11f) << i;
    }
}

// Q8_K (the activations of the K and IQ formats): quantize_row's vectorized quantizer writes
// the scalar reference's bytes for finite inputs: values at several magnitudes (a block of
// denormals among them), values exactly at half a step (ties to even), a block whose largest
// magnitude is negative, an all-zero block, and blocks that are one constant. A block of
// denormals quantizes to zeros (127 / amax overflows), as an all-zero one; blocks with a NaN or
// an infinity give the same bytes as well.
TEST(Quant, Q8kVectorizedEqualsReference) {
    constexpr int64_t kBlocks = 64, n = kBlocks * 256;
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(n);
    for (int64_t b = 0; b < kBlocks; ++b) {
        const float scale = std::ldexp(1.0f, static_cast<int>(b % 16) * 4 - 40);  // 2^-40 .. 2^20
        for (int64_t i = 0; i < 256; ++i) x[static_cast<size_t>(b * 256 + i)] = normal(rng) * scale;
    }
    for (int64_t i = 0; i < 256; ++i) x[static_cast<size_t>(1 * 256 + i)] = std::ldexp(static_cast<float>(i % 7) - 3.0f, -140);  // denormals
    for (int64_t i = 0; i < 256; ++i) x[static_cast<size_t>(2 * 256 + i)] = 0.0f;
    for (int64_t i = 0; i < 256; ++i) x[static_cast<size_t>(3 * 256 + i)] = -1.5f;
    x[4 * 256 + 17] = -1000.0f;  // largest magnitude negative
    for (int64_t i = 0; i < 256; ++i) x[static_cast<size_t>(5 * 256 + i)] = (static_cast<float>(i) - 127.5f) / 127.0f;  // halves
    x[6 * 256 + 3] = std::numeric_limits<float>::quiet_NaN();  // a broken activation: the same bytes too
    x[7 * 256 + 9] = -std::numeric_limits<float>::infinity();
    std::vector<BlockQ8K> got(kBlocks), want(kBlocks);
    quantize_row(GgmlType::Q8_K, x.data(), got.data(), n);
    quantize_row_q8k_reference(x.data(), want.data(), n);
    for (int i = 0; i < 256; ++i) EXPECT_EQ(got[1].qs[i], 0) << i;
    EXPECT_EQ(got[1].d, 0.0f);
    for (int64_t b = 0; b < kBlocks; ++b) {
        const BlockQ8K& g = got[static_cast<size_t>(b)];
        const BlockQ8K& w = want[static_cast<size_t>(b)];
        ASSERT_EQ(std::memcmp(&g.d, &w.d, sizeof g.d), 0) << "block " << b;  // bits: d is inf for block 7
        for (int i = 0; i < 256; ++i) ASSERT_EQ(g.qs[i], w.qs[i]) << "block " << b << " value " << i;
        for (int i = 0; i < 16; ++i) ASSERT_EQ(g.bsums[i], w.bsums[i]) << "block " << b << " sum " << i;
    }
}

// Q8_K_U2 (IQ1_S_U2's and IQ2_XXS_U3's activations) and Q8_K_U16 (IQ1_M_U2's) are the Q8_K block
// with its values at the weights' positions (a permutation), plus the kernels' starting term
// corr x the 16-value sums.
template <typename Block>
void expect_ordered_q8k(GgmlType type, int (*position)(int), int corr) {
    constexpr int64_t kBlocks = 3, n = kBlocks * 256;
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 11));
    std::vector<BlockQ8K> q(kBlocks);
    // Q8_K_U2's row: its blocks, then their plus terms (quant/blocks.h)
    const uint64_t tail = std::is_same_v<Block, BlockQ8KU2> ? kQ8KU2PlusBytes : 0;
    ASSERT_EQ(ggml_traits(type).type_size, sizeof(Block) + tail);
    std::vector<Block> u(kBlocks + (tail ? kBlocks * tail / sizeof(Block) + 1 : 0));
    std::memset(static_cast<void*>(u.data()), 0xFF, u.size() * sizeof(Block));  // the padding must come back zero
    quantize_row(GgmlType::Q8_K, x.data(), q.data(), n);
    quantize_row(type, x.data(), u.data(), n);
    std::vector<int> seen(256, 0);
    for (int e = 0; e < 256; ++e) ++seen[static_cast<size_t>(position(e))];
    for (int p = 0; p < 256; ++p) ASSERT_EQ(seen[static_cast<size_t>(p)], 1) << "position " << p;
    for (int64_t b = 0; b < kBlocks; ++b) {
        const BlockQ8K& want = q[static_cast<size_t>(b)];
        const Block& got = u[static_cast<size_t>(b)];
        ASSERT_EQ(got.d, want.d);
        for (uint8_t p : got.pad) ASSERT_EQ(p, 0) << "block " << b;
        for (int e = 0; e < 256; ++e) ASSERT_EQ(got.qs[position(e)], want.qs[e]) << "block " << b << " value " << e;
        for (int i = 0; i < 16; ++i) {
            ASSERT_EQ(got.bsums[i], want.bsums[i]);
            ASSERT_EQ(got.corr[i], corr * want.bsums[i]);
            if constexpr (std::is_same_v<Block, BlockQ8KU2>) {  // the plus terms after the row's blocks: lane i's values
                int32_t lane = 0;
                for (int e = 0; e < 256; ++e)
                    if (position(e) % 64 / 4 == i) lane += want.qs[e];
                ASSERT_EQ(q8ku2_plus(u.data(), kBlocks, b)[i], 16 * lane) << "block " << b;
            }
        }
    }
}
TEST(Quant, Q8kInTheRepackedLayoutsOrders) {
    expect_ordered_q8k<BlockQ8KU2>(GgmlType::Q8_K_U2, [](int e) { return u2_position(e); }, -72);
    expect_ordered_q8k<BlockQ8KU16>(GgmlType::Q8_K_U16, [](int e) { return u16_position(e); }, -9);
}

TEST(Quant, RejectsPartialBlocksAndUnknownTypes) {
    std::vector<float> x(48);
    std::vector<uint8_t> out(1024);
    EXPECT_THROW(quantize_row(GgmlType::Q8_0, x.data(), out.data(), 48), Error);
    EXPECT_THROW(quantize_row(GgmlType::IQ1_S, x.data(), out.data(), 256), Error);
    EXPECT_THROW(dequantize_row(GgmlType::Q4_K, out.data(), x.data(), 32), Error);
    EXPECT_THROW(dequantize_row(GgmlType::I32, out.data(), x.data(), 4), Error);
    EXPECT_FALSE(can_dequantize(GgmlType::I8));
}

}  // namespace
}  // namespace tandem::quant
