// tandem tokenize -m MODEL (TEXT | -f FILE) [--pieces]: the token ids of a text as JSON, with
// the model's own tokenizer (GGUF metadata only; no tensor data is read).
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/verbs.h"
#include "core/check.h"
#include "gguf/gguf.h"
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
};

int run_tokenize(const TokenizeArgs& args) {
    std::string text = args.text;
    if (!args.file.empty()) {
        std::ifstream in(args.file, std::ios::binary);
        if (!in) fail("{}: cannot open", args.file);
        std::stringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    }
    const gguf::File file = gguf::File::open(args.model);
    const text::Tokenizer tk = text::Tokenizer::from_metadata(file.metadata());
    const auto ids =
        tk.encode(text, {.add_special = !args.no_bos, .parse_special = !args.no_parse_special});

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
    cmd->callback([text, file] {
        if (text->count() == 0 && file->count() == 0)
            throw CLI::ValidationError("tokenize", "give a TEXT or -f FILE");
    });
    return {cmd, [args] { return run_tokenize(*args); }};
}

}  // namespace tandem::cli
