// The bf16 path (cpu/gemm.h) and its bf16 dequantization, against independent
// references:
//   - quant::dequantize_row_bf16 against the reference dequantizer (itself bit-identical to
//     gguf.quants.dequantize) rounded to bf16: within one bf16 ulp (the fast kernels use one
//     fused multiply-add where the reference rounds twice, so a value a hair from a bf16
//     rounding boundary may land on the other side).
//   - cpu::gemm against a float64 product of the same bf16-rounded weights and activations:
//     the only difference left is float32 accumulation order, bounded by 1e-5 * sum |w x|.
// At R1 shapes (7168, 2048, 576, 1536) with panel and token-group tails, NaN-poisoned outputs.
// Runs on the unit gemm_unit() picks: the tile unit on AMX CPUs, the vector units on CPUs with
// AVX512-BF16 only; scripts/test.sh runs this binary again with TANDEM_GEMM=avx512 so that an
// AMX machine checks both. Skipped on CPUs with neither (the path is never taken there).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/check.h"
#include "cpu/gemm.h"
#include "cpu/gemm_i8.h"
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"
#include "random_floats.h"

namespace tandem::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<uint8_t> random_matrix(GgmlType type, int64_t n_in, int64_t n_out, uint64_t seed) {
    if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) {
        const std::vector<float> f = random_floats(n_in * n_out, seed, 0.05f);
        std::vector<uint8_t> out(quant_row_bytes(type, n_in) * static_cast<uint64_t>(n_out));
        for (size_t i = 0; i < f.size(); ++i) {
            if (type == GgmlType::F32) std::memcpy(out.data() + 4 * i, &f[i], 4);
            const uint16_t h = type == GgmlType::F16 ? quant::f32_to_fp16(f[i]) : quant::f32_to_bf16(f[i]);
            if (type != GgmlType::F32) std::memcpy(out.data() + 2 * i, &h, 2);
        }
        return out;
    }
    std::vector<uint8_t> out(quant_row_bytes(type, n_in) * static_cast<uint64_t>(n_out));
    quant::fill_random(type, out, seed, 0.05f);
    return out;
}

TEST(DequantBf16, EveryFormatWithinOneUlpOfTheReference) {
    if (gemm_unit() == GemmUnit::none) GTEST_SKIP() << "no AMX / AVX512-BF16 on this CPU";
    const int64_t n = 7168;
    for (const GgmlType type :
         {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
          GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
          GgmlType::IQ1_S, GgmlType::IQ1_M, GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS,
          GgmlType::IQ3_S, GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::IQ1_S_U2, GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3,
                                GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16}) {
        SCOPED_TRACE(ggml_type_name(type));
        const std::vector<uint8_t> w = random_matrix(type, n, 1, 3);
        std::vector<float> ref(static_cast<size_t>(n));
        quant::dequantize_row(type, w.data(), ref.data(), n);
        std::vector<uint16_t> got(static_cast<size_t>(n) + 8, 0xFFFF);  // 0xFFFF: a NaN, past the end too
        quant::dequantize_row_bf16(type, w.data(), got.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            const float want = quant::bf16_to_f32(quant::f32_to_bf16(ref[static_cast<size_t>(i)]));
            const float g = quant::bf16_to_f32(got[static_cast<size_t>(i)]);
            ASSERT_LE(std::fabs(g - want), std::ldexp(std::fabs(want), -7)) << "value " << i << ": " << g << " vs " << want;
        }
        for (size_t i = static_cast<size_t>(n); i < got.size(); ++i) ASSERT_EQ(got[i], 0xFFFF) << "wrote past the row";
    }
}

