#include "model/model.h"

#include <algorithm>

#include "core/check.h"

namespace tandem::model {

int64_t Batch::n_logits() const {
    int64_t n = 0;
    for (uint8_t w : want_logits) n += w;
    return n;
}

KvCache::KvCache(int64_t n_layer, int64_t row_width, int64_t max_ctx)
    : n_layer_(n_layer), row_width_(row_width), max_ctx_(max_ctx) {
    TANDEM_CHECK(n_layer > 0 && row_width > 0 && max_ctx > 0);
}

int64_t KvCache::n_pos(int32_t seq) const {
    auto it = seqs_.find(seq);
    return it == seqs_.end() ? 0 : it->second.n_pos;
}

KvCache::Seq& KvCache::seq_for(int32_t seq) {
    Seq& s = seqs_[seq];
    if (s.layers.empty()) s.layers.resize(static_cast<size_t>(n_layer_));
    return s;
}

const float* KvCache::rows(int32_t seq, int64_t layer) const {
    auto it = seqs_.find(seq);
    TANDEM_CHECK(it != seqs_.end(), "sequence {} has no cache", seq);
    return it->second.layers[static_cast<size_t>(layer)].data();
}

float* KvCache::append_row(int32_t seq, int64_t layer, int64_t pos) {
    TANDEM_CHECK(pos < max_ctx_, "position {} beyond the cache's {} positions", pos, max_ctx_);
    auto& rows = seq_for(seq).layers[static_cast<size_t>(layer)];
    const size_t need = static_cast<size_t>((pos + 1) * row_width_);
    if (rows.size() < need) {
        // Grow geometrically so a long generation reallocates O(log n) times.
        size_t cap = std::max<size_t>(need, rows.size() * 2);
        cap = std::min(cap, static_cast<size_t>(max_ctx_ * row_width_));
        rows.reserve(cap);
        rows.resize(need);
    }
    return rows.data() + pos * row_width_;
}

float* KvCache::appended_row(int32_t seq, int64_t layer, int64_t pos) {
    auto it = seqs_.find(seq);
    TANDEM_CHECK(it != seqs_.end(), "sequence {} has no cache", seq);
    auto& rows = it->second.layers[static_cast<size_t>(layer)];
    TANDEM_CHECK(pos >= 0 && static_cast<size_t>((pos + 1) * row_width_) <= rows.size(), "position {} of sequence {} was not appended", pos, seq);
    return rows.data() + pos * row_width_;
}

void KvCache::commit(const Batch& batch) {
    for (int64_t t = 0; t < batch.size(); ++t) seq_for(batch.seq[static_cast<size_t>(t)]).n_pos = batch.pos[static_cast<size_t>(t)] + 1;
}

void KvCache::drop(int32_t seq) { seqs_.erase(seq); }

void KvCache::truncate(int32_t seq, int64_t n_pos) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return;
    TANDEM_CHECK(n_pos >= 0);
    Seq& s = it->second;
    s.n_pos = std::min(s.n_pos, n_pos);
    for (auto& l : s.layers) l.resize(std::min(l.size(), static_cast<size_t>(s.n_pos * row_width_)));
}

void KvCache::fork(int32_t from, int32_t to) {
    auto it = seqs_.find(from);
    TANDEM_CHECK(it != seqs_.end(), "sequence {} has no cache", from);
    seqs_[to] = it->second;
}

uint64_t KvCache::bytes() const {
    uint64_t n = 0;
    for (const auto& [id, s] : seqs_)
        for (const auto& l : s.layers) n += l.capacity() * sizeof(float);
    return n;
}

void validate_batch(const Batch& batch, const KvCache& cache, int64_t n_vocab) {
    const size_t n = batch.tokens.size();
    if (batch.pos.size() != n || batch.seq.size() != n || batch.want_logits.size() != n)
        fail("batch: tokens, positions, sequence ids and logit flags differ in length");
    std::map<int32_t, int64_t> next;  // expected next position per sequence
    for (size_t i = 0; i < n; ++i) {
        if (batch.tokens[i] < 0 || batch.tokens[i] >= n_vocab)
            fail("batch: token id {} at index {} is outside the vocabulary (0 to {})", batch.tokens[i], i, n_vocab - 1);
        const int32_t s = batch.seq[i];
        auto it = next.find(s);
        if (it == next.end()) it = next.emplace(s, cache.n_pos(s)).first;
        if (batch.pos[i] != it->second)
            fail("batch: sequence {} has position {} at index {}, expected {}", s, batch.pos[i], i, it->second);
        if (batch.pos[i] >= cache.max_ctx())
            fail("batch: position {} of sequence {} is past the context size {}", batch.pos[i], s, cache.max_ctx());
        ++it->second;
    }
}

std::unique_ptr<Model> load_model(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt) {
    const std::string arch = file.architecture();
    if (arch == "deepseek2") return load_deepseek2(file, pool, opt);
    if (arch == "llama" || arch == "qwen2") return load_llama(file, pool, opt);
    fail("architecture '{}' is not supported (supported: deepseek2, llama, qwen2)", arch);
}

}  // namespace tandem::model
