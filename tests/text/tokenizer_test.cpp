// Unit tests of the byte-level BPE tokenizer on small hand-built vocabularies, of UTF-8
// streaming, and of the errors for unsupported or malformed metadata.
#include <gtest/gtest.h>

#include <set>

#include "core/check.h"
#include "gguf/gguf.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace tandem::text {
namespace {

// A vocabulary of the 256 byte tokens (in byte order, ids 0..255) plus the given merges, whose
// results are appended in order, plus added tokens.
gguf::Metadata tiny_vocab(const std::vector<std::pair<std::string, std::string>>& merges,
                          const std::vector<std::pair<std::string, TokenType>>& added = {},
                          const std::string& pre = "deepseek-v3") {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) {
        tokens.push_back(bytes_to_byte_level(std::string(1, static_cast<char>(b))));
        types.push_back(static_cast<int32_t>(TokenType::Normal));
    }
    std::vector<std::string> merge_strings;
    for (const auto& [l, r] : merges) {
        merge_strings.push_back(bytes_to_byte_level(l) + " " + bytes_to_byte_level(r));
        tokens.push_back(bytes_to_byte_level(l + r));
        types.push_back(static_cast<int32_t>(TokenType::Normal));
    }
    for (const auto& [text, type] : added) {
        tokens.push_back(text);
        types.push_back(static_cast<int32_t>(type));
    }
    gguf::Metadata md;
    md.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
    md.set("tokenizer.ggml.pre", gguf::Value::string(pre));
    md.set("tokenizer.ggml.tokens", gguf::Value::strings(tokens));
    md.set("tokenizer.ggml.token_type", gguf::Value::i32s(types));
    md.set("tokenizer.ggml.merges", gguf::Value::strings(merge_strings));
    return md;
}

std::vector<int32_t> bytes_ids(std::string_view s) {
    std::vector<int32_t> ids;
    for (char c : s) ids.push_back(static_cast<uint8_t>(c));
    return ids;
}

TEST(ByteLevel, MapIsABijectionOnto256CodePoints) {
    std::set<uint32_t> seen;
    for (int b = 0; b < 256; ++b) {
        const uint32_t cp = byte_to_codepoint(static_cast<uint8_t>(b));
        EXPECT_TRUE(seen.insert(cp).second);
        EXPECT_EQ(codepoint_to_byte(cp), static_cast<uint8_t>(b));
    }
    EXPECT_EQ(byte_to_codepoint(' '), 0x120u);   // 'Ġ', the familiar GPT-2 space
    EXPECT_EQ(byte_to_codepoint('\n'), 0x10Au);  // 'Ċ'
    EXPECT_EQ(byte_to_codepoint('A'), uint32_t{'A'});
    EXPECT_FALSE(codepoint_to_byte(0x20).has_value());
}

TEST(Bpe, MergesLowestRankFirst) {
    // Ranks: "b c" (0) before "a b" (1): "abc" -> a + bc, not ab + c.
    auto tk = Tokenizer::from_metadata(tiny_vocab({{"b", "c"}, {"a", "b"}}));
    EXPECT_EQ(tk.encode("abc", {.add_special = false}), (std::vector<int32_t>{'a', 256}));
    auto tk2 = Tokenizer::from_metadata(tiny_vocab({{"a", "b"}, {"b", "c"}}));
    EXPECT_EQ(tk2.encode("abc", {.add_special = false}), (std::vector<int32_t>{256, 'c'}));
}

TEST(Bpe, EqualRanksMergeLeftmostFirst) {
    auto tk = Tokenizer::from_metadata(tiny_vocab({{"a", "a"}}));
    EXPECT_EQ(tk.encode("aaa", {.add_special = false}), (std::vector<int32_t>{256, 'a'}));
    EXPECT_EQ(tk.encode("aaaa", {.add_special = false}), (std::vector<int32_t>{256, 256}));
}

TEST(Bpe, MergesChainIntoLongerTokens) {
    auto tk =
        Tokenizer::from_metadata(tiny_vocab({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}}));
    EXPECT_EQ(tk.encode("hello", {.add_special = false}), (std::vector<int32_t>{259}));
    EXPECT_EQ(tk.decode(std::vector<int32_t>{259}), "hello");
}

