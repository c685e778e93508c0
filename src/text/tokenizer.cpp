#include "text/tokenizer.h"

#include <algorithm>

#include "core/check.h"
#include "gguf/gguf.h"
#include "text/utf8.h"

namespace tandem::text {

namespace {

// The 188 bytes GPT-2 keeps as themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'.
bool byte_is_printable(uint8_t b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

struct ByteLevelTables {
    std::array<uint32_t, 256> to_cp{};
    std::array<int16_t, 324> from_cp{};  // every mapped code point is < 256 + 68
    ByteLevelTables() {
        from_cp.fill(-1);
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const auto byte = static_cast<uint8_t>(b);
            to_cp[b] = byte_is_printable(byte) ? byte : next++;
            from_cp[to_cp[b]] = static_cast<int16_t>(b);
        }
    }
};
const ByteLevelTables& byte_level() {
    static const ByteLevelTables t;
    return t;
}

// Decodes well-formed UTF-8 to code points; false on anything else.
bool utf8_to_codepoints(std::string_view s, std::vector<uint32_t>& out) {
    out.clear();
    for (size_t i = 0; i < s.size();) {
        const int n = utf8_sequence_length(s, i);
        if (n <= 0) return false;
        const auto b0 = static_cast<uint8_t>(s[i]);
        uint32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
        for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
        out.push_back(cp);
        i += static_cast<size_t>(n);
    }
    return true;
}

// The bytes a stored byte-level token stands for. As Hugging Face's ByteLevel decoder does, a
// token with a character outside the byte map (an added token such as "<｜User｜>") stands for
// its own UTF-8 text.
std::string byte_level_to_bytes(const std::string& text) {
    std::vector<uint32_t> cps;
    if (!utf8_to_codepoints(text, cps)) return text;
    std::string out;
    out.reserve(cps.size());
    for (uint32_t cp : cps) {
        const auto b = codepoint_to_byte(cp);
        if (!b) return text;
        out.push_back(static_cast<char>(*b));
    }
    return out;
}

// End-of-turn tokens of chat formats whose GGUFs do not always mark them as EOT.
constexpr std::string_view kEndOfTurnTexts[] = {
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",  // <｜end▁of▁sentence｜>
};

}  // namespace

uint32_t byte_to_codepoint(uint8_t b) {
    return byte_level().to_cp[b];
}

std::optional<uint8_t> codepoint_to_byte(uint32_t cp) {
    if (cp >= byte_level().from_cp.size()) return std::nullopt;
    const int16_t b = byte_level().from_cp[cp];
    if (b < 0) return std::nullopt;
    return static_cast<uint8_t>(b);
}

std::string bytes_to_byte_level(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) utf8_append(out, byte_to_codepoint(static_cast<uint8_t>(c)));
    return out;
}