void check_gemm(ThreadPool& pool, GgmlType type, int64_t n_in, int64_t n_out, int64_t n_tok) {
    SCOPED_TRACE(::testing::Message() << ggml_type_name(type) << " " << n_in << "->" << n_out << " x" << n_tok);
    ASSERT_TRUE(gemm_supports(type, n_in));
    const uint64_t rb = quant_row_bytes(type, n_in);
    const std::vector<uint8_t> w = random_matrix(type, n_in, n_out, 7);
    const std::vector<float> x = random_floats(n_in * n_tok, 11, 1.0f);
    GemmScratch scratch;
    std::vector<float> y(static_cast<size_t>(n_tok * n_out), kNaN);
    gemm(pool, type, w.data(), rb, n_in, n_out, x.data(), n_tok, y.data(), scratch);  // at any n_tok: the path itself
    // Tile loads of rows that straddle cache lines run 2-7x slower (core/aligned.h).
    const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; };
    EXPECT_TRUE(aligned(scratch.packed.data()));
    for (const PanelScratch& ps : scratch.threads) EXPECT_TRUE(ps.chunk.empty() || (aligned(ps.chunk.data()) && aligned(ps.acc.data())));

    // Reference: bf16-rounded reference weights and activations, float64 sums.
    std::vector<float> wf(static_cast<size_t>(n_in)), wr(static_cast<size_t>(n_in * n_out));
    for (int64_t o = 0; o < n_out; ++o) {
        quant::dequantize_row(type, w.data() + static_cast<uint64_t>(o) * rb, wf.data(), n_in);
        for (int64_t i = 0; i < n_in; ++i) wr[static_cast<size_t>(o * n_in + i)] = quant::bf16_to_f32(quant::f32_to_bf16(wf[static_cast<size_t>(i)]));
    }
    for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t o = 0; o < n_out; ++o) {
            double s = 0, mag = 0;
            for (int64_t i = 0; i < n_in; ++i) {
                const double p = static_cast<double>(wr[static_cast<size_t>(o * n_in + i)]) *
                                 quant::bf16_to_f32(quant::f32_to_bf16(x[static_cast<size_t>(t * n_in + i)]));
                s += p;
                mag += std::fabs(p);
            }
            // One bf16 ulp of slack per term covers a weight the fast dequantizer rounded the
            // other way; float32 accumulation adds ~1e-6 * mag.
            const double tol = 1e-5 * mag + 1e-30;
            const float got = y[static_cast<size_t>(t * n_out + o)];
            ASSERT_TRUE(std::isfinite(got)) << "token " << t << " row " << o;
            ASSERT_NEAR(got, s, tol + std::ldexp(mag, -8) * (quant::has_fast_bf16_dequant(type) ? 0.05 : 0.0))
                << "token " << t << " row " << o;
        }
    }
}

TEST(Gemm, R1ShapesAgainstFloat64OnBf16Inputs) {
    if (gemm_unit() == GemmUnit::none) GTEST_SKIP() << "no AMX / AVX512-BF16 on this CPU";
    ThreadPool pool(3);
    check_gemm(pool, GgmlType::IQ1_S, 7168, 70, 16);    // panel tail of 6 rows
    check_gemm(pool, GgmlType::IQ2_XXS, 2048, 64, 33);  // token-group tail of 1
    check_gemm(pool, GgmlType::Q4_K, 7168, 40, 4);      // fewest tokens, one partial group
    check_gemm(pool, GgmlType::Q6_K, 1536, 96, 48);     // three whole groups (2 + 1)
    check_gemm(pool, GgmlType::Q8_0, 576, 33, 21);
    check_gemm(pool, GgmlType::Q2_K, 512, 32, 5);
    check_gemm(pool, GgmlType::BF16, 64, 17, 64);
    check_gemm(pool, GgmlType::IQ4_XS, 256, 3, 7);      // through the reference dequantizer
    // 26 panels on 3 threads: work items of 4 panels sharing each activation chunk, the last
    // item 2 panels of which the second has 7 rows; 3 token groups, one of 5 tokens.
    check_gemm(pool, GgmlType::Q4_K, 1024, 32 * 25 + 7, 37);
    check_gemm(pool, GgmlType::IQ1_S, 512, 32 * 24, 16);  // 4-panel items, one token group
}

// The chunk width (GemmScratch::max_chunk, which bench_cpu varies) only changes where the C
// tiles are stored and reloaded between chunks, not the order of the sums: the same bits at
// 128, 256 and 512 values, for 20 and 80 tokens.
TEST(Gemm, ChunkWidthDoesNotChangeTheBits) {
    if (gemm_unit() == GemmUnit::none) GTEST_SKIP() << "no AMX / AVX512-BF16 on this CPU";
    ThreadPool pool(2);
    const int64_t n_in = 2048, n_out = 96;
    const uint64_t rb = quant_row_bytes(GgmlType::Q5_K, n_in);
    const std::vector<uint8_t> w = random_matrix(GgmlType::Q5_K, n_in, n_out, 17);
    for (const int64_t n_tok : {int64_t{20}, int64_t{80}}) {
        const std::vector<float> x = random_floats(n_in * n_tok, 19, 1.0f);
        std::vector<float> ys[3];
        const int64_t widths[3] = {128, 256, 512};
        for (int i = 0; i < 3; ++i) {
            GemmScratch scratch;
            scratch.max_chunk = widths[i];
            ys[i].assign(static_cast<size_t>(n_tok * n_out), kNaN);
            gemm(pool, GgmlType::Q5_K, w.data(), rb, n_in, n_out, x.data(), n_tok, ys[i].data(), scratch);
        }
        for (size_t j = 0; j < ys[0].size(); ++j) {
            ASSERT_EQ(ys[0][j], ys[2][j]) << n_tok << " tokens, element " << j << ": 128 against 512";
            ASSERT_EQ(ys[1][j], ys[2][j]) << n_tok << " tokens, element " << j << ": 256 against 512";
        }
    }
}

