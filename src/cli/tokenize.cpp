// tandem tokenize -m MODEL (TEXT | -f FILE) [--pieces]: the token ids of a text as JSON, with
// the model's own tokenizer (GGUF metadata only; no tensor data is read). With --chat or
// --messages the text is first rendered through the chat template (as run and chat do);
// --render prints that rendered prompt instead of ids, --print-template the template itself.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/verbs.h"
#include "core/check.h"
#include "gguf/gguf.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace tandem::cli {

namespace {

struct TokenizeArgs {
    std::string model;
    std::string text;
    std::string file;
    bool pieces = false;
    bool no_bos = false;
    bool no_parse_special = false;
    bool chat = false;
    std::string messages_file;  // JSON list of {role, content}
    std::string system;
    std::string chat_template;
    bool no_generation_prompt = false;
    bool render = false;
    bool print_template = false;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int run_tokenize(const TokenizeArgs& args) {
    const bool templated = args.chat || !args.messages_file.empty();
    if (!templated &&
        (!args.system.empty() || (!args.chat_template.empty() && !args.print_template) ||
         args.render || args.no_generation_prompt))
        fail(
            "--system, --chat-template, --render and --no-generation-prompt need --chat or "
            "--messages");
    std::string text = args.text;
    if (!args.file.empty()) text = read_file(args.file);
    const gguf::File file = gguf::File::open(args.model);
    if (args.print_template) {
        std::fputs(text::chat_template_source(file.metadata(), args.chat_template).c_str(), stdout);
        return 0;
    }
    bool add_special = !args.no_bos;
    if (templated) {
        nlohmann::ordered_json messages = nlohmann::ordered_json::array();
        if (!args.messages_file.empty()) {
            try {
                messages = nlohmann::ordered_json::parse(read_file(args.messages_file));
            } catch (const nlohmann::json::exception& e) {
                fail("{}: not JSON: {}", args.messages_file, e.what());
            }
            if (!messages.is_array())
                fail("{}: expected a JSON list of messages", args.messages_file);
        }
        if (!args.system.empty())
            messages.insert(messages.begin(),
                            nlohmann::ordered_json{{"role", "system"}, {"content", args.system}});
        if (args.chat) messages.push_back({{"role", "user"}, {"content", text}});
        text = text::apply_chat_template(file.metadata(), messages, !args.no_generation_prompt,
                                         args.chat_template);
        add_special = false;  // the template writes BOS itself
        if (args.render) {
            std::fputs(text.c_str(), stdout);
            return 0;
        }
    }
    const text::Tokenizer tk = text::Tokenizer::from_metadata(file.metadata());
    const auto ids =
        tk.encode(text, {.add_special = add_special, .parse_special = !args.no_parse_special});

    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (int32_t id : ids) {
        if (!args.pieces) {
            out.push_back(id);
            continue;
        }
        // A piece can be part of a character; JSON needs valid UTF-8, so such pieces show
        // U+FFFD and carry their raw bytes in hex.
        const std::string& bytes = tk.token_bytes(id);
        nlohmann::ordered_json p = {{"id", id}, {"piece", text::utf8_sanitize(bytes)}};
        if (!text::utf8_is_valid(bytes)) {
            std::string hex;
            for (char c : bytes) hex += fmt::format("{:02x}", static_cast<uint8_t>(c));
            p["bytes"] = hex;
        }
        out.push_back(std::move(p));
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace

Verb add_tokenize(CLI::App& app) {
    auto args = std::make_shared<TokenizeArgs>();
    CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as JSON");
    cmd->add_option("-m,--model", args->model, "GGUF file (its tokenizer metadata is used)")
        ->required();
    auto* text = cmd->add_option("text", args->text, "Text to tokenize");
    auto* file = cmd->add_option("-f,--file", args->file, "Read the text from a file (raw bytes)");
    text->excludes(file);
    cmd->add_flag("--pieces", args->pieces, "Print {id, piece} objects instead of bare ids");
    cmd->add_flag("--no-bos", args->no_bos, "Do not add BOS/EOS even if the vocabulary asks to");
    cmd->add_flag("--no-parse-special", args->no_parse_special,
                  "Treat control-token text (e.g. <｜User｜>) as plain text");
    cmd->add_flag("--chat", args->chat,
                  "Render the text as one user message through the chat template first");
    auto* messages = cmd->add_option(
        "--messages", args->messages_file,
        "Render this JSON list of {role, content} messages through the chat template");
    cmd->add_option("--system", args->system, "With --chat/--messages: a system message first");
    cmd->add_option("--chat-template", args->chat_template,
                    "Built-in template (deepseek-r1, deepseek-v3, qwen2.5, chatml, llama3) or "
                    "Jinja file instead of the model's");
    cmd->add_flag("--no-generation-prompt", args->no_generation_prompt,
                  "Render without add_generation_prompt");
    cmd->add_flag("--render", args->render, "Print the rendered prompt text instead of token ids");
    auto* print_template =
        cmd->add_flag("--print-template", args->print_template,
                      "Print the chat template source that would be used, and nothing else");
    cmd->callback([text, file, messages, print_template] {
        if (text->count() == 0 && file->count() == 0 && messages->count() == 0 &&
            print_template->count() == 0)
            throw CLI::ValidationError("tokenize",
                                       "give a TEXT, -f FILE, --messages FILE or --print-template");
    });
    return {cmd, [args] { return run_tokenize(*args); }};
}

}  // namespace tandem::cli