TEST(Bpe, AddedTokensMatchLeftmostLongestAndRespectParseSpecial) {
    auto tk = Tokenizer::from_metadata(tiny_vocab({}, {{"<s>", TokenType::Control},
                                                       {"<s>x", TokenType::UserDefined},
                                                       {"<eot>", TokenType::Control}}));
    const int32_t s = 256, sx = 257, eot = 258;
    EXPECT_EQ(tk.encode("a<s>x<s>", {.add_special = false}), (std::vector<int32_t>{'a', sx, s}));
    EXPECT_EQ(tk.encode("<eot><eot>", {.add_special = false}), (std::vector<int32_t>{eot, eot}));
    // Without parse_special, CONTROL text is plain text; USER_DEFINED still matches.
    EXPECT_EQ(tk.encode("<s>x", {.add_special = false, .parse_special = false}),
              (std::vector<int32_t>{sx}));
    EXPECT_EQ(tk.encode("<s>", {.add_special = false, .parse_special = false}), bytes_ids("<s>"));
    EXPECT_EQ(tk.decode(std::vector<int32_t>{'a', eot}, /*render_special=*/false), "a");
    EXPECT_EQ(tk.decode(std::vector<int32_t>{'a', eot}), "a<eot>");
    EXPECT_TRUE(tk.is_eog(eot) == false);  // not declared as EOS/EOT and not a known name
}

TEST(Bpe, BosEosFromMetadata) {
    auto md = tiny_vocab({}, {{"<bos>", TokenType::Control}, {"<eos>", TokenType::Control}});
    md.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(256));
    md.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(257));
    md.set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(true));
    md.set("tokenizer.ggml.add_eos_token", gguf::Value::boolean(true));
    auto tk = Tokenizer::from_metadata(md);
    EXPECT_EQ(tk.encode("a"), (std::vector<int32_t>{256, 'a', 257}));
    EXPECT_EQ(tk.encode("a", {.add_special = false}), (std::vector<int32_t>{'a'}));
    EXPECT_TRUE(tk.is_eog(257));
    EXPECT_FALSE(tk.is_eog(256));
}

TEST(Bpe, InvalidUtf8BytesBecomeByteTokensAndRoundTrip) {
    auto tk = Tokenizer::from_metadata(tiny_vocab({{"a", "b"}}));
    const std::string text =
        "ab\xff\xfe"
        "ab\xc3(\xe2\x82";
    const auto ids = tk.encode(text, {.add_special = false});
    EXPECT_EQ(ids, (std::vector<int32_t>{256, 0xff, 0xfe, 256, 0xc3, '(', 0xe2, 0x82}));
    EXPECT_EQ(tk.decode(ids), text);
}

TEST(Bpe, UnknownKindsAreClearErrors) {
    auto md = tiny_vocab({});
    md.set("tokenizer.ggml.model", gguf::Value::string("llama"));
    try {
        Tokenizer::from_metadata(md);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'llama'"), std::string::npos) << e.what();
    }
    auto md2 = tiny_vocab({}, {}, "starcoder-x");
    try {
        Tokenizer::from_metadata(md2);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'starcoder-x'"), std::string::npos) << e.what();
    }
}

TEST(Bpe, MalformedMetadataIsAClearError) {
    auto md = tiny_vocab({});
    md.set("tokenizer.ggml.merges", gguf::Value::strings({"a"}));
    EXPECT_THROW(Tokenizer::from_metadata(md), Error);
    md = tiny_vocab({});
    md.set("tokenizer.ggml.merges", gguf::Value::strings({"a zz"}));
    EXPECT_THROW(Tokenizer::from_metadata(md), Error);
    md = tiny_vocab({});
    md.set("tokenizer.ggml.token_type", gguf::Value::i32s(std::vector<int32_t>{1, 1}));
    EXPECT_THROW(Tokenizer::from_metadata(md), Error);
    md = tiny_vocab({});
    md.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(100000));
    EXPECT_THROW(Tokenizer::from_metadata(md), Error);
    auto tk = Tokenizer::from_metadata(tiny_vocab({}));
    EXPECT_THROW(tk.decode(std::vector<int32_t>{-1}), Error);
    EXPECT_THROW(tk.decode(std::vector<int32_t>{256}), Error);
}

TEST(PreTokenizer, AllNamedPreTokenizersCompile) {
    for (const char* name :
         {"deepseek-v3", "deepseek-llm", "qwen2", "deepseek-r1-qwen", "llama-bpe"})
        EXPECT_NO_THROW(PreTokenizer::from_name(name)) << name;
}

std::vector<std::string> pieces(const PreTokenizer& pt, std::string_view text) {
    std::vector<std::string> out;
    for (const auto& [b, e] : pt.split(text)) out.emplace_back(text.substr(b, e - b));
    return out;
}

