#include "text/hf_vocab.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"
#include "gguf/gguf.h"
#include "text/tokenizer.h"

namespace tandem::text {

namespace {

using nlohmann::json;

json read_json(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path.string());
    try {
        return json::parse(in);
    } catch (const json::exception& e) {
        fail("{}: not valid JSON: {}", path.string(), e.what());
    }
}

// convert_hf_to_gguf.py's does_token_look_special: some models mark control tokens as not
// special; the "<|...|>" and "<｜...｜>" shapes are the ones that matter for byte-level BPE.
bool looks_special(const std::string& t) {
    auto wrapped = [&](std::string_view open, std::string_view close) {
        return t.size() >= open.size() + close.size() && t.starts_with(open) && t.ends_with(close);
    };
    return t == "<pad>" || t == "<mask>" || wrapped("<|", "|>") ||
           wrapped("<\xEF\xBD\x9C", "\xEF\xBD\x9C>");  // <｜ ... ｜>
}

bool has_byte_level(const json& node) {
    if (!node.is_object()) return false;
    if (node.value("type", "") == "ByteLevel") return true;
    for (const char* list : {"pretokenizers", "decoders"})
        if (node.contains(list) && node[list].is_array())
            for (const auto& child : node[list])
                if (has_byte_level(child)) return true;
    return false;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string out;
    for (size_t pos = 0;;) {
        const size_t hit = s.find(from, pos);
        out.append(s.substr(pos, hit - pos));
        if (hit == std::string_view::npos) return out;
        out.append(to);
        pos = hit + from.size();
    }
}

}  // namespace

