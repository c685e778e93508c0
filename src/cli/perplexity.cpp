// tandem perplexity: the perplexity of a model on a text, computed the way llama.cpp's
// llama-perplexity computes it, so that the numbers compare with the ones people publish.
//
// The method (llama.cpp tools/perplexity/perplexity.cpp, perplexity()):
//   1. tokenize the whole text once, with BOS in front when the vocabulary adds BOS, and
//      without matching control-token text (parse_special off);
//   2. cut the tokens into n_chunk = n_tokens / n_ctx non-overlapping windows of n_ctx tokens
//      (at least two windows are needed; a tail shorter than n_ctx is not used);
//   3. run each window from an empty cache, its first token replaced by BOS when the
//      vocabulary adds BOS;
//   4. score only the second half: the logits at positions first = n_ctx/2 .. n_ctx-2 predict
//      the window's tokens first+1 .. n_ctx-1 (n_ctx - 1 - first tokens per window); the first
//      half is context only;
//   5. nll = -log softmax(logits)[next token], with the softmax's sum of exp(l - max) in double;
//      after each window print [i]exp(mean nll), and at the end
//      "Final estimate: PPL = exp(mean) +/- exp(mean) * sqrt((mean(nll^2) - mean^2) / (count -
//      1))".
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/common.h"
#include "cli/verbs.h"
#include "core/check.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "text/tokenizer.h"