TEST(Gemm, FloatWeightsKeepTheirPrecision) {
    EXPECT_FALSE(gemm_applies(GgmlType::F32, 7168, 64));
    EXPECT_FALSE(gemm_applies(GgmlType::F16, 7168, 64));
    EXPECT_FALSE(gemm_applies(GgmlType::Q4_K, 7168, gemm_min_tokens(GgmlType::Q4_K) - 1));
    EXPECT_EQ(gemm_applies(GgmlType::Q4_K, 7168, gemm_min_tokens(GgmlType::Q4_K)),
              gemm_unit() != GemmUnit::none || i8_gemm_supports(GgmlType::Q4_K));
    EXPECT_FALSE(gemm_applies(GgmlType::Q8_0, 48, 64));  // rows not a whole number of tile steps
}

TEST(Gemm, PackedActivationsFollowTheTileLayout) {
    if (gemm_unit() == GemmUnit::none) GTEST_SKIP() << "no AMX / AVX512-BF16 on this CPU";
    // Token t, value i -> word [t / 16][i / 2][t % 16], half i % 2; tokens past n_tok are zero.
    const int64_t n_tok = 19, n_in = 64;
    std::vector<float> x(static_cast<size_t>(n_tok * n_in));
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t i = 0; i < n_in; ++i) x[static_cast<size_t>(t * n_in + i)] = static_cast<float>(t * 100 + i);
    std::vector<uint16_t> packed(packed_acts_size(n_tok, n_in), 0xFFFF);
    ASSERT_EQ(packed.size(), static_cast<size_t>(2 * 16 * n_in));
    pack_acts(x.data(), n_in, nullptr, n_tok, n_in, packed.data());
    for (int64_t t = 0; t < 32; ++t)
        for (int64_t i = 0; i < n_in; ++i) {
            const size_t at = static_cast<size_t>(((t / 16) * (n_in / 2) + i / 2) * 32 + (t % 16) * 2 + i % 2);
            const float want = t < n_tok ? quant::bf16_to_f32(quant::f32_to_bf16(static_cast<float>(t * 100 + i))) : 0.0f;
            ASSERT_EQ(quant::bf16_to_f32(packed[at]), want) << "token " << t << " value " << i;
        }
}

