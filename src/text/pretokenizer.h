// Pre-tokenization: splitting text into pieces that BPE then encodes one at a time.
//
// A GGUF vocabulary names its pre-tokenizer in `tokenizer.ggml.pre` (llama.cpp's convert script
// identifies it by hashing the Hugging Face tokenizer's output); the regexes are those of the
// `pre_tokenizer` of the model's tokenizer.json. A pre-tokenizer is a sequence of regexes, each
// a Hugging Face `Split` with behavior "Isolated": it is applied to every piece produced by the
// previous one, and both the matches and the unmatched stretches between them become pieces.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::text {

// One compiled PCRE2 regex (UTF + UCP, so \p{L}, \s and friends are Unicode-aware, and
// MATCH_INVALID_UTF, so invalid UTF-8 in the input never matches but also never fails).
class Regex {
  public:
    explicit Regex(const std::string& pattern);
    ~Regex();
    Regex(Regex&&) noexcept;
    Regex& operator=(Regex&&) noexcept;
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // Splits text[begin, end) into isolated pieces (matches and the gaps between them),
    // appending [begin, end) byte ranges to `out`.
    void split(std::string_view text, size_t begin, size_t end,
               std::vector<std::pair<size_t, size_t>>& out) const;

    const std::string& pattern() const { return pattern_; }

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string pattern_;
};

class PreTokenizer {
  public:
    // `name` is the value of tokenizer.ggml.pre. Throws tandem::Error for a name it does not
    // know, listing the ones it does.
    static PreTokenizer from_name(const std::string& name);
    // Llama-3's tokenizer.json sets `ignore_merges`: a piece that is itself a token is emitted
    // whole, without running the merges.
    bool ignore_merges() const { return ignore_merges_; }
    const std::string& name() const { return name_; }

    // Byte ranges of the pieces of `text`, in order, covering it entirely.
    std::vector<std::pair<size_t, size_t>> split(std::string_view text) const;

  private:
    std::string name_;
    std::vector<Regex> regexes_;
    bool ignore_merges_ = false;
};

}  // namespace tandem::text
