// A progress bar on stderr for anything that takes more than a couple of seconds.
//
// On a terminal it redraws one line at most ten times a second; when stderr is not a terminal
// (logs, tests) it prints nothing until finish(), which prints one summary line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tandem {

class Progress {
public:
    // `total` in `unit`s; when `bytes` is set the numbers are shown as sizes.
    Progress(std::string label, uint64_t total, bool bytes = true);
    ~Progress();
    void update(uint64_t done);
    void finish();

private:
    void draw(bool final);

    std::string label_;
    uint64_t total_;
    uint64_t done_ = 0;
    bool bytes_;
    bool tty_;
    bool finished_ = false;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace tandem
