// Chat templates: the Jinja subset that model chat templates use, rendered the way Hugging Face
// transformers' apply_chat_template renders them (jinja2 with trim_blocks and lstrip_blocks).
//
// Supported: {{ }}, {% %}, {# #} with '-' whitespace control; if/elif/else, for (with loop.index,
// index0, first, last, length; `for a, b in ...`; `for x in xs if cond`), set (names and
// namespace attributes; sets inside a loop stay in the loop, as in Jinja); expressions with
// literals, lists, dicts, attribute and index access (negative indices, slices [a:b]), + - * /
// % ~, comparisons, in / not in, and / or / not, `x if c else y`, tests (defined, undefined,
// none, string, number, mapping, iterable, true, false), filters (trim, length, count, lower,
// upper, string, tojson, first, last, join, default, items, list, replace) and string/dict
// methods (strip, lstrip, rstrip, split, startswith, endswith, lower, upper, replace, items,
// keys, values, get); namespace() and raise_exception(). Anything else is a clear tandem::Error
// naming the construct and its position in the template.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::gguf {
class Metadata;
}

namespace tandem::text {

class ChatTemplate {
  public:
    // Parses `source`; throws tandem::Error for syntax it does not support.
    explicit ChatTemplate(const std::string& source);
    ~ChatTemplate();
    ChatTemplate(ChatTemplate&&) noexcept;
    ChatTemplate& operator=(ChatTemplate&&) noexcept;

    // Renders with `context` as the template's variables (messages, add_generation_prompt,
    // bos_token, eos_token, tools, ...). Ordered JSON, so that dicts keep their key order as
    // Python's do (it shows in `tojson` output).
    std::string render(const nlohmann::ordered_json& context) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Built-in templates by name (deepseek-r1, deepseek-v3, qwen2.5, chatml, llama3): the exact
// template texts of those model families, for models whose GGUF carries none or a broken one.
std::vector<std::string_view> builtin_chat_template_names();
std::optional<std::string_view> builtin_chat_template(std::string_view name);

// The template source to use for a model: its tokenizer.chat_template when `override_spec` is
// empty, else the built-in template of that name, else the contents of that file. Throws
// tandem::Error when the model has no template and none is given, or the file cannot be read.
std::string chat_template_source(const gguf::Metadata& md, const std::string& override_spec = "");

// A chat template rendered for `messages` with bos_token/eos_token taken from the vocabulary,
// as transformers does. `override_spec` as in chat_template_source.
std::string apply_chat_template(const gguf::Metadata& md, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& override_spec = "");

}  // namespace tandem::text
