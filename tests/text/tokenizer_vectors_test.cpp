// Tandem's tokenizer against Hugging Face `tokenizers` on the DeepSeek-V3 vocabulary.
//
// The GGUF vocabulary is built here from tokenizer.json with tandem's converter and written
// and read back through tandem's GGUF writer and reader, as a model file would carry it. The
// reference ids come from tools/text_make_vectors.py (run by the CI script before the tests):
//   python3 tools/text_make_vectors.py --out $BUILD/text_vectors
// Without the vectors the tests skip, unless TANDEM_REQUIRE_VECTORS=1 makes that a failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/check.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "text/hf_vocab.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace tandem::text {
namespace {

namespace fs = std::filesystem;

fs::path tokenizer_json() {
    return fs::path(TANDEM_SOURCE_DIR) / ".." / "shared" / "data" / "tokenizers" / "deepseek-v3" /
           "tokenizer.json";
}

bool vectors_required() {
    const char* v = std::getenv("TANDEM_REQUIRE_VECTORS");
    return v && std::string(v) == "1";
}

#define REQUIRE_OR_SKIP(cond, what)                                                             \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            if (vectors_required()) FAIL() << "missing (TANDEM_REQUIRE_VECTORS=1): " << (what); \
            GTEST_SKIP() << "missing: " << (what);                                              \
        }                                                                                       \
    } while (0)

// Writes `w` to `out` through a file of this process's own and a rename: ctest runs every test
// in a process of its own, two at a time, and several of them write the same file; a reader
// must never see one half written.
void write_atomically(const gguf::Writer& w, const fs::path& out) {
    fs::create_directories(out.parent_path());
    const fs::path tmp = out.string() + fmt::format(".{}.tmp", ::getpid());
    w.write(tmp.string());
    fs::rename(tmp, out);
}

// The DeepSeek-V3 vocabulary as a GGUF file (tokenizer metadata only, no tensors), written once
// per test process, padded to the model's 129280 ids as R1/V3 GGUFs are.
const fs::path& deepseek_v3_gguf() {
    static const fs::path path = [] {
        gguf::Writer w;
        w.set("general.architecture", gguf::Value::string("deepseek2"));
        hf_tokenizer_to_gguf_metadata(tokenizer_json().string(),
                                      {.pre = "deepseek-v3", .vocab_size = 129280}, w.metadata());
        const fs::path out =
            fs::path(TANDEM_BINARY_DIR) / "text_vectors" / "deepseek-v3-vocab.gguf";
        write_atomically(w, out);
        return out;
    }();
    return path;
}

const Tokenizer& deepseek_v3() {
    static const Tokenizer tk = [] {
        const auto file = gguf::File::open(deepseek_v3_gguf().string());
        return Tokenizer::from_metadata(file.metadata());
    }();
    return tk;
}

