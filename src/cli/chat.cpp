// tandem chat: a multi-turn conversation on stdin/stdout.
//
// Each turn renders the whole conversation with the chat template and tokenizes it. The KV
// cache keeps the tokens of the previous turns; the new prompt usually starts with them, so
// the cache is cut back to the longest common prefix and only the rest is prefilled. (It is
// not always all of it: R1's template drops the reasoning of earlier answers, and an answer
// retokenized from its text may split differently from the tokens that were generated.)
// Reasoning between <think> and </think> is shown apart from the answer, and only the answer
// goes into the history.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/verbs.h"
#include "core/check.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "text/chat_template.h"
#include "text/think.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace tandem::cli {

namespace {

struct ChatArgs {
    std::string model;
    std::string system;
    std::string chat_template;
    int n_predict = -1;  // per answer; -1: until end of generation or the context is full
    int n_threads = 0;
    int n_ctx = 4096;
    int n_batch = 512;
    SamplingArgs sampling;
    bool ignore_eos = false;
    bool hide_thinking = false;
    bool color = false, no_color = false;
    std::string transcript;
    model::LoadOptions load;  // --mla, --repack
};

constexpr const char* kHelp =
    "commands: /reset (start over, keeping the system message), /exit (or end of input), /help;\n"
    "end a line with \\ to continue the message on the next line; Ctrl-C stops an answer\n";

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
    g_interrupted.store(true);
}

// Ctrl-C stops the answer being generated, not the program, while this lives.
class InterruptGuard {
  public:
    InterruptGuard() {
        g_interrupted.store(false);
        struct sigaction sa {};
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_);
    }
    ~InterruptGuard() { sigaction(SIGINT, &old_, nullptr); }
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;

  private:
    struct sigaction old_ {};
};

// How a turn looks: on a terminal the reasoning is dim under a "thinking" header; elsewhere it
// sits between "[thinking]" and "[/thinking]" lines so that scripts can cut it out.
class Display {
  public:
    Display(bool color, bool hide_thinking) : color_(color), hide_thinking_(hide_thinking) {}

    void begin_turn() { part_ = Part::None; }
    void show(const text::ThinkSplitter::Piece& p) {
        if (p.think && hide_thinking_) return;
        const Part want = p.think ? Part::Think : Part::Answer;
        if (want != part_) {
            if (part_ == Part::Think) close_think();
            if (want == Part::Think)
                std::fputs(color_ ? "\033[2m\033[3mthinking...\033[23m\n" : "[thinking]\n", stdout);
            part_ = want;
        }
        std::fputs(p.text.c_str(), stdout);
        std::fflush(stdout);
    }
    void end_turn() {
        if (part_ == Part::Think) close_think();
        std::fputs("\n", stdout);
        std::fflush(stdout);
    }
    void note(const std::string& text) const {
        std::fputs(color_ ? ("\033[2m" + text + "\033[0m\n").c_str() : (text + "\n").c_str(),
                   stderr);
    }
    void prompt() const {
        if (color_) std::fputs("\033[1m> \033[0m", stdout), std::fflush(stdout);
    }

  private:
    enum class Part { None, Think, Answer };
    void close_think() { std::fputs(color_ ? "\033[0m\n\n" : "\n[/thinking]\n", stdout); }

    bool color_, hide_thinking_;
    Part part_ = Part::None;
};

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
    return n;
}

// One line of input, or several joined when lines end with a backslash. False at end of input.
bool read_message(std::string& out) {
    out.clear();
    std::string line;
    while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty() && line.back() == '\\') {
            line.pop_back();
            out += line + "\n";
            continue;
        }
        out += line;
        return true;
    }
    return !out.empty();
}

class ChatSession {
  public:
    ChatSession(const ChatArgs& args, const gguf::File& file, model::Model& model,
                const text::Tokenizer& tok, Display& display)
        : args_(args),
          file_(file),
          model_(model),
          tok_(tok),
          display_(display),
          cache_(model.make_cache(args.n_ctx)),
          sampler_(args.sampling.resolved()),
          logits_(static_cast<size_t>(model.n_vocab())) {
        reset();
    }

    void reset() {
        messages_ = nlohmann::ordered_json::array();
        if (!args_.system.empty())
            messages_.push_back({{"role", "system"}, {"content", args_.system}});
    }
    const nlohmann::ordered_json& messages() const { return messages_; }
    const SpeedTotals& totals() const { return totals_; }
    int n_turns() const { return n_turns_; }