// The int8 panel product (cpu/gemm_i8.h) forms, per 256-block, the integers of the per-token
// dot kernel from the same Q8_K activations, so each result equals quant::vec_dot's up to
// float32 summation order: within 1e-5 * sum |w x| of the dequantized weights and the
// activations. Token-group and row tails (5, 8, 12, 17, 28, 33, 70 tokens: a last group of 8
// or fewer is a half group on the AVX-512 vector units; 13 rows), the packing's
// token indirection (a reversed order), poisoned packed activations and unpacked-weight
// scratch, and one scratch reused from a full panel to a partial one (its padding rows must be
// cleared). Packing from Q8_K rows (pack_q8k_i8) gives the same bytes as from floats.
void expect_i8_matches_per_token(GgmlType type) {
    for (const int64_t n_in : {int64_t{256}, int64_t{768}, int64_t{2048}, int64_t{7168}}) {
        const std::vector<uint8_t> w = random_matrix(type, n_in, kPanelRows, 7);
        const uint64_t rb = quant_row_bytes(type, n_in);
        std::vector<float> wf(static_cast<size_t>(n_in * kPanelRows));
        for (int64_t r = 0; r < kPanelRows; ++r) quant::dequantize_row(type, w.data() + r * rb, wf.data() + r * n_in, n_in);
        for (const int64_t n_tok :
             {int64_t{1}, int64_t{5}, int64_t{8}, int64_t{12}, int64_t{16}, int64_t{17}, int64_t{28}, int64_t{33}, int64_t{70}}) {
            std::vector<float> x = random_floats(n_tok * n_in, 11 + static_cast<uint64_t>(n_tok), 1.0f);
            for (size_t i = 0; i < x.size(); i += 997) x[i] *= 20.0f;  // outliers
            std::vector<int32_t> rows(static_cast<size_t>(n_tok));
            for (int64_t t = 0; t < n_tok; ++t) rows[static_cast<size_t>(t)] = static_cast<int32_t>(n_tok - 1 - t);
            std::vector<uint8_t> packed(packed_acts_i8_bytes(n_tok, n_in), 0xFF);
            pack_acts_i8(type, x.data(), n_in, rows.data(), n_tok, n_in, packed.data());
            const GgmlType act = quant::vec_dot_type(type);  // Q8_K, or Q8_K_U2 / Q8_K_U16 for the group-major formats
            const uint64_t q8_row = quant_row_bytes(act, n_in);
            std::vector<uint8_t> q8(q8_row * static_cast<uint64_t>(n_tok)), packed_q8(packed.size(), 0xFF);
            std::vector<const void*> q8_rows;
            for (int64_t t = 0; t < n_tok; ++t) {
                quant::quantize_row(act, x.data() + int64_t{rows[static_cast<size_t>(t)]} * n_in, q8.data() + t * q8_row, n_in);
                q8_rows.push_back(q8.data() + t * q8_row);
            }
            pack_q8k_i8(type, q8_rows.data(), n_tok, n_in, packed_q8.data());
            ASSERT_EQ(packed_q8, packed);
            PanelScratch ps;
            for (const int64_t n_rows : {kPanelRows, int64_t{13}}) {
                SCOPED_TRACE(::testing::Message() << n_in << " x " << n_rows << ", " << n_tok << " tokens");
                std::fill(ps.i8_blocks.begin(), ps.i8_blocks.end(), uint8_t{0xFF});  // NaN scales, large bytes
                float* out = ps.out_for(n_tok);
                std::fill_n(out, n_tok * kPanelRows, kNaN);
                panel_gemm_i8(type, w.data(), rb, n_rows, n_in, packed.data(), n_tok, out, ps);
                std::vector<uint8_t> xq(quant_row_bytes(act, n_in));
                for (int64_t t = 0; t < n_tok; ++t) {
                    const float* xt = x.data() + int64_t{rows[static_cast<size_t>(t)]} * n_in;
                    quant::quantize_row(act, xt, xq.data(), n_in);
                    for (int64_t r = 0; r < n_rows; ++r) {
                        double abs_dot = 0;
                        for (int64_t i = 0; i < n_in; ++i) abs_dot += std::fabs(double(wf[static_cast<size_t>(r * n_in + i)]) * xt[i]);
                        const float ref = quant::vec_dot(type, w.data() + r * rb, xq.data(), n_in);
                        const float got = out[t * kPanelRows + r];
                        ASSERT_TRUE(std::isfinite(got)) << "token " << t << " row " << r;
                        ASSERT_NEAR(got, ref, 1e-5 * abs_dot) << "token " << t << " row " << r;
                    }
                }
            }
        }
    }
}

TEST(GemmI8, MatchesThePerTokenDotsWithinFloatRounding) {
    int tested = 0;
    for (const GgmlType type : {GgmlType::IQ1_S_U2, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ1_S,
                                GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3,
                                GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16}) {
        SCOPED_TRACE(ggml_type_name(type));
        if (!i8_gemm_supports(type)) {
            std::printf("    %s: no int8 product on this CPU's unit, not tested here\n", std::string(ggml_type_name(type)).c_str());
            continue;
        }
        ++tested;
        expect_i8_matches_per_token(type);
    }
    if (tested == 0) GTEST_SKIP() << "no int8 products on this CPU's unit";
}

