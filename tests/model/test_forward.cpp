// Batch-first forward pass: a batch of several sequences gives the logits each gives alone,
// prefill in chunks gives the logits of prefill in one piece, and the cache can drop and
// truncate a sequence. Run on synthetic deepseek2 models (f32, q8_0, ud-iq1_s) and a
// hand-built qwen2 model (grouped-query attention with biases).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "core/check.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/synth.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/repack.h"

namespace fs = std::filesystem;
using namespace tandem;
using namespace tandem::model;

namespace {

fs::path temp_path(const std::string& name) {
    return fs::temp_directory_path() / fmt::format("tandem_model_{}_{}.gguf", name, ::getpid());
}

// A small qwen2 file: 2 layers, 4 query heads over 2 KV heads, q/k/v biases, F32 weights.
void write_qwen2(const fs::path& path) {
    gguf::Writer w;
    using gguf::Value;
    const int64_t n_embd = 64, n_head = 4, n_kv = 2, hd = 16, n_ff = 96, n_vocab = 200;
    w.set("general.architecture", Value::string("qwen2"));
    w.set("qwen2.block_count", Value::u32(2));
    w.set("qwen2.embedding_length", Value::u32(n_embd));
    w.set("qwen2.feed_forward_length", Value::u32(n_ff));
    w.set("qwen2.attention.head_count", Value::u32(n_head));
    w.set("qwen2.attention.head_count_kv", Value::u32(n_kv));
    w.set("qwen2.rope.freq_base", Value::f32(10000.0f));
    w.set("qwen2.attention.layer_norm_rms_epsilon", Value::f32(1e-6f));
    uint64_t seed = 7;
    auto add = [&](const std::string& name, std::vector<int64_t> ne, float scale) {
        w.add_tensor(name, GgmlType::F32, std::move(ne), [s = seed++, scale](std::span<uint8_t> out) {
            quant::fill_random(GgmlType::F32, out, s, scale);
        });
    };
    add("token_embd.weight", {n_embd, n_vocab}, 1.0f);
    for (int il = 0; il < 2; ++il) {
        const std::string p = fmt::format("blk.{}.", il);
        add(p + "attn_norm.weight", {n_embd}, 1.0f);
        add(p + "attn_q.weight", {n_embd, n_head * hd}, 0.2f);
        add(p + "attn_q.bias", {n_head * hd}, 0.1f);
        add(p + "attn_k.weight", {n_embd, n_kv * hd}, 0.2f);
        add(p + "attn_k.bias", {n_kv * hd}, 0.1f);
        add(p + "attn_v.weight", {n_embd, n_kv * hd}, 0.2f);
        add(p + "attn_v.bias", {n_kv * hd}, 0.1f);
        add(p + "attn_output.weight", {n_head * hd, n_embd}, 0.2f);
        add(p + "ffn_norm.weight", {n_embd}, 1.0f);
        add(p + "ffn_gate.weight", {n_embd, n_ff}, 0.2f);
        add(p + "ffn_up.weight", {n_embd, n_ff}, 0.2f);
        add(p + "ffn_down.weight", {n_ff, n_embd}, 0.2f);
    }
    add("output_norm.weight", {n_embd}, 1.0f);
    add("output.weight", {n_embd, n_vocab}, 0.2f);
    w.write(path.string());
}

struct Loaded {
    fs::path path;
    gguf::File file;
    std::unique_ptr<Model> model;
};

class ForwardTest : public ::testing::TestWithParam<std::string> {
protected:
    static cpu::ThreadPool& pool() {
        static cpu::ThreadPool p(2);
        return p;
    }
    static std::map<std::string, std::unique_ptr<Loaded>>& cache() {
        static std::map<std::string, std::unique_ptr<Loaded>> c;
        return c;
    }
    static Model& model_for(const std::string& which) {
        auto& slot = cache()[which];
        if (!slot) {
            const fs::path path = temp_path(which);
            if (which == "qwen2") {
                write_qwen2(path);
            } else {
                SynthOptions o;
                o.preset = "tiny";
                o.recipe = which;
                synth_writer(o).write(path.string());
            }
            slot = std::make_unique<Loaded>(Loaded{path, gguf::File::open(path.string()), nullptr});
            slot->model = load_model(slot->file, pool());
            fs::remove(path);  // the memory map keeps the data alive
        }
        return *slot->model;
    }

