// The error machinery, in one place.
//
// tandem::Error is what every boundary (a file, a request, a flag) throws when input is bad;
// its message says what was expected, what was found and where. TANDEM_CHECK guards internal
// invariants: always on (never compiled out like assert), it throws with file and line.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace tandem {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> fmt, Args&&... args) {
    throw Error(fmt::format(fmt, std::forward<Args>(args)...));
}

[[noreturn]] inline void check_failed(const char* cond, const char* file, int line,
                                      const std::string& msg = {}) {
    throw Error(fmt::format("internal check failed at {}:{}: {}{}{}", file, line, cond,
                            msg.empty() ? "" : ": ", msg));
}

}  // namespace tandem

// Always-on invariant check: TANDEM_CHECK(cond) or TANDEM_CHECK(cond, "fmt {}", args...).
#define TANDEM_CHECK(cond, ...)                                                 \
    do {                                                                        \
        if (!(cond)) [[unlikely]]                                               \
            ::tandem::check_failed(#cond, __FILE__,                             \
                                   __LINE__ __VA_OPT__(, fmt::format(__VA_ARGS__))); \
    } while (0)