// The packed activations (cpu/gemm_i8.h's layout), byte for byte from each token's Q8_K row:
// 21 tokens are a 16-lane group (a lane of 4 bytes per token) and, for the AVX-512 vector
// units, a half group of 5 tokens and 3 zero lanes (8 bytes per token: two quads, two pairs of
// sums); for the other units a second 16-lane group. The values go in natural order, or for
// IQ1_S_U2 on the AVX-512 and tile units in its weight order (value e at u2_position(e)).
void expect_packing_layout(GgmlType type, I8Unit unit, bool u2_order) {
    const int64_t n_in = 512, nb = 2, n_tok = 21;
    const bool half = unit == I8Unit::avx512;
    const std::vector<float> x = random_floats(n_tok * n_in, 77, 1.0f);
    std::vector<uint8_t> packed(packed_acts_i8_bytes(n_tok, n_in), 0xEE);
    pack_acts_i8(type, x.data(), n_in, nullptr, n_tok, n_in, packed.data(), unit);
    const int64_t sums_at = 4096, sums16_at = sums_at + 256, scales_at = sums16_at + 512;
    std::vector<quant::BlockQ8K> q(static_cast<size_t>(nb));
    for (int64_t t = 0; t < 32; ++t) {
        const int64_t g = t / 16, lane = t % 16;
        const bool in_half = half && g == 1;
        if (in_half && lane >= 8) continue;  // not part of the half group
        const int64_t width = in_half ? 8 : 4;  // bytes per token per register row
        if (t < n_tok) quant::quantize_row(GgmlType::Q8_K, x.data() + t * n_in, q.data(), n_in);
        else std::fill(q.begin(), q.end(), quant::BlockQ8K{});
        for (int64_t k = 0; k < nb; ++k) {
            SCOPED_TRACE(::testing::Message() << "token " << t << " block " << k);
            const quant::BlockQ8K& b = q[static_cast<size_t>(k)];
            const uint8_t* blk = packed.data() + (g * nb + k) * kI8BlockBytes;
            int16_t sums32[8];
            for (int j = 0; j < 8; ++j) sums32[j] = static_cast<int16_t>(b.bsums[2 * j] + b.bsums[2 * j + 1]);
            for (int64_t e = 0; e < 256; ++e) {  // packed value i: row i / width, byte i % width of the token's piece
                const int64_t i = u2_order ? quant::u2_position(static_cast<int>(e)) : e;
                ASSERT_EQ(static_cast<int8_t>(blk[(i / width) * 64 + lane * width + i % width]), b.qs[e]) << "value " << e;
            }
            for (int64_t j = 0; j < 8; ++j) {
                int16_t got;
                std::memcpy(&got, blk + sums_at + (2 * j / width) * 64 + lane * width + (2 * j) % width, 2);
                ASSERT_EQ(got, sums32[j]) << "32-value sum " << j;
            }
            for (int64_t j = 0; j < 16; ++j) {
                int16_t got;
                std::memcpy(&got, blk + sums16_at + (2 * j / width) * 64 + lane * width + (2 * j) % width, 2);
                ASSERT_EQ(got, b.bsums[j]) << "16-value sum " << j;
            }
            float d;
            std::memcpy(&d, blk + scales_at + lane * 4, 4);
            ASSERT_EQ(d, b.d);
        }
    }
}

TEST(GemmI8, PackedActivationsFollowTheLayout) {
    expect_packing_layout(GgmlType::Q4_K, i8_unit(), false);
    expect_packing_layout(GgmlType::IQ1_S_U2, I8Unit::avx2, false);  // AVX2 products: natural order
    expect_packing_layout(GgmlType::IQ1_M_U2, i8_unit(), false);      // from Q8_K_U16 rows: natural order
    expect_packing_layout(GgmlType::Q2_K_U16, i8_unit(), false);      // the same
    expect_packing_layout(GgmlType::Q3_K_U16, i8_unit(), false);
    expect_packing_layout(GgmlType::IQ2_XXS_U3, i8_unit(), false);    // from Q8_K_U2 rows: natural order
    if (i8_unit() == I8Unit::avx512 || i8_unit() == I8Unit::amx) expect_packing_layout(GgmlType::IQ1_S_U2, i8_unit(), true);
}

// On the AVX-512 vector units a last token group of 8 or fewer tokens is packed and multiplied
// in its own form (two lanes per token, cpu/gemm_i8.cpp's kHalf) from the same integers and
// float steps: tokens 0-4 give the same bits as a group of 5 as they do among 13. (The other
// units have no half groups: there tokens 0-4 take the same lanes either way.)
TEST(GemmI8, HalfGroupGivesTheSameBitsAsAFullGroup) {
    const int64_t n_in = 2048;
    int tested = 0;
    for (const GgmlType type : {GgmlType::IQ1_S_U2, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ1_S,
                                GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3,
                                GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16}) {
        SCOPED_TRACE(ggml_type_name(type));
        if (!i8_gemm_supports(type)) continue;
        ++tested;
        const std::vector<uint8_t> w = random_matrix(type, n_in, kPanelRows, 41);
        const uint64_t rb = quant_row_bytes(type, n_in);
        const std::vector<float> x = random_floats(13 * n_in, 43, 1.0f);
        std::vector<float> outs[2];
        for (const int64_t n_tok : {int64_t{5}, int64_t{13}}) {
            std::vector<uint8_t> packed(packed_acts_i8_bytes(n_tok, n_in), 0xFF);
            pack_acts_i8(type, x.data(), n_in, nullptr, n_tok, n_in, packed.data());
            PanelScratch ps;
            float* out = ps.out_for(n_tok);
            panel_gemm_i8(type, w.data(), rb, kPanelRows, n_in, packed.data(), n_tok, out, ps);
            outs[n_tok == 13].assign(out, out + 5 * kPanelRows);
        }
        for (int64_t i = 0; i < 5 * kPanelRows; ++i)
            ASSERT_EQ(outs[0][static_cast<size_t>(i)], outs[1][static_cast<size_t>(i)])
                << "token " << i / kPanelRows << " row " << i % kPanelRows;
    }
    if (tested == 0) GTEST_SKIP() << "no int8 products on this CPU's unit";
}