TEST(PreTokenizer, Qwen2SplitsSingleDigitsAndLlama3Triples) {
    // Documented behaviour of the two regexes (Qwen2: \p{N}; Llama 3: \p{N}{1,3}).
    const auto qwen = PreTokenizer::from_name("qwen2");
    EXPECT_EQ(pieces(qwen, "abc 12345"),
              (std::vector<std::string>{"abc", " ", "1", "2", "3", "4", "5"}));
    EXPECT_EQ(pieces(qwen, "I'm  here\n\n x"),
              (std::vector<std::string>{"I", "'m", " ", " here", "\n\n", " x"}));
    const auto llama = PreTokenizer::from_name("llama-bpe");
    EXPECT_EQ(pieces(llama, "abc 12345"), (std::vector<std::string>{"abc", " ", "123", "45"}));
    EXPECT_TRUE(llama.ignore_merges());
    EXPECT_FALSE(qwen.ignore_merges());
}

TEST(PreTokenizer, DeepSeekV3IsolatesDigitsAndCjk) {
    const auto pt = PreTokenizer::from_name("deepseek-v3");
    EXPECT_EQ(pieces(pt, "ab1234567"), (std::vector<std::string>{"ab", "123", "456", "7"}));
    EXPECT_EQ(pieces(pt, "Hi你好ok"), (std::vector<std::string>{"Hi", "你好", "ok"}));
}

TEST(PreTokenizer, VeryLongWhitespaceRunDoesNotFail) {
    const auto pt = PreTokenizer::from_name("deepseek-v3");
    const std::string text = "a" + std::string(200000, ' ') + "b";
    const auto p = pieces(pt, text);
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[1].size(), 199999u);
    EXPECT_EQ(p[2], " b");
}

TEST(Utf8, SequenceLengthsAndValidity) {
    EXPECT_TRUE(utf8_is_valid("a\xc3\xa9\xe4\xbd\xa0\xf0\x9f\x98\x80"));
    EXPECT_FALSE(utf8_is_valid("\xc0\x80"));          // overlong
    EXPECT_FALSE(utf8_is_valid("\xed\xa0\x80"));      // surrogate
    EXPECT_FALSE(utf8_is_valid("\xf4\x90\x80\x80"));  // > U+10FFFF
    EXPECT_FALSE(utf8_is_valid("\xe4\xbd"));          // truncated
    EXPECT_EQ(utf8_sequence_length("\xe4\xbd", 0), -2);
    EXPECT_EQ(utf8_sequence_length("\xe4(", 0), 0);
}

TEST(Utf8, SanitizeReplacesMaximalSubpartsLikePython) {
    // Python: b"...".decode("utf-8", errors="replace")
    EXPECT_EQ(utf8_sanitize("a\xff"
                            "b"),
              "a\xEF\xBF\xBD"
              "b");
    EXPECT_EQ(utf8_sanitize("\xe2\x82(x"), "\xEF\xBF\xBD(x");  // one U+FFFD for E2 82
    EXPECT_EQ(utf8_sanitize("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    EXPECT_EQ(utf8_sanitize("\xf0\x9f\x98"), "\xEF\xBF\xBD");
}

TEST(StreamDecoder, NeverSplitsACharacter) {
    const std::string text = "héllo 你好 😀!";
    // Feed one byte at a time: every chunk emitted must be valid UTF-8, and together they
    // must give the text back.
    StreamDecoder dec;
    std::string got;
    for (char c : text) {
        const std::string out = dec.push(std::string_view(&c, 1));
        EXPECT_TRUE(utf8_is_valid(out));
        got += out;
    }
    got += dec.flush();
    EXPECT_EQ(got, text);
    EXPECT_EQ(dec.pending(), 0u);
}

TEST(StreamDecoder, HoldsBackThenReleases) {
    StreamDecoder dec;
    EXPECT_EQ(dec.push("a\xe4"), "a");
    EXPECT_EQ(dec.pending(), 1u);
    EXPECT_EQ(dec.push("\xbd"), "");
    EXPECT_EQ(dec.push("\xa0z"), "\xe4\xbd\xa0z");
    // Bytes that can never complete are replaced at once, not held.
    EXPECT_EQ(dec.push("\xe4("), "\xEF\xBF\xBD(");
    EXPECT_EQ(dec.push("\xf0\x9f"), "");
    EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace tandem::text
