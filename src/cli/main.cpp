// tandem: one binary, one verb per job. Each verb lives in its own file (cli/<verb>.cpp) and
// registers itself here; this file only dispatches and turns errors into clear messages.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/verbs.h"
#include "core/check.h"

int main(int argc, char** argv) {
    CLI::App app{"tandem: run giant Mixture-of-Experts models on one GPU and a lot of RAM"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "tandem 0.1.0");
    std::vector<tandem::cli::Verb> verbs = tandem::cli::all_verbs(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        for (auto& v : verbs)
            if (v.command->parsed()) return v.run();
    } catch (const tandem::Error& e) {
        std::fprintf(stderr, "tandem: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tandem: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
