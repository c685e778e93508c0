// Multi-head latent attention over the latent cache in bf16 (DeepSeek-V2 paper, section
// 2.1, with the weight absorption of its appendix): for each query row (a (token, head) pair)
//   s_j = scale * q . kv_j             over the row's cached positions j < n_ctx(row)
//   o   = sum_j softmax(s)_j kv_j[:rank]
// where a cache row kv_j holds `width` values (kv_lora_rank latent values then the roped k_pe,
// 576 for R1) and its first `rank` values (512) are the attention's values. All rows of a
// sequence read the same cache rows, so the work is two matrix products per sequence,
//   S[rows, n_ctx] = Q[rows, width] . K[n_ctx, width]^T   P = softmax(S) row-wise, causal
//   O[rows, rank]  = P[rows, n_ctx] . V[n_ctx, rank]      V = K[:, :rank]
// which the tile unit runs (TDPBF16PS, as cpu/gemm.h), or on CPUs without one the vector units
// (VDPBF16PS, AVX512-BF16): the cache rows are rounded to bf16 and packed once per call (unless
// the cache keeps them packed), then shared by every head and token of the sequence.
//
// Memory: the packed cache rows of every sequence of the call given as rows, 2 (width + rank)
// bytes per position (2.2 KiB for R1, 35 MiB for a 16k context; none for one given as
// blocks), plus ~300 KiB per thread whatever the context (the softmax runs over blocks of
// kMlaCtxBlock positions), plus for a decode step of few sequences up to
// MlaScratch::wave_bytes (64 MiB) of partial results of blocks.
//
// Numerics: Q, K, V and the softmax numerators P are rounded to bf16 (relative error <= 2^-9),
// products are accumulated in float32, the softmax itself runs in float32 (its denominator
// sums the bf16-rounded P, so the weights applied to V sum to 1). A row's arithmetic does not
// depend on the other rows of the call, the batch or the number of threads: a token decoded
// alone gets bit for bit the result it gets inside a prefill batch, given the same q and cache.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/aligned.h"
#include "cpu/thread_pool.h"

