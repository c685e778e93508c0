// tandem run: prompt in, streamed text (or token ids and logits) out, then one summary line of
// prefill and decode speed and peak memory.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/common.h"
#include "cli/verbs.h"
#include "core/check.h"
#include "core/npy.h"
#include "core/units.h"
#include "cpu/thread_pool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "text/chat_template.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace tandem::cli {

namespace {

struct RunArgs {
    std::string model;
    std::string prompt;
    std::string prompt_tokens;  // "1,2,3"
    bool chat = false;
    std::string chat_template;  // built-in name or file; empty: the model's
    std::string system;
    int n_predict = 128;
    int n_threads = 0;
    int n_ctx = 4096;
    int n_batch = 512;
    SamplingArgs sampling;
    std::string logits_out;
    std::string tokens_out;
    bool ignore_eos = false;
    model::LoadOptions load;  // --f32-activations, --mla, --repack
};

std::vector<int32_t> parse_token_list(const std::string& s) {
    std::vector<int32_t> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX)
            fail(
                "--prompt-tokens: '{}' is not a token id (expected comma-separated non-negative "
                "integers)",
                item);
        out.push_back(static_cast<int32_t>(v));
    }
    if (out.empty()) fail("--prompt-tokens: no token ids given");
    return out;
}

int run_run(RunArgs args) {
    if (args.prompt.empty() == args.prompt_tokens.empty())
        fail("give exactly one of -p/--prompt and --prompt-tokens");
    if (args.n_predict < 0) fail("-n must be 0 or more, found {}", args.n_predict);
    if (args.n_ctx < 1) fail("--ctx must be positive, found {}", args.n_ctx);
    if (args.n_batch < 1) fail("--batch must be positive, found {}", args.n_batch);
    if (!args.chat && (!args.chat_template.empty() || !args.system.empty()))
        fail("--chat-template and --system need --chat");

    const gguf::File file = gguf::File::open(args.model);
    cpu::ThreadPool pool(args.n_threads);
    auto t_load = std::chrono::steady_clock::now();
    std::unique_ptr<model::Model> model = model::load_model(file, pool, args.load);
    const double load_s = seconds_since(t_load);

    std::optional<text::Tokenizer> tok;
    std::vector<int32_t> prompt;
    if (!args.prompt_tokens.empty()) {
        prompt = parse_token_list(args.prompt_tokens);
    } else {
        tok = text::Tokenizer::from_metadata(file.metadata());
        std::string text = args.prompt;
        text::EncodeOptions eo;
        if (args.chat) {
            nlohmann::ordered_json messages = nlohmann::ordered_json::array();
            if (!args.system.empty())
                messages.push_back({{"role", "system"}, {"content", args.system}});
            messages.push_back({{"role", "user"}, {"content", args.prompt}});
            text = text::apply_chat_template(file.metadata(), messages, true, args.chat_template);
            eo.add_special = false;  // the template writes BOS itself
        }
        prompt = tok->encode(text, eo);
    }
    if (static_cast<int64_t>(prompt.size()) + args.n_predict > args.n_ctx)
        fail("prompt ({} tokens) plus -n {} exceeds --ctx {}", prompt.size(), args.n_predict,
             args.n_ctx);

    const int64_t n_vocab = model->n_vocab();
    std::unique_ptr<model::KvCache> cache = model->make_cache(args.n_ctx);
    text::Sampler sampler(args.sampling.resolved());
    text::StopMatcher stop(args.sampling.stops);
    text::StreamDecoder utf8;

    // prefill, in chunks of --batch tokens
    const bool all_logits = !args.logits_out.empty();
    std::vector<float> prompt_logits(all_logits ? prompt.size() * static_cast<size_t>(n_vocab) : 0);
    std::vector<float> logits(static_cast<size_t>(std::max<int64_t>(args.n_batch, 1) * n_vocab));
    const auto t_prefill = std::chrono::steady_clock::now();
    model::Batch batch;
    for (size_t begin = 0; begin < prompt.size(); begin += static_cast<size_t>(args.n_batch)) {
        const size_t end = std::min(prompt.size(), begin + static_cast<size_t>(args.n_batch));
        batch.clear();
        for (size_t i = begin; i < end; ++i)
            batch.add(prompt[i], static_cast<int32_t>(i), 0, all_logits || i + 1 == prompt.size());
        float* out = all_logits ? prompt_logits.data() + begin * static_cast<size_t>(n_vocab)
                                : logits.data();
        model->forward(batch, *cache, out);
    }
    const double prefill_s = seconds_since(t_prefill);
    if (all_logits) {
        const int64_t shape[] = {static_cast<int64_t>(prompt.size()), n_vocab};
        write_npy(args.logits_out, shape, prompt_logits);
        std::copy(prompt_logits.end() - n_vocab, prompt_logits.end(), logits.begin());
    }
    for (int32_t t : prompt) sampler.accept(t);

    // decode
    std::vector<int32_t> generated;
    const auto t_decode = std::chrono::steady_clock::now();
    int32_t pos = static_cast<int32_t>(prompt.size());
    for (int i = 0; i < args.n_predict; ++i) {
        const int32_t next =
            sampler.sample(std::span<const float>(logits.data(), static_cast<size_t>(n_vocab)));
        sampler.accept(next);
        generated.push_back(next);
        if (tok && !args.ignore_eos && tok->is_eog(next)) break;
        if (tok) {
            const auto r =
                stop.push(utf8.push(tok->decode(std::span<const int32_t>(&next, 1), false)));
            std::fputs(r.text.c_str(), stdout);
            std::fflush(stdout);
            if (r.stopped) break;
        }
        if (i + 1 == args.n_predict) break;
        batch.clear();
        batch.add(next, pos++, 0, true);
        model->forward(batch, *cache, logits.data());
    }
    const double decode_s = seconds_since(t_decode);
    if (tok) {
        std::fputs(stop.push(utf8.flush()).text.c_str(), stdout);
        if (!stop.stopped()) std::fputs(stop.flush().c_str(), stdout);
        std::fputs("\n", stdout);
    }
    if (!args.tokens_out.empty()) {
        std::ofstream f(args.tokens_out);
        if (!f) fail("{}: cannot open for writing", args.tokens_out);
        f << nlohmann::json(generated).dump() << "\n";
    }
    if (!tok && args.tokens_out.empty() && args.n_predict > 0)
        std::printf("%s\n", nlohmann::json(generated).dump().c_str());

    std::fflush(stdout);  // the answer, then the summary line, also when both go to one pipe
    // Decode steps: each generated token but the last ran one forward pass.
    SpeedTotals totals;
    totals.prefill_tokens = static_cast<int64_t>(prompt.size());
    totals.prefill_s = prefill_s;
    totals.decode_tokens = static_cast<int64_t>(generated.size());
    totals.decode_steps = std::max<int64_t>(totals.decode_tokens, 1) - 1;
    totals.decode_s = decode_s;
    std::fprintf(
        stderr, "%s\n",
        format_summary("run", totals, model->bytes_per_token(), load_s, pool.n_threads()).c_str());
    return 0;
}

}  // namespace