namespace tandem::cli {

namespace {

struct PerplexityArgs {
    std::string model;
    std::string file;
    int n_ctx = 512;
    int n_chunks = -1;  // -1: all
    int n_batch = 512;
    int n_threads = 0;
    model::LoadOptions load;  // --mla, --repack
};

// -log p(token) under softmax(logits[n_vocab]), as llama.cpp's log_softmax computes it.
double token_nll(const float* logits, int64_t n_vocab, int32_t token) {
    float max_logit = logits[0];
    for (int64_t i = 1; i < n_vocab; ++i) max_logit = std::max(max_logit, logits[i]);
    double sum_exp = 0.0;
    for (int64_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
    return -(static_cast<double>(logits[token] - max_logit) - std::log(sum_exp));
}

int run_perplexity(const PerplexityArgs& args) {
    if (args.n_ctx < 4) fail("--ctx must be at least 4, found {}", args.n_ctx);
    if (args.n_batch < 1) fail("--batch must be positive, found {}", args.n_batch);
    if (args.n_chunks == 0 || args.n_chunks < -1)
        fail("--chunks must be positive or -1 (all), found {}", args.n_chunks);

    std::ifstream in(args.file, std::ios::binary);
    if (!in) fail("{}: cannot open", args.file);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();

    const gguf::File file = gguf::File::open(args.model);
    const text::Tokenizer tok = text::Tokenizer::from_metadata(file.metadata());
    if (tok.add_eos())
        fail("{}: the vocabulary adds EOS to every text; perplexity needs it not to (as llama.cpp)",
             args.model);
    const bool add_bos = tok.add_bos() && tok.bos_id().has_value();

    const auto t_tok = std::chrono::steady_clock::now();
    const std::vector<int32_t> tokens =
        tok.encode(text, {.add_special = true, .parse_special = false});
    const double tok_s = seconds_since(t_tok);
    const int64_t n_ctx = args.n_ctx;
    if (static_cast<int64_t>(tokens.size()) < 2 * n_ctx)
        fail("{} tokenizes to {} tokens; perplexity with --ctx {} needs at least {} (two windows)",
             args.file, tokens.size(), n_ctx, 2 * n_ctx);
    const int64_t n_chunk_max = static_cast<int64_t>(tokens.size()) / n_ctx;
    const int64_t n_chunk =
        args.n_chunks < 0 ? n_chunk_max : std::min<int64_t>(args.n_chunks, n_chunk_max);
    const int64_t n_batch = std::min<int64_t>(args.n_batch, n_ctx);
    const int64_t first = n_ctx / 2;

    cpu::ThreadPool pool(args.n_threads);
    const auto t_load = std::chrono::steady_clock::now();
    std::unique_ptr<model::Model> model = model::load_model(file, pool, args.load);
    const double load_s = seconds_since(t_load);
    const int64_t n_vocab = model->n_vocab();
    if (n_ctx > model->n_ctx_train())
        std::fprintf(
            stderr,
            "perplexity: warning: --ctx %lld is beyond the %lld tokens the model was trained on\n",
            static_cast<long long>(n_ctx), static_cast<long long>(model->n_ctx_train()));

    std::fprintf(stderr,
                 "perplexity: %zu tokens (tokenized in %.2f s, BOS %s); %lld chunks of %lld "
                 "tokens, scoring the last %lld "
                 "of each; batch %lld\n",
                 tokens.size(), tok_s, add_bos ? "added per chunk" : "not used",
                 static_cast<long long>(n_chunk), static_cast<long long>(n_ctx),
                 static_cast<long long>(n_ctx - 1 - first), static_cast<long long>(n_batch));

    std::vector<float> logits(
        static_cast<size_t>((n_ctx - first) * n_vocab));  // positions [first, n_ctx)
    double nll = 0.0, nll2 = 0.0;
    int64_t count = 0;
    SpeedTotals totals;
    model::Batch batch;
    std::unique_ptr<model::KvCache> cache = model->make_cache(n_ctx);
    for (int64_t i = 0; i < n_chunk; ++i) {
        const int64_t start = i * n_ctx;
        const auto t_chunk = std::chrono::steady_clock::now();
        cache->truncate(0, 0);  // every window starts from an empty cache
        float* out = logits.data();
        for (int64_t b = 0; b < n_ctx; b += n_batch) {
            batch.clear();
            for (int64_t k = b; k < std::min(n_ctx, b + n_batch); ++k) {
                const int32_t token =
                    (k == 0 && add_bos) ? *tok.bos_id() : tokens[static_cast<size_t>(start + k)];
                batch.add(token, static_cast<int32_t>(k), 0, k >= first);
            }
            model->forward(batch, *cache, out);
            out += batch.n_logits() * n_vocab;
        }
        const double chunk_s = seconds_since(t_chunk);
        totals.prefill_tokens += n_ctx;
        totals.prefill_s += chunk_s;

        for (int64_t j = first; j < n_ctx - 1; ++j) {
            const double v = token_nll(logits.data() + (j - first) * n_vocab, n_vocab,
                                       tokens[static_cast<size_t>(start + j + 1)]);
            nll += v;
            nll2 += v * v;
        }
        count += n_ctx - 1 - first;

        if (i == 0) {
            const double eta = chunk_s * static_cast<double>(n_chunk);
            std::fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", chunk_s,
                         eta / 60.0);
        }
        std::printf("[%lld]%.4f,", static_cast<long long>(i + 1),
                    std::exp(nll / static_cast<double>(count)));
        std::fflush(stdout);
    }
    std::printf("\n");

    const double mean = nll / static_cast<double>(count);
    const double ppl = std::exp(mean);
    const double var = nll2 / static_cast<double>(count) - mean * mean;
    if (var > 0)
        std::printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl,
                    std::sqrt(var / static_cast<double>(count - 1)) * ppl);
    else
        std::printf(
            "Final estimate: PPL = %.4f (no spread: the log-probabilities have zero variance)\n",
            ppl);
    std::fflush(stdout);
    std::fprintf(
        stderr, "%s\n",
        format_summary("perplexity", totals, model->bytes_per_token(), load_s, pool.n_threads())
            .c_str());
    return 0;
}

}  // namespace

Verb add_perplexity(CLI::App& app) {
    auto a = std::make_shared<PerplexityArgs>();
    CLI::App* cmd = app.add_subcommand("perplexity",
                                       "Perplexity of a model on a text file (llama.cpp's method)");
    cmd->add_option("-m,--model", a->model, "GGUF model (any shard of a split model)")->required();
    cmd->add_option("-f,--file", a->file, "Text file (UTF-8)")->required();
    cmd->add_option("--ctx", a->n_ctx,
                    "Window size in tokens; the second half of each window is scored")
        ->capture_default_str();
    cmd->add_option("--chunks", a->n_chunks, "Windows to evaluate (-1: all that fit)")
        ->capture_default_str();
    cmd->add_option("--batch", a->n_batch, "Tokens per forward pass within a window")
        ->capture_default_str();
    cmd->add_option("-t,--threads", a->n_threads, "CPU threads (default: all)");
    add_mla_option(cmd, a->load.mla);
    add_repack_option(cmd, a->load.repack);
    return {cmd, [a] { return run_perplexity(*a); }};
}

}  // namespace tandem::cli
