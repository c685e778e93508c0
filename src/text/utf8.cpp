#include "text/utf8.h"

#include "core/check.h"

namespace tandem::text {

// Well-formed sequences, Unicode 15 Table 3-7: the lead byte fixes the length and the allowed
// range of the second byte (which rules out overlongs, surrogates and > U+10FFFF); later bytes
// are plain continuation bytes 80..BF. Returns the sequence length for the lead byte (0 when it
// can never start a character) and sets `matched` to how many bytes from `pos` fit the pattern.
static int utf8_scan(std::string_view s, size_t pos, int& matched) {
    const auto b0 = static_cast<uint8_t>(s[pos]);
    matched = 1;
    if (b0 < 0x80) return 1;
    int len = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 0;  // 80..C1 and F5..FF never start a character
    }
    for (; matched < len && pos + matched < s.size(); ++matched) {
        const auto b = static_cast<uint8_t>(s[pos + matched]);
        if (b < (matched == 1 ? lo : 0x80) || b > (matched == 1 ? hi : 0xBF)) break;
    }
    return len;
}

int utf8_sequence_length(std::string_view s, size_t pos) {
    int matched = 0;
    const int len = utf8_scan(s, pos, matched);
    if (len == 0) return 0;
    if (matched == len) return len;
    if (pos + matched == s.size()) return -matched;  // valid so far, runs out of bytes
    return 0;
}

bool utf8_is_valid(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const int n = utf8_sequence_length(s, i);
        if (n <= 0) return false;
        i += static_cast<size_t>(n);
    }
    return true;
}

// Length of the maximal ill-formed subpart at s[pos] (at least 1): the longest prefix of a
// well-formed sequence found there, or the single offending byte.
static size_t maximal_subpart(std::string_view s, size_t pos) {
    int matched = 0;
    utf8_scan(s, pos, matched);
    return static_cast<size_t>(matched);
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const int n = utf8_sequence_length(s, i);
        if (n > 0) {
            out.append(s.substr(i, static_cast<size_t>(n)));
            i += static_cast<size_t>(n);
        } else if (n < 0) {
            out.append(kReplacementChar);  // truncated character at the very end
            break;
        } else {
            out.append(kReplacementChar);
            i += maximal_subpart(s, i);
        }
    }
    return out;
}

void utf8_append(std::string& out, uint32_t cp) {
    TANDEM_CHECK(cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF), "code point {:#x}", cp);
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string StreamDecoder::push(std::string_view bytes) {
    pending_.append(bytes);
    // Find where the held-back tail starts: a valid-but-incomplete sequence reaching the end.
    size_t keep_from = pending_.size();
    for (size_t i = 0; i < pending_.size();) {
        const int n = utf8_sequence_length(pending_, i);
        if (n < 0) {
            keep_from = i;
            break;
        }
        i += n > 0 ? static_cast<size_t>(n) : maximal_subpart(pending_, i);
    }
    std::string out = utf8_sanitize(std::string_view(pending_).substr(0, keep_from));
    pending_.erase(0, keep_from);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out = utf8_sanitize(pending_);
    pending_.clear();
    return out;
}

}  // namespace tandem::text