    // Logits of every position of `tokens` run as one sequence in one batch.
    static std::vector<float> run_alone(Model& m, const std::vector<int32_t>& tokens) {
        auto kv = m.make_cache(256);
        Batch b;
        for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
        std::vector<float> out(tokens.size() * static_cast<size_t>(m.n_vocab()));
        m.forward(b, *kv, out.data());
        return out;
    }
};

std::vector<int32_t> some_tokens(size_t n, uint32_t seed, int32_t n_vocab) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));
    return t;
}

// Largest |a - b| over max |b|: the comparisons below want this at float rounding level.
double rel_diff(const float* a, const float* b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; ++i) {
        EXPECT_TRUE(std::isfinite(a[i]));
        d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
        m = std::max(m, static_cast<double>(std::fabs(b[i])));
    }
    return d / std::max(m, 1e-30);
}

// How close two runs of the same tokens must be. On the per-token path every token's
// arithmetic is the same whatever the batch: float rounding only. Where the CPU has AMX, the
// batches of 4 or more tokens below go through the tile unit (bf16 weights and activations,
// cpu/gemm.h) while single tokens do not (attention over the cache of quantized models takes
// the tile unit at every batch size, cpu/attention.h): the logits then agree to bf16 rounding
// (measured up to 2.3% of max |logit| on the UD-IQ1_S model, ~0.4% on the others; the
// accuracy of the tile path itself is checked against transformers by
// tests/python/test_reference_logits.py, whose prompts take it). scripts/test.sh also runs
// this binary with TANDEM_GEMM=off, so both bounds are checked in CI.
// The quantized DeepSeek models also run prefills and single tokens in different attention
// forms (decompressed and absorbed, model/deepseek2.cpp), which quantize different activations
// to 8-bit blocks: ~1-3% of max |logit| without the bf16 path too. The float32 models keep float
// rounding there, which is what checks the batching itself most tightly.
double same_logits_tol(const std::string& model) {
    return cpu::gemm_unit() != cpu::GemmUnit::none || (model != "f32" && model != "qwen2") ? 5e-2 : 1e-5;
}

}  // namespace

TEST_P(ForwardTest, BatchOfSequencesEqualsEachAlone) {
    Model& m = model_for(GetParam());
    const int64_t V = m.n_vocab();
    const auto a = some_tokens(9, 1, static_cast<int32_t>(V));
    const auto b = some_tokens(5, 2, static_cast<int32_t>(V));
    const auto c = some_tokens(12, 3, static_cast<int32_t>(V));
    const auto la = run_alone(m, a), lb = run_alone(m, b), lc = run_alone(m, c);

    // All three in one batch, interleaved, sequence ids 7, 3, 11.
    auto kv = m.make_cache(256);
    Batch batch;
    std::vector<std::pair<int, size_t>> order;  // (which, position) per batch row
    for (size_t i = 0; i < 12; ++i) {
        if (i < a.size()) batch.add(a[i], static_cast<int32_t>(i), 7, true), order.emplace_back(0, i);
        if (i < b.size()) batch.add(b[i], static_cast<int32_t>(i), 3, true), order.emplace_back(1, i);
        batch.add(c[i], static_cast<int32_t>(i), 11, true), order.emplace_back(2, i);
    }
    std::vector<float> out(static_cast<size_t>(batch.size() * V));
    m.forward(batch, *kv, out.data());
    const std::vector<float>* alone[] = {&la, &lb, &lc};
    for (size_t r = 0; r < order.size(); ++r) {
        const auto [which, pos] = order[r];
        const float* want = alone[which]->data() + pos * static_cast<size_t>(V);
        EXPECT_LT(rel_diff(out.data() + r * static_cast<size_t>(V), want, static_cast<size_t>(V)), same_logits_tol(GetParam()))
            << "sequence " << which << " position " << pos;
    }
    EXPECT_EQ(kv->n_pos(7), 9);
    EXPECT_EQ(kv->n_pos(3), 5);
    EXPECT_EQ(kv->n_pos(11), 12);

    // Decode one more token for sequence 3 only, after the batch: same as running b + [t] alone.
    auto b2 = b;
    b2.push_back(5);
    const auto lb2 = run_alone(m, b2);
    Batch step;
    step.add(5, 5, 3, true);
    std::vector<float> one(static_cast<size_t>(V));
    m.forward(step, *kv, one.data());
    EXPECT_LT(rel_diff(one.data(), lb2.data() + 5 * static_cast<size_t>(V), static_cast<size_t>(V)), same_logits_tol(GetParam()));
}

