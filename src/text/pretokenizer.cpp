#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/check.h"

namespace tandem::text {

namespace {

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof(buf));
    return reinterpret_cast<const char*>(buf);
}

// Pre-tokenizer regexes, from the `pre_tokenizer` of each family's tokenizer.json (Split
// patterns, all with behavior "Isolated"). Non-ASCII characters are written as \x{...} so
// that the patterns survive any editor or Unicode normalisation of this source file.

// DeepSeek-V3 / R1 (deepseek-ai/DeepSeek-V3 tokenizer.json): digits in runs of at most three,
// CJK ideographs and kana as whole runs, then a GPT-4-like split of the rest.
const std::vector<std::string> kDeepSeekV3 = {
    R"(\p{N}{1,3})",
    R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)",
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|)"
    R"( ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
};

// DeepSeek LLM 7B/67B (deepseek-ai/deepseek-llm-7b-base tokenizer.json). The second pattern's
// class lists cased letters; three range ends (U+1F7D, U+1FD3, U+1FDB) and three singletons
// (U+1FBE, U+2126, U+212A) are canonical-decomposition characters that copies of this regex
// often carry NFC-normalised (which makes ranges descend); they are written here as the
// original code points.
const std::vector<std::string> kDeepSeekLlm = {
    R"([\r\n])",
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})"
    R"(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A})"
    R"(\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556})"
    R"(\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF})"
    R"(\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D})"
    R"(\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D})"
    R"(\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4})"
    R"(\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4})"
    R"(\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124})"
    R"(\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F})"
    R"(\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
    R"(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F})"
    R"(\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17})"
    R"(\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3})"
    R"(\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF})"
    R"(\x{1E900}-\x{1E943}]+)",
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)",
    R"(\s+$)",
    R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)",
    R"(\p{N}+)",
};

// Qwen2 (Qwen/Qwen2-7B tokenizer.json), also the R1 Qwen distills: single digits.
const std::vector<std::string> kQwen2 = {
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
    R"(\s*[\r\n]+|\s+(?!\S)|\s+)",
};

// Llama 3 (meta-llama/Meta-Llama-3-8B tokenizer.json), also the R1 Llama distills: digits in
// runs of at most three.
const std::vector<std::string> kLlama3 = {
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
};

}  // namespace

struct Regex::Impl {
    pcre2_code* code = nullptr;
    bool jit = false;
    ~Impl() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern) : impl_(std::make_unique<Impl>()), pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    // MULTILINE: Hugging Face compiles these with Oniguruma's Ruby syntax, where `$` always
    // matches at the end of a line, not only at the end of the subject.
    const uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE;
    impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                options, &err, &err_offset, nullptr);
    if (!impl_->code)
        fail("pre-tokenizer regex does not compile at offset {}: {}: {}", err_offset,
             pcre2_message(err), pattern);
    impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

namespace {

// Match data and a JIT stack per thread, reused across calls: tokenizing a long prompt calls
// the matcher once per piece.
struct MatchScratch {
    pcre2_match_data* data = pcre2_match_data_create(4, nullptr);
    // Long whitespace runs backtrack through `\s+(?!\S)`; the default 32 KiB JIT stack is too
    // small for a run of ~10^4 spaces.
    pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
    MatchScratch() { pcre2_jit_stack_assign(ctx, nullptr, stack); }
    ~MatchScratch() {
        pcre2_match_context_free(ctx);
        pcre2_jit_stack_free(stack);
        pcre2_match_data_free(data);
    }
};

}  // namespace

void Regex::split(std::string_view text, size_t begin, size_t end,
                  std::vector<std::pair<size_t, size_t>>& out) const {
    thread_local MatchScratch scratch;
    // The subject is the piece alone, as in Hugging Face: look-arounds do not see past it.
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + begin);
    const size_t len = end - begin;
    size_t pos = 0, gap_start = 0;
    while (pos < len) {
        int rc =
            pcre2_match(impl_->code, subject, len, pos, PCRE2_NOTEMPTY, scratch.data, scratch.ctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
            // Pathologically long runs: fall back to the interpreter, which uses the heap.
            rc = pcre2_match(impl_->code, subject, len, pos, PCRE2_NOTEMPTY | PCRE2_NO_JIT,
                             scratch.data, nullptr);
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("pre-tokenizer regex failed: {}: {}", pcre2_message(rc), pattern_);
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
        const size_t m_begin = ov[0], m_end = ov[1];
        TANDEM_CHECK(m_end > m_begin && m_begin >= pos && m_end <= len);
        if (m_begin > gap_start) out.emplace_back(begin + gap_start, begin + m_begin);
        out.emplace_back(begin + m_begin, begin + m_end);
        pos = gap_start = m_end;
    }
    if (len > gap_start) out.emplace_back(begin + gap_start, begin + len);
}

PreTokenizer PreTokenizer::from_name(const std::string& name) {
    const std::vector<std::string>* patterns = nullptr;
    bool ignore_merges = false;
    if (name == "deepseek-v3") {
        patterns = &kDeepSeekV3;
    } else if (name == "deepseek-llm") {
        patterns = &kDeepSeekLlm;
    } else if (name == "qwen2" || name == "deepseek-r1-qwen") {
        patterns = &kQwen2;
    } else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") {
        patterns = &kLlama3;
        ignore_merges = true;
    } else {
        fail(
            "unsupported pre-tokenizer tokenizer.ggml.pre = '{}' (supported: deepseek-v3, "
            "deepseek-llm, qwen2, deepseek-r1-qwen, llama-bpe)",
            name);
    }
    PreTokenizer pt;
    pt.name_ = name;
    pt.ignore_merges_ = ignore_merges;
    for (const auto& p : *patterns) pt.regexes_.emplace_back(p);
    return pt;
}

std::vector<std::pair<size_t, size_t>> PreTokenizer::split(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> pieces;
    if (!text.empty()) pieces.emplace_back(0, text.size());
    std::vector<std::pair<size_t, size_t>> next;
    for (const auto& re : regexes_) {
        next.clear();
        for (const auto& [b, e] : pieces) re.split(text, b, e, next);
        pieces.swap(next);
    }
    return pieces;
}

}  // namespace tandem::text
