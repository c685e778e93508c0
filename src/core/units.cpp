#include "core/units.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "core/check.h"

namespace tandem {

std::string format_bytes(uint64_t n) {
    static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (n < 1024) return fmt::format("{} B", n);
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1024.0 && u < 5) v /= 1024.0, ++u;
    return fmt::format("{:.2f} {}", v, kUnits[u]);
}

uint64_t parse_bytes(std::string_view text, std::string_view what) {
    std::string_view s = text;
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    double value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || !std::isfinite(value) || value < 0)
        fail("{}: '{}' is not a size (expected a number with an optional unit, e.g. 14GiB, 512M)", what, text);
    std::string unit;
    for (const char* p = end; p != s.data() + s.size(); ++p)
        if (!std::isspace(static_cast<unsigned char>(*p))) unit += static_cast<char>(std::toupper(*p));
    int shift = 0;
    if (unit.empty() || unit == "B") shift = 0;
    else if (unit == "K" || unit == "KB" || unit == "KIB") shift = 10;
    else if (unit == "M" || unit == "MB" || unit == "MIB") shift = 20;
    else if (unit == "G" || unit == "GB" || unit == "GIB") shift = 30;
    else if (unit == "T" || unit == "TB" || unit == "TIB") shift = 40;
    else fail("{}: unknown size unit '{}' in '{}' (use B, KiB, MiB, GiB or TiB)", what, unit, text);
    const double bytes = std::ldexp(value, shift);
    if (bytes >= 9.2e18) fail("{}: '{}' is too large", what, text);
    return static_cast<uint64_t>(std::llround(bytes));
}

std::string format_count(double n) {
    if (n >= 1e12) return fmt::format("{:.2f} T", n / 1e12);
    if (n >= 1e9) return fmt::format("{:.2f} B", n / 1e9);
    if (n >= 1e6) return fmt::format("{:.2f} M", n / 1e6);
    if (n >= 1e3) return fmt::format("{:.2f} K", n / 1e3);
    return fmt::format("{:.0f}", n);
}

void add_to_list(std::string& list, std::string_view item) {
    for (size_t at = 0; at <= list.size();) {
        const size_t end = std::min(list.find(", ", at), list.size());
        if (std::string_view(list).substr(at, end - at) == item) return;
        at = end + 2;
    }
    if (!list.empty()) list += ", ";
    list += item;
}

}  // namespace tandem