    // Runs one turn: false when the message could not be answered (it is then not kept).
    bool turn(const std::string& user) {
        messages_.push_back({{"role", "user"}, {"content", user}});
        const std::string rendered =
            text::apply_chat_template(file_.metadata(), messages_, true, args_.chat_template);
        const std::vector<int32_t> prompt =
            tok_.encode(rendered, {.add_special = false, .parse_special = true});
        const int64_t room = args_.n_ctx - static_cast<int64_t>(prompt.size());
        if (room < 1 || (args_.n_predict > 0 && room < args_.n_predict)) {
            messages_.erase(messages_.size() - 1);
            display_.note(
                fmt::format("the conversation is {} tokens; {} more do not fit in --ctx {}: /reset "
                            "to start over",
                            prompt.size(), std::max(args_.n_predict, 1), args_.n_ctx));
            return false;
        }

        // Keep the cached prefix the new prompt shares; at least the last prompt token runs
        // again, since its logits start the answer.
        const size_t reused = std::min(common_prefix(cached_, prompt), prompt.size() - 1);
        cache_->truncate(0, static_cast<int64_t>(reused));
        cached_.resize(reused);

        InterruptGuard interrupt_guard;
        const auto t_prefill = std::chrono::steady_clock::now();
        model::Batch batch;
        for (size_t begin = reused; begin < prompt.size();
             begin += static_cast<size_t>(args_.n_batch)) {
            const size_t end = std::min(prompt.size(), begin + static_cast<size_t>(args_.n_batch));
            batch.clear();
            for (size_t i = begin; i < end; ++i)
                batch.add(prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size());
            model_.forward(batch, *cache_, logits_.data());
            cached_.insert(cached_.end(), prompt.begin() + static_cast<ptrdiff_t>(begin),
                           prompt.begin() + static_cast<ptrdiff_t>(end));
        }
        const double prefill_s = seconds_since(t_prefill);
        for (size_t i = reused; i < prompt.size(); ++i) sampler_.accept(prompt[i]);

        // Decode, streaming through UTF-8 assembly, stop strings and the reasoning splitter.
        text::StreamDecoder utf8;
        text::StopMatcher stop(args_.sampling.stops);
        text::ThinkSplitter think(text::prompt_opens_think(rendered));
        std::string answer;
        auto show = [&](const std::vector<text::ThinkSplitter::Piece>& pieces) {
            for (const auto& p : pieces) {
                if (!p.think) answer += p.text;
                display_.show(p);
            }
        };
        display_.begin_turn();
        const auto t_decode = std::chrono::steady_clock::now();
        int64_t n_generated = 0, n_steps = 0;
        const char* ended = nullptr;
        for (;;) {
            const int32_t next =
                sampler_.sample(std::span<const float>(logits_.data(), logits_.size()));
            sampler_.accept(next);
            ++n_generated;
            if (!args_.ignore_eos && tok_.is_eog(next)) break;
            const auto r =
                stop.push(utf8.push(tok_.decode(std::span<const int32_t>(&next, 1), false)));
            show(think.push(r.text));
            if (r.stopped) break;
            if (g_interrupted.load()) {
                ended = "[interrupted]";
                break;
            }
            if (args_.n_predict > 0 && n_generated >= args_.n_predict) break;
            if (static_cast<int64_t>(cached_.size()) + 1 >= args_.n_ctx) {
                ended = "[context full: /reset to start over]";
                break;
            }
            batch.clear();
            batch.add(next, static_cast<int32_t>(cached_.size()), 0, true);
            model_.forward(batch, *cache_, logits_.data());
            cached_.push_back(next);
            ++n_steps;
        }
        const double decode_s = seconds_since(t_decode);
        show(think.push(stop.push(utf8.flush()).text));
        if (!stop.stopped()) show(think.push(stop.flush()));
        show(think.flush());
        display_.end_turn();
        if (ended) display_.note(ended);

        while (!answer.empty() && (answer.back() == '\n' || answer.back() == ' '))
            answer.pop_back();
        messages_.push_back({{"role", "assistant"}, {"content", answer}});
        ++n_turns_;
        totals_.prefill_tokens += static_cast<int64_t>(prompt.size() - reused);
        totals_.prefill_s += prefill_s;
        totals_.decode_tokens += n_generated;
        totals_.decode_steps += n_steps;
        totals_.decode_s += decode_s;
        display_.note(
            fmt::format("chat: turn {}: prefill {} tokens ({} reused from the cache) in {:.2f} s "
                        "({:.1f} tok/s) | "
                        "decode {} tokens ({:.2f} tok/s) | context {}/{}",
                        n_turns_, prompt.size() - reused, reused, prefill_s,
                        static_cast<double>(prompt.size() - reused) / std::max(prefill_s, 1e-9),
                        n_generated, n_steps > 0 ? static_cast<double>(n_steps) / decode_s : 0.0,
                        cached_.size(), args_.n_ctx));
        return true;
    }