TEST_P(ForwardTest, ChunkedPrefillEqualsOnePiece) {
    Model& m = model_for(GetParam());
    const int64_t V = m.n_vocab();
    const auto toks = some_tokens(23, 4, static_cast<int32_t>(V));
    const auto whole = run_alone(m, toks);
    for (size_t chunk : {1u, 4u, 7u}) {
        auto kv = m.make_cache(64);
        std::vector<float> out(toks.size() * static_cast<size_t>(V));
        for (size_t begin = 0; begin < toks.size(); begin += chunk) {
            Batch b;
            const size_t end = std::min(toks.size(), begin + chunk);
            for (size_t i = begin; i < end; ++i) b.add(toks[i], static_cast<int32_t>(i), 0, true);
            m.forward(b, *kv, out.data() + begin * static_cast<size_t>(V));
        }
        EXPECT_LT(rel_diff(out.data(), whole.data(), out.size()), same_logits_tol(GetParam())) << "chunk " << chunk;
    }
}

// Logits for some tokens only (a prompt's last token, as generation asks): the deepseek2 model
// then runs its last layer for those tokens alone, after appending every token's cache row, or
// only appends them when no token wants logits (a prompt's earlier chunks). The rows it
// returns, and a token decoded on top of that cache, match the all-logits run.
TEST_P(ForwardTest, SomeLogitsEqualAllLogits) {
    Model& m = model_for(GetParam());
    const int64_t V = m.n_vocab();
    const auto a = some_tokens(9, 6, static_cast<int32_t>(V));
    const auto b = some_tokens(6, 7, static_cast<int32_t>(V));
    auto a2 = a;
    a2.push_back(3);
    const auto la = run_alone(m, a2), lb = run_alone(m, b);
    auto kv = m.make_cache(64);
    Batch first;  // positions 0-2 of both, no logits
    for (size_t i = 0; i < 3; ++i) first.add(a[i], static_cast<int32_t>(i), 0, false), first.add(b[i], static_cast<int32_t>(i), 1, false);
    m.forward(first, *kv, nullptr);
    Batch batch;
    std::vector<std::pair<const float*, size_t>> wanted;  // (alone logits, position) per returned row
    for (size_t i = 3; i < a.size(); ++i) {
        const bool want = i == 4 || i + 1 == a.size();
        batch.add(a[i], static_cast<int32_t>(i), 0, want);
        if (want) wanted.emplace_back(la.data(), i);
        if (i < b.size()) {
            batch.add(b[i], static_cast<int32_t>(i), 1, i + 1 == b.size());
            if (i + 1 == b.size()) wanted.emplace_back(lb.data(), i);
        }
    }
    ASSERT_EQ(batch.n_logits(), 3);
    std::vector<float> out(wanted.size() * static_cast<size_t>(V));
    m.forward(batch, *kv, out.data());
    for (size_t r = 0; r < wanted.size(); ++r)
        EXPECT_LT(rel_diff(out.data() + r * static_cast<size_t>(V), wanted[r].first + wanted[r].second * static_cast<size_t>(V),
                           static_cast<size_t>(V)),
                  same_logits_tol(GetParam()))
            << "row " << r;
    Batch step;
    step.add(3, static_cast<int32_t>(a.size()), 0, true);
    std::vector<float> one(static_cast<size_t>(V));
    m.forward(step, *kv, one.data());
    EXPECT_LT(rel_diff(one.data(), la.data() + a.size() * static_cast<size_t>(V), static_cast<size_t>(V)), same_logits_tol(GetParam()));
}

TEST_P(ForwardTest, TruncateAndDropSequences) {
    Model& m = model_for(GetParam());
    const int64_t V = m.n_vocab();
    const auto toks = some_tokens(10, 5, static_cast<int32_t>(V));
    const auto whole = run_alone(m, toks);
    auto kv = m.make_cache(64);
    Batch b;
    for (size_t i = 0; i < toks.size(); ++i) b.add(toks[i], static_cast<int32_t>(i), 0, false);
    m.forward(b, *kv, nullptr);
    // Roll back to 6 positions and run the last 4 again: the logits are the originals.
    kv->truncate(0, 6);
    EXPECT_EQ(kv->n_pos(0), 6);
    Batch rest;
    for (size_t i = 6; i < toks.size(); ++i) rest.add(toks[i], static_cast<int32_t>(i), 0, true);
    std::vector<float> out(4 * static_cast<size_t>(V));
    m.forward(rest, *kv, out.data());
    EXPECT_LT(rel_diff(out.data(), whole.data() + 6 * static_cast<size_t>(V), out.size()), same_logits_tol(GetParam()));
    // A forked sequence continues independently of its parent.
    kv->fork(0, 1);
    EXPECT_EQ(kv->n_pos(1), 10);
    kv->drop(0);
    EXPECT_FALSE(kv->has(0));
    EXPECT_EQ(kv->n_pos(0), 0);
    EXPECT_TRUE(kv->has(1));
}

