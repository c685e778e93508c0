// cpu::matmul and cpu::moe_forward against naive float64 references (dequantized weights,
// unquantized activations), at R1 shapes (n_embd 7168, n_ff 2048, 256 experts, top-8) and
// tiny ones. Scratch buffers are poisoned with NaN before each call, so any element the
// kernels read without writing first shows up in the result.
//
// Tolerance: the kernels quantize activations to 8 bits (x for gate/up, the hidden row h for
// down), an error of ~0.5% per element that averages down over a dot product; the result
// must be within 3% of the reference in RMS over the output and 15% of its RMS elementwise.
// Batched runs must equal per-token runs exactly (same kernels, same summation order).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "core/check.h"
#include "cpu/gemm_i8.h"
#include "cpu/matmul.h"
#include "cpu/moe.h"
#include "cpu/thread_pool.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"
#include "random_floats.h"

namespace tandem::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Anonymous mapping: untouched pages cost nothing, so a full 256-expert layer can be
// described while only the selected experts are written.
struct Mapping {
    uint8_t* data = nullptr;
    size_t size = 0;
    explicit Mapping(size_t n) : size(n) {
        void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        TANDEM_CHECK(p != MAP_FAILED);
        data = static_cast<uint8_t*>(p);
    }
    ~Mapping() { munmap(data, size); }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
};

std::vector<float> dequant_matrix(GgmlType type, const uint8_t* data, uint64_t row_bytes, int64_t n_in, int64_t n_out) {
    std::vector<float> m(static_cast<size_t>(n_in * n_out));
    for (int64_t o = 0; o < n_out; ++o) quant::dequantize_row(type, data + o * row_bytes, m.data() + o * n_in, n_in);
    return m;
}

// y[o] = sum_i m[o, i] x[i] in float64.
std::vector<double> ref_matvec(const std::vector<float>& m, const double* x, int64_t n_in, int64_t n_out) {
    std::vector<double> y(static_cast<size_t>(n_out));
    for (int64_t o = 0; o < n_out; ++o) {
        double s = 0;
        const float* row = m.data() + o * n_in;
        for (int64_t i = 0; i < n_in; ++i) s += static_cast<double>(row[i]) * x[i];
        y[static_cast<size_t>(o)] = s;
    }
    return y;
}

void expect_close(const float* got, const std::vector<double>& want, const char* what) {
    double err2 = 0, ref2 = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << what << " element " << i;
        err2 += (got[i] - want[i]) * (got[i] - want[i]);
        ref2 += want[i] * want[i];
    }
    const double ref_rms = std::sqrt(ref2 / static_cast<double>(want.size()));
    ASSERT_GT(ref_rms, 0.0) << what;
    EXPECT_LT(std::sqrt(err2 / static_cast<double>(want.size())), 0.03 * ref_rms) << what;
    for (size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 0.15 * ref_rms) << what << " element " << i;
}

// ---- matmul ----

void check_matmul(ThreadPool& pool, GgmlType type, int64_t n_in, int64_t n_out, int64_t n_tok) {
    SCOPED_TRACE(::testing::Message() << ggml_type_name(type) << " " << n_in << "->" << n_out << " x" << n_tok);
    const uint64_t rb = quant_row_bytes(type, n_in);
    std::vector<uint8_t> w(rb * static_cast<uint64_t>(n_out) + rb);  // one poisoned row after the matrix
    quant::fill_random(type, std::span(w.data(), rb * static_cast<uint64_t>(n_out)), 7, 0.05f);
    std::memset(w.data() + rb * static_cast<uint64_t>(n_out), 0xFF, rb);
    const std::vector<float> x = random_floats(n_in * n_tok, 11, 1.0f);
    MatmulScratch scratch;
    std::vector<float> y(static_cast<size_t>(n_tok * n_out), kNaN);
    matmul(pool, type, w.data(), rb, n_in, n_out, x.data(), n_tok, y.data(), scratch);

    const std::vector<float> m = dequant_matrix(type, w.data(), rb, n_in, n_out);
    for (int64_t t = 0; t < n_tok; ++t) {
        std::vector<double> xd(x.begin() + t * n_in, x.begin() + (t + 1) * n_in);
        expect_close(y.data() + t * n_out, ref_matvec(m, xd.data(), n_in, n_out), "matmul");
        // The same token alone, with poisoned scratch, gives the same bits (per-token path)
        // or agrees within the tile path's bf16 rounding (tests/cpu/test_gemm.cpp bounds it).
        std::fill(scratch.xq.begin(), scratch.xq.end(), uint8_t{0xFF});
        std::vector<float> y1(static_cast<size_t>(n_out), kNaN);
        matmul(pool, type, w.data(), rb, n_in, n_out, x.data() + t * n_in, 1, y1.data(), scratch);
        if (gemm_applies(type, n_in, n_tok)) continue;
        for (int64_t o = 0; o < n_out; ++o) ASSERT_EQ(y1[o], y[t * n_out + o]) << "token " << t << " row " << o;
    }
}

