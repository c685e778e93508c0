#include "text/think.h"

#include <algorithm>

namespace tandem::text {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

// Length of the longest suffix of `s` that is a proper prefix of `tag` (a tag that may still
// be completed by the next piece).
size_t partial_tag_suffix(std::string_view s, std::string_view tag) {
    for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
        if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
    return 0;
}

}  // namespace

ThinkSplitter::ThinkSplitter(bool in_think, std::string open_tag, std::string close_tag)
    : state_(in_think ? State::Think : State::Start),
      had_think_(in_think),
      open_(std::move(open_tag)),
      close_(std::move(close_tag)) {}

void ThinkSplitter::emit(std::vector<Piece>& out, bool think, std::string_view text) {
    if (part_start_) {
        size_t i = 0;
        while (i < text.size() && is_space(text[i])) ++i;
        text.remove_prefix(i);
    }
    if (text.empty()) return;
    part_start_ = false;
    if (!out.empty() && out.back().think == think)
        out.back().text += text;
    else
        out.push_back({think, std::string(text)});
}

std::vector<ThinkSplitter::Piece> ThinkSplitter::push(std::string_view text) {
    std::vector<Piece> out;
    pending_ += text;
    for (;;) {
        if (state_ == State::Start) {
            size_t i = 0;
            while (i < pending_.size() && is_space(pending_[i])) ++i;
            const std::string_view rest = std::string_view(pending_).substr(i);
            if (rest.size() >= open_.size() && rest.substr(0, open_.size()) == open_) {
                pending_.erase(0, i + open_.size());
                state_ = State::Think;
                had_think_ = true;
                part_start_ = true;
                continue;
            }
            if (rest.size() < open_.size() &&
                std::string_view(open_).substr(0, rest.size()) == rest)
                return out;  // nothing but whitespace and maybe the start of the tag yet
            state_ = State::Answer;
            continue;
        }
        if (state_ == State::Think) {
            const size_t at = pending_.find(close_);
            if (at != std::string::npos) {
                emit(out, true, std::string_view(pending_).substr(0, at));
                pending_.erase(0, at + close_.size());
                state_ = State::Answer;
                part_start_ = true;
                continue;
            }
            const size_t keep = partial_tag_suffix(pending_, close_);
            emit(out, true, std::string_view(pending_).substr(0, pending_.size() - keep));
            pending_.erase(0, pending_.size() - keep);
            return out;
        }
        emit(out, false, pending_);
        pending_.clear();
        return out;
    }
}

std::vector<ThinkSplitter::Piece> ThinkSplitter::flush() {
    std::vector<Piece> out;
    if (!pending_.empty()) emit(out, state_ == State::Think, pending_);
    pending_.clear();
    return out;
}

bool prompt_opens_think(std::string_view prompt, std::string_view open_tag) {
    size_t end = prompt.size();
    while (end > 0 && is_space(prompt[end - 1])) --end;
    return end >= open_tag.size() &&
           prompt.substr(end - open_tag.size(), open_tag.size()) == open_tag;
}

}  // namespace tandem::text
