#include "model/model.h"

#include <algorithm>
#include <utility>

#include "core/check.h"
#include "cpu/attention.h"

namespace tandem::model {

int64_t Batch::n_logits() const {
    int64_t n = 0;
    for (uint8_t w : want_logits) n += w;
    return n;
}

KvCache::KvCache(int64_t n_layer, int64_t row_width, int64_t max_ctx, int64_t mla_rank)
    : n_layer_(n_layer), row_width_(row_width), max_ctx_(max_ctx), mla_rank_(mla_rank) {
    TANDEM_CHECK(n_layer > 0 && row_width > 0 && max_ctx > 0 && mla_rank >= 0 && mla_rank <= row_width);
    if (mla_rank_ > 0) block_elems_ = cpu::mla_block_elems(row_width_, mla_rank_);
}

int64_t KvCache::n_pos(int32_t seq) const {
    auto it = seqs_.find(seq);
    return it == seqs_.end() ? 0 : it->second.n_pos;
}

KvCache::Seq& KvCache::seq_for(int32_t seq) {
    Seq& s = seqs_[seq];
    if (s.layers.empty() && s.blocks.empty()) {
        if (mla_blocks()) s.blocks.resize(static_cast<size_t>(n_layer_));
        else s.layers.resize(static_cast<size_t>(n_layer_));
    }
    return s;
}

const KvCache::Seq& KvCache::existing(int32_t seq) const {
    auto it = seqs_.find(seq);
    TANDEM_CHECK(it != seqs_.end(), "sequence {} has no cache", seq);
    return it->second;
}

KvCache::Seq& KvCache::existing(int32_t seq) { return const_cast<Seq&>(std::as_const(*this).existing(seq)); }

const float* KvCache::rows(int32_t seq, int64_t layer) const {
    TANDEM_CHECK(!mla_blocks());
    return existing(seq).layers[static_cast<size_t>(layer)].data();
}

const uint16_t* KvCache::blocks(int32_t seq, int64_t layer) const {
    TANDEM_CHECK(mla_blocks());
    return existing(seq).blocks[static_cast<size_t>(layer)].data();
}

namespace {
// Grows v to `need` elements (new ones zero), geometrically so that a long generation
// reallocates O(log n) times, never past `cap_max`.
template <typename V>
void grow_to(V& v, size_t need, size_t cap_max) {
    if (v.size() >= need) return;
    v.reserve(std::min(std::max(need, v.size() * 2), cap_max));
    v.resize(need);
}
}  // namespace

void KvCache::reserve_row(int32_t seq, int64_t layer, int64_t pos) {
    TANDEM_CHECK(pos >= 0 && pos < max_ctx_, "position {} beyond the cache's {} positions", pos, max_ctx_);
    Seq& s = seq_for(seq);
    if (mla_blocks()) {
        const auto n_blocks = [](int64_t n) { return static_cast<size_t>((n + cpu::kMlaBlock - 1) / cpu::kMlaBlock); };
        grow_to(s.blocks[static_cast<size_t>(layer)], n_blocks(pos + 1) * static_cast<size_t>(block_elems_),
                n_blocks(max_ctx_) * static_cast<size_t>(block_elems_));
    } else {
        grow_to(s.layers[static_cast<size_t>(layer)], static_cast<size_t>((pos + 1) * row_width_),
                static_cast<size_t>(max_ctx_ * row_width_));
    }
}

float* KvCache::append_row(int32_t seq, int64_t layer, int64_t pos) {
    TANDEM_CHECK(!mla_blocks());
    reserve_row(seq, layer, pos);
    return seqs_[seq].layers[static_cast<size_t>(layer)].data() + pos * row_width_;
}

int64_t KvCache::slot(const Seq& s, int32_t seq, int64_t layer, int64_t pos) const {
    const auto l = static_cast<size_t>(layer);
    const int64_t at = mla_blocks() ? pos / cpu::kMlaBlock * block_elems_ : pos * row_width_;
    const int64_t size = static_cast<int64_t>(mla_blocks() ? s.blocks[l].size() : s.layers[l].size());
    TANDEM_CHECK(pos >= 0 && at + (mla_blocks() ? block_elems_ : row_width_) <= size,
                 "position {} of sequence {} is not in its cache (layer {})", pos, seq, layer);
    return at;
}

void KvCache::write_row(int32_t seq, int64_t layer, int64_t pos, const float* row) {
    Seq& s = existing(seq);
    const int64_t at = slot(s, seq, layer, pos);
    if (mla_blocks())
        cpu::mla_pack_position(row, pos % cpu::kMlaBlock, row_width_, mla_rank_, s.blocks[static_cast<size_t>(layer)].data() + at);
    else
        std::copy_n(row, row_width_, s.layers[static_cast<size_t>(layer)].data() + at);
}

void KvCache::read_row(int32_t seq, int64_t layer, int64_t pos, float* row) const {
    const Seq& s = existing(seq);
    const int64_t at = slot(s, seq, layer, pos);
    if (mla_blocks())
        cpu::mla_unpack_position(s.blocks[static_cast<size_t>(layer)].data() + at, pos % cpu::kMlaBlock, row_width_, row);
    else
        std::copy_n(s.layers[static_cast<size_t>(layer)].data() + at, row_width_, row);
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
    const int64_t n_blocks = (s.n_pos + cpu::kMlaBlock - 1) / cpu::kMlaBlock;
    for (auto& b : s.blocks) {
        b.resize(std::min(b.size(), static_cast<size_t>(n_blocks * block_elems_)));
        // The dropped positions of a kept block are cleared: rows appended later start from a
        // block as fresh as a new one.
        if (s.n_pos % cpu::kMlaBlock && !b.empty())
            cpu::mla_clear_positions(b.data() + (n_blocks - 1) * block_elems_, s.n_pos % cpu::kMlaBlock, row_width_, mla_rank_);
    }
}

void KvCache::fork(int32_t from, int32_t to) {
    auto it = seqs_.find(from);
    TANDEM_CHECK(it != seqs_.end(), "sequence {} has no cache", from);
    seqs_[to] = it->second;
}

uint64_t KvCache::bytes() const {
    uint64_t n = 0;
    for (const auto& [id, s] : seqs_) {
        for (const auto& l : s.layers) n += l.capacity() * sizeof(float);
        for (const auto& b : s.blocks) n += b.capacity() * sizeof(uint16_t);
    }
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
