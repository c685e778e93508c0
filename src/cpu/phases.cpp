#include "cpu/phases.h"

#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

namespace tandem::cpu::phases {

const bool g_on = std::getenv("TANDEM_PHASES") != nullptr;

namespace {

// Threads' clocks live as long as the process (a pool's workers outlive any reader), so a
// reader never sees a freed clock.
std::mutex g_mutex;
std::vector<std::unique_ptr<Clock>>& registry() {
    static auto* clocks = new std::vector<std::unique_ptr<Clock>>;
    return *clocks;
}

}  // namespace

const char* name(Id id) {
    switch (id) {
        case kPackActs: return "activations packed";
        case kUnpack: return "weights unpacked";
        case kTiles: return "tile products";
        case kEpilogue: return "tile epilogues";
        case kVector: return "vector products";
        case kOutput: return "results written";
        case kCount: break;
    }
    return "?";
}

Clock& local() {
    thread_local Clock* clock = [] {
        std::lock_guard lock(g_mutex);
        registry().push_back(std::make_unique<Clock>());
        return registry().back().get();
    }();
    return *clock;
}

std::array<double, kCount> shares() {
    std::array<uint64_t, kCount> t{};
    {
        std::lock_guard lock(g_mutex);
        for (const auto& c : registry())
            for (size_t i = 0; i < t.size(); ++i) t[i] += c->ticks[i];
    }
    double sum = 0;
    for (uint64_t v : t) sum += static_cast<double>(v);
    std::array<double, kCount> out{};
    for (size_t i = 0; i < out.size() && sum > 0; ++i) out[i] = static_cast<double>(t[i]) / sum;
    return out;
}

void reset() {
    std::lock_guard lock(g_mutex);
    for (const auto& c : registry()) c->ticks.fill(0);
}

}  // namespace tandem::cpu::phases
