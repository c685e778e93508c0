// The model interface: a forward pass over a Batch of tokens from one or more sequences,
// with a KV cache that holds every sequence.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "cpu/thread_pool.h"
#include "gguf/gguf.h"

namespace tandem::model {

// One step's tokens. Tokens of a sequence must come in position order, and a sequence's
// positions continue where its cache ends (0 for a new sequence).
struct Batch {
    std::vector<int32_t> tokens;
    std::vector<int32_t> pos;
    std::vector<int32_t> seq;
    std::vector<uint8_t> want_logits;  // 1: write this token's logits (in batch order)

    void add(int32_t token, int32_t position, int32_t seq_id, bool logits) {
        tokens.push_back(token);
        pos.push_back(position);
        seq.push_back(seq_id);
        want_logits.push_back(logits ? 1 : 0);
    }
    int64_t size() const { return static_cast<int64_t>(tokens.size()); }
    int64_t n_logits() const;
    void clear() { tokens.clear(), pos.clear(), seq.clear(), want_logits.clear(); }
};

// Per-layer cache rows of every sequence. Each architecture chooses the row: for MLA the 576
// latent values (kv_lora_rank normalised c_kv, then qk_rope_head_dim roped k_pe); for
// grouped-query attention K then V of every KV head.
//
// Rows are kept as f32, or, for an MLA cache made with mla_rank > 0, in the bf16 blocks the MLA
// attention reads in place (cpu::mla_pack_position: 32 positions per block, 2.1 KiB per position
// for R1 against 2.25 KiB of f32): a decode step then packs nothing, and the values are the
// ones the attention would round the f32 rows to anyway. The model picks that where its
// attention runs in bf16 (model/deepseek2.cpp); there the decompressed MLA form's kv_b product
// reads the bf16 values as well (read_row), where it read the f32 rows before.
class KvCache {
public:
    KvCache(int64_t n_layer, int64_t row_width, int64_t max_ctx, int64_t mla_rank = 0);

    int64_t row_width() const { return row_width_; }
    int64_t max_ctx() const { return max_ctx_; }
    bool mla_blocks() const { return mla_rank_ > 0; }
    int64_t n_pos(int32_t seq) const;  // cached positions of a sequence (0 if unknown)
    bool has(int32_t seq) const { return seqs_.contains(seq); }

    // Rows [0, n_pos) of one layer of a sequence: [n_pos, row_width] (f32 caches).
    const float* rows(int32_t seq, int64_t layer) const;
    // Their blocks: ceil(n_pos / 32) of cpu::mla_block_elems (MLA block caches).
    const uint16_t* blocks(int32_t seq, int64_t layer) const;
    // Makes room for position `pos` (which must equal n_pos before the step's first append):
    // rows [0, pos] then exist, and may have moved.
    void reserve_row(int32_t seq, int64_t layer, int64_t pos);
    // reserve_row, then the f32 row to fill (f32 caches): it stays at this address until the
    // next reserve of that sequence and layer.
    float* append_row(int32_t seq, int64_t layer, int64_t pos);
    // Stores a reserved position's row (row_width values), in either form. Threads may store
    // distinct positions at once.
    void write_row(int32_t seq, int64_t layer, int64_t pos, const float* row);
    // A stored row as floats (an MLA block cache's are its bf16 values).
    void read_row(int32_t seq, int64_t layer, int64_t pos, float* row) const;
    // Marks the positions a step appended as cached: each sequence of the batch now ends after
    // its last token in the batch.
    void commit(const Batch& batch);

    void drop(int32_t seq);                      // forget a sequence
    void truncate(int32_t seq, int64_t n_pos);   // keep positions [0, n_pos)
    void fork(int32_t from, int32_t to);         // copy a sequence's cache to a new id
    uint64_t bytes() const;

private:
    struct Seq {
        int64_t n_pos = 0;
        std::vector<std::vector<float>> layers;         // f32: [n_layer][capacity * row_width]
        std::vector<aligned_vector<uint16_t>> blocks;   // MLA blocks: [n_layer][capacity / 32 * block_elems_]
    };
    Seq& seq_for(int32_t seq);
    const Seq& existing(int32_t seq) const;  // throws for an unknown sequence
    Seq& existing(int32_t seq);
    // Where position pos of a layer starts in its storage (its f32 row, or the block holding
    // it), checked against what is reserved there.
    int64_t slot(const Seq& s, int32_t seq, int64_t layer, int64_t pos) const;

    int64_t n_layer_, row_width_, max_ctx_, mla_rank_, block_elems_ = 0;
    std::map<int32_t, Seq> seqs_;
};

class Model {
public:
    virtual ~Model() = default;

    // Runs the batch: appends every token's cache rows and writes the logits of the tokens
    // with want_logits, in batch order, to `logits` ([batch.n_logits(), n_vocab()]).
    virtual void forward(const Batch& batch, KvCache& cache, float* logits) = 0;

    virtual int64_t n_vocab() const = 0;
    virtual int64_t n_ctx_train() const = 0;
    virtual std::unique_ptr<KvCache> make_cache(int64_t max_ctx) const = 0;
    // Bytes of weights a batch-of-one decode step reads (for GB/s figures).
    virtual uint64_t bytes_per_token() const = 0;
    virtual std::string describe() const = 0;
    // Forgets the time profile so far (TANDEM_PROFILE; `tandem bench` calls it after its
    // warm-up pass, whose page faults and first-touch buffers are no step's own cost).
    virtual void reset_profile() {}
};

// Which form of multi-head latent attention a deepseek2 model runs (model/deepseek2.cpp):
// absorbed (attention over the 576-wide latent cache), decompressed (per-head keys and values
// rebuilt from the cache, faster for long prefills), or whichever is faster for the batch at
// hand (DeepSeek2::use_decompressed).
enum class MlaForm { kAuto, kAbsorbed, kDecompressed };

// Whether routed experts whose format has a faster in-memory layout (IQ1_S -> IQ1_S_U2, IQ1_M ->
// IQ1_M_U2, IQ2_XXS -> IQ2_XXS_U3, IQ3_XXS -> IQ3_XXS_U4: the same weights, 1.4-1.55x the bytes,
// no grid gathers; Q2_K -> Q2_K_U16, Q3_K -> Q3_K_U16: the same bytes regrouped; quant/repack.h) are
// rewritten at load: always, never, or as many of them as leave the model within 80% of the
// available memory (all, some layers' or none).
enum class Repack { kAuto, kOn, kOff };

struct LoadOptions {
    bool f32_activations = false;  // see QuantScratch in model/ops.h
    MlaForm mla = MlaForm::kAuto;
    Repack repack = Repack::kAuto;
    uint64_t memory_bytes = 0;  // the memory Repack::kAuto plans with; 0: what the system has available
};

// Loads the model in `file` (held open by the caller for the model's lifetime), choosing the
// architecture family from general.architecture. Throws for an unsupported architecture.
std::unique_ptr<Model> load_model(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt = {});

// Families.
std::unique_ptr<Model> load_deepseek2(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt);
std::unique_ptr<Model> load_llama(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt);

// Checks the batch against the cache before anything runs: tokens in range, positions
// contiguous per sequence and continuing the cache, within the context. Throws tandem::Error.
void validate_batch(const Batch& batch, const KvCache& cache, int64_t n_vocab);

}  // namespace tandem::model
