// The MLA attention (cpu/attention.h), on the tile unit or the vector units (gemm_unit()),
// against a float64 reference computed from the same bf16-rounded queries and cache rows:
//   s_j = q . kv_j (float64), p = softmax(scale * s) over j < the row's causal limit,
//   o   = sum_j p_j kv_j[:rank].
// What the kernel adds on top is the bf16 rounding of the softmax numerators (relative error
// <= 2^-9 each, so |o - ref| <= 2^-8 sum_j p_j |v_j|), float32 accumulation and a float32
// exp; the tolerance is 2^-8 sum_j p_j |v_j| per output value.
// At R1 shapes (576/512, 128 heads) and at the small test models' (72/64 and 272/256, 4 heads,
// where work items span tokens of different causal limits), with contexts 1, 17, 300 and 700
// (not multiples of 16; 300 and 700 take more than one softmax block), cache rows past each
// sequence's context and outputs poisoned with NaN. Also: a row's result is bit-identical
// when its token runs alone, on another number of threads (where its blocks run in parallel),
// and when its sequence comes as blocks of the attention's layout instead of rows.
// Skipped on CPUs without AMX or AVX512-BF16; scripts/test.sh runs it again with
// TANDEM_GEMM=avx512 (the vector units on AMX CPUs).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/attention.h"
#include "quant/blocks.h"
#include "random_floats.h"

namespace tandem::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

float round_bf16(float x) { return quant::bf16_to_f32(quant::f32_to_bf16(x)); }

struct Token {
    int32_t seq;    // index into the case's sequences
    int32_t limit;  // causal limit: position + 1
};

struct Case {
    int64_t width, rank, n_head;
    float scale;
    std::vector<int64_t> n_ctx;  // per sequence
    std::vector<Token> tokens;   // batch order; rows t * n_head + h
};

struct Data {
    std::vector<std::vector<float>> cache;  // per sequence: [n_ctx + 3 poisoned rows, width]
    std::vector<float> q;                   // [n_rows, width]
    std::vector<MlaSeq> seqs;
    std::vector<int32_t> row_seq, row_n_ctx;
};

Data make_data(const Case& c, uint64_t seed) {
    Data d;
    for (size_t i = 0; i < c.n_ctx.size(); ++i) {
        const int64_t n = c.n_ctx[i];
        std::vector<float> rows = random_floats(n * c.width, seed + i, 1.0f);
        rows.resize(static_cast<size_t>((n + 3) * c.width), kNaN);  // read past n_ctx: NaN everywhere
        d.cache.push_back(std::move(rows));
    }
    for (size_t i = 0; i < c.n_ctx.size(); ++i) d.seqs.push_back({.rows = d.cache[i].data(), .n_ctx = c.n_ctx[i]});
    const int64_t n_rows = static_cast<int64_t>(c.tokens.size()) * c.n_head;
    d.q = random_floats(n_rows * c.width, seed + 100, 1.0f);
    for (const Token& t : c.tokens)
        for (int64_t h = 0; h < c.n_head; ++h) {
            d.row_seq.push_back(t.seq);
            d.row_n_ctx.push_back(t.limit);
        }
    return d;
}

std::vector<float> run(ThreadPool& pool, const Case& c, const Data& d, MlaScratch& scratch) {
    const int64_t n_rows = static_cast<int64_t>(d.row_seq.size());
    std::vector<float> o(static_cast<size_t>(n_rows * c.rank), kNaN);
    MlaParams p;
    p.width = c.width;
    p.rank = c.rank;
    p.scale = c.scale;
    p.n_rows = n_rows;
    p.q = d.q.data();
    p.row_seq = d.row_seq.data();
    p.row_n_ctx = d.row_n_ctx.data();
    p.seqs = d.seqs;
    p.o = o.data();
    mla_attention(pool, p, scratch);
    return o;
}