// The two vector units form the same integers and take the same float steps, so on an AVX-512
// CPU the AVX2 product gives the AVX-512 one's bits: 37 tokens (two 16-token groups and, on
// AVX-512, a half group of 5), 32 and 13 rows of 7168.
TEST(GemmI8, Avx2AndAvx512GiveTheSameBits) {
    if (i8_unit() != I8Unit::avx512) GTEST_SKIP() << "needs the AVX-512 int8 products (not this CPU's unit)";
    const int64_t n_in = 7168, n_tok = 37;
    std::vector<float> x = random_floats(n_tok * n_in, 53, 1.0f);
    for (size_t i = 0; i < x.size(); i += 613) x[i] *= 25.0f;
    for (const GgmlType type : {GgmlType::IQ1_S_U2, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ1_S,
                                GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3,
                                GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16}) {
        SCOPED_TRACE(ggml_type_name(type));
        const std::vector<uint8_t> w = random_matrix(type, n_in, kPanelRows, 51);
        const uint64_t rb = quant_row_bytes(type, n_in);
        for (const int64_t n_rows : {kPanelRows, int64_t{13}}) {
            std::vector<uint32_t> bits[2];
            for (const I8Unit unit : {I8Unit::avx512, I8Unit::avx2}) {
                std::vector<uint8_t> packed(packed_acts_i8_bytes(n_tok, n_in), 0xFF);
                pack_acts_i8(type, x.data(), n_in, nullptr, n_tok, n_in, packed.data(), unit);
                PanelScratch ps;
                float* out = ps.out_for(n_tok);
                panel_gemm_i8(type, w.data(), rb, n_rows, n_in, packed.data(), n_tok, out, ps, unit);
                std::vector<uint32_t>& b = bits[unit == I8Unit::avx2];
                for (int64_t t = 0; t < n_tok; ++t)
                    for (int64_t r = 0; r < n_rows; ++r) {
                        uint32_t v;
                        std::memcpy(&v, out + t * kPanelRows + r, 4);
                        b.push_back(v);
                    }
            }
            for (size_t i = 0; i < bits[0].size(); ++i)
                ASSERT_EQ(bits[0][i], bits[1][i]) << n_rows << " rows: token " << i / n_rows << " row " << i % n_rows;
        }
    }
}

// A unit asked for explicitly that this CPU lacks is an error, not an illegal instruction; so is
// a format the unit does not take (Q4_K on the tile unit, Q8_0 anywhere).
TEST(GemmI8, RejectsWhatThisCpuCannotRun) {
    const int64_t n_in = 256, n_tok = 4;
    const std::vector<uint8_t> w = random_matrix(GgmlType::IQ1_S_U2, n_in, kPanelRows, 3);
    const std::vector<float> x = random_floats(n_tok * n_in, 5, 1.0f);
    std::vector<uint8_t> packed(packed_acts_i8_bytes(n_tok, n_in));
    pack_acts_i8(GgmlType::IQ1_S_U2, x.data(), n_in, nullptr, n_tok, n_in, packed.data(), I8Unit::avx2);
    PanelScratch ps;
    float* out = ps.out_for(n_tok);
    const uint64_t rb = quant_row_bytes(GgmlType::IQ1_S_U2, n_in);
    if (!amx_int8_available()) {
        EXPECT_THROW(panel_gemm_i8(GgmlType::IQ1_S_U2, w.data(), rb, kPanelRows, n_in, packed.data(), n_tok, out, ps, I8Unit::amx), Error);
    }
    if (quant::active_isa() != quant::Isa::Avx512Vnni) {
        EXPECT_THROW(panel_gemm_i8(GgmlType::IQ1_S_U2, w.data(), rb, kPanelRows, n_in, packed.data(), n_tok, out, ps, I8Unit::avx512), Error);
    }
    EXPECT_FALSE(i8_gemm_supports(GgmlType::Q4_K, I8Unit::amx));
    EXPECT_FALSE(i8_gemm_supports(GgmlType::Q8_0, I8Unit::avx2));
    EXPECT_FALSE(i8_gemm_supports(GgmlType::IQ1_S_U2, I8Unit::none));
    const std::vector<uint8_t> w8 = random_matrix(GgmlType::Q8_0, n_in, kPanelRows, 3);
    EXPECT_THROW(panel_gemm_i8(GgmlType::Q8_0, w8.data(), quant_row_bytes(GgmlType::Q8_0, n_in), kPanelRows, n_in, packed.data(),
                               n_tok, out, ps, I8Unit::avx2),
                 Error);
}

