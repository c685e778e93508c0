#include "cli/common.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/units.h"

namespace tandem::cli {

text::SamplerParams SamplingArgs::resolved() const {
    text::SamplerParams p = params;
    if (greedy) p.temperature = 0.0f;
    return p;
}

namespace {

// --name NAME with one of `choices` (the first is the default) stored into `out` as its value.
template <typename E>
void add_choice_option(CLI::App* cmd, const std::string& name, E& out, std::vector<std::pair<std::string, E>> choices,
                       const std::string& type_name, const std::string& help) {
    std::vector<std::string> names;
    for (const auto& c : choices) names.push_back(c.first);
    const std::string fallback = names.front();
    cmd->add_option_function<std::string>(
           name,
           [&out, choices = std::move(choices)](const std::string& s) {
               for (const auto& [n, v] : choices)
                   if (n == s) out = v;
           },
           help)
        ->check(CLI::IsMember(names))
        ->type_name(type_name)
        ->default_str(fallback);
}

}  // namespace

void add_mla_option(CLI::App* cmd, model::MlaForm& form) {
    using F = model::MlaForm;
    add_choice_option(cmd, "--mla", form, {{"auto", F::kAuto}, {"absorbed", F::kAbsorbed}, {"decompressed", F::kDecompressed}},
                      "FORM",
                      "DeepSeek attention form: auto (the faster one for each batch), absorbed (over the latent cache), or "
                      "decompressed (per-head keys and values; needs attn_kv_b)");
}

void add_repack_option(CLI::App* cmd, model::Repack& mode) {
    using R = model::Repack;
    add_choice_option(cmd, "--repack", mode, {{"auto", R::kAuto}, {"on", R::kOn}, {"off", R::kOff}}, "WHEN",
                      "Rewrite IQ1_S, IQ1_M, IQ2_XXS, IQ3_XXS, Q2_K and Q3_K routed experts at load, in this "
                      "process's memory, into layouts with the same weights whose kernels run the MoE step faster "
                      "(1.7-2.7x for the IQ formats, for 1.4-1.55x their bytes, decode +10-19% on R1 UD-IQ1_S; Q2_K "
                      "and Q3_K 1.2-1.4x in the same bytes): auto (as many expert tensors as keep the model within 80% of the available "
                      "memory), on, or off");
}

void add_sampling_options(CLI::App* cmd, SamplingArgs& a) {
    cmd->add_flag("--greedy", a.greedy, "Always take the most likely token (same as --temp 0)");
    cmd->add_option("--temp", a.params.temperature, "Sampling temperature")->capture_default_str();
    cmd->add_option("--top-k", a.params.top_k, "Top-k (0: off)")->capture_default_str();
    cmd->add_option("--top-p", a.params.top_p, "Top-p (1: off)")->capture_default_str();
    cmd->add_option("--min-p", a.params.min_p, "Min-p (0: off)")->capture_default_str();
    cmd->add_option("--repeat-penalty", a.params.repetition_penalty, "Repetition penalty (1: off)")
        ->capture_default_str();
    cmd->add_option("--presence-penalty", a.params.presence_penalty, "Presence penalty")
        ->capture_default_str();
    cmd->add_option("--frequency-penalty", a.params.frequency_penalty, "Frequency penalty")
        ->capture_default_str();
    cmd->add_option("--seed", a.params.seed, "Random seed for sampling")->capture_default_str();
    cmd->add_option("--stop", a.stops, "Stop string (repeatable)");
}

uint64_t peak_rss_bytes() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string format_summary(const char* verb, const SpeedTotals& t, uint64_t bytes_per_token,
                           double load_s, int n_threads) {
    const double pp_tps = static_cast<double>(t.prefill_tokens) / std::max(t.prefill_s, 1e-9);
    const double dec_tps = t.decode_s > 0 && t.decode_steps > 0
                               ? static_cast<double>(t.decode_steps) / t.decode_s
                               : 0.0;
    return fmt::format(
        "{}: prefill {} tokens in {:.2f} s ({:.1f} tok/s) | decode {} tokens ({:.2f} tok/s, {}/s "
        "of weights) | "
        "load {:.2f} s | {} threads | peak RSS {}",
        verb, t.prefill_tokens, t.prefill_s, pp_tps, t.decode_tokens, dec_tps,
        format_bytes(static_cast<uint64_t>(dec_tps * static_cast<double>(bytes_per_token))), load_s,
        n_threads, format_bytes(peak_rss_bytes()));
}

}  // namespace tandem::cli
