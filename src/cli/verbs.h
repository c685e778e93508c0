// Each verb adds its subcommand and options to the app, and returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace tandem::cli {

struct Verb {
    CLI::App* command;
    std::function<int()> run;
};

Verb add_info(CLI::App& app);
Verb add_dump(CLI::App& app);
Verb add_synth(CLI::App& app);
Verb add_tokenize(CLI::App& app);
Verb add_run(CLI::App& app);
Verb add_bench(CLI::App& app);
Verb add_chat(CLI::App& app);
Verb add_perplexity(CLI::App& app);

inline std::vector<Verb> all_verbs(CLI::App& app) {
    return {add_run(app),  add_chat(app), add_perplexity(app), add_bench(app),
            add_info(app), add_dump(app), add_synth(app),      add_tokenize(app)};
}

}  // namespace tandem::cli