  private:
    const ChatArgs& args_;
    const gguf::File& file_;
    model::Model& model_;
    const text::Tokenizer& tok_;
    Display& display_;
    std::unique_ptr<model::KvCache> cache_;
    std::vector<int32_t> cached_;  // the tokens whose rows the cache holds, in position order
    text::Sampler sampler_;
    std::vector<float> logits_;  // [n_vocab]
    nlohmann::ordered_json messages_;
    SpeedTotals totals_;
    int n_turns_ = 0;
};

int run_chat(const ChatArgs& args) {
    if (args.n_predict == 0 || args.n_predict < -1)
        fail("-n must be positive or -1 (until the answer ends), found {}", args.n_predict);
    if (args.n_ctx < 2) fail("--ctx must be at least 2, found {}", args.n_ctx);
    if (args.n_batch < 1) fail("--batch must be positive, found {}", args.n_batch);

    const gguf::File file = gguf::File::open(args.model);
    const text::Tokenizer tok = text::Tokenizer::from_metadata(file.metadata());
    // Parse the template now, so that a bad one fails before the model loads.
    const text::ChatTemplate check_template(
        text::chat_template_source(file.metadata(), args.chat_template));
    cpu::ThreadPool pool(args.n_threads);
    const auto t_load = std::chrono::steady_clock::now();
    std::unique_ptr<model::Model> model = model::load_model(file, pool, args.load);
    const double load_s = seconds_since(t_load);

    const bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    Display display(args.color || (tty && !args.no_color), args.hide_thinking);
    ChatSession session(args, file, *model, tok, display);
    if (tty)
        display.note(fmt::format("tandem chat: {} | {}", model->describe(), std::string(kHelp)));

    std::string line;
    for (;;) {
        display.prompt();
        if (!read_message(line)) break;
        if (line == "/exit" || line == "/quit") break;
        if (line == "/reset") {
            session.reset();
            display.note("[conversation reset]");
            continue;
        }
        if (line == "/help" || (!line.empty() && line[0] == '/')) {
            display.note(kHelp);
            continue;
        }
        if (line.empty()) continue;
        session.turn(line);
    }
    if (tty) std::fputs("\n", stdout);
    std::fflush(stdout);

    if (!args.transcript.empty()) {
        std::ofstream f(args.transcript);
        if (!f) fail("{}: cannot open for writing", args.transcript);
        f << session.messages().dump(2) << "\n";
    }
    std::fprintf(
        stderr, "%s\n",
        format_summary(fmt::format("chat: {} turns", session.n_turns()).c_str(), session.totals(),
                       model->bytes_per_token(), load_s, pool.n_threads())
            .c_str());
    return 0;
}

}  // namespace

Verb add_chat(CLI::App& app) {
    auto a = std::make_shared<ChatArgs>();
    CLI::App* cmd = app.add_subcommand("chat", "Interactive multi-turn chat on stdin/stdout");
    cmd->add_option("-m,--model", a->model, "GGUF model (any shard of a split model)")->required();
    cmd->add_option("--system", a->system, "System message at the start of the conversation");
    cmd->add_option("--chat-template", a->chat_template,
                    "A built-in template (deepseek-r1, deepseek-v3, qwen2.5, chatml, llama3) or a "
                    "Jinja file instead of "
                    "the model's");
    cmd->add_option("-n,--n-predict", a->n_predict, "Most tokens per answer (-1: until it ends)")
        ->capture_default_str();
    cmd->add_option("-t,--threads", a->n_threads, "CPU threads (default: all)");
    add_mla_option(cmd, a->load.mla);
    add_repack_option(cmd, a->load.repack);
    cmd->add_option("--ctx", a->n_ctx, "Context size in tokens (the whole conversation)")
        ->capture_default_str();
    cmd->add_option("--batch", a->n_batch, "Prefill chunk size in tokens")->capture_default_str();
    add_sampling_options(cmd, a->sampling);
    cmd->add_flag("--ignore-eos", a->ignore_eos,
                  "Keep generating past end-of-generation tokens (for testing)");
    cmd->add_flag("--hide-thinking", a->hide_thinking,
                  "Do not show the reasoning between <think> and </think>");
    cmd->add_flag("--color", a->color, "Dim the reasoning even when not on a terminal");
    cmd->add_flag("--no-color", a->no_color, "Plain text markers even on a terminal");
    cmd->add_option("--transcript", a->transcript,
                    "At exit, write the conversation (as kept in history) to this JSON file");
    return {cmd, [a] { return run_chat(*a); }};
}

}  // namespace tandem::cli
