// Sampler and stop strings: each step against its formula, seeds reproduce, draws follow the
// renormalised distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/check.h"
#include "text/sampler.h"

namespace tandem::text {
namespace {

std::vector<double> softmax(const std::vector<float>& l, float t) {
    double m = *std::max_element(l.begin(), l.end()), s = 0;
    std::vector<double> p(l.size());
    for (size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp((l[i] - m) / t);
    for (auto& x : p) x /= s;
    return p;
}

std::map<int32_t, double> frequencies(Sampler& s, const std::vector<float>& logits, int n) {
    std::map<int32_t, double> f;
    for (int i = 0; i < n; ++i) f[s.sample(logits)] += 1.0 / n;
    return f;
}

TEST(Sampler, GreedyTakesTheLargestLogitLowestIdOnTies) {
    Sampler s({.temperature = 0});
    EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 3.0f}), 1);
    Sampler k1({.temperature = 5.0f, .top_k = 1, .seed = 7});
    for (int i = 0; i < 100; ++i) EXPECT_EQ(k1.sample(std::vector<float>{0.1f, 0.2f, 0.15f}), 1);
}

TEST(Sampler, SameSeedSameDrawsAndResetReplays) {
    const std::vector<float> logits{0.0f, 0.5f, 1.0f, 0.2f, -0.3f};
    Sampler a({.seed = 42}), b({.seed = 42});
    std::vector<int32_t> da, db;
    for (int i = 0; i < 200; ++i) da.push_back(a.sample(logits)), db.push_back(b.sample(logits));
    EXPECT_EQ(da, db);
    a.reset();
    std::vector<int32_t> again;
    for (int i = 0; i < 200; ++i) again.push_back(a.sample(logits));
    EXPECT_EQ(again, da);
}

TEST(Sampler, DrawsFollowTheTemperedSoftmax) {
    const std::vector<float> logits{1.0f, 2.0f, 0.5f, 1.5f};
    for (float t : {0.5f, 1.0f, 2.0f}) {
        Sampler s({.temperature = t, .seed = 3});
        const auto f = frequencies(s, logits, 200000);
        const auto p = softmax(logits, t);
        for (int32_t i = 0; i < 4; ++i)
            EXPECT_NEAR(f.count(i) ? f.at(i) : 0.0, p[i], 0.005) << "t=" << t << " id " << i;
    }
}

TEST(Sampler, TopKTopPMinPKeepTheRightSets) {
    // Probabilities at temperature 1: softmax(log p) = p.
    const std::vector<float> logits{std::log(0.5f), std::log(0.25f), std::log(0.15f),
                                    std::log(0.1f)};
    {
        Sampler s({.top_k = 2, .seed = 1});
        const auto f = frequencies(s, logits, 100000);
        EXPECT_EQ(f.size(), 2u);
        EXPECT_NEAR(f.at(0), 0.5 / 0.75, 0.01);
    }
    {
        // 0.5 + 0.25 = 0.75 < 0.8, so the third token is needed; the fourth is not.
        Sampler s({.top_p = 0.8f, .seed = 1});
        const auto f = frequencies(s, logits, 100000);
        EXPECT_EQ(f.size(), 3u);
        EXPECT_NEAR(f.at(2), 0.15 / 0.9, 0.01);
    }
    {
        // min_p 0.29: threshold 0.145 keeps 0.5, 0.25, 0.15; 0.31 (0.155) drops 0.15.
        Sampler s({.min_p = 0.29f, .seed = 1});
        EXPECT_EQ(frequencies(s, logits, 50000).size(), 3u);
        Sampler s2({.min_p = 0.31f, .seed = 1});
        EXPECT_EQ(frequencies(s2, logits, 50000).size(), 2u);
    }
}

TEST(Sampler, PenaltiesFollowTheirFormulas) {
    Sampler s({.repetition_penalty = 2.0f,
               .presence_penalty = 0.5f,
               .frequency_penalty = 0.25f,
               .penalty_last_n = 3});
    for (int32_t t : {9, 0, 1, 1}) s.accept(t);  // window keeps 0, 1, 1
    std::vector<float> l{4.0f, -4.0f, 1.0f};
    s.apply_penalties(l);
    EXPECT_FLOAT_EQ(l[0], 4.0f / 2 - 0.5f - 0.25f);
    EXPECT_FLOAT_EQ(l[1], -4.0f * 2 - 0.5f - 0.5f);
    EXPECT_FLOAT_EQ(l[2], 1.0f);
    // Greedy sees the penalised logits.
    Sampler g({.temperature = 0, .repetition_penalty = 10.0f});
    g.accept(0);
    EXPECT_EQ(g.sample(std::vector<float>{5.0f, 1.0f}), 1);
}

TEST(Sampler, BadParametersAreNamed) {
    EXPECT_THROW(Sampler({.top_k = -1}), Error);
    EXPECT_THROW(Sampler({.top_p = 0.0f}), Error);
    EXPECT_THROW(Sampler({.min_p = 1.5f}), Error);
    EXPECT_THROW(Sampler({.repetition_penalty = 0.0f}), Error);
    try {
        Sampler({.top_p = 2.0f});
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos);
    }
}

TEST(StopMatcher, StopsAndHoldsBackPossiblePrefixes) {
    StopMatcher m({"</answer>", "STOP"});
    std::string shown;
    for (std::string_view piece : {"The answer is 4", "2.</ans", "wer> ignored"}) {
        const auto r = m.push(piece);
        shown += r.text;
        if (r.stopped) break;
    }
    EXPECT_TRUE(m.stopped());
    EXPECT_EQ(shown, "The answer is 42.");
    EXPECT_EQ(m.push("more").text, "");

    StopMatcher m2({"STOP"});
    EXPECT_EQ(m2.push("abc ST").text, "abc ");  // "ST" could start STOP
    EXPECT_EQ(m2.push("ART").text, "START");
    EXPECT_EQ(m2.push("xS").text, "x");
    EXPECT_EQ(m2.flush(), "S");
}

TEST(StopMatcher, EarliestStopWins) {
    StopMatcher m({"bbb", "ab"});
    const auto r = m.push("xxabbb");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "xx");
}

}  // namespace
}  // namespace tandem::text
