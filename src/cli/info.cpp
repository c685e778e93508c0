// tandem info FILE [--json]: what a model file holds, and what decoding it will cost.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/verbs.h"
#include "core/units.h"
#include "gguf/gguf.h"
#include "model/summary.h"

namespace tandem::cli {

namespace {

struct InfoArgs {
    std::string path;
    bool json = false;
};

int run_info(const InfoArgs& args) {
    const gguf::File file = gguf::File::open(args.path);
    const model::Summary s = model::summarize(file);
    if (args.json) {
        nlohmann::ordered_json j;
        j["path"] = args.path;
        j["architecture"] = s.architecture;
        j["name"] = s.name;
        j["gguf_version"] = file.version();
        j["shards"] = s.n_shards;
        j["file_bytes"] = s.file_bytes;
        j["n_tensors"] = s.n_tensors;
        j["n_params"] = s.n_params;
        auto& hp = j["hyperparameters"] = nlohmann::ordered_json::object();
        for (const auto& [k, v] : s.hyperparameters) hp[k] = v;
        j["tokenizer"] = {{"model", s.tokenizer_model}, {"pre", s.tokenizer_pre}, {"vocab_size", s.vocab_size}};
        auto& types = j["tensor_types"] = nlohmann::ordered_json::object();
        for (const auto& [t, n] : s.tensors_per_type) types[t] = {{"count", n}, {"bytes", s.bytes_per_type.at(t)}};
        auto& comps = j["bytes_per_component"] = nlohmann::ordered_json::object();
        for (const auto& [c, b] : s.bytes_per_component) comps[std::string(model::component_name(c))] = b;
        j["n_expert"] = s.n_expert;
        j["n_expert_used"] = s.n_expert_used;
        j["active_bytes_per_token"] = s.active_bytes_per_token;
        j["active_expert_bytes_per_token"] = s.active_expert_bytes_per_token;
        j["repacked_formats"] = s.repacked_formats;
        j["repack_growth_bytes"] = s.repack_growth;
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("%s\n", args.path.c_str());
    std::printf("  architecture   %s%s%s\n", s.architecture.c_str(), s.name.empty() ? "" : "  -  ", s.name.c_str());
    std::printf("  file           %s in %d file%s, GGUF v%u, %llu tensors, %s parameters\n",
                format_bytes(s.file_bytes).c_str(), s.n_shards, s.n_shards == 1 ? "" : "s", file.version(),
                static_cast<unsigned long long>(s.n_tensors), format_count(static_cast<double>(s.n_params)).c_str());
    if (!s.tokenizer_model.empty())
        std::printf("  tokenizer      %s%s%s, %llu tokens\n", s.tokenizer_model.c_str(),
                    s.tokenizer_pre.empty() ? "" : " / ", s.tokenizer_pre.c_str(),
                    static_cast<unsigned long long>(s.vocab_size));
    std::printf("hyperparameters\n");
    for (const auto& [k, v] : s.hyperparameters) std::printf("  %-40s %s\n", k.c_str(), v.c_str());
    std::printf("tensor types\n");
    for (const auto& [t, n] : s.tensors_per_type)
        std::printf("  %-8s %5llu tensors  %12s\n", t.c_str(), static_cast<unsigned long long>(n),
                    format_bytes(s.bytes_per_type.at(t)).c_str());
    std::printf("bytes per component\n");
    for (const auto& [c, b] : s.bytes_per_component)
        std::printf("  %-16s %12s  %5.1f%%\n", std::string(model::component_name(c)).c_str(), format_bytes(b).c_str(),
                    100.0 * static_cast<double>(b) / static_cast<double>(std::max<uint64_t>(1, s.file_bytes)));
    if (s.n_expert > 0)
        std::printf("decode reads     %s per token (%lld of %lld routed experts active: %s of expert weights)\n",
                    format_bytes(s.active_bytes_per_token).c_str(), static_cast<long long>(s.n_expert_used),
                    static_cast<long long>(s.n_expert), format_bytes(s.active_expert_bytes_per_token).c_str());
    else
        std::printf("decode reads     %s per token\n", format_bytes(s.active_bytes_per_token).c_str());
    if (!s.repacked_formats.empty() && s.repack_growth == 0)
        std::printf("repacked         %s experts are regrouped as loaded (the same size) where the model fits 80%% of "
                    "the memory (--repack)\n",
                    s.repacked_formats.c_str());
    if (s.repack_growth > 0 && s.n_expert > 0)
        std::printf("repacked         %s experts take %s more in memory, repacked as loaded as far as 80%% of the "
                    "memory allows (--repack); all repacked, decode reads %s per token\n",
                    s.repacked_formats.c_str(), format_bytes(s.repack_growth).c_str(),
                    format_bytes(s.active_bytes_per_token + s.repack_growth / static_cast<uint64_t>(s.n_expert) *
                                                                static_cast<uint64_t>(s.n_expert_used)).c_str());
    return 0;
}

}  // namespace

Verb add_info(CLI::App& app) {
    auto args = std::make_shared<InfoArgs>();
    CLI::App* cmd = app.add_subcommand("info", "Show a model's architecture, tokenizer, tensor types and sizes");
    cmd->add_option("model", args->path, "GGUF file (any shard of a split model)")->required();
    cmd->add_flag("--json", args->json, "Print one JSON object, for scripts");
    return {cmd, [args] { return run_info(*args); }};
}

}  // namespace tandem::cli