void check_against_reference(const Case& c, const Data& d, const std::vector<float>& o) {
    const int64_t n_rows = static_cast<int64_t>(d.row_seq.size());
    double worst = 0;  // largest error over its tolerance
    std::vector<double> w, qr(static_cast<size_t>(c.width));
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* cache = d.cache[static_cast<size_t>(d.row_seq[static_cast<size_t>(r)])].data();
        const int64_t n = d.row_n_ctx[static_cast<size_t>(r)];
        for (int64_t i = 0; i < c.width; ++i) qr[static_cast<size_t>(i)] = round_bf16(d.q[static_cast<size_t>(r * c.width + i)]);
        w.assign(static_cast<size_t>(n), 0.0);
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t i = 0; i < c.width; ++i) s += qr[static_cast<size_t>(i)] * round_bf16(cache[j * c.width + i]);
            w[static_cast<size_t>(j)] = static_cast<double>(c.scale) * s;
            mx = std::max(mx, w[static_cast<size_t>(j)]);
        }
        double sum = 0;
        for (double& x : w) sum += (x = std::exp(x - mx));
        for (int64_t col = 0; col < c.rank; ++col) {
            double ref = 0, mag = 0;
            for (int64_t j = 0; j < n; ++j) {
                const double v = round_bf16(cache[j * c.width + col]);
                ref += w[static_cast<size_t>(j)] * v;
                mag += w[static_cast<size_t>(j)] * std::fabs(v);
            }
            ref /= sum;
            mag /= sum;
            const float got = o[static_cast<size_t>(r * c.rank + col)];
            ASSERT_TRUE(std::isfinite(got)) << "row " << r << " column " << col;
            const double tol = std::ldexp(mag, -8);
            ASSERT_NEAR(got, ref, tol) << "row " << r << " column " << col << " (causal limit " << n << ")";
            worst = std::max(worst, std::fabs(got - ref) / tol);
        }
    }
    std::printf("    %lld rows: largest error %.3f of the tolerance\n", static_cast<long long>(n_rows), worst);
}

// Each token run alone (its own call, its sequence cut at its causal limit) gives bit for bit
// the rows it got in the batch.
// Every other token's blocks in waves of one block (the rest in one wave), and the scratch's
// buffers poisoned with NaN before each call: nothing is read that the call did not write.
void check_each_token_alone(ThreadPool& pool, const Case& c, const Data& d, const std::vector<float>& batch) {
    MlaScratch scratch;
    auto poison = [](auto& v) { std::fill(v.begin(), v.end(), kNaN); };
    for (size_t t = 0; t < c.tokens.size(); ++t) {
        poison(scratch.wave);
        poison(scratch.states);
        for (MlaScratch::Thread& th : scratch.threads) poison(th.part), poison(th.state), poison(th.s);
        scratch.wave_bytes = t % 2 ? 1 : int64_t{64} << 20;
        Case one = c;
        one.n_ctx = {c.tokens[t].limit};
        one.tokens = {{0, c.tokens[t].limit}};
        Data dd;
        dd.seqs = {{.rows = d.cache[static_cast<size_t>(c.tokens[t].seq)].data(), .n_ctx = c.tokens[t].limit}};
        dd.q.assign(d.q.begin() + static_cast<ptrdiff_t>(t) * c.n_head * c.width,
                    d.q.begin() + static_cast<ptrdiff_t>(t + 1) * c.n_head * c.width);
        dd.row_seq.assign(static_cast<size_t>(c.n_head), 0);
        dd.row_n_ctx.assign(static_cast<size_t>(c.n_head), c.tokens[t].limit);
        const std::vector<float> o = run(pool, one, dd, scratch);
        for (size_t i = 0; i < o.size(); ++i)
            ASSERT_EQ(o[i], batch[t * static_cast<size_t>(c.n_head * c.rank) + i]) << "token " << t << " value " << i;
    }
}

// The same sequences given as blocks (as a cache keeps them, mla_pack_position) give bit for
// bit the rows' results. The last block's positions past n_ctx hold stale rows (finite, as
// a truncated cache's may) instead of zeros.
void check_blocks(ThreadPool& pool, const Case& c, const Data& d, const std::vector<float>& from_rows) {
    const int64_t be = mla_block_elems(c.width, c.rank);
    std::vector<aligned_vector<uint16_t>> blocks;
    Data db = d;
    for (size_t i = 0; i < c.n_ctx.size(); ++i) {
        const int64_t n = c.n_ctx[i], n_blocks = (n + kMlaBlock - 1) / kMlaBlock;
        aligned_vector<uint16_t> b(static_cast<size_t>(n_blocks * be), 0);
        const std::vector<float> stale = random_floats(c.width, 99 + i, 3.0f);
        for (int64_t j = 0; j < n_blocks * kMlaBlock; ++j)
            mla_pack_position(j < n ? d.cache[i].data() + j * c.width : stale.data(), j % kMlaBlock, c.width, c.rank,
                              b.data() + (j / kMlaBlock) * be);
        // Reading a position back gives its bf16 values.
        std::vector<float> back(static_cast<size_t>(c.width));
        mla_unpack_position(b.data() + ((n - 1) / kMlaBlock) * be, (n - 1) % kMlaBlock, c.width, back.data());
        for (int64_t col = 0; col < c.width; ++col)
            ASSERT_EQ(back[static_cast<size_t>(col)], round_bf16(d.cache[i][static_cast<size_t>((n - 1) * c.width + col)])) << col;
        blocks.push_back(std::move(b));
        db.seqs[i] = {.blocks = blocks.back().data(), .n_ctx = n};
    }
    MlaScratch scratch;
    EXPECT_EQ(run(pool, c, db, scratch), from_rows);
}

