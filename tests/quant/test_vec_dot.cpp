// Dot products: every SIMD kernel against the scalar reference, and the scalar reference
// against a float64 dot of the dequantized weights with the unquantized activations.
//
// Shapes are R1's: rows of 7168 (hidden) and 2048 (expert width). Weight and activation rows
// sit in buffers with a poisoned block after them (0xff bytes: NaN scales), so a kernel that
// reads past n returns NaN and fails.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"
#include "quant/vec_dot_impl.h"

namespace tandem::quant {
namespace {

const std::vector<GgmlType> kDotTypes = {
    GgmlType::F32,     GgmlType::F16,    GgmlType::BF16,    GgmlType::Q4_0,  GgmlType::Q4_1,  GgmlType::Q5_0,
    GgmlType::Q5_1,    GgmlType::Q8_0,   GgmlType::Q8_1,    GgmlType::Q8_K,  GgmlType::Q2_K,  GgmlType::Q3_K,
    GgmlType::Q4_K,    GgmlType::Q5_K,   GgmlType::Q6_K,    GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S,
    GgmlType::IQ3_XXS, GgmlType::IQ3_S,  GgmlType::IQ1_S,   GgmlType::IQ1_M, GgmlType::IQ4_NL, GgmlType::IQ4_XS,
    GgmlType::TQ1_0,   GgmlType::TQ2_0,  GgmlType::MXFP4, GgmlType::IQ1_S_U2, GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3, GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16};

size_t row_bytes(GgmlType type, int64_t n) {
    const GgmlTypeTraits& t = ggml_traits(type);
    return static_cast<size_t>(n / t.block_size) * t.type_size;
}

// A row of `type` followed by one poisoned block.
struct Row {
    std::vector<uint8_t> bytes;
    const void* data() const { return bytes.data(); }
};

Row poisoned_row(GgmlType type, int64_t n) {
    const GgmlTypeTraits& t = ggml_traits(type);
    Row r;
    r.bytes.assign(row_bytes(type, n) + t.type_size * (t.block_size == 1 ? 32 : 1), 0xff);
    return r;
}

struct Case {
    int64_t n;
    std::vector<float> w;   // [n] dequantized weights
    std::vector<float> x;   // [n] activations, unquantized
    Row wq;                 // weights as blocks of the type
    Row xq;                 // activations as blocks of vec_dot_type
};

// full_scale: every activation +-1 (random signs), so every quantized activation is +-127,
// the largest products the kernels' 16-bit intermediates must hold without saturating.
Case make_case(GgmlType type, int64_t n, uint64_t seed, bool full_scale = false) {
    Case c;
    c.n = n;
    c.wq = poisoned_row(type, n);
    fill_random(type, std::span<uint8_t>(c.wq.bytes.data(), row_bytes(type, n)), seed, 0.05f);
    c.w.resize(n);
    dequantize_row(type, c.wq.data(), c.w.data(), n);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    c.x.resize(n);
    for (auto& v : c.x) v = normal(rng);
    for (int64_t i = 0; i < n; i += 613) c.x[i] *= 10.0f;  // activation outliers, as in real models
    if (full_scale)
        for (auto& v : c.x) v = v < 0 ? -1.0f : 1.0f;
    const GgmlType at = vec_dot_type(type);
    c.xq = poisoned_row(at, n);
    quantize_row(at, c.x.data(), c.xq.bytes.data(), n);
    return c;
}

// Sum of |w * x|: the scale against which float rounding is measured.
double abs_dot(const Case& c) {
    double s = 0;
    for (int64_t i = 0; i < c.n; ++i) s += std::fabs(double(c.w[i]) * c.x[i]);
    return s;
}

class VecDot : public ::testing::TestWithParam<GgmlType> {};

// Scalar vs float64 of dequantized weights and unquantized activations. The activations'
// quantization moves each x by at most c * d_block (round to nearest: c = 1/2; Q8_0 also
// rounds d to f16, which adds up to 127 * 2^-11 of d), so the exact error bound is
//     |scalar - exact| <= sum_e |w_e| * c * d_block(e) + 1e-5 * sum_e |w_e x_e|,
// the last term for float rounding (c = 0 for float formats, whose activations stay f32).
TEST_P(VecDot, ScalarWithinActivationQuantizationBound) {
    const GgmlType type = GetParam();
    const GgmlType at = vec_dot_type(type);
    for (int64_t n : {int64_t{7168}, int64_t{2048}}) {
        for (uint64_t seed : {1u, 2u, 3u}) {
            const Case c = make_case(type, n, seed);
            double exact = 0, bound = 1e-5 * abs_dot(c);
            for (int64_t i = 0; i < n; ++i) exact += double(c.w[i]) * c.x[i];
            if (at == GgmlType::Q8_K || at == GgmlType::Q8_K_U2 || at == GgmlType::Q8_K_U16) {
                const auto block_d = [&](int64_t b) {
                    if (at == GgmlType::Q8_K_U2) return reinterpret_cast<const BlockQ8KU2*>(c.xq.data())[b].d;
                    if (at == GgmlType::Q8_K_U16) return reinterpret_cast<const BlockQ8KU16*>(c.xq.data())[b].d;
                    return reinterpret_cast<const BlockQ8K*>(c.xq.data())[b].d;
                };
                for (int64_t i = 0; i < n; ++i) bound += std::fabs(c.w[i]) * 0.5 * block_d(i / 256);
            } else if (at == GgmlType::Q8_0) {
                const auto* a = reinterpret_cast<const BlockQ8_0*>(c.xq.data());
                for (int64_t i = 0; i < n; ++i)
                    bound += std::fabs(c.w[i]) * (0.5 + 127 * 0x1.0p-11) * fp16_to_f32(a[i / 32].d);
            }
            const float got = vec_dot_fn(type, Isa::Scalar)(c.wq.data(), c.xq.data(), n);
            ASSERT_TRUE(std::isfinite(got)) << ggml_type_name(type) << " n=" << n;
            EXPECT_LE(std::fabs(got - exact), bound)
                << ggml_type_name(type) << " n=" << n << " seed=" << seed << " got " << got << " exact " << exact;
        }
    }
}

// Each SIMD kernel equals scalar up to the order of float additions: the integer parts are
// identical, so the difference is bounded by a few ulps of the running sums, i.e. relative
// to sum |w x|: 1e-5 (n/256 block terms, each rounded at 2^-24, and the int->float steps).
void expect_simd_matches_scalar(GgmlType type, bool full_scale) {
    const Isa best = detect_isa();
    for (Isa isa : {Isa::Avx2, Isa::Avx512Vnni}) {
        if (static_cast<int>(isa) > static_cast<int>(best)) {
            std::printf("    %s: CPU lacks %s, not tested here\n", std::string(ggml_type_name(type)).c_str(),
                        std::string(isa_name(isa)).c_str());
            continue;
        }
        if (!has_simd_kernel(type, isa)) continue;
        for (int64_t n : {int64_t{7168}, int64_t{2048}, int64_t{256}, int64_t{1184}, int64_t{1000}}) {  // 1184: 37 32-blocks (an unpaired last one), 1000: F16/BF16 tails
            if (n % ggml_traits(type).block_size) continue;
            for (uint64_t seed : {11u, 12u, 13u, 14u}) {
                const Case c = make_case(type, n, seed, full_scale);
                const float ref = vec_dot_fn(type, Isa::Scalar)(c.wq.data(), c.xq.data(), n);
                const float got = vec_dot_fn(type, isa)(c.wq.data(), c.xq.data(), n);
                ASSERT_TRUE(std::isfinite(got)) << ggml_type_name(type) << " " << isa_name(isa);
                EXPECT_LE(std::fabs(got - ref), 1e-5 * abs_dot(c))
                    << ggml_type_name(type) << " " << isa_name(isa) << " n=" << n << " seed=" << seed
                    << (full_scale ? " full-scale" : "") << " scalar " << ref << " simd " << got;
            }
        }
    }
}

TEST_P(VecDot, SimdMatchesScalar) { expect_simd_matches_scalar(GetParam(), false); }

// Every activation at +-127: a kernel whose 16-bit pair sums could saturate fails here.
TEST_P(VecDot, SimdMatchesScalarAtFullScaleActivations) { expect_simd_matches_scalar(GetParam(), true); }

// The SIMD instruction sets this CPU runs.
std::vector<Isa> simd_isas_here() {
    std::vector<Isa> isas;
    for (Isa isa : {Isa::Avx2, Isa::Avx512Vnni})
        if (static_cast<int>(isa) <= static_cast<int>(detect_isa())) isas.push_back(isa);
    return isas;
}

// `count` activation rows of n values for the several-rows kernels, each its own poisoned
// buffer (seeds seed, seed + 1, ...; row j at full scale where j % full_every == full_at), and
// their pointers.
struct ActRows {
    std::vector<Case> cases;
    std::vector<const void*> ptrs;
    ActRows(GgmlType type, int64_t n, int count, uint64_t seed, int full_every, int full_at) {
        for (int j = 0; j < count; ++j) cases.push_back(make_case(type, n, seed + static_cast<uint64_t>(j), j % full_every == full_at));
        for (const Case& c : cases) ptrs.push_back(c.xq.data());
    }
};

// The several-rows kernels: out[j] bit-identical to the one-row kernel of the same ISA for
// every count of activation rows (the full chunks and every remainder), each activation row
// its own poisoned buffer, some at full scale.
TEST_P(VecDot, RowsKernelMatchesOneRowBitForBit) {
    const GgmlType type = GetParam();
    for (Isa isa : simd_isas_here()) {
        const VecDotRowsFn rows = vec_dot_rows_fn(type, isa);
        if (!rows) continue;
        // 300: float weights' tail; 1184 and 32: an odd count of 32-weight blocks (the zmm Q4_0/Q5_0
        // kernel's unpaired last block), and a single one
        for (int64_t n : {int64_t{7168}, int64_t{2048}, int64_t{256}, int64_t{300}, int64_t{1184}, int64_t{32}}) {
            if (n % ggml_traits(type).block_size) continue;
            const Case w = make_case(type, n, 21);
            const ActRows act_rows(type, n, 19, 100, 5, 3);
            const std::vector<const void*>& ptrs = act_rows.ptrs;
            for (int n_act = 1; n_act <= 19; ++n_act) {
                std::vector<float> got(static_cast<size_t>(n_act) + 1, -7.0f);
                rows(w.wq.data(), ptrs.data(), n_act, n, got.data());
                EXPECT_EQ(got[static_cast<size_t>(n_act)], -7.0f) << "wrote past out[n_act - 1]";
                for (int j = 0; j < n_act; ++j) {
                    const float ref = vec_dot_fn(type, isa)(w.wq.data(), ptrs[static_cast<size_t>(j)], n);
                    ASSERT_TRUE(std::isfinite(ref));
                    EXPECT_EQ(got[static_cast<size_t>(j)], ref) << ggml_type_name(type) << " " << isa_name(isa) << " n=" << n
                                                                << " n_act=" << n_act << " row " << j;
                }
            }
        }
    }
}

// The AVX512-VBMI kernels (VPERMB lookups, IQ1_S_U2's delta in the lanes' start) give the same
// bits as the AVX-512 VNNI kernels that CPUs without VBMI take, one-row and several-rows alike:
// the same integer in every lane, the same float steps.
TEST_P(VecDot, VbmiKernelsMatchTheVnniOnesBitForBit) {
    const GgmlType type = GetParam();
    const VecDotFn vbmi = avx512vbmi_kernel(type);
    if (!vbmi || !vbmi_kernels()) GTEST_SKIP() << "no VBMI kernel for this type, or no VBMI on this CPU";
    const VecDotFn vnni = avx512vnni_kernel(type);
    const VecDotRowsFn vbmi_rows = avx512vbmi_rows_kernel(type), vnni_rows = avx512vnni_rows_kernel(type);
    ASSERT_TRUE(vnni);
    for (int64_t n : {int64_t{7168}, int64_t{2048}, int64_t{256}}) {
        const Case w = make_case(type, n, 23);
        const ActRows act_rows(type, n, 9, 300, 4, 1);
        for (const void* a : act_rows.ptrs) EXPECT_EQ(vbmi(w.wq.data(), a, n), vnni(w.wq.data(), a, n)) << ggml_type_name(type) << " n=" << n;
        if (!vbmi_rows) continue;
        ASSERT_TRUE(vnni_rows);
        std::vector<float> got(act_rows.ptrs.size()), want(act_rows.ptrs.size());
        vbmi_rows(w.wq.data(), act_rows.ptrs.data(), static_cast<int>(got.size()), n, got.data());
        vnni_rows(w.wq.data(), act_rows.ptrs.data(), static_cast<int>(want.size()), n, want.data());
        EXPECT_EQ(got, want) << ggml_type_name(type) << " n=" << n;
    }
}

// The block kernels (float weights) give each (row, activation) pair exactly what the one-row
// kernel gives: row counts even and odd up to the block's 16, activation counts in chunks of 4
// and each remainder, widths of several slices, of one, and with a tail past a multiple of 32;
// nothing is written outside the block's rows and columns of y.
TEST_P(VecDot, BlockKernelMatchesOneRowBitForBit) {
    const GgmlType type = GetParam();
    for (Isa isa : simd_isas_here()) {
        const VecDotBlockFn block = vec_dot_block_fn(type, isa);
        if (!block) continue;
        for (int64_t n : {int64_t{7168}, int64_t{300}, int64_t{20}}) {
            std::vector<Case> rows;
            for (int r = 0; r < kVecDotBlockRows; ++r) rows.push_back(make_case(type, n, 31 + static_cast<uint64_t>(r)));
            const uint64_t rb = row_bytes(type, n);
            std::vector<uint8_t> w;
            for (const Case& c : rows) w.insert(w.end(), c.wq.bytes.begin(), c.wq.bytes.begin() + static_cast<int64_t>(rb));
            const ActRows act_rows(type, n, kVecDotBlockActs, 200, 4, 1);
            const std::vector<const void*>& ptrs = act_rows.ptrs;
            for (int n_rows : {1, 2, 5, 16})
                for (int n_act : {1, 2, 3, 4, 7, 16}) {
                    constexpr int64_t ldy = kVecDotBlockRows + 1;
                    std::vector<float> y(static_cast<size_t>(kVecDotBlockActs * ldy), -7.0f);
                    block(w.data(), rb, n_rows, ptrs.data(), n_act, n, y.data(), ldy);
                    for (int t = 0; t < kVecDotBlockActs; ++t)
                        for (int r = 0; r < ldy; ++r) {
                            const float got = y[static_cast<size_t>(t * ldy + r)];
                            if (t >= n_act || r >= n_rows) {
                                EXPECT_EQ(got, -7.0f) << "wrote outside the block: row " << r << " activation " << t;
                                continue;
                            }
                            EXPECT_EQ(got, vec_dot_fn(type, isa)(rows[static_cast<size_t>(r)].wq.data(), ptrs[static_cast<size_t>(t)], n))
                                << "n=" << n << " rows=" << n_rows << " acts=" << n_act << " row " << r << " activation " << t;
                        }
                }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, VecDot, ::testing::ValuesIn(kDotTypes),
                         [](const auto& p) { return std::string(ggml_type_name(p.param)); });

// Every weight format of GGUF models has its own kernel on both ISAs; only the activation
// formats (Q8_1, Q8_K), F32, MXFP4 and the ternary TQ formats fall back to scalar.
TEST(VecDotDispatch, ActiveIsaAndKernelsForEveryModelFormat) {
    const Isa isa = active_isa();
    std::printf("    active ISA: %s\n", std::string(isa_name(isa)).c_str());
    EXPECT_NE(isa, Isa::Scalar);
    for (GgmlType t : {GgmlType::IQ1_S, GgmlType::IQ1_M, GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S,
                       GgmlType::IQ3_XXS, GgmlType::IQ3_S, GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::Q2_K, GgmlType::Q3_K,
                       GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                       GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16})
        for (Isa i : {Isa::Avx2, Isa::Avx512Vnni}) EXPECT_TRUE(has_simd_kernel(t, i)) << ggml_type_name(t) << " " << isa_name(i);
    EXPECT_EQ(vec_dot_type(GgmlType::IQ1_S), GgmlType::Q8_K);
    EXPECT_EQ(vec_dot_type(GgmlType::Q4_0), GgmlType::Q8_0);
    EXPECT_EQ(vec_dot_type(GgmlType::BF16), GgmlType::F32);
    EXPECT_THROW(vec_dot_fn(GgmlType::I32, Isa::Scalar), Error);
}

}  // namespace
}  // namespace tandem::quant
