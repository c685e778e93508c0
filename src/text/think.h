// Splitting a reasoning model's streamed output into its reasoning and its answer.
//
// DeepSeek-R1 (and its distills, QwQ, Qwen3 in thinking mode) write their chain of thought
// between <think> and </think> before the answer. Some chat templates open the block
// themselves (R1's updated template ends the generation prompt with "<think>\n"), so the
// output may start inside the reasoning with no opening tag. Text arrives in pieces of a few
// bytes, and a tag can be split across pieces ("</th" + "ink>"), so the splitter holds back a
// tail that could still become a tag.
//
// Rules (those of llama.cpp's and vLLM's R1 reasoning parsers): the opening tag counts only at
// the very start of the output (after whitespace); the closing tag ends the reasoning and
// everything after it is answer, tags included. Whitespace at the start of each part is
// dropped (R1 writes "<think>\n" and "</think>\n\n"). Output without tags is all answer.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tandem::text {

class ThinkSplitter {
  public:
    // `in_think`: the prompt already opened the reasoning block.
    explicit ThinkSplitter(bool in_think = false, std::string open_tag = "<think>",
                           std::string close_tag = "</think>");

    struct Piece {
        bool think = false;  // reasoning (true) or answer (false)
        std::string text;
    };
    // Adds streamed text; returns what can be shown now, adjacent pieces of one kind merged.
    std::vector<Piece> push(std::string_view text);
    // End of output: whatever is held back (an unfinished tag is plain text of its part).
    std::vector<Piece> flush();

    bool in_think() const { return state_ == State::Think; }
    bool had_think() const { return had_think_; }  // a reasoning block was seen (or given)

  private:
    enum class State { Start, Think, Answer };
    void emit(std::vector<Piece>& out, bool think, std::string_view text);

    State state_;
    bool part_start_ = true;  // no text of the current part emitted yet: drop leading whitespace
    bool had_think_;
    std::string open_, close_;
    std::string pending_;
};

// True when `prompt` ends inside an open reasoning block: it ends with `open_tag` followed
// by whitespace only (so the model's output starts in the reasoning).
bool prompt_opens_think(std::string_view prompt, std::string_view open_tag = "<think>");

}  // namespace tandem::text