void hf_tokenizer_to_gguf_metadata(const std::string& tokenizer_json_path,
                                   const HfVocabOptions& opts, gguf::Metadata& md) {
    const std::filesystem::path path(tokenizer_json_path);
    const std::string where = path.string();
    if (opts.pre.empty()) fail("{}: a pre-tokenizer name (tokenizer.ggml.pre) is required", where);
    PreTokenizer::from_name(opts.pre);  // refuse a name the tokenizer could not load later

    const json tok = read_json(path);
    if (!tok.contains("model") || !tok["model"].is_object()) fail("{}: no \"model\" object", where);
    const json& model = tok["model"];
    if (model.value("type", "") != "BPE")
        fail("{}: model.type is '{}', only BPE is supported", where, model.value("type", ""));
    if (!has_byte_level(tok.value("pre_tokenizer", json())) &&
        !has_byte_level(tok.value("decoder", json())))
        fail("{}: not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer or decoder)", where);
    if (!model.contains("vocab") || !model["vocab"].is_object())
        fail("{}: model.vocab is missing or not an object", where);

    // id -> text, from the model vocabulary and then the added tokens (which win, as in the
    // tokenizer's get_vocab()).
    std::map<int64_t, std::string> by_id;
    for (const auto& [text, id] : model["vocab"].items()) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0)
            fail("{}: model.vocab[\"{}\"] is not a non-negative integer id", where, text);
        by_id[id.get<int64_t>()] = text;
    }
    struct Added {
        bool special;
    };
    std::map<int64_t, Added> added;
    std::map<std::string, int64_t> added_by_content;
    if (tok.contains("added_tokens")) {
        for (const auto& a : tok["added_tokens"]) {
            if (!a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
                !a["content"].is_string())
                fail("{}: an added_tokens entry lacks an integer id or string content: {}", where,
                     a.dump());
            const int64_t id = a["id"].get<int64_t>();
            if (id < 0) fail("{}: added token id {} is negative", where, id);
            const std::string content = a["content"].get<std::string>();
            by_id[id] = content;
            added[id] = {a.value("special", false)};
            added_by_content.emplace(content, id);
        }
    }
    if (by_id.empty()) fail("{}: the vocabulary is empty", where);
    const int64_t n_used = by_id.rbegin()->first + 1;
    if (opts.vocab_size != 0 && opts.vocab_size < n_used)
        fail("{}: vocab_size {} is smaller than the tokenizer's {} ids", where, opts.vocab_size,
             n_used);
    const int64_t n_vocab = std::max(n_used, opts.vocab_size);

    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    tokens.reserve(static_cast<size_t>(n_vocab));
    types.reserve(static_cast<size_t>(n_vocab));
    for (int64_t id = 0; id < n_vocab; ++id) {
        const auto it = by_id.find(id);
        if (it == by_id.end()) {
            tokens.push_back(fmt::format("[PAD{}]", id));
            types.push_back(static_cast<int32_t>(TokenType::Unused));
            continue;
        }
        const auto a = added.find(id);
        TokenType type = TokenType::Normal;
        std::string text = it->second;
        if (a != added.end()) {
            if (a->second.special || looks_special(text)) {
                type = TokenType::Control;
            } else {
                // The convert script stores user-defined tokens with SentencePiece's "▁"
                // already turned into a space (llama.cpp matches them on raw text).
                type = TokenType::UserDefined;
                text = replace_all(text, "\xE2\x96\x81", " ");
            }
        }
        tokens.push_back(std::move(text));
        types.push_back(static_cast<int32_t>(type));
    }

    std::vector<std::string> merges;
    if (model.contains("merges")) {
        const json& m = model["merges"];
        if (!m.is_array()) fail("{}: model.merges is not an array", where);
        merges.reserve(m.size());
        for (size_t i = 0; i < m.size(); ++i) {
            // Older files hold "left right" strings, newer ones [left, right] pairs.
            if (m[i].is_string()) {
                merges.push_back(m[i].get<std::string>());
            } else if (m[i].is_array() && m[i].size() == 2 && m[i][0].is_string() &&
                       m[i][1].is_string()) {
                merges.push_back(m[i][0].get<std::string>() + " " + m[i][1].get<std::string>());
            } else {
                fail("{}: model.merges[{}] is neither a string nor a pair of strings", where, i);
            }
        }
    }

    md.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
    md.set("tokenizer.ggml.pre", gguf::Value::string(opts.pre));
    md.set("tokenizer.ggml.tokens", gguf::Value::strings(tokens));
    md.set("tokenizer.ggml.token_type", gguf::Value::i32s(types));
    md.set("tokenizer.ggml.merges", gguf::Value::strings(merges));

    // gguf-py's SpecialVocab: special tokens named in tokenizer_config.json, resolved to ids
    // through tokenizer.json's added_tokens.
    const auto config_path = path.parent_path() / "tokenizer_config.json";
    if (!std::filesystem::exists(config_path)) return;
    const json config = read_json(config_path);
    const std::pair<const char*, const char*> special_keys[] = {
        {"bos_token", "tokenizer.ggml.bos_token_id"},
        {"eos_token", "tokenizer.ggml.eos_token_id"},
        {"unk_token", "tokenizer.ggml.unknown_token_id"},
        {"pad_token", "tokenizer.ggml.padding_token_id"},
    };
    for (const auto& [config_key, gguf_key] : special_keys) {
        if (!config.contains(config_key)) continue;
        const json& entry = config[config_key];
        std::string content;
        if (entry.is_string()) {
            content = entry.get<std::string>();
        } else if (entry.is_object() && entry.contains("content") && entry["content"].is_string()) {
            content = entry["content"].get<std::string>();
        } else {
            continue;  // null: the model has no such token
        }
        const auto it = added_by_content.find(content);
        if (it == added_by_content.end()) continue;  // as gguf-py: only added tokens count
        md.set(gguf_key, gguf::Value::u32(static_cast<uint32_t>(it->second)));
    }
    for (const char* which : {"bos", "eos"}) {
        const std::string key = fmt::format("add_{}_token", which);
        if (config.contains(key) && config[key].is_boolean())
            md.set(fmt::format("tokenizer.ggml.{}", key),
                   gguf::Value::boolean(config[key].get<bool>()));
    }
    const auto jinja_path = path.parent_path() / "chat_template.jinja";
    if (config.contains("chat_template") && config["chat_template"].is_string()) {
        md.set("tokenizer.chat_template",
               gguf::Value::string(config["chat_template"].get<std::string>()));
    } else if (config.contains("chat_template") && config["chat_template"].is_array()) {
        // A list of named templates: "default" is the main one, the others get their own key.
        for (const auto& t : config["chat_template"]) {
            if (!t.is_object() || !t.contains("name") || !t.contains("template")) continue;
            const std::string name = t["name"].get<std::string>();
            md.set(name == "default" ? std::string("tokenizer.chat_template")
                                     : "tokenizer.chat_template." + name,
                   gguf::Value::string(t["template"].get<std::string>()));
        }
    } else if (std::filesystem::exists(jinja_path)) {
        std::ifstream in(jinja_path, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        md.set("tokenizer.chat_template", gguf::Value::string(ss.str()));
    }
}

}  // namespace tandem::text