TEST(DeepSeekV3Vocab, ConverterSetsKeysLikeConvertHfToGguf) {
    REQUIRE_OR_SKIP(fs::exists(tokenizer_json()), tokenizer_json().string());
    const auto file = gguf::File::open(deepseek_v3_gguf().string());
    const auto& md = file.metadata();
    EXPECT_EQ(md.get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(md.get_string("tokenizer.ggml.pre"), "deepseek-v3");
    const auto tokens = md.get_strings("tokenizer.ggml.tokens");
    const auto types = md.get_ints("tokenizer.ggml.token_type");
    ASSERT_EQ(tokens.size(), 129280u);
    ASSERT_EQ(types.size(), 129280u);
    EXPECT_EQ(md.get_strings("tokenizer.ggml.merges").size(), 127741u);
    EXPECT_EQ(tokens[0], "<｜begin▁of▁sentence｜>");
    EXPECT_EQ(types[0], static_cast<int>(TokenType::Control));
    EXPECT_EQ(tokens[128814], "<｜tool▁sep｜>");  // special=false but shaped <｜...｜>
    EXPECT_EQ(types[128814], static_cast<int>(TokenType::Control));
    EXPECT_EQ(tokens[128815], "[PAD128815]");
    EXPECT_EQ(types[128815], static_cast<int>(TokenType::Unused));
    EXPECT_EQ(types[1000], static_cast<int>(TokenType::Normal));
    EXPECT_EQ(md.get_int("tokenizer.ggml.bos_token_id"), 0);
    EXPECT_EQ(md.get_int("tokenizer.ggml.eos_token_id"), 1);
    EXPECT_EQ(md.get_int("tokenizer.ggml.padding_token_id"), 1);
    EXPECT_TRUE(md.get_bool("tokenizer.ggml.add_bos_token"));
    EXPECT_FALSE(md.get_bool("tokenizer.ggml.add_eos_token"));
    EXPECT_NE(md.get_string("tokenizer.chat_template").find("<｜Assistant｜>"), std::string::npos);
}

// Where two token sequences first differ, with the text around that point (cases can be long).
std::string mismatch_report(const Tokenizer& tk, const std::string& text,
                            const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
    const size_t byte_pos = tk.decode(std::span(want).first(i)).size();
    auto window = [&](const std::vector<int32_t>& ids) {
        std::string s;
        for (size_t k = i; k < ids.size() && k < i + 6; ++k)
            s += fmt::format("{}:{} ", ids[k],
                             nlohmann::json(utf8_sanitize(tk.token_bytes(ids[k]))).dump());
        return s;
    };
    return fmt::format(
        "first difference at token {} (byte {}), text there {}\n  tandem: {}\n  HF:     {}", i,
        byte_pos, nlohmann::json(utf8_sanitize(text.substr(byte_pos, 40))).dump(), window(got),
        window(want));
}

// A vocabulary converted from a tokenizer.json and passed through a GGUF file, as a model
// carries it.
Tokenizer tokenizer_via_gguf(const std::string& tokenizer_json, const std::string& pre,
                             const std::string& name) {
    gguf::Writer w;
    hf_tokenizer_to_gguf_metadata(tokenizer_json, {.pre = pre}, w.metadata());
    // Not deepseek_v3_gguf()'s file: this one has no architecture key and no padding.
    const fs::path out = fs::path(TANDEM_BINARY_DIR) / "text_vectors" / (name + "-vectors-vocab.gguf");
    write_atomically(w, out);
    const auto file = gguf::File::open(out.string());
    return Tokenizer::from_metadata(file.metadata());
}

class HuggingFaceVectors : public ::testing::TestWithParam<std::string> {};

// deepseek-v3: the real DeepSeek-V3/R1 vocabulary. qwen2, llama-bpe, deepseek-llm: small
// vocabularies that tools/text_make_vectors.py trains with HF `tokenizers` on the same
// pre-tokenizer regexes (the regex engines and the converter are what is compared there).
TEST_P(HuggingFaceVectors, IdsMatch) {
    const std::string name = GetParam();
    const fs::path vectors = fs::path(TANDEM_BINARY_DIR) / "text_vectors" / (name + ".json");
    REQUIRE_OR_SKIP(fs::exists(vectors), vectors.string() + " (run tools/text_make_vectors.py)");
    std::ifstream in(vectors);
    const auto doc = nlohmann::json::parse(in);
    const std::string tj = doc["tokenizer_json"];
    REQUIRE_OR_SKIP(fs::exists(tj), tj);
    std::optional<Tokenizer> small;
    if (name != "deepseek-v3") small.emplace(tokenizer_via_gguf(tj, doc["pre"], name));
    const Tokenizer& tk = small ? *small : deepseek_v3();
    EXPECT_EQ(tk.pre().name(), name);

    size_t n_cases = 0, n_tokens = 0, n_round_trip = 0, n_failed = 0;
    double seconds = 0;
    for (const auto& c : doc["cases"]) {
        const std::string case_name = c["name"];
        const std::string text = c["text"];
        const auto expected = c["ids"].get<std::vector<int32_t>>();
        const auto t0 = std::chrono::steady_clock::now();
        const auto ids = tk.encode(text, {.add_special = false});
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (ids != expected) {
            ADD_FAILURE() << name << " case " << case_name << ": "
                          << mismatch_report(tk, text, ids, expected);
            if (++n_failed >= 10) break;
        }
        if (c["round_trip"].get<bool>()) {
            EXPECT_EQ(tk.decode(ids), text) << "case " << case_name;
            ++n_round_trip;
        }
        ++n_cases;
        n_tokens += expected.size();
    }
    EXPECT_GT(n_cases, 100u);
    std::printf(
        "%s: %zu cases, %zu tokens compared with tokenizers %s; %zu round trips; %.0f k tok/s\n",
        name.c_str(), n_cases, n_tokens, doc["tokenizers_version"].get<std::string>().c_str(),
        n_round_trip, n_tokens / seconds / 1e3);
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, HuggingFaceVectors,
                         ::testing::Values("deepseek-v3", "qwen2", "llama-bpe", "deepseek-llm"),
                         [](const auto& param_info) {
                             std::string n = param_info.param;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

TEST(DeepSeekV3Vocab, BosIsAddedAndSpecialTokensAreParsed) {
    REQUIRE_OR_SKIP(fs::exists(tokenizer_json()), tokenizer_json().string());
    const Tokenizer& tk = deepseek_v3();
    EXPECT_EQ(tk.bos_id(), 0);
    EXPECT_EQ(tk.eos_id(), 1);
    EXPECT_TRUE(tk.is_eog(1));
    const auto with = tk.encode("Hi");
    const auto without = tk.encode("Hi", {.add_special = false});
    ASSERT_EQ(with.size(), without.size() + 1);
    EXPECT_EQ(with[0], 0);
    // With parse_special off the BOS text is ordinary text.
    const auto plain =
        tk.encode("<｜begin▁of▁sentence｜>", {.add_special = false, .parse_special = false});
    EXPECT_GT(plain.size(), 1u);
    EXPECT_EQ(tk.decode(plain), "<｜begin▁of▁sentence｜>");
    EXPECT_EQ(tk.encode("<｜begin▁of▁sentence｜>", {.add_special = false}),
              std::vector<int32_t>{0});
}

TEST(DeepSeekV3Vocab, RawInvalidUtf8TokenizesToBytesAndRoundTrips) {
    REQUIRE_OR_SKIP(fs::exists(tokenizer_json()), tokenizer_json().string());
    const Tokenizer& tk = deepseek_v3();
    // An invalid byte is a piece of its own (no pattern matches it), so the text around it
    // tokenizes as it would alone.
    const std::string a = "Hello world", b = " and more";
    for (const std::string bad : {"\xff", "\xc3", "\xe4\xbd", "\xed\xa0\x80", "\x80\x80"}) {
        const std::string text = a + bad + b;
        const auto ids = tk.encode(text, {.add_special = false});
        EXPECT_EQ(tk.decode(ids), text);
        auto expect = tk.encode(a, {.add_special = false});
        const auto mid = tk.encode(bad, {.add_special = false});
        const auto tail = tk.encode(b, {.add_special = false});
        expect.insert(expect.end(), mid.begin(), mid.end());
        expect.insert(expect.end(), tail.begin(), tail.end());
        EXPECT_EQ(ids, expect);
        EXPECT_EQ(tk.decode(mid), bad);
    }
    // Every single byte and a random byte soup: no crash, exact round trip.
    std::string all;
    for (int b0 = 0; b0 < 256; ++b0) all.push_back(static_cast<char>(b0));
    EXPECT_EQ(tk.decode(tk.encode(all, {.add_special = false})), all);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    std::string soup;
    for (int i = 0; i < 100000; ++i) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        soup.push_back(static_cast<char>(state >> 56));
    }
    EXPECT_EQ(tk.decode(tk.encode(soup, {.add_special = false, .parse_special = false})), soup);
}

TEST(DeepSeekV3Vocab, StreamingDecodeGivesValidUtf8ThatJoinsToTheText) {
    REQUIRE_OR_SKIP(fs::exists(tokenizer_json()), tokenizer_json().string());
    const Tokenizer& tk = deepseek_v3();
    const std::string text =
        "深度求索 😀👨‍👩‍👧 한국어 日本語テキスト ∑√∞ done";
    StreamDecoder dec;
    std::string got;
    for (int32_t id : tk.encode(text, {.add_special = false})) {
        const std::string out = dec.push(tk.token_bytes(id));
        EXPECT_TRUE(utf8_is_valid(out));
        got += out;
    }
    got += dec.flush();
    EXPECT_EQ(got, text);
}

}  // namespace
}  // namespace tandem::text