Tokenizer Tokenizer::from_metadata(const gguf::Metadata& md) {
    const std::string model = md.get_string("tokenizer.ggml.model");
    if (model != "gpt2")
        fail(
            "unsupported tokenizer kind tokenizer.ggml.model = '{}' (supported: 'gpt2', "
            "byte-level BPE)",
            model);
    Tokenizer tk;
    // llama.cpp treats a missing `pre` as "default" with a warning; guessing a regex would
    // silently tokenize differently from the model's training, so it is an error here.
    const auto pre = md.string_or_none("tokenizer.ggml.pre");
    if (!pre) fail("tokenizer.ggml.pre is missing: the pre-tokenizer must be named");
    tk.pre_ = PreTokenizer::from_name(*pre);

    tk.tokens_ = md.get_strings("tokenizer.ggml.tokens");
    const size_t n_vocab = tk.tokens_.size();
    if (n_vocab == 0) fail("tokenizer.ggml.tokens is empty");
    if (n_vocab > static_cast<size_t>(INT32_MAX))
        fail("tokenizer.ggml.tokens has {} entries, more than token ids can hold", n_vocab);

    tk.types_.assign(n_vocab, TokenType::Normal);
    if (md.has("tokenizer.ggml.token_type")) {
        const std::vector<int64_t> types = md.get_ints("tokenizer.ggml.token_type");
        if (types.size() != n_vocab)
            fail("tokenizer.ggml.token_type has {} entries, expected {} (one per token)",
                 types.size(), n_vocab);
        for (size_t i = 0; i < n_vocab; ++i) {
            if (types[i] < 0 || types[i] > static_cast<int64_t>(TokenType::Byte))
                fail("tokenizer.ggml.token_type[{}] = {}: not a token type (0..6)", i, types[i]);
            tk.types_[i] = static_cast<TokenType>(types[i]);
        }
    }

    tk.bytes_.resize(n_vocab);
    tk.token_to_id_.reserve(n_vocab);
    tk.byte_to_id_.fill(-1);
    for (size_t i = 0; i < n_vocab; ++i) {
        const auto id = static_cast<int32_t>(i);
        const std::string& text = tk.tokens_[i];
        const TokenType type = tk.types_[i];
        const bool added = type == TokenType::Control || type == TokenType::UserDefined;
        tk.bytes_[i] = added ? text : byte_level_to_bytes(text);
        // First occurrence wins for duplicate texts, as in a Hugging Face vocab map.
        tk.token_to_id_.emplace(text, id);
        if (added && !text.empty())
            tk.added_by_first_byte_[static_cast<uint8_t>(text[0])].push_back(id);
        if (type == TokenType::Normal || type == TokenType::Byte) {
            std::vector<uint32_t> cps;
            if (utf8_to_codepoints(text, cps) && cps.size() == 1) {
                if (const auto b = codepoint_to_byte(cps[0]); b && tk.byte_to_id_[*b] < 0)
                    tk.byte_to_id_[*b] = id;
            }
        }
    }
    for (auto& ids : tk.added_by_first_byte_) {
        std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
            return tk.tokens_[a].size() > tk.tokens_[b].size();
        });
    }

    if (md.has("tokenizer.ggml.merges")) {
        const std::vector<std::string> merges = md.get_strings("tokenizer.ggml.merges");
        tk.merges_.reserve(merges.size());
        for (size_t rank = 0; rank < merges.size(); ++rank) {
            const std::string& m = merges[rank];
            const size_t space = m.find(' ');
            if (space == std::string::npos || space == 0 || space + 1 >= m.size() ||
                m.find(' ', space + 1) != std::string::npos)
                fail(
                    "tokenizer.ggml.merges[{}] = '{}': expected two tokens separated by one "
                    "space",
                    rank, m);
            const auto left = tk.find_token(std::string_view(m).substr(0, space));
            const auto right = tk.find_token(std::string_view(m).substr(space + 1));
            const auto merged = tk.find_token(m.substr(0, space) + m.substr(space + 1));
            if (!left || !right || !merged)
                fail("tokenizer.ggml.merges[{}] = '{}': {} is not in the vocabulary", rank, m,
                     !left    ? "the left token"
                     : !right ? "the right token"
                              : "the merged token");
            tk.merges_.emplace(pair_key(*left, *right), Merge{static_cast<int32_t>(rank), *merged});
        }
    }

    auto optional_id = [&](const char* key) -> std::optional<int32_t> {
        if (!md.has(key)) return std::nullopt;
        const int64_t id = md.get_int(key);
        if (id < 0 || id >= static_cast<int64_t>(n_vocab))
            fail("{} = {} is outside the vocabulary (size {})", key, id, n_vocab);
        return static_cast<int32_t>(id);
    };
    tk.bos_id_ = optional_id("tokenizer.ggml.bos_token_id");
    tk.eos_id_ = optional_id("tokenizer.ggml.eos_token_id");
    tk.add_bos_ = md.bool_or("tokenizer.ggml.add_bos_token", false);
    tk.add_eos_ = md.bool_or("tokenizer.ggml.add_eos_token", false);
    if (tk.add_bos_ && !tk.bos_id_)
        fail("tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing");
    if (tk.add_eos_ && !tk.eos_id_)
        fail("tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing");

    for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                            "tokenizer.ggml.eom_token_id"})
        if (const auto id = optional_id(key)) tk.eog_ids_.push_back(*id);
    for (std::string_view text : kEndOfTurnTexts)
        if (const auto id = tk.find_token(text); id && tk.types_[*id] == TokenType::Control)
            tk.eog_ids_.push_back(*id);
    return tk;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
    const auto it = token_to_id_.find(std::string(text));
    if (it == token_to_id_.end()) return std::nullopt;
    return it->second;
}

