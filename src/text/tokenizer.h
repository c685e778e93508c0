// Byte-level BPE tokenizer read from GGUF metadata.
//
// Keys (llama.cpp gguf-py/gguf/constants.py, as convert_hf_to_gguf.py writes them):
//   tokenizer.ggml.model        "gpt2" = byte-level BPE (the only kind supported so far)
//   tokenizer.ggml.pre          pre-tokenizer name, see text/pretokenizer.h
//   tokenizer.ggml.tokens       string[n_vocab], token text in GPT-2's byte-to-unicode encoding
//                               (added tokens as plain text)
//   tokenizer.ggml.token_type   i32[n_vocab]: TokenType below
//   tokenizer.ggml.merges       string[n_merges], "left right", rank = index
//   tokenizer.ggml.{bos,eos,eot,eom,padding}_token_id, tokenizer.ggml.add_{bos,eos}_token
//
// Encoding follows Hugging Face `tokenizers`: added tokens (CONTROL and USER_DEFINED) are
// split out first, leftmost-longest; every other stretch of text is pre-tokenized by regex,
// each piece's bytes become byte tokens, and merges are applied lowest rank first (leftmost
// first among equal ranks) until none applies.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/pretokenizer.h"

namespace tandem::gguf {
class Metadata;
}

namespace tandem::text {

// llama.cpp's llama_token_type values, stored in tokenizer.ggml.token_type.
enum class TokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

// GPT-2's reversible byte <-> printable code point map (openai/gpt-2 encoder.py
// bytes_to_unicode): bytes that are printable Latin-1 map to themselves, the other 68 map to
// U+0100 upward in byte order. Byte-level BPE vocabularies spell their tokens with it.
uint32_t byte_to_codepoint(uint8_t b);
std::optional<uint8_t> codepoint_to_byte(uint32_t cp);
std::string bytes_to_byte_level(std::string_view bytes);  // UTF-8 of the mapped code points

struct EncodeOptions {
    bool add_special = true;    // BOS/EOS as the vocabulary's add_bos/add_eos say
    bool parse_special = true;  // match CONTROL tokens in the text (USER_DEFINED always are)
};

class Tokenizer {
  public:
    // Throws tandem::Error naming the key or value that is missing, malformed or unsupported.
    static Tokenizer from_metadata(const gguf::Metadata& md);

    std::vector<int32_t> encode(std::string_view text, EncodeOptions opts = {}) const;

    // The bytes the tokens stand for, concatenated (not necessarily valid UTF-8: a character
    // may be split across calls; stream through StreamDecoder). CONTROL tokens render as their
    // text when `render_special`, else as nothing.
    std::string decode(std::span<const int32_t> ids, bool render_special = true) const;
    const std::string& token_bytes(int32_t id) const;  // decoded bytes of one token
    const std::string& token_text(int32_t id) const;   // as stored in tokenizer.ggml.tokens
    TokenType token_type(int32_t id) const;
    std::optional<int32_t> find_token(std::string_view text) const;  // by stored text

    int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
    const PreTokenizer& pre() const { return pre_; }
    std::optional<int32_t> bos_id() const { return bos_id_; }
    std::optional<int32_t> eos_id() const { return eos_id_; }
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    // End of generation: EOS, EOT, EOM and the end-of-turn tokens of known chat formats.
    bool is_eog(int32_t id) const;

  private:
    Tokenizer() = default;
    void check_id(int32_t id) const;
    void encode_text(std::string_view text, std::vector<int32_t>& out) const;
    void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

    struct Merge {
        int32_t rank;
        int32_t merged_id;
    };
    static uint64_t pair_key(int32_t left, int32_t right) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
               static_cast<uint32_t>(right);
    }

    PreTokenizer pre_;
    std::vector<std::string> tokens_;                       // stored text, by id
    std::vector<std::string> bytes_;                        // decoded bytes, by id
    std::vector<TokenType> types_;                          // by id
    std::unordered_map<std::string, int32_t> token_to_id_;  // stored text -> id
    std::unordered_map<uint64_t, Merge> merges_;            // (left id, right id) -> merge
    std::array<int32_t, 256> byte_to_id_{};  // single-byte token of each byte, -1 when absent
    // Added tokens (CONTROL, USER_DEFINED) by first byte, longest first: the matcher tries
    // them in this order so the first hit at a position is the longest.
    std::array<std::vector<int32_t>, 256> added_by_first_byte_;
    std::vector<int32_t> eog_ids_;
    std::optional<int32_t> bos_id_, eos_id_;
    bool add_bos_ = false, add_eos_ = false;
};

}  // namespace tandem::text