TEST(Matmul, R1ExpertShapesAgainstFloat64) {
    ThreadPool pool(4);
    for (GgmlType type : {GgmlType::IQ1_S, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::Q8_0}) {
        check_matmul(pool, type, 7168, 2048, 3);
        check_matmul(pool, type, 2048, 7168, 1);
    }
}

TEST(Matmul, TinyAndOddThreadCounts) {
    ThreadPool pool(3);
    check_matmul(pool, GgmlType::Q6_K, 256, 5, 6);
    check_matmul(pool, GgmlType::Q3_K, 512, 1, 2);
    check_matmul(pool, GgmlType::F16, 64, 9, 4);
}

TEST(Matmul, ManyTokensInBlocksOfTokensAndRows) {
    // Float weights never take the tile path: more than 16 tokens go through (token block,
    // row block) work items (16 x 16 blocks under AVX-512, quant::VecDotBlockFn), and each token
    // must still equal itself alone bit for bit.
    ThreadPool pool(3);
    check_matmul(pool, GgmlType::F32, 7168, 256, 37);  // R1's router: 2 token blocks and a tail of 5
    check_matmul(pool, GgmlType::F16, 512, 300, 20);
}

// matmul_many gives each product exactly what matmul gives it: in one job (Q4_K, Q6_K and Q2_K
// pair with Q8_K activations, 1 and 3 tokens), or one call after the other (a Q8_0 product
// pairs with Q8_0; 20 tokens take the tile path on an AMX CPU or 16-token blocks elsewhere).
TEST(Matmul, ManyProductsOfOneInputEqualSeparateCalls) {
    ThreadPool pool(3);
    const int64_t n_in = 512;
    const GgmlType types[] = {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q2_K, GgmlType::Q8_0};
    const int64_t n_outs[] = {300, 77, 41, 40};
    std::vector<std::vector<uint8_t>> w;
    for (size_t i = 0; i < 4; ++i) {
        w.emplace_back(quant_row_bytes(types[i], n_in) * static_cast<uint64_t>(n_outs[i]));
        quant::fill_random(types[i], w.back(), 60 + i, 0.05f);
    }
    for (const size_t n_products : {size_t{2}, size_t{3}, size_t{4}})
        for (const int64_t n_tok : {int64_t{1}, int64_t{3}, int64_t{20}}) {
            SCOPED_TRACE(::testing::Message() << n_products << " products, " << n_tok << " tokens");
            const std::vector<float> x = random_floats(n_in * n_tok, 13, 1.0f);
            std::vector<std::vector<float>> got, want;
            std::vector<MatmulOut> outs;
            MatmulScratch scratch;
            for (size_t i = 0; i < n_products; ++i) {
                got.emplace_back(static_cast<size_t>(n_tok * n_outs[i]), kNaN);
                want.emplace_back(got.back().size(), kNaN);
                matmul(pool, types[i], w[i].data(), quant_row_bytes(types[i], n_in), n_in, n_outs[i], x.data(), n_tok,
                       want.back().data(), scratch);
            }
            for (size_t i = 0; i < n_products; ++i)
                outs.push_back({types[i], w[i].data(), quant_row_bytes(types[i], n_in), n_outs[i], got[i].data()});
            std::fill(scratch.xq.begin(), scratch.xq.end(), uint8_t{0xFF});
            matmul_many(pool, outs, n_in, x.data(), n_tok, scratch);
            for (size_t i = 0; i < n_products; ++i)
                for (size_t j = 0; j < got[i].size(); ++j) ASSERT_EQ(got[i][j], want[i][j]) << "product " << i << " value " << j;
        }
}

