// tandem bench: prefill and decode speed of a model over repetitions, with the bytes each
// decoded token reads and how close that comes to the machine's measured read bandwidth.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include <fmt/format.h>

#include "cli/common.h"
#include "cli/verbs.h"
#include "core/check.h"
#include "core/units.h"
#include "cpu/bandwidth.h"
#include "cpu/gemm.h"
#include "cpu/phases.h"
#include "cpu/thread_pool.h"
#include "gguf/gguf.h"
#include "model/model.h"

namespace tandem::cli {

namespace {

struct BenchArgs {
    std::string model;
    int n_prompt = 512;
    int n_gen = 64;
    int n_threads = 0;
    int reps = 3;
    int n_batch = 512;
    int n_parallel = 1;  // sequences decoded together, as a server batches its users
    bool json = false;
    bool measure_bw = true;
    model::LoadOptions load;  // --mla, --repack
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run_bench(const BenchArgs& a) {
    if (a.n_prompt < 0 || a.n_gen < 0 || a.n_prompt + a.n_gen == 0) fail("-p and -n must be >= 0 and not both 0");
    if (a.reps < 1 || a.reps > 1000) fail("-r must be 1 to 1000, found {}", a.reps);
    if (a.n_batch < 1) fail("--batch must be positive, found {}", a.n_batch);
    if (a.n_parallel < 1 || a.n_parallel > 256) fail("--parallel must be 1 to 256 sequences, found {}", a.n_parallel);
    const gguf::File file = gguf::File::open(a.model);
    cpu::ThreadPool pool(a.n_threads);
    std::unique_ptr<model::Model> model = model::load_model(file, pool, a.load);
    const int64_t V = model->n_vocab();
    const int64_t n_ctx = a.n_prompt + a.n_gen + 1;

    // Each sequence's own random prompt (sequence 0's as before --parallel existed).
    const int P = a.n_parallel;
    std::mt19937 rng(1234);
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(P), std::vector<int32_t>(static_cast<size_t>(a.n_prompt)));
    for (auto& prompt : prompts)
        for (auto& t : prompt) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(V));
    std::vector<float> logits(static_cast<size_t>(std::max(a.n_batch, P)) * static_cast<size_t>(V));
    const auto argmax = [&](int64_t row) {
        const float* l = logits.data() + row * V;
        return static_cast<int32_t>(std::max_element(l, l + V) - l);
    };