// Rolled back and continued with other tokens in one chunk (across the attention's 32-position
// packing units): bit for bit the logits of the new sequence on a fresh cache, so nothing of
// the old tokens survives the truncation. The same steps on both sides (one token at a time up
// to the truncation, then one chunk), so the same arithmetic whatever the CPU.
TEST_P(ForwardTest, TruncatedPositionsTakeNewTokens) {
    Model& m = model_for(GetParam());
    const int64_t V = m.n_vocab();
    const auto old_toks = some_tokens(70, 5, static_cast<int32_t>(V));
    auto new_toks = some_tokens(70, 11, static_cast<int32_t>(V));
    std::copy(old_toks.begin(), old_toks.begin() + 40, new_toks.begin());
    auto one_by_one = [&](KvCache& kv, const std::vector<int32_t>& toks, size_t end) {
        for (size_t i = 0; i < end; ++i) {
            Batch step;
            step.add(toks[i], static_cast<int32_t>(i), 0, false);
            m.forward(step, kv, nullptr);
        }
    };
    auto chunk = [&](KvCache& kv) {  // positions 40 .. 69 of the new tokens
        Batch b;
        for (size_t i = 40; i < new_toks.size(); ++i) b.add(new_toks[i], static_cast<int32_t>(i), 0, true);
        std::vector<float> out(30 * static_cast<size_t>(V));
        m.forward(b, kv, out.data());
        return out;
    };
    auto fresh = m.make_cache(128);
    one_by_one(*fresh, new_toks, 40);
    const std::vector<float> want = chunk(*fresh);
    auto kv = m.make_cache(128);
    one_by_one(*kv, old_toks, 70);
    kv->truncate(0, 40);
    const std::vector<float> got = chunk(*kv);
    for (size_t r = 0; r < 30; ++r)
        ASSERT_TRUE(std::equal(got.begin() + static_cast<ptrdiff_t>(r * static_cast<size_t>(V)),
                               got.begin() + static_cast<ptrdiff_t>((r + 1) * static_cast<size_t>(V)),
                               want.begin() + static_cast<ptrdiff_t>(r * static_cast<size_t>(V))))
            << "position " << 40 + r;
}

// The float32 attention core (model/ops.h attend_float_run) against scores and sums in float64
// from the same inputs: runs of 1 to 8 rows with limits that differ inside a run, keys and
// values apart in a strided row (grouped-query attention) or one row holding both (MLA's latent
// rows, the values leading), contexts across its 64-position value blocks. The error bound is
// float32 rounding of sums of up to `width` products and of the softmax: 1e-5 relative to the
// largest |value|. And each row alone gives its bits inside the run.
TEST(AttendFloatRun, AgainstFloat64AndAloneEqualsInARun) {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    struct Shape {
        int64_t width, rank, row_stride, k_at, v_at;
    };
    for (const Shape sh : {Shape{64, 64, 256, 64, 128}, Shape{72, 64, 72, 0, 0}, Shape{20, 12, 40, 0, 20}}) {
        for (int64_t n_rows : {1, 3, 7, 8}) {
            for (int64_t n_ctx : {1, 2, 65, 200}) {
                std::vector<float> q(static_cast<size_t>(n_rows * sh.width)), rows(static_cast<size_t>(n_ctx * sh.row_stride));
                for (float& v : q) v = normal(rng);
                for (float& v : rows) v = normal(rng);
                std::vector<int32_t> lim(static_cast<size_t>(n_rows));
                for (int64_t h = 0; h < n_rows; ++h) lim[static_cast<size_t>(h)] = static_cast<int32_t>(std::max<int64_t>(1, n_ctx - h % 3));
                const float* k = rows.data() + sh.k_at;
                const float* v = rows.data() + sh.v_at;
                const float scale = 0.2f;
                std::vector<float> p, o(static_cast<size_t>(n_rows * sh.rank));
                attend_float_run(q.data(), n_rows, lim.data(), k, v, sh.row_stride, sh.width, sh.rank, scale, p, o.data());
                double vmax = 0;
                for (float x : rows) vmax = std::max(vmax, std::fabs(static_cast<double>(x)));
                for (int64_t h = 0; h < n_rows; ++h) {
                    const int64_t n = lim[static_cast<size_t>(h)];
                    std::vector<double> w(static_cast<size_t>(n));
                    double mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < n; ++j) {
                        double d = 0;
                        for (int64_t i = 0; i < sh.width; ++i) d += double(q[static_cast<size_t>(h * sh.width + i)]) * k[j * sh.row_stride + i];
                        w[static_cast<size_t>(j)] = scale * d;
                        mx = std::max(mx, w[static_cast<size_t>(j)]);
                    }
                    for (double& x : w) sum += (x = std::exp(x - mx));
                    for (int64_t c = 0; c < sh.rank; ++c) {
                        double ref = 0;
                        for (int64_t j = 0; j < n; ++j) ref += w[static_cast<size_t>(j)] / sum * v[j * sh.row_stride + c];
                        ASSERT_NEAR(o[static_cast<size_t>(h * sh.rank + c)], ref, 1e-5 * vmax)
                            << "width " << sh.width << " rows " << n_rows << " ctx " << n_ctx << " row " << h << " column " << c;
                    }
                    std::vector<float> alone(static_cast<size_t>(sh.rank));
                    attend_float_run(q.data() + h * sh.width, 1, lim.data() + h, k, v, sh.row_stride, sh.width, sh.rank, scale, p,
                                     alone.data());
                    ASSERT_TRUE(std::equal(alone.begin(), alone.end(), o.begin() + h * sh.rank)) << "width " << sh.width << " rows " << n_rows << " ctx " << n_ctx << " row " << h << " alone";
                }
            }
        }
    }
}

