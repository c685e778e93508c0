#include "text/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "core/check.h"

namespace tandem::text {

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) {
    if (!std::isfinite(params.temperature))
        fail("sampler: temperature = {} is not a finite number", params.temperature);
    if (params.top_k < 0) fail("sampler: top_k = {} must be >= 0 (0 = off)", params.top_k);
    if (!(params.top_p > 0.0f && params.top_p <= 1.0f))
        fail("sampler: top_p = {} must be in (0, 1]", params.top_p);
    if (!(params.min_p >= 0.0f && params.min_p <= 1.0f))
        fail("sampler: min_p = {} must be in [0, 1]", params.min_p);
    if (!(params.repetition_penalty > 0.0f) || !std::isfinite(params.repetition_penalty))
        fail("sampler: repetition_penalty = {} must be > 0 (1 = off)", params.repetition_penalty);
    if (!std::isfinite(params.presence_penalty) || !std::isfinite(params.frequency_penalty))
        fail("sampler: presence/frequency penalties must be finite");
    if (params.penalty_last_n < -1)
        fail("sampler: penalty_last_n = {} must be >= -1 (-1 = all)", params.penalty_last_n);
}

void Sampler::reset() {
    history_.clear();
    rng_.seed(params_.seed);
}

void Sampler::accept(int32_t token) {
    history_.push_back(token);
    if (params_.penalty_last_n >= 0)
        while (history_.size() > static_cast<size_t>(params_.penalty_last_n)) history_.pop_front();
}

void Sampler::apply_penalties(std::span<float> logits) const {
    const bool repetition = params_.repetition_penalty != 1.0f;
    if (history_.empty() ||
        (!repetition && params_.presence_penalty == 0.0f && params_.frequency_penalty == 0.0f))
        return;
    std::unordered_map<int32_t, int32_t> counts;
    for (int32_t t : history_)
        if (t >= 0 && static_cast<size_t>(t) < logits.size()) ++counts[t];
    for (const auto& [t, n] : counts) {
        float& l = logits[t];
        if (repetition) l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
        l -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(n);
    }
}

int32_t Sampler::sample(std::span<const float> logits) {
    TANDEM_CHECK(!logits.empty());
    scratch_.assign(logits.begin(), logits.end());
    apply_penalties(scratch_);
    const auto n_vocab = static_cast<int32_t>(scratch_.size());

    if (params_.temperature <= 0.0f) {
        // max_element returns the first maximum: ties go to the lowest id.
        return static_cast<int32_t>(std::max_element(scratch_.begin(), scratch_.end()) -
                                    scratch_.begin());
    }

    cand_.clear();
    cand_.reserve(scratch_.size());
    for (int32_t i = 0; i < n_vocab; ++i)
        if (!std::isnan(scratch_[i])) cand_.push_back({i, scratch_[i] / params_.temperature, 0.0f});
    TANDEM_CHECK(!cand_.empty(), "every logit is NaN");
    auto by_logit = [](const Candidate& a, const Candidate& b) {
        return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
    };
    // Sorted by logit, most likely first; with top_k only the first k need ordering.
    size_t n = cand_.size();
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
        n = static_cast<size_t>(params_.top_k);
        std::partial_sort(cand_.begin(), cand_.begin() + static_cast<ptrdiff_t>(n), cand_.end(),
                          by_logit);
        cand_.resize(n);
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }

    // Softmax over what is left (subtracting the max keeps exp() in range).
    const float max_logit = cand_[0].logit;
    double sum = 0;
    for (auto& c : cand_) {
        c.p = std::exp(c.logit - max_logit);
        sum += c.p;
    }
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);

    if (params_.top_p < 1.0f) {
        double cum = 0;
        size_t keep = 0;
        while (keep < cand_.size()) {
            cum += cand_[keep++].p;
            if (cum >= params_.top_p) break;
        }
        cand_.resize(keep);
    }
    if (params_.min_p > 0.0f) {
        const float threshold = params_.min_p * cand_[0].p;
        size_t keep = 1;
        while (keep < cand_.size() && cand_[keep].p >= threshold) ++keep;
        cand_.resize(keep);
    }

    double total = 0;
    for (const auto& c : cand_) total += c.p;
    const double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
    double acc = 0;
    for (const auto& c : cand_) {
        acc += c.p;
        if (r < acc) return c.id;
    }
    return cand_.back().id;  // r rounded up to total
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

StopMatcher::Result StopMatcher::push(std::string_view text) {
    if (stopped_) return {"", true};
    pending_.append(text);
    // The earliest stop string wins.
    size_t first = std::string::npos;
    for (const auto& s : stops_) first = std::min(first, pending_.find(s));
    if (first != std::string::npos) {
        stopped_ = true;
        std::string out = pending_.substr(0, first);
        pending_.clear();
        return {std::move(out), true};
    }
    // Hold back the longest tail that is a proper prefix of some stop string.
    size_t hold = 0;
    for (const auto& s : stops_) {
        for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k) {
            if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return {std::move(out), false};
}

std::string StopMatcher::flush() {
    std::string out;
    out.swap(pending_);
    return stopped_ ? std::string() : out;
}

}  // namespace tandem::text