void check_case(const Case& c) {
    SCOPED_TRACE(::testing::Message() << "width " << c.width << " rank " << c.rank << " heads " << c.n_head);
    // 12 threads for the tokens alone: more than their items (8 of 16 rows for 128 heads, one
    // for 4 heads), so their blocks run in parallel waves and are folded afterwards, where the
    // batch ran each item's blocks one after the other.
    ThreadPool pool(2), other(12);
    const Data d = make_data(c, 17);
    MlaScratch scratch;
    const std::vector<float> o = run(pool, c, d, scratch);
    check_against_reference(c, d, o);
    check_each_token_alone(other, c, d, o);
    check_blocks(pool, c, d, o);
    // The scratch, grown by this call, serves a second call with the same result.
    EXPECT_EQ(run(pool, c, d, scratch), o);
}

TEST(MlaAttention, R1ShapesAgainstFloat64OnBf16Inputs) {
    if (!mla_attention_available()) GTEST_SKIP() << "no AMX or AVX512-BF16 on this CPU";
    // R1: softmax scale mscale^2 / sqrt(192) with YaRN factor 40 (mscale 1 + 0.1 ln 40).
    Case c{576, 512, 128, 0.1352f, {300, 1, 17, 700}, {}};
    c.tokens = {{0, 298}, {2, 5}, {0, 299}, {1, 1}, {2, 16}, {0, 300}, {3, 700}, {2, 17}};
    check_case(c);
}

TEST(MlaAttention, SmallModelShapesWithItemsAcrossTokens) {
    if (!mla_attention_available()) GTEST_SKIP() << "no AMX or AVX512-BF16 on this CPU";
    // The reference fixtures' (72 = 64 + 8) and the synthetic tiny model's (272 = 256 + 16)
    // widths are not multiples of 32; a 32-row item holds 8 tokens of 4 heads.
    for (const auto& [width, rank] : {std::pair<int64_t, int64_t>{72, 64}, {272, 256}, {56, 40}}) {
        Case c{width, rank, 4, 1.0f / std::sqrt(24.0f), {40, 300}, {}};
        for (int32_t pos = 0; pos < 40; ++pos) c.tokens.push_back({0, pos + 1});
        for (int32_t pos = 290; pos < 300; ++pos) c.tokens.push_back({1, pos + 1});
        check_case(c);
    }
}

TEST(MlaAttention, DecodeStepAtLongContextTimed) {
    if (!mla_attention_available()) GTEST_SKIP() << "no AMX or AVX512-BF16 on this CPU";
    // One R1 token at 4096 positions (16 softmax blocks): checked, and timed for the record.
    Case c{576, 512, 128, 0.1352f, {4096}, {{0, 4096}}};
    ThreadPool pool(2);
    const Data d = make_data(c, 5);
    MlaScratch scratch;
    const std::vector<float> o = run(pool, c, d, scratch);
    check_against_reference(c, d, o);
    const auto t0 = std::chrono::steady_clock::now();
    constexpr int kReps = 5;
    for (int i = 0; i < kReps; ++i) run(pool, c, d, scratch);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kReps;
    const double flop = 2.0 * 128 * 4096 * (576 + 512);
    std::printf("    decode step, 128 heads x 4096 positions, 2 threads: %.2f ms, %.1f GFLOP/s\n", s * 1e3, flop / s * 1e-9);
}

}  // namespace
}  // namespace tandem::cpu