// Where every layer's attention runs in bf16 (quantized deepseek2 files on a CPU with AMX or
// AVX512-BF16) the cache keeps the attention's bf16 blocks, else f32 rows (f32 files, qwen2).
TEST_P(ForwardTest, CacheKeepsBf16BlocksWhereAttentionIsBf16) {
    Model& m = model_for(GetParam());
    const bool bf16 = cpu::mla_attention_available() && (GetParam() == "q8_0" || GetParam() == "ud-iq1_s");
    EXPECT_EQ(m.make_cache(8)->mla_blocks(), bf16);
}

// The block form of the cache on its own: rows stored and read back as their bf16 values,
// across blocks; a truncation clears the cut positions of the kept block; a fork copies.
TEST(KvCache, Bf16BlocksStoreReadTruncateFork) {
    if (!cpu::mla_attention_available()) GTEST_SKIP() << "no AMX or AVX512-BF16 on this CPU";
    constexpr int64_t kWidth = 72, kRank = 64, kPos = 40;
    KvCache kv(2, kWidth, 100, kRank);
    ASSERT_TRUE(kv.mla_blocks());
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    std::vector<std::vector<float>> rows(kPos, std::vector<float>(kWidth));
    Batch b;
    for (int64_t p = 0; p < kPos; ++p) {
        for (float& v : rows[static_cast<size_t>(p)]) v = dist(rng);
        kv.reserve_row(0, 1, p);
        kv.write_row(0, 1, p, rows[static_cast<size_t>(p)].data());
        b.add(0, static_cast<int32_t>(p), 0, false);
    }
    kv.commit(b);
    EXPECT_EQ(kv.n_pos(0), kPos);
    std::vector<float> back(kWidth);
    for (int64_t p : {int64_t{0}, int64_t{31}, int64_t{32}, kPos - 1}) {
        kv.read_row(0, 1, p, back.data());
        for (int64_t c = 0; c < kWidth; ++c)
            ASSERT_EQ(back[static_cast<size_t>(c)], quant::bf16_to_f32(quant::f32_to_bf16(rows[static_cast<size_t>(p)][static_cast<size_t>(c)])))
                << "position " << p << " value " << c;
    }
    kv.fork(0, 5);
    kv.truncate(0, 34);
    EXPECT_EQ(kv.n_pos(0), 34);
    kv.read_row(0, 1, 35, back.data());  // cut, in the kept block: zero
    EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](float v) { return v == 0.0f; }));
    kv.read_row(0, 1, 33, back.data());  // kept
    EXPECT_EQ(back[0], quant::bf16_to_f32(quant::f32_to_bf16(rows[33][0])));
    kv.read_row(5, 1, 35, back.data());  // the fork keeps its own copy
    EXPECT_EQ(back[0], quant::bf16_to_f32(quant::f32_to_bf16(rows[35][0])));
    EXPECT_THROW(kv.read_row(0, 1, 70, back.data()), std::exception);
}

