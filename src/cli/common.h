// What the text verbs (run, chat, perplexity) share: sampling flags, timing, peak memory and
// the one-line speed summary.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "text/sampler.h"

namespace tandem::cli {

struct SamplingArgs {
    bool greedy = false;
    text::SamplerParams params;
    std::vector<std::string> stops;

    text::SamplerParams resolved() const;  // greedy applied
};
void add_sampling_options(CLI::App* cmd, SamplingArgs& a);

// --mla auto|absorbed|decompressed (model::MlaForm), for A/B runs and checks of either form.
void add_mla_option(CLI::App* cmd, model::MlaForm& form);
// --repack auto|on|off (model::Repack).
void add_repack_option(CLI::App* cmd, model::Repack& mode);

uint64_t peak_rss_bytes();
double seconds_since(std::chrono::steady_clock::time_point t0);

// Prefill and decode totals of a verb's run, printed as its last stderr line:
//   VERB: prefill N tokens in S s (T tok/s) | decode N tokens (T tok/s, B/s of weights) | ...
struct SpeedTotals {
    int64_t prefill_tokens = 0;
    double prefill_s = 0;
    int64_t decode_tokens = 0;  // tokens generated
    int64_t decode_steps = 0;   // forward passes of one token that produced them
    double decode_s = 0;
};
std::string format_summary(const char* verb, const SpeedTotals& t, uint64_t bytes_per_token,
                           double load_s, int n_threads);

}  // namespace tandem::cli
