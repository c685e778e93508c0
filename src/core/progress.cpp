#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/units.h"
#include <fmt/format.h>

namespace tandem {

Progress::Progress(std::string label, uint64_t total, bool bytes)
    : label_(std::move(label)), total_(total), bytes_(bytes), tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
    if (!finished_ && tty_) std::fputc('\n', stderr);
}

void Progress::update(uint64_t done) {
    done_ = done;
    const auto now = std::chrono::steady_clock::now();
    if (tty_ && now - last_draw_ > std::chrono::milliseconds(100)) {
        last_draw_ = now;
        draw(false);
    }
}

void Progress::finish() {
    if (finished_) return;
    done_ = total_;
    draw(true);
    finished_ = true;
}

void Progress::draw(bool final) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    auto amount = [this](uint64_t n) { return bytes_ ? format_bytes(n) : fmt::format("{}", n); };
    std::string rate;
    if (secs > 0 && bytes_) rate = fmt::format(", {}/s", format_bytes(static_cast<uint64_t>(done_ / secs)));
    if (!tty_) {
        if (final) std::fprintf(stderr, "%s: %s in %.1f s%s\n", label_.c_str(), amount(total_).c_str(), secs, rate.c_str());
        return;
    }
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r%s [%s] %3.0f%% %s / %s%s, %.1f s \x1b[K%s", label_.c_str(), bar.c_str(),
                 frac * 100, amount(done_).c_str(), amount(total_).c_str(), rate.c_str(), secs,
                 final ? "\n" : "");
    std::fflush(stderr);
}

}  // namespace tandem