// The logits of sequences a (id 0) and b (id 1, may be shorter) fed together, positions
// [begin, end) of each per forward pass, in order, over one cache of 64 positions.
std::vector<float> two_sequences_in_chunks(Model& m, const std::vector<int32_t>& a, const std::vector<int32_t>& b,
                                           std::initializer_list<std::pair<size_t, size_t>> chunks) {
    const int64_t V = m.n_vocab();
    auto kv = m.make_cache(64);
    std::vector<float> out;
    for (const auto& [begin, end] : chunks) {
        Batch batch;
        for (size_t i = begin; i < end; ++i) batch.add(a[i], static_cast<int32_t>(i), 0, true);
        for (size_t i = begin; i < std::min(end, b.size()); ++i) batch.add(b[i], static_cast<int32_t>(i), 1, true);
        const size_t at = out.size();
        out.resize(at + static_cast<size_t>(batch.size() * V));
        m.forward(batch, *kv, out.data() + at);
    }
    return out;
}

// The two forms of DeepSeek's attention (model/deepseek2.cpp) on the same file: a prefill of
// two sequences from an empty cache, then a second chunk of each on top of what the first
// wrote, give the same logits absorbed and decompressed. Each form is also checked against transformers
// by tests/python/test_reference_logits.py (test_mla_forms).
TEST(MlaForms, DecompressedEqualsAbsorbed) {
    cpu::ThreadPool pool(2);
    for (const std::string recipe : {"f32", "ud-iq1_s"}) {
        SCOPED_TRACE(recipe);
        const fs::path path = temp_path("mla_" + recipe);
        SynthOptions o;
        o.preset = "tiny";
        o.recipe = recipe;
        synth_writer(o).write(path.string());
        const gguf::File file = gguf::File::open(path.string());
        fs::remove(path);
        std::vector<std::vector<float>> logits;
        for (const MlaForm form : {MlaForm::kAbsorbed, MlaForm::kDecompressed}) {
            LoadOptions lo;
            lo.mla = form;
            const auto m = load_model(file, pool, lo);
            const int64_t V = m->n_vocab();
            const auto a = some_tokens(19, 8, static_cast<int32_t>(V)), b = some_tokens(11, 9, static_cast<int32_t>(V));
            logits.push_back(two_sequences_in_chunks(*m, a, b, {{0, 7}, {7, 19}}));
        }
        ASSERT_EQ(logits[0].size(), logits[1].size());
        // f32: float rounding on either path. Quantized: the forms quantize different activations
        // to 8-bit blocks (the latent rows for W_uk / W_uv against the queries and outputs) or
        // round different ones to bf16: measured 1.4% of max |logit| without AMX.
        EXPECT_LT(rel_diff(logits[1].data(), logits[0].data(), logits[0].size()), recipe == "f32" ? 1e-5 : 5e-2);
    }
}

// Repacked routed experts (LoadOptions::repack, quant/repack.h) hold the same weights. Two
// sequences stepped 2 tokens at a time (one each) give logits that match the file's layout up
// to float summation order (the dot kernels add the same integers in other lanes): no expert
// gets the 3 tokens from which either layout may take a tile path, and those can differ by
// layout (on the tile unit IQ1_S: bf16, IQ1_S_U2: int8; on the vector units both int8, from
// their own thresholds, cpu/gemm_i8.h). A prefill in chunks of 18 and 22 tokens then a decode
// step, where the tile paths run, match within what bf16 against 8-bit activations moves (5% of
// max |logit|, as the MLA forms above). A third load in
// the file's layout after the repack released the file's pages reads them again from the file:
// the first run's logits exactly.
// The repacked formats: IQ1_S (ud-iq1_s) and IQ1_M (ud-iq1_m) experts, IQ2_XXS down projections
// in both; Q2_K gate and up and Q3_K down projections (ud-q2_k_xl: the same bytes, so the decode
// reads as many).
class RepackTest : public ::testing::TestWithParam<const char*> {};

// A tiny synthetic model of `recipe`, opened (the memory map keeps it after the file is removed).
gguf::File tiny_model(const std::string& recipe, const std::string& name) {
    SynthOptions o;
    o.preset = "tiny";
    o.recipe = recipe;
    const fs::path path = temp_path(name + "_" + recipe);
    synth_writer(o).write(path.string());
    gguf::File file = gguf::File::open(path.string());
    fs::remove(path);
    return file;
}