TEST(Matmul, RejectsRowsThatAreNotWholeBlocks) {
    ThreadPool pool(2);
    MatmulScratch scratch;
    std::vector<uint8_t> w(1024);
    std::vector<float> x(100), y(1);
    EXPECT_THROW(matmul(pool, GgmlType::Q4_K, w.data(), 144, 100, 1, x.data(), 1, y.data(), scratch), Error);
}

// ---- moe_forward ----

struct Layer {
    ExpertWeights w;
    Mapping gate, up, down;
    Layer(GgmlType gt, GgmlType ut, GgmlType dt, int64_t n_embd, int64_t n_ff, int64_t n_expert)
        : w{gt, ut, dt, nullptr, nullptr, nullptr, quant_row_bytes(gt, n_embd), quant_row_bytes(ut, n_embd),
            quant_row_bytes(dt, n_ff), n_embd, n_ff, n_expert},
          gate(w.gate_row_bytes * n_ff * n_expert),
          up(w.up_row_bytes * n_ff * n_expert),
          down(w.down_row_bytes * n_embd * n_expert) {
        w.gate = gate.data;
        w.up = up.data;
        w.down = down.data;
    }
    uint64_t gate_mat() const { return w.gate_row_bytes * w.n_ff; }
    uint64_t up_mat() const { return w.up_row_bytes * w.n_ff; }
    uint64_t down_mat() const { return w.down_row_bytes * w.n_embd; }
    // Random weights for expert e; other experts stay unwritten (zero pages).
    void fill(int32_t e) {
        quant::fill_random(w.gate_type, std::span(gate.data + e * gate_mat(), gate_mat()), 100 + e, 0.05f);
        quant::fill_random(w.up_type, std::span(up.data + e * up_mat(), up_mat()), 200 + e, 0.05f);
        quant::fill_random(w.down_type, std::span(down.data + e * down_mat(), down_mat()), 300 + e, 0.05f);
    }
};

