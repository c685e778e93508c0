// UTF-8 helpers and the streaming detokenizer's byte-to-text stage.
//
// Byte-level BPE tokens are byte strings: one token may end in the middle of a multi-byte
// character (a Chinese character is often two or three tokens). A streaming client must never
// see half a character, so StreamDecoder holds back an incomplete trailing sequence until the
// bytes that complete it arrive. Its output is always valid UTF-8: byte sequences that can never
// become valid are replaced by U+FFFD, one per maximal ill-formed subpart (Unicode 15 §3.9,
// "U+FFFD Substitution of Maximal Subparts"), which is what Python's errors="replace" does too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem::text {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at s[pos]: 1..4 when s[pos..] starts with a
// complete well-formed character; 0 when the bytes there are ill-formed; and -n (n >= 1) when
// the n bytes up to the end of `s` are a valid but incomplete prefix of a character.
int utf8_sequence_length(std::string_view s, size_t pos);

// True when `s` is entirely well-formed UTF-8.
bool utf8_is_valid(std::string_view s);

// Replaces every maximal ill-formed subpart of `s` by U+FFFD (an incomplete sequence at the
// end included).
std::string utf8_sanitize(std::string_view s);

// Appends the UTF-8 encoding of code point `cp` (must be <= 0x10FFFF and not a surrogate).
void utf8_append(std::string& out, uint32_t cp);

// Streams detokenized bytes out as valid UTF-8, never splitting a character.
class StreamDecoder {
  public:
    // Adds `bytes` and returns the text that is now complete; up to 3 trailing bytes of a
    // character still being formed are held back.
    std::string push(std::string_view bytes);
    // End of stream: returns what is held back, U+FFFD for an incomplete character.
    std::string flush();
    size_t pending() const { return pending_.size(); }

  private:
    std::string pending_;
};

}  // namespace tandem::text