// `formats`: what the load says it repacks (its progress line).
void expect_same_logits_as_the_file_layout(const std::string& recipe, const std::string& formats) {
    cpu::ThreadPool pool(2);
    const gguf::File file = tiny_model(recipe, "repack");
    std::vector<std::vector<float>> logits, prefill;
    std::vector<uint64_t> bytes;
    for (const Repack mode : {Repack::kOff, Repack::kOn, Repack::kOff}) {
        LoadOptions lo;
        lo.repack = mode;
        ::testing::internal::CaptureStderr();
        const auto m = load_model(file, pool, lo);
        const std::string said = ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(said.find("repacking " + formats + " experts") != std::string::npos, mode == Repack::kOn) << said;
        bytes.push_back(m->bytes_per_token());
        const int64_t V = m->n_vocab();
        const auto a = some_tokens(21, 10, static_cast<int32_t>(V)), b = some_tokens(13, 12, static_cast<int32_t>(V));
        logits.push_back(two_sequences_in_chunks(*m, a, b, {{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}}));
        prefill.push_back(two_sequences_in_chunks(*m, a, b, {{0, 9}, {9, 20}, {20, 21}}));
    }
    ASSERT_EQ(logits[0].size(), logits[1].size());
    EXPECT_LT(rel_diff(logits[1].data(), logits[0].data(), logits[0].size()), 1e-4);
    ASSERT_EQ(prefill[0].size(), prefill[1].size());
    EXPECT_LT(rel_diff(prefill[1].data(), prefill[0].data(), prefill[0].size()), 5e-2);
    EXPECT_EQ(prefill[2], prefill[0]);
    EXPECT_EQ(logits[2], logits[0]);
    if (recipe == "ud-q2_k_xl") EXPECT_EQ(bytes[1], bytes[0]);  // Q2_K_U16, Q3_K_U16: the bytes regrouped
    else EXPECT_GT(bytes[1], bytes[0]);                         // the repacked experts are larger
}

TEST_P(RepackTest, SameLogitsAsTheFileLayout) {
    expect_same_logits_as_the_file_layout(GetParam(), GetParam() == std::string("ud-iq1_s") ? "IQ1_S, IQ2_XXS" : "IQ1_M, IQ2_XXS");
}
TEST(Repack, Q2kQ3kSameLogitsAsTheFileLayout) { expect_same_logits_as_the_file_layout("ud-q2_k_xl", "Q2_K, Q3_K"); }

// A model past 80% of the memory keeps its Q2_K and Q3_K experts in the file's layout on auto
// (the regrouped copy would be this process's memory instead of the shared page cache), and says so.
TEST(Repack, Q2kQ3kStayInTheFileLayoutWhenTheModelIsLarge) {
    cpu::ThreadPool pool(2);
    const gguf::File file = tiny_model("ud-q2_k_xl", "repack_large");
    LoadOptions lo;
    lo.memory_bytes = file.total_file_bytes();  // 80% of it: less than the file
    ::testing::internal::CaptureStderr();
    const auto m = load_model(file, pool, lo);
    const std::string said = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(said.find("repacking"), std::string::npos) << said;
    EXPECT_NE(said.find("Q2_K, Q3_K expert tensors left in the file's layout"), std::string::npos) << said;
}

