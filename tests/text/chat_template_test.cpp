// Chat templates rendered by tandem against jinja2 (configured as transformers'
// apply_chat_template), from vectors written by tools/text_make_vectors.py.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "gguf/gguf.h"
#include "text/chat_template.h"
#include "text/hf_vocab.h"

namespace tandem::text {
namespace {

namespace fs = std::filesystem;

TEST(ChatTemplate, MatchesJinja2) {
    const fs::path path = fs::path(TANDEM_BINARY_DIR) / "text_vectors" / "chat_templates.json";
    if (!fs::exists(path)) {
        const char* req = std::getenv("TANDEM_REQUIRE_VECTORS");
        if (req && std::string(req) == "1")
            FAIL() << "missing (TANDEM_REQUIRE_VECTORS=1): " << path;
        GTEST_SKIP() << "missing: " << path << " (run tools/text_make_vectors.py)";
    }
    std::ifstream in(path);
    const auto doc = nlohmann::ordered_json::parse(in);
    std::map<std::string, int> per_template;
    for (const auto& c : doc["cases"]) {
        const std::string name =
            c["template"].get<std::string>() + "/" + c["case"].get<std::string>();
        try {
            const ChatTemplate t(c["source"].get<std::string>());
            EXPECT_EQ(t.render(c["context"]), c["rendered"].get<std::string>()) << name;
        } catch (const Error& e) {
            ADD_FAILURE() << name << ": " << e.what();
        }
        ++per_template[c["template"].get<std::string>()];
    }
    EXPECT_GE(per_template.size(), 5u);
    for (const auto& [t, n] : per_template)
        std::printf("%-20s %d renders compared\n", t.c_str(), n);
}

TEST(ChatTemplate, DeepSeekV3FromGgufMetadata) {
    const fs::path tj = fs::path(TANDEM_SOURCE_DIR) / ".." / "shared" / "data" / "tokenizers" /
                        "deepseek-v3" / "tokenizer.json";
    if (!fs::exists(tj)) GTEST_SKIP() << "missing " << tj;
    gguf::Metadata md;
    hf_tokenizer_to_gguf_metadata(tj.string(), {.pre = "deepseek-v3"}, md);
    const nlohmann::ordered_json messages = {{{"role", "system"}, {"content", "S"}},
                                             {{"role", "user"}, {"content", "Hi"}}};
    EXPECT_EQ(apply_chat_template(md, messages, true),
              "<｜begin▁of▁sentence｜>S<｜User｜>Hi<｜Assistant｜>");
    EXPECT_EQ(apply_chat_template(md, messages, false), "<｜begin▁of▁sentence｜>S<｜User｜>Hi");
}

TEST(ChatTemplate, UnsupportedSyntaxIsAClearError) {
    for (const char* src :
         {"{% macro m() %}{% endmacro %}", "{{ x | nosuchfilter }}", "{% if x %}unclosed",
          "{{ 'unterminated }}", "{{ a $ b }}", "{% for %}{% endfor %}"}) {
        try {
            ChatTemplate t(src);
            t.render(nlohmann::ordered_json{{"x", 1}});
            ADD_FAILURE() << "no error for " << src;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("chat template"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(
        ChatTemplate("{{ raise_exception('bad role') }}").render(nlohmann::ordered_json::object()),
        Error);
}

TEST(ChatTemplate, LoopSetsStayInTheLoopNamespacesDoNot) {
    const ChatTemplate t(
        "{% set x = 'outer' %}{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}"
        "{% set x = 'inner' %}{% set ns.n = ns.n + i %}{% endfor %}{{ x }} {{ ns.n }}");
    EXPECT_EQ(t.render(nlohmann::ordered_json::object()), "outer 6");
}

}  // namespace
}  // namespace tandem::text