void Tokenizer::check_id(int32_t id) const {
    if (id < 0 || id >= n_vocab())
        fail("token id {} is outside the vocabulary (size {})", id, n_vocab());
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
    check_id(id);
    return bytes_[id];
}

const std::string& Tokenizer::token_text(int32_t id) const {
    check_id(id);
    return tokens_[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
    check_id(id);
    return types_[id];
}

bool Tokenizer::is_eog(int32_t id) const {
    return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, EncodeOptions opts) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (opts.add_special && add_bos_) out.push_back(*bos_id_);

    // Split out added tokens, leftmost-longest (Hugging Face's AddedVocabulary matches them
    // with a leftmost-longest Aho-Corasick automaton before any pre-tokenization).
    size_t plain_start = 0;
    for (size_t pos = 0; pos < text.size();) {
        int32_t hit = -1;
        for (int32_t id : added_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
            if (!opts.parse_special && types_[id] == TokenType::Control) continue;
            const std::string& t = tokens_[id];
            if (text.compare(pos, t.size(), t) == 0) {
                hit = id;
                break;
            }
        }
        if (hit < 0) {
            ++pos;
            continue;
        }
        encode_text(text.substr(plain_start, pos - plain_start), out);
        out.push_back(hit);
        pos += tokens_[hit].size();
        plain_start = pos;
    }
    encode_text(text.substr(plain_start), out);

    if (opts.add_special && add_eos_) out.push_back(*eos_id_);
    return out;
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    for (const auto& [b, e] : pre_.split(text)) encode_piece(text.substr(b, e - b), out);
}

void Tokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (pre_.ignore_merges()) {
        if (const auto id = find_token(bytes_to_byte_level(piece));
            id && types_[*id] == TokenType::Normal) {
            out.push_back(*id);
            return;
        }
    }
    // One symbol per byte, as a doubly linked list over positions; a merge joins a symbol with
    // its right neighbour. Bytes without a token are dropped, as Hugging Face's BPE does when
    // the model has no unk token.
    struct Symbol {
        int32_t id;
        int32_t prev, next;  // positions, -1 at the ends
    };
    thread_local std::vector<Symbol> sym;
    sym.clear();
    for (char c : piece) {
        const int32_t id = byte_to_id_[static_cast<uint8_t>(c)];
        if (id < 0) continue;
        const auto n = static_cast<int32_t>(sym.size());
        sym.push_back({id, n - 1, -1});
        if (n > 0) sym[n - 1].next = n;
    }
    if (sym.empty()) return;

    // Candidate merges, a min-heap by rank, then by position (leftmost first among equal
    // ranks). Entries go stale when a neighbour merges first; they are checked when popped.
    struct Candidate {
        int32_t rank, pos, left_id, right_id, merged_id;
        bool operator>(const Candidate& o) const {
            return rank != o.rank ? rank > o.rank : pos > o.pos;
        }
    };
    thread_local std::vector<Candidate> heap;
    heap.clear();
    auto push_pair = [&](int32_t pos) {
        if (pos < 0 || sym[pos].next < 0) return;
        const int32_t left_id = sym[pos].id, right_id = sym[sym[pos].next].id;
        const auto it = merges_.find(pair_key(left_id, right_id));
        if (it == merges_.end()) return;
        heap.push_back({it->second.rank, pos, left_id, right_id, it->second.merged_id});
        std::push_heap(heap.begin(), heap.end(), std::greater<>{});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push_pair(i);

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
        const Candidate c = heap.back();
        heap.pop_back();
        Symbol& left = sym[c.pos];
        if (left.id != c.left_id || left.next < 0 || sym[left.next].id != c.right_id) continue;
        const int32_t right_pos = left.next;
        left.id = c.merged_id;
        left.next = sym[right_pos].next;
        if (left.next >= 0) sym[left.next].prev = c.pos;
        sym[right_pos].id = -1;  // dead: never matches a candidate's ids again
        push_pair(left.prev);
        push_pair(c.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
    std::string out;
    for (int32_t id : ids) {
        check_id(id);
        if (types_[id] == TokenType::Control && !render_special) continue;
        if (types_[id] == TokenType::Unused) continue;
        out.append(bytes_[id]);
    }
    return out;
}

}  // namespace tandem::text
