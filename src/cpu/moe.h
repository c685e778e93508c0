// The fused routed-expert step of a Mixture-of-Experts FFN on the CPU:
//     out[t] = sum_s expert_w[t, s] * down_e (SiLU(gate_e x[t]) * up_e x[t]),  e = expert_ids[t, s]
// for a batch of tokens, all selected experts at once, plus optionally a dense (shared)
// expert that every token goes through.
//
// Work is split over all threads by rows of the concatenated selected experts (never one
// expert per thread): in the gate/up phase every thread takes the same slice of n_ff rows of
// every selected expert, in the down phase the same slice of n_embd rows, so threads stay
// balanced whatever the routing, and each weight row is read once per step and reused from
// cache for every token routed to that expert.
//
// An expert chosen by bf16_min_tokens(type) or more tokens of the batch (prefill) goes through
// the bf16 products instead, where the CPU has a unit for them (cpu/gemm.h: AMX or AVX512-BF16):
// its matrices are dequantized once, 32 rows at a time, and multiplied with all of its tokens;
// threads take whole panels. Formats with an int8 product on this CPU (cpu/gemm_i8.h) take that
// instead, from i8_min_tokens(type). Gate/up and down decide separately (their formats may differ).
// Below those counts an expert's tokens are dotted together, several per weight row
// (quant::DotRows).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "gguf/types.h"

namespace tandem::cpu {

// The three expert tensors of one MoE layer, as GGUF stores them (3-D, ne = [n_in, n_out,
// n_expert]): expert e's matrix [n_out, n_in] starts at data + e * n_out * row_bytes.
//   gate, up: [n_expert, n_ff, n_embd]    down: [n_expert, n_embd, n_ff]
struct ExpertWeights {
    GgmlType gate_type, up_type, down_type;
    const uint8_t *gate, *up, *down;
    uint64_t gate_row_bytes, up_row_bytes, down_row_bytes;
    int64_t n_embd, n_ff, n_expert;
};

// A SwiGLU expert that every token goes through, outside the routing (DeepSeek's shared
// experts, concatenated): gate, up [n_ff, n_embd] and down [n_embd, n_ff], row-major, each in
// its own type.
struct DenseExpert {
    GgmlType gate_type, up_type, down_type;
    const uint8_t *gate, *up, *down;
    uint64_t gate_row_bytes, up_row_bytes, down_row_bytes;
    int64_t n_ff;
};

// Buffers reused across calls (grown on first use, never shrunk).
struct MoeScratch {
    struct Group {
        int32_t expert;       // expert index
        int32_t first, count; // its pairs: pair_order[first .. first + count)
    };
    // The quantized rows are cache-line aligned (aligned_vector), as the group-major kernels' 64-byte
    // activation loads need to be (quant/blocks.h, Q8_K_U2).
    aligned_vector<uint8_t> xq_gate, xq_up;  // [n_tok] x rows quantized for gate / up
    std::vector<float> h;                 // [n_tok * k, n_ff]  SiLU(gate x) * up x per (token, slot)
    aligned_vector<uint8_t> hq;           // [n_tok * k] h rows quantized for down
    std::vector<float> o;                 // [n_tok * k, n_embd] down h per (token, slot)
    std::vector<int32_t> pair_order;      // pairs t * k + s grouped by expert
    // Quantized activation rows, [3 * pairs + 2 * n_tok]: gate's, up's and down's per pair (pair
    // order), then the dense expert's x and hidden rows per token (when it runs fused).
    std::vector<const void*> acts;
    std::vector<Group> groups;            // one per distinct selected expert, ascending
    // The tile path (experts with the phase's threshold or more pairs), per phase:
    std::vector<int32_t> pair_tok;                  // [pairs] token of pair_order[i]
    std::vector<int32_t> tiled_gate_up, tiled_down; // indices into groups that take it
    std::vector<uint8_t> group_tiled_gate_up, group_tiled_down;  // [groups] 1 where it does
    std::vector<uint8_t> pair_tiled_down;           // [pairs] 1 where pair_order[i]'s expert's down does
    std::vector<uint64_t> packed_at;      // [tiled] offset of each one's packed x / h
    aligned_vector<uint16_t> packed_x, packed_h;
    std::vector<PanelScratch> threads;    // [n_threads]
    // The dense expert: its x rows quantized (when its gate pairs with another type than the
    // routed one's) and its hidden rows quantized; its gate (then SiLU(gate x) * up x), up and
    // output rows; the separate products' scratch.
    aligned_vector<uint8_t> sh_xq, sh_hq;
    std::vector<float> sh_g, sh_u, sh_o;
    MatmulScratch sh_mm;
};

// x: [n_tok, n_embd] f32; expert_ids, expert_w: [n_tok, k] (k <= 64); out: [n_tok, n_embd],
// overwritten. An id < 0 marks a slot handled elsewhere (e.g. an expert on the GPU): it adds
// nothing. Ids >= n_expert throw tandem::Error. On the per-token path token t's output is
// bit-identical to a call with that token alone; the bf16 path agrees within bf16 rounding, the
// int8 path up to float summation order (and what that moves in the 8-bit rounding of the
// hidden rows for down).
// With `shared`, out also gets that expert's output for every token (weight 1), bit for bit what
// separate products (cpu::matmul, or cpu::gemm where it applies to n_tok tokens) give; in a
// small batch its rows run in the same jobs as the routed experts' rows, which saves a decode
// step three synchronisations of all threads per layer and keeps its memory-bound reads next
// to the compute-bound ones. (So with `shared`, a token's output equals its output alone within
// bf16 rounding once the batch takes the tile path for it.) x and out must not overlap.
void moe_forward(ThreadPool& pool, const ExpertWeights& w, const float* x, int64_t n_tok, const int32_t* expert_ids,
                 const float* expert_w, int k, float* out, MoeScratch& scratch, const DenseExpert* shared = nullptr);

}  // namespace tandem::cpu