// Every weight at its format's largest unpacked value against activations at +-127, all of one
// sign per token: the most the AVX2 path's int16 sums (a chain of quads per group) can reach.
// A chain one quad too long for Q6_K (3 x 2 x 63 x 127 > 32767) or for IQ2_XXS would overflow.
// The entry of a grid of 8-byte entries with the largest sum of bytes.
int largest_entry(const uint64_t* grid, int n) {
    int top = 0, top_sum = 0;
    for (int i = 0; i < n; ++i) {
        int sum = 0;
        for (int e = 0; e < 8; ++e) sum += static_cast<int>(grid[i] >> (8 * e) & 0xFF);
        if (sum > top_sum) top = i, top_sum = sum;
    }
    return top;
}

void saturate_weights(GgmlType type, std::vector<uint8_t>& w) {
    const uint64_t block = ggml_traits(type).type_size;
    for (uint64_t at = 0; at + block <= w.size(); at += block) {
        uint8_t* b = w.data() + at;
        if (type == GgmlType::Q4_K) std::memset(reinterpret_cast<quant::BlockQ4K*>(b)->qs, 0xFF, 128);
        if (type == GgmlType::Q2_K) std::memset(reinterpret_cast<quant::BlockQ2K*>(b)->qs, 0xFF, 64);
        if (type == GgmlType::IQ1_S_U2) {
            std::memset(reinterpret_cast<quant::BlockIq1SU2*>(b)->qs, 0xAA, 64);  // u = 2
            std::memset(reinterpret_cast<quant::BlockIq1SU2*>(b)->sc, 0x77, 4);   // scale 7, delta +
        }
        if (type == GgmlType::IQ1_S) {
            // The grid entry with the largest u, scale 7 in every group (qh bits 12..14).
            const int top = largest_entry(quant::kIq1sGridU.data(), 2048);
            auto& blk = *reinterpret_cast<quant::BlockIq1S*>(b);
            std::memset(blk.qs, top & 0xFF, 32);
            for (uint16_t& qh : blk.qh) qh = static_cast<uint16_t>(0x7000 | (top >> 8) * 0x249);  // the 3 high bits x 4
        }
        if (type == GgmlType::Q6_K) {
            std::memset(reinterpret_cast<quant::BlockQ6K*>(b)->ql, 0xFF, 128);
            std::memset(reinterpret_cast<quant::BlockQ6K*>(b)->qh, 0xFF, 64);
        }
        if (type == GgmlType::Q3_K) {
            std::memset(reinterpret_cast<quant::BlockQ3K*>(b)->qs, 0xFF, 64);
            std::memset(reinterpret_cast<quant::BlockQ3K*>(b)->hmask, 0xFF, 32);
        }
        if (type == GgmlType::IQ2_XXS) {
            // The grid entry with the largest values (no entry is all 43s), unsigned (sign index
            // 0); each group keeps its scale.
            const int top = largest_entry(quant::kIq2xxsGrid, 256);
            auto* qs = reinterpret_cast<uint8_t*>(reinterpret_cast<quant::BlockIq2Xxs*>(b)->qs);
            for (int g = 0; g < 8; ++g) {
                std::memset(qs + 8 * g, top, 4);  // four grid indices
                qs[8 * g + 4] = qs[8 * g + 5] = qs[8 * g + 6] = 0;
                qs[8 * g + 7] &= 0xF0;
            }
        }
    }
}