// out[t] in float64, from dequantized experts and unquantized activations.
std::vector<double> ref_moe(const Layer& L, const std::vector<float>& x, int64_t n_tok, const std::vector<int32_t>& ids,
                            const std::vector<float>& wts, int k) {
    const ExpertWeights& w = L.w;
    std::vector<double> out(static_cast<size_t>(n_tok * w.n_embd), 0.0);
    std::vector<int32_t> experts(ids.begin(), ids.end());
    std::sort(experts.begin(), experts.end());
    experts.erase(std::unique(experts.begin(), experts.end()), experts.end());
    for (int32_t e : experts) {
        if (e < 0) continue;
        const auto gate = dequant_matrix(w.gate_type, w.gate + e * L.gate_mat(), w.gate_row_bytes, w.n_embd, w.n_ff);
        const auto up = dequant_matrix(w.up_type, w.up + e * L.up_mat(), w.up_row_bytes, w.n_embd, w.n_ff);
        const auto down = dequant_matrix(w.down_type, w.down + e * L.down_mat(), w.down_row_bytes, w.n_ff, w.n_embd);
        for (int64_t t = 0; t < n_tok; ++t)
            for (int s = 0; s < k; ++s) {
                if (ids[static_cast<size_t>(t * k + s)] != e) continue;
                std::vector<double> xd(x.begin() + t * w.n_embd, x.begin() + (t + 1) * w.n_embd);
                const auto g = ref_matvec(gate, xd.data(), w.n_embd, w.n_ff);
                const auto u = ref_matvec(up, xd.data(), w.n_embd, w.n_ff);
                std::vector<double> h(static_cast<size_t>(w.n_ff));
                for (size_t i = 0; i < h.size(); ++i) h[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
                const auto d = ref_matvec(down, h.data(), w.n_ff, w.n_embd);
                for (int64_t i = 0; i < w.n_embd; ++i)
                    out[static_cast<size_t>(t * w.n_embd + i)] += wts[static_cast<size_t>(t * k + s)] * d[static_cast<size_t>(i)];
            }
    }
    return out;
}

void poison(MoeScratch& s) {
    std::fill(s.xq_gate.begin(), s.xq_gate.end(), uint8_t{0xFF});
    std::fill(s.xq_up.begin(), s.xq_up.end(), uint8_t{0xFF});
    std::fill(s.hq.begin(), s.hq.end(), uint8_t{0xFF});
    std::fill(s.h.begin(), s.h.end(), kNaN);
    std::fill(s.o.begin(), s.o.end(), kNaN);
    std::fill(s.packed_x.begin(), s.packed_x.end(), uint16_t{0xFFFF});  // bf16 NaN
    std::fill(s.packed_h.begin(), s.packed_h.end(), uint16_t{0xFFFF});
    std::fill(s.sh_xq.begin(), s.sh_xq.end(), uint8_t{0xFF});
    std::fill(s.sh_hq.begin(), s.sh_hq.end(), uint8_t{0xFF});
    std::fill(s.sh_g.begin(), s.sh_g.end(), kNaN);
    std::fill(s.sh_u.begin(), s.sh_u.end(), kNaN);
    std::fill(s.sh_o.begin(), s.sh_o.end(), kNaN);
}

// Routes n_tok tokens to k distinct experts each, from `pool_experts`; fills those experts.
void route(Layer& L, int64_t n_tok, int k, const std::vector<int32_t>& pool_experts, uint64_t seed,
           std::vector<int32_t>& ids, std::vector<float>& wts) {
    std::mt19937_64 rng(seed);
    ids.assign(static_cast<size_t>(n_tok * k), -1);
    wts.assign(static_cast<size_t>(n_tok * k), 0.0f);
    for (int64_t t = 0; t < n_tok; ++t) {
        std::vector<int32_t> cand = pool_experts;
        std::shuffle(cand.begin(), cand.end(), rng);
        for (int s = 0; s < k; ++s) {
            ids[static_cast<size_t>(t * k + s)] = cand[static_cast<size_t>(s)];
            wts[static_cast<size_t>(t * k + s)] = 0.2f + 0.1f * static_cast<float>(s % 5);
        }
    }
    for (int32_t e : pool_experts) L.fill(e);
}

// The fewest tokens from which a MoE phase with matrices of types a and b (gate and up, or down
// twice) takes the tile path: the int8 product's threshold where both have one, else bf16's.
int64_t phase_min_tokens(GgmlType a, GgmlType b) {
    if (i8_gemm_supports(a) && i8_gemm_supports(b)) return std::max(i8_min_tokens(a), i8_min_tokens(b));
    if (gemm_unit() == GemmUnit::none) return std::numeric_limits<int64_t>::max();  // no tile path
    return std::max(bf16_min_tokens(a), bf16_min_tokens(b));
}

// moe_forward's output for x: a warm call sizes the scratch, which is then poisoned (NaN
// floats, 0xFF bytes) before the call whose output is returned.
std::vector<float> moe_poisoned(ThreadPool& pool, const Layer& L, const std::vector<float>& x, int64_t n_tok,
                                const std::vector<int32_t>& ids, const std::vector<float>& wts, int k, MoeScratch& scratch) {
    std::vector<float> out(static_cast<size_t>(n_tok * L.w.n_embd), kNaN);
    moe_forward(pool, L.w, x.data(), n_tok, ids.data(), wts.data(), k, out.data(), scratch);
    poison(scratch);
    std::fill(out.begin(), out.end(), kNaN);
    moe_forward(pool, L.w, x.data(), n_tok, ids.data(), wts.data(), k, out.data(), scratch);
    return out;
}

void check_moe(ThreadPool& pool, Layer& L, int64_t n_tok, int k, const std::vector<int32_t>& ids,
               const std::vector<float>& wts, bool compare_ref, double tiled_tol = 0.15) {
    const int64_t n_embd = L.w.n_embd;
    const std::vector<float> x = random_floats(n_tok * n_embd, 5, 1.0f);
    MoeScratch scratch;
    const std::vector<float> out = moe_poisoned(pool, L, x, n_tok, ids, wts, k, scratch);
    if (compare_ref) expect_close(out.data(), ref_moe(L, x, n_tok, ids, wts, k), "moe_forward");
    // Token by token: the same bits, unless some expert of the batch took the tile path
    // (gemm_min_tokens(type) or more tokens). Its bf16 rounding and the per-token path's 8-bit
    // blocks each err against exact arithmetic (expect_close allows either 3% of the RMS, 15% at
    // an element), so there token and batch may differ by tiled_tol / 5 of the output's RMS
    // over a token and tiled_tol at any element (bf16: 3% and 15%; measured up to 2.0% and 9.6%
    // with TANDEM_ISA=avx2 on Zen 4's bf16 unit). The int8 products differ from the per-token
    // path only in float summation order and pass a tighter tiled_tol.
    const bool tiled = !scratch.tiled_gate_up.empty() || !scratch.tiled_down.empty();
    double rms = 0;
    for (float v : out) rms += static_cast<double>(v) * v;
    rms = std::sqrt(rms / static_cast<double>(out.size()));
    for (int64_t t = 0; t < n_tok; ++t) {
        poison(scratch);
        std::vector<float> out1(static_cast<size_t>(n_embd), kNaN);
        moe_forward(pool, L.w, x.data() + t * n_embd, 1, ids.data() + t * k, wts.data() + t * k, k, out1.data(), scratch);
        if (!tiled) {
            for (int64_t i = 0; i < n_embd; ++i) ASSERT_EQ(out1[i], out[t * n_embd + i]) << "token " << t << " elem " << i;
            continue;
        }
        double sq = 0, worst = 0;
        for (int64_t i = 0; i < n_embd; ++i) {
            const double d = std::abs(static_cast<double>(out1[i]) - out[t * n_embd + i]);
            sq += d * d;
            worst = std::max(worst, d);
        }
        EXPECT_LT(std::sqrt(sq / static_cast<double>(n_embd)), tiled_tol / 5 * rms) << "token " << t;
        EXPECT_LT(worst, tiled_tol * rms) << "token " << t;
    }
}

TEST(Moe, R1LayerIq1sGateUpIq2xxsDownTop8Of256) {
    // Experts near both ends of the 256, so a wrong expert stride reads the wrong weights.
    Layer L(GgmlType::IQ1_S, GgmlType::IQ1_S, GgmlType::IQ2_XXS, 7168, 2048, 256);
    ThreadPool pool(4);
    std::vector<int32_t> ids;
    std::vector<float> wts;
    route(L, 3, 8, {0, 3, 17, 64, 128, 200, 201, 240, 254, 255}, 1, ids, wts);
    check_moe(pool, L, 3, 8, ids, wts, true);
}

// IQ1_S_U2 experts (the layout the model repacks IQ1_S into) have a several-rows dot kernel
// on AVX-512 VNNI (tokens sharing an expert dotted together, bit-identical to each alone) and
// an int8 product (cpu/gemm_i8.h; from 5 tokens there and on AVX2),
// equal to the per-token dots up to float summation order. 20 tokens over 10 experts give
// groups of about 16, mostly past those thresholds: each token alone must match the batch
// within 1% of the output's RMS where the int8 product is what the tile path takes (measured
// 0.14%: a last-bit difference in a hidden value can move its 8-bit rounding for the down
// product), else within check_moe's bf16 bound. With IQ2_XXS down (the first MoE layer of
// Unsloth's UD-IQ1_S) and 2 tokens (no expert can get the 3 from which a tile path may
// start), gate/up run the rows kernel on up to 2 rows and down one dot per token:
// bit-identical.
TEST(Moe, R1LayerIq1sU2BatchMatchesSingleTokens) {
    ThreadPool pool(3);
    std::vector<int32_t> ids;
    std::vector<float> wts;
    Layer L(GgmlType::IQ1_S_U2, GgmlType::IQ1_S_U2, GgmlType::IQ1_S_U2, 7168, 2048, 256);
    route(L, 20, 8, {2, 7, 31, 64, 100, 101, 180, 222, 250, 255}, 4, ids, wts);
    check_moe(pool, L, 20, 8, ids, wts, false, i8_gemm_supports(GgmlType::IQ1_S_U2) ? 0.01 : 0.15);  // float64 below
    Layer M(GgmlType::IQ1_S_U2, GgmlType::IQ1_S_U2, GgmlType::IQ2_XXS, 7168, 2048, 256);
    route(M, 2, 8, {1, 5, 9, 33, 90, 91, 150, 151, 152, 199, 230, 255}, 5, ids, wts);
    check_moe(pool, M, 2, 8, ids, wts, true);
}

// Gate and up of two repacked formats whose activations are both Q8_K_U2 but whose int8 products
// want them in different orders (IQ1_S_U2's own on the AVX-512 and tile units, natural for
// IQ2_XXS_U3): they must not share one packing.
TEST(Moe, GateAndUpOfDifferentPackingOrders) {
    ThreadPool pool(3);
    std::vector<int32_t> ids;
    std::vector<float> wts;
    Layer L(GgmlType::IQ1_S_U2, GgmlType::IQ2_XXS_U3, GgmlType::IQ1_S_U2, 2048, 512, 64);
    route(L, 40, 8, {2, 7, 31, 33, 40, 41, 50, 52, 60, 63}, 6, ids, wts);
    check_moe(pool, L, 40, 8, ids, wts, false);  // gate and up take bf16 here: its bound
}

// Gate/up and down choose the tile path on their own, each from its formats' threshold (on the
// vector units the int8 products: IQ1_S_U2 from 5 tokens, on AVX-512 a rows kernel below that;
// IQ2_XXS from 3). Five experts get 3, 6, 10, 14 and 20 of 20 tokens
// (expert j takes tokens 0 .. count - 1), so on the vector units the expert with 3 takes the
// tile path for down but not for gate/up. The output against float64 either way.
TEST(Moe, GateUpAndDownChooseTheirPathSeparately) {
    ThreadPool pool(3);
    Layer L(GgmlType::IQ1_S_U2, GgmlType::IQ1_S_U2, GgmlType::IQ2_XXS, 2048, 512, 64);
    const int64_t n_tok = 20, n_embd = 2048;
    const int k = 5;
    const std::vector<int32_t> experts = {5, 17, 30, 41, 63}, counts = {3, 6, 10, 14, 20};
    std::vector<int32_t> ids(static_cast<size_t>(n_tok * k), -1);
    std::vector<float> wts(ids.size(), 0.0f);
    for (int j = 0; j < k; ++j) {
        L.fill(experts[static_cast<size_t>(j)]);
        for (int64_t t = 0; t < counts[static_cast<size_t>(j)]; ++t) {
            ids[static_cast<size_t>(t * k + j)] = experts[static_cast<size_t>(j)];
            wts[static_cast<size_t>(t * k + j)] = 0.1f + 0.15f * static_cast<float>(j);
        }
    }
    const std::vector<float> x = random_floats(n_tok * n_embd, 8, 1.0f);
    MoeScratch scratch;
    const std::vector<float> out = moe_poisoned(pool, L, x, n_tok, ids, wts, k, scratch);
    if (gemm_unit() != GemmUnit::none || i8_unit() != I8Unit::none) {
        size_t gu = 0, dn = 0;
        for (int32_t c : counts) {
            gu += c >= phase_min_tokens(GgmlType::IQ1_S_U2, GgmlType::IQ1_S_U2);
            dn += c >= phase_min_tokens(GgmlType::IQ2_XXS, GgmlType::IQ2_XXS);
        }
        EXPECT_EQ(scratch.tiled_gate_up.size(), gu);
        EXPECT_EQ(scratch.tiled_down.size(), dn);
        if (i8_unit() == I8Unit::avx512 || i8_unit() == I8Unit::avx2) {
            EXPECT_NE(gu, dn);  // the case this test is for
        }
    }
    expect_close(out.data(), ref_moe(L, x, n_tok, ids, wts, k), "moe_forward, paths per phase");
}

TEST(Moe, R1LayerQ2kGateUpQ4kDownBatchMatchesSingleTokens) {
    Layer L(GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::Q4_K, 7168, 2048, 256);
    ThreadPool pool(4);
    std::vector<int32_t> ids;
    std::vector<float> wts;
    // 4 tokens sharing experts out of 12 candidates: under the int8 products' thresholds on the
    // vector units (Q2_K 6, Q4_K 5; 5 and 5 on AVX2), so bit-identical to each token alone there
    // (the tile unit takes bf16 from 4).
    route(L, 4, 8, {1, 5, 9, 33, 90, 91, 150, 151, 152, 199, 230, 255}, 2, ids, wts);
    check_moe(pool, L, 4, 8, ids, wts, false);
    check_moe(pool, L, 1, 8, ids, wts, true);
}

TEST(Moe, TinyMixedFormatsTop16AndSkippedSlots) {
    // Up differs from gate in activation type (Q8_0 vs Q8_K): x is quantized twice.
    Layer L(GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q6_K, 512, 256, 64);
    ThreadPool pool(3);
    std::vector<int32_t> pool_e(40);
    for (int i = 0; i < 40; ++i) pool_e[static_cast<size_t>(i)] = i + 24;
    std::vector<int32_t> ids;
    std::vector<float> wts;
    route(L, 5, 16, pool_e, 3, ids, wts);
    ids[3] = -1;  // slots handled elsewhere add nothing
    ids[16 * 2 + 15] = -1;
    check_moe(pool, L, 5, 16, ids, wts, true);
}

// A 40-token prefill over the 16 experts of L, top-8 (~20 tokens per expert), on `threads`
// threads, its output against float64; the scratch (which experts each phase tiled) and each
// expert's token count for the caller's checks.
struct Prefill {
    MoeScratch scratch;
    std::vector<int64_t> count;
    // How many experts have at least min_tokens tokens.
    size_t experts_from(int64_t min_tokens) const {
        return static_cast<size_t>(std::count_if(count.begin(), count.end(), [&](int64_t c) { return c >= min_tokens; }));
    }
};
Prefill prefill_against_float64(Layer& L, int threads, uint64_t route_seed, uint64_t x_seed) {
    ThreadPool pool(threads);
    const int64_t n_tok = 40;
    std::vector<int32_t> pool_e(16), ids;
    std::iota(pool_e.begin(), pool_e.end(), 0);
    std::vector<float> wts;
    route(L, n_tok, 8, pool_e, route_seed, ids, wts);
    const std::vector<float> x = random_floats(n_tok * L.w.n_embd, x_seed, 1.0f);
    Prefill p;
    const std::vector<float> out = moe_poisoned(pool, L, x, n_tok, ids, wts, 8, p.scratch);
    expect_close(out.data(), ref_moe(L, x, n_tok, ids, wts, 8), "moe_forward prefill");
    p.count.assign(16, 0);
    for (int32_t e : ids) ++p.count[static_cast<size_t>(e)];
    return p;
}

// Each phase of a prefill tiles the experts with at least its formats' threshold: most of them
// (~20 tokens each) wherever a tile path exists for the formats (int8 on the vector units, bf16
// or int8 on the tile unit).
void expect_tiled(const Prefill& p, const ExpertWeights& w) {
    const size_t gu = p.experts_from(phase_min_tokens(w.gate_type, w.up_type));
    const size_t dn = p.experts_from(phase_min_tokens(w.down_type, w.down_type));
    EXPECT_EQ(p.scratch.tiled_gate_up.size(), gu);
    EXPECT_EQ(p.scratch.tiled_down.size(), dn);
    if (gemm_unit() != GemmUnit::none || i8_unit() != I8Unit::none) {
        EXPECT_GE(gu, 12u);
        EXPECT_GE(dn, 12u);
    }
}

TEST(Moe, PrefillBatchTakesTheTilePathAgainstFloat64) {
    Layer L(GgmlType::IQ1_S, GgmlType::IQ1_S, GgmlType::Q4_K, 2048, 512, 16);
    expect_tiled(prefill_against_float64(L, 4, 4, 5), L.w);
}

// UD-Q2_K_XL's experts (Q2_K, Q3_K): int8 on the vector units (gate Q2_K with up Q3_K: both from
// gate's Q8_K rows), bf16 on the tile unit.
TEST(Moe, Q2kQ3kPrefillAgainstFloat64) {
    Layer L(GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q3_K, 2048, 512, 16);
    expect_tiled(prefill_against_float64(L, 3, 6, 9), L.w);
}

// The dense (shared) expert run inside moe_forward: exactly the routed output plus what three
// separate cpu::matmul products give (the per-token path when the batch is small, the tile
// path at 9 and 20 tokens on an AMX CPU, next to routed experts that take it too at 20; else
// cpu::matmul's blocked loop at 20), and that contribution against float64.
TEST(Moe, SharedExpertEqualsSeparateProducts) {
    ThreadPool pool(3);
    Layer L(GgmlType::IQ1_S, GgmlType::IQ1_S, GgmlType::Q4_K, 512, 256, 32);
    // Shared widths unlike the routed one (rows split in proportion), gate/up pairing with
    // the routed activation type (Q4_K: Q8_K) or with their own (Q8_0).
    for (const GgmlType sh_type : {GgmlType::Q4_K, GgmlType::Q8_0}) {
        const bool k_quant = sh_type == GgmlType::Q4_K;
        const int64_t n_embd = 512, n_sh = k_quant ? 768 : 160;
        const GgmlType down_type = k_quant ? GgmlType::Q6_K : GgmlType::Q8_0;
        SCOPED_TRACE(::testing::Message() << ggml_type_name(sh_type) << " width " << n_sh);
        const uint64_t gb = quant_row_bytes(sh_type, n_embd), db = quant_row_bytes(down_type, n_sh);
        std::vector<uint8_t> sg(gb * n_sh), su(gb * n_sh), sd(db * n_embd);
        quant::fill_random(sh_type, sg, 41, 0.05f);
        quant::fill_random(sh_type, su, 42, 0.05f);
        quant::fill_random(down_type, sd, 43, 0.05f);
        const DenseExpert sh{sh_type, sh_type, down_type, sg.data(), su.data(), sd.data(), gb, gb, db, n_sh};
        const auto g_m = dequant_matrix(sh_type, sg.data(), gb, n_embd, n_sh), u_m = dequant_matrix(sh_type, su.data(), gb, n_embd, n_sh);
        const auto d_m = dequant_matrix(down_type, sd.data(), db, n_sh, n_embd);
        for (const int64_t n_tok : {int64_t{1}, int64_t{3}, int64_t{9}, int64_t{20}}) {
            SCOPED_TRACE(::testing::Message() << n_tok << " tokens");
            std::vector<int32_t> pool_e(12), ids;
            std::iota(pool_e.begin(), pool_e.end(), 10);
            std::vector<float> wts;
            route(L, n_tok, 4, pool_e, 7, ids, wts);
            const std::vector<float> x = random_floats(n_tok * n_embd, 9, 1.0f);
            MoeScratch scratch;
            std::vector<float> routed(static_cast<size_t>(n_tok * n_embd), kNaN), with(routed.size(), kNaN);
            moe_forward(pool, L.w, x.data(), n_tok, ids.data(), wts.data(), 4, routed.data(), scratch);
            moe_forward(pool, L.w, x.data(), n_tok, ids.data(), wts.data(), 4, with.data(), scratch, &sh);
            poison(scratch);
            std::fill(with.begin(), with.end(), kNaN);
            moe_forward(pool, L.w, x.data(), n_tok, ids.data(), wts.data(), 4, with.data(), scratch, &sh);
            // Separate products, as the model ran the shared experts before.
            MatmulScratch ms;
            std::vector<float> g(static_cast<size_t>(n_tok * n_sh)), u(g.size()), o(routed.size());
            matmul(pool, sh_type, sg.data(), gb, n_embd, n_sh, x.data(), n_tok, g.data(), ms);
            matmul(pool, sh_type, su.data(), gb, n_embd, n_sh, x.data(), n_tok, u.data(), ms);
            for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
            matmul(pool, down_type, sd.data(), db, n_sh, n_embd, g.data(), n_tok, o.data(), ms);
            for (size_t i = 0; i < with.size(); ++i) ASSERT_EQ(with[i], routed[i] + o[i]) << "element " << i;
            // The shared contribution against float64, token by token.
            for (int64_t t = 0; t < n_tok; ++t) {
                std::vector<double> xd(x.begin() + t * n_embd, x.begin() + (t + 1) * n_embd);
                const auto gd = ref_matvec(g_m, xd.data(), n_embd, n_sh), ud = ref_matvec(u_m, xd.data(), n_embd, n_sh);
                std::vector<double> h(static_cast<size_t>(n_sh));
                for (size_t i = 0; i < h.size(); ++i) h[i] = gd[i] / (1.0 + std::exp(-gd[i])) * ud[i];
                std::vector<float> got(static_cast<size_t>(n_embd));
                for (int64_t i = 0; i < n_embd; ++i) got[static_cast<size_t>(i)] = with[static_cast<size_t>(t * n_embd + i)] - routed[static_cast<size_t>(t * n_embd + i)];
                expect_close(got.data(), ref_matvec(d_m, h.data(), n_sh, n_embd), "shared expert");
            }
        }
    }
}

TEST(Moe, RejectsExpertIdsOutOfRange) {
    Layer L(GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0, 64, 32, 4);
    ThreadPool pool(2);
    MoeScratch scratch;
    std::vector<float> x(64, 1.0f), out(64);
    const int32_t ids[2] = {1, 4};
    const float wts[2] = {0.5f, 0.5f};
    EXPECT_THROW(moe_forward(pool, L.w, x.data(), 1, ids, wts, 2, out.data(), scratch), Error);
}

}  // namespace
}  // namespace tandem::cpu