namespace tandem::cpu {

// The cache of one sequence as the attention reads it: f32 rows, which each call rounds to
// bf16 and packs into its own layout (blocks of kMlaBlock positions), or blocks in that layout
// already (a cache that keeps them: model::KvCache, mla_pack_position), which it reads in place.
struct MlaSeq {
    const float* rows = nullptr;       // [n_ctx, width] f32 cache rows, row j for position j; or
    const uint16_t* blocks = nullptr;  // ceil(n_ctx / kMlaBlock) blocks, positions past n_ctx zero or finite
    int64_t n_ctx = 0;                 // positions to read: the largest causal limit of the sequence's query rows
};

// The attention's layout of a sequence's cache (attention.cpp): blocks of 32 positions (a tile
// product step), mla_block_elems(width, rank) bf16 values each, 64-byte multiples: 2.1 KiB per
// position for R1 (576, 512) against 2.25 KiB as f32 rows.
inline constexpr int64_t kMlaBlock = 32;
int64_t mla_block_elems(int64_t width, int64_t rank);
// Writes position i (0 .. 31) of a block from its f32 row of `width` values (the first `rank`
// the values), rounded to bf16 exactly as a call rounds rows, so a sequence given as blocks
// gets bit for bit the results of the same sequence given as rows. Requires
// mla_attention_available() (AVX512-BF16).
void mla_pack_position(const float* row, int64_t i, int64_t width, int64_t rank, uint16_t* block);
// Position i of a block as floats (its bf16 values): [width].
void mla_unpack_position(const uint16_t* block, int64_t i, int64_t width, float* row);
// Zeroes positions [from, 32) of a block.
void mla_clear_positions(uint16_t* block, int64_t from, int64_t width, int64_t rank);

struct MlaParams {
    int64_t width = 0;        // values per query and cache row (kv_lora_rank + qk_rope_head_dim)
    int64_t rank = 0;         // leading values of a cache row that are the values (kv_lora_rank), <= width
    float scale = 1.0f;       // softmax scale, applied to q . kv_j
    int64_t n_rows = 0;       // query rows
    const float* q = nullptr;           // [n_rows, width]
    const int32_t* row_seq = nullptr;   // [n_rows] the row's sequence: an index into seqs
    const int32_t* row_n_ctx = nullptr; // [n_rows] causal limit: the row attends to positions [0, row_n_ctx)
    std::span<const MlaSeq> seqs;
    float* o = nullptr;       // [n_rows, rank] f32, overwritten
};

// Positions per block of the softmax: each block of kMlaCtxBlock cache rows gets its own
// softmax (scores, their maximum, the numerators and their sum, and the numerators times V),
// and a row's blocks are folded in order into a running result with a running maximum (online
// softmax), so per-thread memory does not grow with the context. The blocks of a row are
// independent until the fold: a decode step of one sequence runs them on all threads, folding
// afterwards, with bit for bit the result of folding them one after the other.
inline constexpr int64_t kMlaCtxBlock = 256;

// Buffers reused across calls (grown on first use, never shrunk).
struct MlaScratch {
    struct Item {
        int32_t seq;        // index into MlaParams::seqs
        int32_t first;      // its rows: row_order[first .. first + n_rows)
        int32_t n_rows;     // 1 .. 32
        int32_t n_ctx;      // the largest causal limit of its rows
    };
    // A block's or a running softmax state of an item's rows: unnormalised output, and per row
    // the maximum of the scaled scores and the sum of the numerators.
    struct Partial {
        float* o;    // [32, rank_pad]
        float* max;  // [32]
        float* sum;  // [32]
    };
    struct Thread {
        aligned_vector<uint16_t> q;  // [32, width_pad] bf16 query rows of the item
        int64_t q_item = -1;         // the item whose rows q holds
        aligned_vector<float> s;     // [32, kMlaCtxBlock] scores of one block
        aligned_vector<uint16_t> p;  // [32, kMlaCtxBlock] bf16 softmax numerators of one block
        aligned_vector<float> part;  // one block's Partial: [32, rank_pad] o, then [32] max, [32] sum
        aligned_vector<float> state; // the item's running Partial, the same layout
    };
    aligned_vector<uint16_t> packed;    // per sequence, at packed_at[seq]: K then V, bf16 (see attention.cpp)
    std::vector<uint64_t> packed_at;    // [n_seqs + 1]
    std::vector<int64_t> block_at;      // [n_seqs + 1] first packing unit (32 positions) of each sequence
    std::vector<int64_t> seq_first;     // [n_seqs + 1] each sequence's rows: row_order[seq_first[i] ..]
    std::vector<int64_t> seq_fill;      // [n_seqs] the counting sort's cursors
    std::vector<int32_t> row_order;     // rows grouped by sequence
    std::vector<Item> items;
    std::vector<Thread> threads;        // [n_threads]
    // When items are fewer than threads (decode of few sequences), the blocks of all items run
    // in parallel: a wave of blocks' Partials, then each item folds them into its state.
    aligned_vector<float> wave;         // [items][blocks of the wave] Partials
    aligned_vector<float> states;       // [items] running Partials
    int64_t wave_bytes = int64_t{64} << 20;  // the most a wave holds (R1: 64 KiB per item and block)
};

// True when mla_attention runs here: cpu::gemm_unit() is AMX or AVX512-BF16.
bool mla_attention_available();

// o = softmax(scale * q . K^T) V for every row, as described above. Requires
// mla_attention_available(), 0 < rank <= width and 1 <= row_n_ctx[r] <= seqs[row_seq[r]].n_ctx.
void mla_attention(ThreadPool& pool, const MlaParams& p, MlaScratch& scratch);

}  // namespace tandem::cpu
