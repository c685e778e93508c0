// tandem synth: write a model with random but valid weights at real shapes.
#include <chrono>
#include <cstdio>

#include "cli/verbs.h"
#include "core/progress.h"
#include "core/units.h"
#include "model/synth.h"

namespace tandem::cli {

namespace {

int run_synth(const model::SynthOptions& opt, const std::string& out) {
    const auto t0 = std::chrono::steady_clock::now();
    model::SynthShape shape;
    const gguf::Writer w = model::synth_writer(opt, &shape);
    const uint64_t total = w.tensor_bytes();
    std::fprintf(stderr, "synth: %s, %lld layers (%lld dense), %lld experts, recipe %s: %zu tensors, %s\n",
                 shape.name.c_str(), static_cast<long long>(shape.n_layer), static_cast<long long>(shape.n_layer_dense),
                 static_cast<long long>(shape.n_expert), opt.recipe.c_str(), w.n_tensors(), format_bytes(total).c_str());
    Progress bar("writing", total);
    auto progress = [&](uint64_t done, uint64_t) { bar.update(done); };
    std::vector<std::string> paths;
    if (opt.n_shards > 1) {
        std::string prefix = out;
        if (prefix.ends_with(".gguf")) prefix.resize(prefix.size() - 5);
        paths = w.write_split(prefix, opt.n_shards, progress);
    } else {
        w.write(out, progress);
        paths = {out};
    }
    bar.finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& p : paths) std::printf("%s\n", p.c_str());
    std::fprintf(stderr, "synth: wrote %s in %.1f s (%s/s)\n", format_bytes(total).c_str(), secs,
                 format_bytes(static_cast<uint64_t>(static_cast<double>(total) / std::max(secs, 1e-9))).c_str());
    return 0;
}

}  // namespace

Verb add_synth(CLI::App& app) {
    auto opt = std::make_shared<model::SynthOptions>();
    auto out = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("synth", "Write a model with random but valid weights at real shapes");
    cmd->add_option("-o,--output", *out, "Output .gguf path (with --split N: the prefix of the shards)")->required();
    cmd->add_option("--preset", opt->preset, "Shapes: r1 (DeepSeek-R1/V3), v2-lite, tiny")
        ->check(CLI::IsMember(model::synth_preset_names()))->capture_default_str();
    cmd->add_option("--recipe", opt->recipe, "Tensor types: ud-iq1_s, ud-iq1_m, ud-iq2_xxs, ud-q2_k_xl, q4_k_m, q8_0, f16, f32")
        ->check(CLI::IsMember(model::synth_recipe_names()))->capture_default_str();
    cmd->add_option("--layers", opt->n_layer, "Number of layers (default: the preset's)");
    cmd->add_option("--dense", opt->n_layer_dense, "Leading dense layers (default: the preset's)");
    cmd->add_option("--experts", opt->n_expert, "Routed experts per MoE layer (default: the preset's)");
    cmd->add_option("--vocab", opt->vocab_json, "Take the vocabulary from a Hugging Face tokenizer.json")
        ->check(CLI::ExistingFile);
    cmd->add_option("--vocab-pre", opt->vocab_pre, "Pre-tokenizer name for --vocab")->capture_default_str();
    cmd->add_option("--seed", opt->seed, "Random seed")->capture_default_str();
    cmd->add_option("--split", opt->n_shards, "Write N shards (NAME-00001-of-0000N.gguf)")
        ->check(CLI::Range(1, 999))->capture_default_str();
    return {cmd, [opt, out] { return run_synth(*opt, *out); }};
}

}  // namespace tandem::cli