// On auto, a memory budget with room for some of the repacked experts but not all (the test sets
// LoadOptions::memory_bytes; the loader plans with 80% of it) repacks as many expert tensors as
// fit: the decode reads more bytes than the file layout's and fewer than all repacked, and the
// logits match the file layout's as in SameLogitsAsTheFileLayout.
TEST_P(RepackTest, AutoRepacksWhatFitsTheMemory) {
    cpu::ThreadPool pool(2);
    const gguf::File file = tiny_model(GetParam(), "repack_fit");
    uint64_t growth = 0;  // all repacked experts against the file's
    for (const gguf::TensorInfo& t : file.tensors())
        if (const auto to = quant::repacked_type(t.type); to && t.name.find("_exps") != std::string::npos)
            growth += t.n_bytes / ggml_traits(t.type).type_size * (ggml_traits(*to).type_size - ggml_traits(t.type).type_size);
    ASSERT_GT(growth, 0u);
    std::vector<uint64_t> bytes;
    std::vector<std::vector<float>> logits;
    const uint64_t half = (file.total_file_bytes() + growth / 2) / 4 * 5;  // 80% of it: the file and half the growth
    for (const auto& [mode, memory] : {std::pair{Repack::kOff, uint64_t{0}}, std::pair{Repack::kAuto, half},
                                       std::pair{Repack::kOn, uint64_t{0}}, std::pair{Repack::kAuto, uint64_t{1}}}) {
        LoadOptions lo;
        lo.repack = mode;
        lo.memory_bytes = memory;
        const auto m = load_model(file, pool, lo);
        bytes.push_back(m->bytes_per_token());
        const int64_t V = m->n_vocab();
        const auto a = some_tokens(21, 10, static_cast<int32_t>(V)), b = some_tokens(13, 12, static_cast<int32_t>(V));
        logits.push_back(two_sequences_in_chunks(*m, a, b, {{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
    }
    EXPECT_GT(bytes[1], bytes[0]);  // some repacked
    EXPECT_LT(bytes[1], bytes[2]);  // not all
    EXPECT_EQ(bytes[3], bytes[0]);  // no room: none
    EXPECT_LT(rel_diff(logits[1].data(), logits[0].data(), logits[0].size()), 1e-4);
    EXPECT_EQ(logits[3], logits[0]);
}

// Short of room for every repacked expert, auto takes the formats that gain the most per added
// byte first (IQ1_S, IQ1_M, then IQ2_XXS; model/deepseek2.cpp): on ud-iq1_m with room for exactly
// the IQ1_M tensors' growth, the decode reads grow by exactly theirs (in layer order the first
// layer's IQ2_XXS down would have taken part of the room).
TEST(Repack, AutoTakesIq1mBeforeIq2xxs) {
    cpu::ThreadPool pool(2);
    const gguf::File file = tiny_model("ud-iq1_m", "repack_order");
    uint64_t iq1m_growth = 0, iq2xxs_growth = 0;
    for (const gguf::TensorInfo& t : file.tensors()) {
        if (t.name.find("_exps") == std::string::npos || !quant::repacked_type(t.type)) continue;
        const uint64_t growth = t.n_bytes / ggml_traits(t.type).type_size *
                                (ggml_traits(*quant::repacked_type(t.type)).type_size - ggml_traits(t.type).type_size);
        (t.type == GgmlType::IQ1_M ? iq1m_growth : iq2xxs_growth) += growth;
    }
    ASSERT_GT(iq1m_growth, 0u);
    ASSERT_GT(iq2xxs_growth, 0u);
    const uint64_t n_expert = file.metadata().get_u32("deepseek2.expert_count");
    const uint64_t n_used = file.metadata().get_u32("deepseek2.expert_used_count");
    LoadOptions off, fit;
    off.repack = Repack::kOff;
    fit.memory_bytes = (file.total_file_bytes() + iq1m_growth + 3) / 4 * 5;  // 80% of it: the file and the IQ1_M growth
    const uint64_t base = load_model(file, pool, off)->bytes_per_token();
    EXPECT_EQ(load_model(file, pool, fit)->bytes_per_token(), base + iq1m_growth / n_expert * n_used);
}

INSTANTIATE_TEST_SUITE_P(Recipes, RepackTest, ::testing::Values("ud-iq1_s", "ud-iq1_m"),
                         [](const auto& p) { return std::string(p.param) == "ud-iq1_s" ? "ud_iq1_s" : "ud_iq1_m"; });

TEST_P(ForwardTest, BadBatchesAreRejected) {
    Model& m = model_for(GetParam());
    auto kv = m.make_cache(8);
    auto error_of = [&](const Batch& b) {
        std::vector<float> out(static_cast<size_t>(b.size() * m.n_vocab()));
        try {
            m.forward(b, *kv, out.data());
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    Batch bad_token;
    bad_token.add(static_cast<int32_t>(m.n_vocab()), 0, 0, true);
    EXPECT_NE(error_of(bad_token).find("outside the vocabulary"), std::string::npos);
    Batch gap;
    gap.add(1, 1, 0, true);
    EXPECT_NE(error_of(gap).find("sequence 0 has position 1 at index 0, expected 0"), std::string::npos);
    Batch too_long;
    for (int i = 0; i < 9; ++i) too_long.add(1, i, 0, false);
    EXPECT_NE(error_of(too_long).find("past the context size 8"), std::string::npos);
    EXPECT_EQ(kv->n_pos(0), 0);  // nothing was cached by the rejected batches
}

INSTANTIATE_TEST_SUITE_P(Models, ForwardTest, ::testing::Values("f32", "q8_0", "ud-iq1_s", "qwen2"),
                         [](const auto& param_info) {
                             std::string s = param_info.param;
                             for (char& ch : s)
                                 if (ch == '-') ch = '_';
                             return s;
                         });
