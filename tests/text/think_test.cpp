// ThinkSplitter: reasoning and answer of streamed output, whatever the piece boundaries.
#include <gtest/gtest.h>

#include "text/think.h"

namespace {

using tandem::text::ThinkSplitter;

struct Split {
    std::string think, answer;
    int n_switches = 0;  // think->answer or answer->think transitions between pieces
};

Split run(const std::vector<std::string>& pieces, bool in_think = false) {
    ThinkSplitter s(in_think);
    Split out;
    int last = -1;
    auto take = [&](const std::vector<ThinkSplitter::Piece>& ps) {
        for (const auto& p : ps) {
            EXPECT_FALSE(p.text.empty());
            (p.think ? out.think : out.answer) += p.text;
            if (last != -1 && last != static_cast<int>(p.think)) ++out.n_switches;
            last = p.think;
        }
    };
    for (const auto& p : pieces) take(s.push(p));
    take(s.flush());
    return out;
}

// Every way of cutting `text` into two pieces, and into single bytes, gives `expected`.
void expect_any_split(const std::string& text, const Split& expected, bool in_think = false) {
    auto check = [&](const Split& got, const std::string& how) {
        EXPECT_EQ(got.think, expected.think) << how;
        EXPECT_EQ(got.answer, expected.answer) << how;
        EXPECT_LE(got.n_switches, 1) << how;
    };
    check(run({text}, in_think), "whole");
    for (size_t cut = 0; cut <= text.size(); ++cut)
        check(run({text.substr(0, cut), text.substr(cut)}, in_think),
              "cut at " + std::to_string(cut));
    std::vector<std::string> bytes;
    for (char c : text) bytes.emplace_back(1, c);
    check(run(bytes, in_think), "byte by byte");
}

TEST(ThinkSplitter, R1OutputSplitsIntoReasoningAndAnswer) {
    expect_any_split("<think>\n 12 * 7: 10*7 + 2*7 = 84.\n</think>\n\n**84**",
                     {"12 * 7: 10*7 + 2*7 = 84.\n", "**84**"});
}

TEST(ThinkSplitter, NoTagsIsAllAnswer) {
    expect_any_split("  The answer is 84.", {"", "The answer is 84."});
    expect_any_split("Use <think> tags like this: <think>x</think>",
                     {"", "Use <think> tags like this: <think>x</think>"});
}

TEST(ThinkSplitter, TemplateOpenedTheBlock) {
    // R1's updated template ends the prompt with "<think>\n": the output starts in the reasoning.
    expect_any_split("Let me compute.\n</think>\n\n84", {"Let me compute.\n", "84"}, true);
}

TEST(ThinkSplitter, UnfinishedReasoningStaysReasoning) {
    expect_any_split("<think>\nstill going </thi", {"still going </thi", ""});
}

TEST(ThinkSplitter, TagLookalikesAreText) {
    expect_any_split("<think>a < b and </thinking> is not the tag</think>ok <think>",
                     {"a < b and </thinking> is not the tag", "ok <think>"});
    expect_any_split("<thin", {"", "<thin"});
    expect_any_split("<thinker>", {"", "<thinker>"});
}

TEST(ThinkSplitter, EmptyReasoning) {
    expect_any_split("<think>\n\n</think>\n\nHi!", {"", "Hi!"});
}

TEST(ThinkSplitter, MultiByteCharactersAcrossTheTag) {
    expect_any_split("<think>思考</think>答案", {"思考", "答案"});
}

TEST(ThinkSplitter, ReportsWhetherItSawReasoning) {
    ThinkSplitter a;
    a.push("<think>x");
    EXPECT_TRUE(a.in_think());
    EXPECT_TRUE(a.had_think());
    ThinkSplitter b;
    b.push("plain");
    EXPECT_FALSE(b.in_think());
    EXPECT_FALSE(b.had_think());
}

TEST(ThinkSplitter, PromptOpensThink) {
    using tandem::text::prompt_opens_think;
    EXPECT_TRUE(prompt_opens_think("<｜User｜>hi<｜Assistant｜><think>\n"));
    EXPECT_TRUE(prompt_opens_think("x<think>"));
    EXPECT_FALSE(prompt_opens_think("<｜User｜>hi<｜Assistant｜>"));
    EXPECT_FALSE(prompt_opens_think("<think>x</think>"));
    EXPECT_FALSE(prompt_opens_think(""));
}

}  // namespace