    std::vector<double> pp_tps, tg_tps;
    uint64_t cache_bytes = 0;
    bool cache_blocks = false;
    using clock = std::chrono::steady_clock;
    // One untimed warm-up repetition pages the weights in and sizes every buffer.
    for (int rep = -1; rep < a.reps; ++rep) {
        auto cache = model->make_cache(n_ctx);
        model::Batch b;
        std::vector<int32_t> tok(static_cast<size_t>(P), 1);  // each sequence's next token (greedy)
        std::vector<int32_t> logit_seq;                       // the sequence of each logits row of a step
        // Prefill: batches of up to n_batch prompt tokens, the sequences one after another (a
        // batch may end one sequence's prompt and start the next's), logits at each prompt's end.
        const auto t0 = clock::now();
        for (int s = 0, i = 0; s < P && a.n_prompt > 0;) {
            b.clear();
            logit_seq.clear();
            while (b.size() < a.n_batch && s < P) {
                const bool last = i + 1 == a.n_prompt;
                b.add(prompts[static_cast<size_t>(s)][static_cast<size_t>(i)], i, s, last);
                if (last) logit_seq.push_back(s);
                if (++i == a.n_prompt) i = 0, ++s;
            }
            model->forward(b, *cache, logits.data());
            for (size_t j = 0; j < logit_seq.size(); ++j) tok[static_cast<size_t>(logit_seq[j])] = argmax(static_cast<int64_t>(j));
        }
        const double pp_s = std::chrono::duration<double>(clock::now() - t0).count();
        // Decode: one token of every sequence per step.
        const auto t1 = clock::now();
        for (int i = 0; i < a.n_gen; ++i) {
            b.clear();
            for (int s = 0; s < P; ++s) b.add(tok[static_cast<size_t>(s)], a.n_prompt + i, s, true);
            model->forward(b, *cache, logits.data());
            for (int s = 0; s < P; ++s) tok[static_cast<size_t>(s)] = argmax(s);
        }
        const double tg_s = std::chrono::duration<double>(clock::now() - t1).count();
        cache_bytes = cache->bytes();
        cache_blocks = cache->mla_blocks();
        if (rep < 0) {
            model->reset_profile();
            cpu::phases::reset();
            continue;
        }
        // Rates count every sequence's tokens.
        const double pp_rate = static_cast<double>(P) * a.n_prompt / pp_s, tg_rate = static_cast<double>(P) * a.n_gen / tg_s;
        if (a.n_prompt > 0) pp_tps.push_back(pp_rate);
        if (a.n_gen > 0) tg_tps.push_back(tg_rate);
        if (!a.json)
            std::fprintf(stderr, "bench: rep %d: prefill %.1f tok/s, decode %.2f tok/s\n", rep + 1, a.n_prompt ? pp_rate : 0.0,
                         a.n_gen ? tg_rate : 0.0);
    }
    if (cpu::phases::g_on) {
        // The tile-path products' time by phase (TANDEM_PHASES, cpu/phases.h), timed reps only.
        const auto shares = cpu::phases::shares();
        std::string line;
        for (int i = 0; i < cpu::phases::kCount; ++i)
            line += fmt::format("{}{} {:.1f}%", i ? ", " : "", cpu::phases::name(static_cast<cpu::phases::Id>(i)),
                                100.0 * shares[static_cast<size_t>(i)]);
        const bool any = std::any_of(shares.begin(), shares.end(), [](double v) { return v > 0; });
        std::fprintf(stderr, "phases   %s\n", any ? line.c_str() : "(no tile-path products ran)");
    }
    const double bw = a.measure_bw ? cpu::measure_read_bandwidth(pool) : 0.0;

    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const uint64_t peak_rss = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
    const double pp = median(pp_tps), tg = median(tg_tps);
    const uint64_t bpt = model->bytes_per_token();
    // A batch-of-one step's bytes at the decode rate; several sequences' steps read more (their
    // experts differ), so there the figure would mean nothing and is left out.
    const double dec_bw = P == 1 ? tg * static_cast<double>(bpt) : 0.0;
    auto spread = [](const std::vector<double>& v) {
        return v.empty() ? std::pair{0.0, 0.0} : std::pair{*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
    };
    if (a.json) {
        nlohmann::ordered_json j;
        j["model"] = a.model;
        j["description"] = model->describe();
        j["threads"] = pool.n_threads();
        j["matrix_unit"] = cpu::matrix_units_name();
        j["n_prompt"] = a.n_prompt;
        j["n_gen"] = a.n_gen;
        j["n_parallel"] = P;
        j["reps"] = a.reps;
        j["pp_tps"] = pp;
        j["tg_tps"] = tg;  // every sequence's tokens
        j["tg_tps_per_seq"] = tg / P;
        j["pp_tps_all"] = pp_tps;
        j["tg_tps_all"] = tg_tps;
        j["peak_rss_bytes"] = peak_rss;
        j["bytes_per_token"] = bpt;
        j["decode_bytes_per_s"] = dec_bw;
        j["read_bandwidth_bytes_per_s"] = bw;
        j["decode_bandwidth_fraction"] = bw > 0 ? dec_bw / bw : 0.0;
        j["kv_cache_bytes"] = cache_bytes;
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    const auto [pp_lo, pp_hi] = spread(pp_tps);
    const auto [tg_lo, tg_hi] = spread(tg_tps);
    std::printf("model     %s\n          %s\n", a.model.c_str(), model->describe().c_str());
    std::printf("cpu       %d threads, batched products on %s\n", pool.n_threads(),
                cpu::gemm_unit() != cpu::GemmUnit::none  ? cpu::gemm_unit_name(cpu::gemm_unit())
                : cpu::i8_unit() == cpu::I8Unit::avx512 ? "AVX-512 VNNI in int8 (no AMX or AVX512-BF16)"
                : cpu::i8_unit() == cpu::I8Unit::avx2   ? "AVX2 in int8 (no AMX or AVX512-BF16)"
                                                         : "the per-token path (no AMX or AVX512-BF16)");
    const std::string seqs = P > 1 ? fmt::format("{} sequences x ", P) : "";
    std::printf("prefill   %s%d tokens: %.1f tok/s (median of %d, range %.1f-%.1f)\n", seqs.c_str(), a.n_prompt, pp, a.reps, pp_lo, pp_hi);
    std::printf("decode    %s%d tokens: %.2f tok/s (median of %d, range %.2f-%.2f)", seqs.c_str(), a.n_gen, tg, a.reps, tg_lo, tg_hi);
    if (P > 1) std::printf(", %.2f tok/s per sequence", tg / P);
    std::printf("\n");
    if (P == 1) {
        std::printf("memory    decode reads %s per token: %s/s", format_bytes(bpt).c_str(), format_bytes(static_cast<uint64_t>(dec_bw)).c_str());
        if (bw > 0)
            std::printf(" = %.0f%% of the measured %s/s read bandwidth", 100.0 * dec_bw / bw, format_bytes(static_cast<uint64_t>(bw)).c_str());
    } else {
        std::printf("memory    a one-sequence decode step reads %s (a step of %d sequences reads more: their experts differ)",
                    format_bytes(bpt).c_str(), P);
        if (bw > 0) std::printf("; measured read bandwidth %s/s", format_bytes(static_cast<uint64_t>(bw)).c_str());
    }
    std::printf("\n          KV cache %s for %s%lld positions (%s)", format_bytes(cache_bytes).c_str(), seqs.c_str(),
                static_cast<long long>(n_ctx), cache_blocks ? "bf16, in the attention's blocks" : "f32 rows");
    std::printf("\nsummary   pp %.1f tok/s | tg %.2f tok/s | %d threads | peak RSS %s\n", pp, tg, pool.n_threads(),
                format_bytes(peak_rss).c_str());
    return 0;
}

}  // namespace

Verb add_bench(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode speed, memory and bandwidth use");
    cmd->add_option("-m,--model", a->model, "GGUF model (any shard of a split model)")->required();
    cmd->add_option("-p,--n-prompt", a->n_prompt, "Prompt tokens to prefill")->capture_default_str();
    cmd->add_option("-n,--n-gen", a->n_gen, "Tokens to decode")->capture_default_str();
    cmd->add_option("-t,--threads", a->n_threads, "CPU threads (default: all)");
    cmd->add_option("-r,--reps", a->reps, "Timed repetitions (after one warm-up)")->capture_default_str();
    cmd->add_option("--batch", a->n_batch, "Prefill chunk size in tokens")->capture_default_str();
    cmd->add_option("--parallel", a->n_parallel,
                    "Sequences decoded together (as a server batches its users): each gets its own -p prompt and -n "
                    "tokens, and the rates count all of them")
        ->capture_default_str();
    add_mla_option(cmd, a->load.mla);
    add_repack_option(cmd, a->load.repack);
    cmd->add_flag("--json", a->json, "Print one JSON object (pp_tps, tg_tps, ...)");
    cmd->add_flag("!--no-bandwidth", a->measure_bw, "Skip measuring the memory read bandwidth");
    return {cmd, [a] { return run_bench(*a); }};
}

}  // namespace tandem::cli