Verb add_run(CLI::App& app) {
    auto a = std::make_shared<RunArgs>();
    CLI::App* cmd =
        app.add_subcommand("run", "Generate text (or token ids and logits) from a prompt");
    cmd->add_option("-m,--model", a->model, "GGUF model (any shard of a split model)")->required();
    cmd->add_option("-p,--prompt", a->prompt, "Prompt text");
    cmd->add_option("--prompt-tokens", a->prompt_tokens,
                    "Prompt as comma-separated token ids (no tokenizer needed)");
    cmd->add_flag("--chat", a->chat,
                  "Wrap the prompt in the model's chat template as one user turn");
    cmd->add_option("--chat-template", a->chat_template,
                    "With --chat: a built-in template (deepseek-r1, deepseek-v3, qwen2.5, chatml, "
                    "llama3) or a Jinja file "
                    "instead of the model's");
    cmd->add_option("--system", a->system, "With --chat: a system message before the prompt");
    cmd->add_option("-n,--n-predict", a->n_predict, "Tokens to generate")->capture_default_str();
    cmd->add_option("-t,--threads", a->n_threads, "CPU threads (default: all)");
    cmd->add_option("--ctx", a->n_ctx, "Context size in tokens")->capture_default_str();
    cmd->add_option("--batch", a->n_batch, "Prefill chunk size in tokens")->capture_default_str();
    add_sampling_options(cmd, a->sampling);
    cmd->add_flag("--f32-activations", a->load.f32_activations,
                  "Dot quantized weights with float32 activations instead of 8-bit blocks (slower; "
                  "for checking)");
    add_mla_option(cmd, a->load.mla);
    add_repack_option(cmd, a->load.repack);
    cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-generation tokens");
    cmd->add_option(
        "--logits-out", a->logits_out,
        "Write float32 logits of every prompt position to this .npy ([n_tokens, n_vocab])");
    cmd->add_option("--tokens-out", a->tokens_out,
                    "Write the generated token ids to this JSON file");
    return {cmd, [a] { return run_run(*a); }};
}

}  // namespace tandem::cli