TEST(GemmI8, FullScaleWeightsAndActivations) {
    const int64_t n_in = 2048, n_tok = 16;
    std::vector<float> x(static_cast<size_t>(n_tok * n_in));
    for (int64_t t = 0; t < n_tok; ++t)  // tokens 0-7 at +127, 8-15 at -127 (one 8-lane half each on AVX2)
        for (int64_t i = 0; i < n_in; ++i) x[static_cast<size_t>(t * n_in + i)] = t < 8 ? 1.0f : -1.0f;
    // This CPU's unit, and the AVX2 products (which every CPU here runs) where that is another.
    std::vector<I8Unit> units = {I8Unit::avx2};
    if (i8_unit() != I8Unit::none && i8_unit() != I8Unit::avx2) units.push_back(i8_unit());
    for (const I8Unit unit : units)
        for (const GgmlType type : {GgmlType::IQ1_S_U2, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ1_S,
                                GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3,
                                GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16}) {
            SCOPED_TRACE(::testing::Message() << ggml_type_name(type) << ", unit " << static_cast<int>(unit));
            if (!i8_gemm_supports(type, unit)) continue;
            std::vector<uint8_t> w = random_matrix(type, n_in, kPanelRows, 61);
            saturate_weights(type, w);
            const uint64_t rb = quant_row_bytes(type, n_in);
            std::vector<uint8_t> packed(packed_acts_i8_bytes(n_tok, n_in));
            pack_acts_i8(type, x.data(), n_in, nullptr, n_tok, n_in, packed.data(), unit);
            PanelScratch ps;
            float* out = ps.out_for(n_tok);
            panel_gemm_i8(type, w.data(), rb, kPanelRows, n_in, packed.data(), n_tok, out, ps, unit);
            const GgmlType act = quant::vec_dot_type(type);  // Q8_K, or Q8_K_U2 / Q8_K_U16 (q at byte 0)
            std::vector<uint8_t> xq(quant_row_bytes(act, n_in));
            std::vector<float> wf(static_cast<size_t>(n_in));
            for (int64_t t = 0; t < n_tok; ++t) {
                quant::quantize_row(act, x.data() + t * n_in, xq.data(), n_in);
                const int8_t q0 = act == GgmlType::Q8_K ? reinterpret_cast<const quant::BlockQ8K*>(xq.data())->qs[0]
                                                        : reinterpret_cast<const quant::BlockQ8KU2*>(xq.data())->qs[0];
                ASSERT_EQ(q0, t < 8 ? 127 : -127);
                for (int64_t r = 0; r < kPanelRows; ++r) {
                    quant::dequantize_row(type, w.data() + r * rb, wf.data(), n_in);
                    double abs_dot = 0;
                    for (float v : wf) abs_dot += std::fabs(double(v));
                    ASSERT_NEAR(out[t * kPanelRows + r], quant::vec_dot(type, w.data() + r * rb, xq.data(), n_in), 1e-5 * abs_dot)
                        << "token " << t << " row " << r;
                }
            }
        }
}

// cpu::matmul takes the int8 product where its tile path applies to a format that has one
// (cpu::gemm_i8: the tokens packed per group in parallel, 32-row panels over the pool): every
// (token, row) against the per-token dot within 1e-5 * sum |w x|, with an output row tail (71
// rows), a partial last token group (50 tokens), 3 threads and a NaN-poisoned output.
TEST(GemmI8, MatmulTakesItForFormatsThatHaveOne) {
    ThreadPool pool(3);
    const int64_t n_in = 2048, n_out = 71, n_tok = 50;
    int tested = 0;
    for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ2_XXS, GgmlType::IQ1_S_U2, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ1_S,
                                GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3,
                                GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16}) {
        SCOPED_TRACE(ggml_type_name(type));
        if (!i8_gemm_supports(type) || !gemm_applies(type, n_in, n_tok)) continue;
        ++tested;
        const std::vector<uint8_t> w = random_matrix(type, n_in, n_out, 31);
        const uint64_t rb = quant_row_bytes(type, n_in);
        std::vector<float> x = random_floats(n_tok * n_in, 32, 1.0f);
        for (size_t i = 0; i < x.size(); i += 757) x[i] *= 15.0f;
        std::vector<float> y(static_cast<size_t>(n_tok * n_out), kNaN), wf(static_cast<size_t>(n_in));
        MatmulScratch ms;
        matmul(pool, type, w.data(), rb, n_in, n_out, x.data(), n_tok, y.data(), ms);
        const GgmlType act = quant::vec_dot_type(type);
        std::vector<uint8_t> xq(quant_row_bytes(act, n_in));
        for (int64_t t = 0; t < n_tok; ++t) {
            quant::quantize_row(act, x.data() + t * n_in, xq.data(), n_in);
            for (int64_t o = 0; o < n_out; ++o) {
                quant::dequantize_row(type, w.data() + o * rb, wf.data(), n_in);
                double abs_dot = 0;
                for (int64_t i = 0; i < n_in; ++i) abs_dot += std::fabs(double(wf[static_cast<size_t>(i)]) * x[static_cast<size_t>(t * n_in + i)]);
                const float got = y[static_cast<size_t>(t * n_out + o)];
                ASSERT_TRUE(std::isfinite(got)) << "token " << t << " row " << o;
                ASSERT_NEAR(got, quant::vec_dot(type, w.data() + o * rb, xq.data(), n_in), 1e-5 * abs_dot)
                    << "token " << t << " row " << o;
            }
        }
    }
    if (tested == 0) GTEST_SKIP() << "no format takes the int8 product in cpu::matmul on this CPU";
}

}  // namespace
}  // namespace tandem::cpu
