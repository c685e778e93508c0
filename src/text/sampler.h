// Choosing the next token from logits, and stopping on stop strings.
//
// The order of the steps follows Hugging Face transformers' generate() (its logits processors
// run penalties first, then the warpers temperature, top-k, top-p, min-p) so that a request's
// parameters mean what they mean there and in the OpenAI API:
//   1. repetition penalty (CTRL, Keskar et al. 2019): a logit l of a token seen in the last
//      `penalty_last_n` tokens becomes l / r when l > 0, l * r otherwise;
//   2. presence and frequency penalties (OpenAI API): l -= presence * [count > 0]
//      + frequency * count, with count over the same window;
//   3. temperature <= 0 means greedy: the largest logit wins (ties: the lowest id);
//   4. otherwise logits / temperature, then top-k, then top-p (the smallest set of most likely
//      tokens whose probability reaches p), then min-p (drop tokens below min_p times the top
//      probability), then one draw from what is left, renormalised.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::text {

struct SamplerParams {
    float temperature = 1.0f;         // <= 0: greedy
    int32_t top_k = 0;                // 0: off
    float top_p = 1.0f;               // >= 1: off
    float min_p = 0.0f;               // <= 0: off
    float repetition_penalty = 1.0f;  // 1: off
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    int32_t penalty_last_n = 64;  // window of past tokens the penalties look at; -1: all
    uint64_t seed = 0;
};

class Sampler {
  public:
    // Throws tandem::Error for out-of-range parameters (negative top_k, top_p outside (0, 1],
    // repetition_penalty <= 0, ...), naming the parameter.
    explicit Sampler(const SamplerParams& params);

    // Picks a token from logits[n_vocab]. Does not record it: call accept() with the token
    // actually used (prompt tokens too, if the penalties should see them).
    int32_t sample(std::span<const float> logits);
    void accept(int32_t token);
    void reset();  // forget the history and reseed

    const SamplerParams& params() const { return params_; }

    // Steps 1-2 applied in place (exposed for tests).
    void apply_penalties(std::span<float> logits) const;

  private:
    SamplerParams params_;
    std::mt19937_64 rng_;
    std::deque<int32_t> history_;
    struct Candidate {
        int32_t id;
        float logit;
        float p;
    };
    std::vector<Candidate> cand_;  // reused between calls
    std::vector<float> scratch_;
};

// Stop strings over streamed text. push() returns the text that can be shown: everything up to
// a stop string (which is not shown), minus a held-back tail that could still be the start of
// one. Feed it valid UTF-8 (StreamDecoder's output) so that held-back tails are whole
// characters.
class StopMatcher {
  public:
    explicit StopMatcher(std::vector<std::string> stops);

    struct Result {
        std::string text;      // safe to emit now
        bool stopped = false;  // a stop string was found; nothing after it is returned
    };
    Result push(std::string_view text);
    std::string flush();  // end of generation without a stop: the held-back tail
    bool stopped() const { return stopped_; }

  private:
    std::vector<std::string> stops_;
    std::string pending_;
    bool stopped_ = false;
};

}  // namespace tandem::text
