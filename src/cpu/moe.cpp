#include "cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/check.h"
#include "cpu/gemm_i8.h"
#include "cpu/matmul.h"
#include "cpu/phases.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace tandem::cpu {

namespace {

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

// Pairs of one expert per call of its several-rows dot kernel (quant::DotRows).
constexpr int32_t kDotChunk = 64;

// How a phase's tiled experts take their activations: the rows of their pairs (rows[first + i])
// of the [*, n_in] floats `a`, packed for the bf16 products; or, with i8, for the int8 ones
// (cpu/gemm_i8.h) with weights of `type`, from those floats or, where q8_rows is given, from
// each pair's row already quantized to vec_dot_type(type) (q8_rows[first + i]).
struct PhaseActs {
    const float* a;
    int64_t n_in;
    const int32_t* rows;
    bool i8;
    GgmlType type;
    const void* const* q8_rows;
};

// The tile path's two phases share this: pack, for every tiled expert, its pairs' activations
// into `packed`, then call, on all threads, fn(group, its packed rows, r0, n_rows, the thread's
// PanelScratch) for every (expert, panel of kPanelRows of its n_out output rows).
template <typename Fn>
void for_each_tiled_panel(ThreadPool& pool, MoeScratch& scratch, const std::vector<int32_t>& tiled, const PhaseActs& in,
                          aligned_vector<uint16_t>& packed, int64_t n_out, Fn&& fn) {
    const int64_t n_in = in.n_in;
    auto& at = scratch.packed_at;  // in uint16 elements
    at.assign(tiled.size() + 1, 0);
    for (size_t j = 0; j < tiled.size(); ++j) {
        const int64_t count = scratch.groups[static_cast<size_t>(tiled[j])].count;
        at[j + 1] = at[j] + (in.i8 ? (packed_acts_i8_bytes(count, n_in) + 63) / 64 * 32 : packed_acts_size(count, n_in));
    }
    uint16_t* dst = grow(packed, at.back());
    pool.parallel_for(static_cast<int64_t>(tiled.size()), [&](int64_t j0, int64_t j1, int) {
        phases::start();
        for (int64_t j = j0; j < j1; ++j) {
            const MoeScratch::Group& g = scratch.groups[static_cast<size_t>(tiled[static_cast<size_t>(j)])];
            uint16_t* p = dst + at[static_cast<size_t>(j)];
            if (in.i8 && in.q8_rows) pack_q8k_i8(in.type, in.q8_rows + g.first, g.count, n_in, reinterpret_cast<uint8_t*>(p));
            else if (in.i8) pack_acts_i8(in.type, in.a, n_in, in.rows + g.first, g.count, n_in, reinterpret_cast<uint8_t*>(p));
            else pack_acts(in.a, n_in, in.rows + g.first, g.count, n_in, p);
        }
        phases::mark(phases::kPackActs);
    });
    if (scratch.threads.size() < static_cast<size_t>(pool.n_threads())) scratch.threads.resize(static_cast<size_t>(pool.n_threads()));
    const int64_t k_panels = (n_out + kPanelRows - 1) / kPanelRows;
    pool.parallel_for(static_cast<int64_t>(tiled.size()) * k_panels, [&](int64_t i0, int64_t i1, int tid) {
        for (int64_t item = i0; item < i1; ++item) {
            const size_t j = static_cast<size_t>(item / k_panels);
            const int64_t r0 = (item % k_panels) * kPanelRows;
            fn(scratch.groups[static_cast<size_t>(tiled[j])], dst + at[j], r0, std::min(kPanelRows, n_out - r0),
               scratch.threads[static_cast<size_t>(tid)]);
        }
    });
}

// h[p] = SiLU(gate x[t]) * up x[t] for the pairs p (token t) of the tiled experts; with i8 (the
// int8 products), from the pairs' rows as quantized for gate (gate_acts, in pair order).
void tiled_gate_up(ThreadPool& pool, const ExpertWeights& w, const float* x, bool i8, const void* const* gate_acts,
                   MoeScratch& scratch, float* h) {
    const int64_t n_embd = w.n_embd, n_ff = w.n_ff;
    const uint64_t gate_mat = static_cast<uint64_t>(n_ff) * w.gate_row_bytes, up_mat = static_cast<uint64_t>(n_ff) * w.up_row_bytes;
    const PhaseActs in{x, n_embd, scratch.pair_tok.data(), i8, w.gate_type, gate_acts};
    for_each_tiled_panel(pool, scratch, scratch.tiled_gate_up, in, scratch.packed_x, n_ff,
                         [&](const MoeScratch::Group& g, const uint16_t* packed, int64_t r0, int64_t n_rows, PanelScratch& ps) {
        float* gv = ps.out_for(2 * int64_t{g.count});  // [count, 32] gate, then [count, 32] up
        float* uv = gv + int64_t{g.count} * kPanelRows;
        const uint64_t e = static_cast<uint64_t>(g.expert);
        const uint8_t* gate = w.gate + e * gate_mat + static_cast<uint64_t>(r0) * w.gate_row_bytes;
        const uint8_t* up = w.up + e * up_mat + static_cast<uint64_t>(r0) * w.up_row_bytes;
        if (i8) {
            const auto* p8 = reinterpret_cast<const uint8_t*>(packed);
            panel_gemm_i8(w.gate_type, gate, w.gate_row_bytes, n_rows, n_embd, p8, g.count, gv, ps);
            panel_gemm_i8(w.up_type, up, w.up_row_bytes, n_rows, n_embd, p8, g.count, uv, ps);
        } else {
            panel_gemm(w.gate_type, gate, w.gate_row_bytes, n_rows, n_embd, packed, g.count, gv, ps);
            panel_gemm(w.up_type, up, w.up_row_bytes, n_rows, n_embd, packed, g.count, uv, ps);
        }
        for (int32_t i = 0; i < g.count; ++i) {
            float* hp = h + int64_t{scratch.pair_order[static_cast<size_t>(g.first + i)]} * n_ff + r0;
            for (int64_t r = 0; r < n_rows; ++r) hp[r] = silu(gv[i * kPanelRows + r]) * uv[i * kPanelRows + r];
        }
        phases::mark(phases::kOutput);
    });
}

// o[p] = down h[p] for the pairs of the tiled experts.
void tiled_down(ThreadPool& pool, const ExpertWeights& w, const float* h, bool i8, MoeScratch& scratch, float* o) {
    const int64_t n_embd = w.n_embd, n_ff = w.n_ff;
    const uint64_t down_mat = static_cast<uint64_t>(n_embd) * w.down_row_bytes;
    const PhaseActs in{h, n_ff, scratch.pair_order.data(), i8, w.down_type, nullptr};
    for_each_tiled_panel(pool, scratch, scratch.tiled_down, in, scratch.packed_h, n_embd,
                         [&](const MoeScratch::Group& g, const uint16_t* packed, int64_t r0, int64_t n_rows, PanelScratch& ps) {
        float* dv = ps.out_for(g.count);  // [count, 32]
        const uint8_t* down = w.down + static_cast<uint64_t>(g.expert) * down_mat + static_cast<uint64_t>(r0) * w.down_row_bytes;
        if (i8) panel_gemm_i8(w.down_type, down, w.down_row_bytes, n_rows, n_ff, reinterpret_cast<const uint8_t*>(packed), g.count, dv, ps);
        else panel_gemm(w.down_type, down, w.down_row_bytes, n_rows, n_ff, packed, g.count, dv, ps);
        for (int32_t i = 0; i < g.count; ++i) {
            float* op = o + int64_t{scratch.pair_order[static_cast<size_t>(g.first + i)]} * n_embd + r0;
            std::copy(dv + i * kPanelRows, dv + i * kPanelRows + n_rows, op);
        }
        phases::mark(phases::kOutput);
    });
}

// out += down (SiLU(gate x) * up x) for every token, as three products (each on the tile path
// where it applies, like cpu::matmul).
void run_dense_expert(ThreadPool& pool, const DenseExpert& e, const float* x, int64_t n_tok, int64_t n_embd, float* out,
                      MoeScratch& scratch) {
    const uint64_t n_h = static_cast<uint64_t>(n_tok * e.n_ff), n_o = static_cast<uint64_t>(n_tok * n_embd);
    float* g = grow(scratch.sh_g, n_h);
    float* u = grow(scratch.sh_u, n_h);
    float* o = grow(scratch.sh_o, n_o);
    MatmulScratch& ms = scratch.sh_mm;
    matmul(pool, e.gate_type, e.gate, e.gate_row_bytes, n_embd, e.n_ff, x, n_tok, g, ms);
    matmul(pool, e.up_type, e.up, e.up_row_bytes, n_embd, e.n_ff, x, n_tok, u, ms);
    // The element-wise steps on the threads too: a 512-token prompt's are ~1M SiLUs and 3.7M
    // adds per layer for R1, a few ms on one thread.
    pool.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
        for (int64_t i = t0 * e.n_ff; i < t1 * e.n_ff; ++i) g[i] = silu(g[i]) * u[i];
    });
    matmul(pool, e.down_type, e.down, e.down_row_bytes, e.n_ff, n_embd, g, n_tok, o, ms);
    pool.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
        for (int64_t i = t0 * n_embd; i < t1 * n_embd; ++i) out[i] += o[i];
    });
}

}  // namespace

void moe_forward(ThreadPool& pool, const ExpertWeights& w, const float* x, int64_t n_tok, const int32_t* expert_ids,
                 const float* expert_w, int k, float* out, MoeScratch& scratch, const DenseExpert* shared) {
    if (n_tok <= 0) return;
    if (k <= 0 || k > 64) fail("moe_forward: expected 1 to 64 experts per token, found {}", k);
    const int64_t n_embd = w.n_embd, n_ff = w.n_ff;
    // Row sizes: validated here once, so the loops below index without checks.
    if (w.gate_row_bytes < quant_row_bytes(w.gate_type, n_embd) || w.up_row_bytes < quant_row_bytes(w.up_type, n_embd) ||
        w.down_row_bytes < quant_row_bytes(w.down_type, n_ff))
        fail("moe_forward: expert row strides ({}, {}, {} bytes) are shorter than the rows", w.gate_row_bytes,
             w.up_row_bytes, w.down_row_bytes);
    if (shared && (shared->n_ff <= 0 || shared->gate_row_bytes < quant_row_bytes(shared->gate_type, n_embd) ||
                   shared->up_row_bytes < quant_row_bytes(shared->up_type, n_embd) ||
                   shared->down_row_bytes < quant_row_bytes(shared->down_type, shared->n_ff)))
        fail("moe_forward: the dense expert's rows ({}, {}, {} bytes, width {}) do not fit its sizes", shared->gate_row_bytes,
             shared->up_row_bytes, shared->down_row_bytes, shared->n_ff);

    // Group the (token, slot) pairs by expert: a counting pass over the ids.
    const int64_t n_pair = n_tok * k;
    auto& order = scratch.pair_order;
    auto& groups = scratch.groups;
    order.clear();
    groups.clear();
    for (int64_t p = 0; p < n_pair; ++p) {
        const int32_t e = expert_ids[p];
        if (e >= w.n_expert) fail("moe_forward: token {} slot {} selects expert {}, but the layer has {}", p / k,
                                  p % k, e, w.n_expert);
        if (e >= 0) order.push_back(static_cast<int32_t>(p));
    }
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return expert_ids[a] < expert_ids[b]; });
    for (int32_t i = 0; i < static_cast<int32_t>(order.size()); ++i) {
        const int32_t e = expert_ids[order[static_cast<size_t>(i)]];
        if (groups.empty() || groups.back().expert != e) groups.push_back({e, i, 0});
        ++groups.back().count;
    }
    scratch.pair_tok.resize(order.size());
    for (size_t i = 0; i < order.size(); ++i) scratch.pair_tok[i] = order[i] / k;

    // Experts with enough tokens take the tile path: the int8 product (cpu/gemm_i8.h) where
    // their formats have one on this CPU, else bf16 (cpu/gemm.h); the rest dot each token
    // separately. Gate/up and down choose on their own: the fewest tokens for which the tile
    // path wins depends on the format (i8_min_tokens, bf16_min_tokens).
    auto& tiled_gu = scratch.tiled_gate_up;
    auto& tiled_dn = scratch.tiled_down;
    tiled_gu.clear();
    tiled_dn.clear();
    // Formats with an int8 product take it instead of bf16, from its own threshold; gate and up
    // share one packing of the activations, so only where it serves both (not an IQ1_S_U2 gate
    // beside an up left in the file's IQ1_S, which a partial repack can leave, or an IQ2_XXS_U3 up).
    const bool gu_i8 = i8_gemm_supports(w.gate_type) && i8_gemm_supports(w.up_type) && i8_shares_packing(w.gate_type, w.up_type);
    const bool dn_i8 = i8_gemm_supports(w.down_type);
    const bool gu_ok = gu_i8 || (gemm_supports(w.gate_type, n_embd) && gemm_supports(w.up_type, n_embd));
    const bool dn_ok = dn_i8 || gemm_supports(w.down_type, n_ff);
    const int64_t gu_min = gu_i8 ? std::max(i8_min_tokens(w.gate_type), i8_min_tokens(w.up_type))
                                 : std::max(bf16_min_tokens(w.gate_type), bf16_min_tokens(w.up_type));
    const int64_t dn_min = dn_i8 ? i8_min_tokens(w.down_type) : bf16_min_tokens(w.down_type);
    auto& gu_flag = scratch.group_tiled_gate_up;
    auto& dn_flag = scratch.group_tiled_down;
    gu_flag.assign(groups.size(), 0);
    dn_flag.assign(groups.size(), 0);
    auto& pair_tiled_dn = scratch.pair_tiled_down;
    pair_tiled_dn.assign(order.size(), 0);
    for (int32_t gi = 0; gi < static_cast<int32_t>(groups.size()); ++gi) {
        const MoeScratch::Group& g = groups[static_cast<size_t>(gi)];
        if (gu_ok && g.count >= gu_min) {
            tiled_gu.push_back(gi);
            gu_flag[static_cast<size_t>(gi)] = 1;
        }
        if (dn_ok && g.count >= dn_min) {
            tiled_dn.push_back(gi);
            dn_flag[static_cast<size_t>(gi)] = 1;
            std::fill_n(pair_tiled_dn.begin() + g.first, g.count, uint8_t{1});
        }
    }

    // Quantize x once per token for gate and up (shared when they pair with the same type).
    const GgmlType gate_act = quant::vec_dot_type(w.gate_type), up_act = quant::vec_dot_type(w.up_type);
    const GgmlType down_act = quant::vec_dot_type(w.down_type);
    const bool shared_x = gate_act == up_act;
    const uint64_t xg_row = quant_row_bytes(gate_act, n_embd), xu_row = quant_row_bytes(up_act, n_embd);
    const uint64_t hq_row = quant_row_bytes(down_act, n_ff);
    const uint64_t n_tok_u = static_cast<uint64_t>(n_tok), n_pair_u = static_cast<uint64_t>(n_pair);
    uint8_t* xq_gate = grow(scratch.xq_gate, xg_row * n_tok_u);                           // [n_tok] rows
    uint8_t* xq_up = shared_x ? xq_gate : grow(scratch.xq_up, xu_row * n_tok_u);          // [n_tok] rows
    float* h = grow(scratch.h, n_pair_u * static_cast<uint64_t>(n_ff));                    // [n_pair, n_ff]
    uint8_t* hq = grow(scratch.hq, hq_row * n_pair_u);                                     // [n_pair] rows
    float* o = grow(scratch.o, n_pair_u * static_cast<uint64_t>(n_embd));                  // [n_pair, n_embd]

    // The dense expert joins the per-token jobs of a small batch (up to kTokBlock tokens, as
    // cpu::matmul's own row loop) when none of its products would take the tile path
    // (cpu::gemm_applies) and its gate and up pair with one activation type; otherwise it runs
    // as three separate products after the routed experts (run_dense_expert), blocked as
    // cpu::matmul blocks them.
    const int64_t n_sh = shared ? shared->n_ff : 0;
    const GgmlType sh_act = shared ? quant::vec_dot_type(shared->gate_type) : GgmlType::F32;
    const GgmlType sh_down_act = shared ? quant::vec_dot_type(shared->down_type) : GgmlType::F32;
    const bool sh_fused = shared && n_tok <= kTokBlock && n_ff > 0 && sh_act == quant::vec_dot_type(shared->up_type) &&
                          !gemm_applies(shared->gate_type, n_embd, n_tok) && !gemm_applies(shared->up_type, n_embd, n_tok) &&
                          !gemm_applies(shared->down_type, n_sh, n_tok);
    const bool sh_own_x = sh_fused && sh_act != gate_act && sh_act != up_act;
    const uint64_t sx_row = sh_fused ? quant_row_bytes(sh_act, n_embd) : 0, shq_row = sh_fused ? quant_row_bytes(sh_down_act, n_sh) : 0;
    uint8_t* sh_x = !sh_fused ? nullptr : sh_act == gate_act ? xq_gate : sh_act == up_act ? xq_up : grow(scratch.sh_xq, sx_row * n_tok_u);
    float* sh_h = sh_fused ? grow(scratch.sh_g, n_tok_u * static_cast<uint64_t>(n_sh)) : nullptr;  // [n_tok, n_sh]
    uint8_t* sh_hq = sh_fused ? grow(scratch.sh_hq, shq_row * n_tok_u) : nullptr;                  // [n_tok] rows
    float* sh_o = sh_fused ? grow(scratch.sh_o, n_tok_u * static_cast<uint64_t>(n_embd)) : nullptr;  // [n_tok, n_embd]

    pool.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
        phases::start();
        for (int64_t t = t0; t < t1; ++t) {
            quant::quantize_row(gate_act, x + t * n_embd, xq_gate + t * xg_row, n_embd);
            if (!shared_x) quant::quantize_row(up_act, x + t * n_embd, xq_up + t * xu_row, n_embd);
            if (sh_own_x) quant::quantize_row(sh_act, x + t * n_embd, sh_x + t * sx_row, n_embd);
        }
        phases::mark(phases::kPackActs);
    });

    // Each pair's activation rows, in pair order (the dot kernels take a list of rows), and the
    // dense expert's per token.
    auto& acts = scratch.acts;
    acts.resize(3 * order.size() + (sh_fused ? 2 * n_tok_u : 0));
    const void** gate_acts = acts.data();
    const void** up_acts = gate_acts + order.size();
    const void** down_acts = up_acts + order.size();
    const void** sh_acts = down_acts + order.size();
    const void** sh_hacts = sh_acts + (sh_fused ? n_tok_u : 0);
    for (size_t i = 0; i < order.size(); ++i) {
        const auto p = static_cast<uint64_t>(order[i]), t = p / static_cast<uint64_t>(k);
        gate_acts[i] = xq_gate + t * xg_row;
        up_acts[i] = xq_up + t * xu_row;
        down_acts[i] = hq + p * hq_row;
    }
    for (uint64_t t = 0; sh_fused && t < n_tok_u; ++t) {
        sh_acts[t] = sh_x + t * sx_row;
        sh_hacts[t] = sh_hq + t * shq_row;
    }

    // Gate and up: each thread takes rows [r0, r1) of every selected expert.
    const quant::DotRows gate_dot(w.gate_type), up_dot(w.up_type);
    const std::optional<quant::DotRows> sh_gate_dot = sh_fused ? std::optional(quant::DotRows(shared->gate_type)) : std::nullopt;
    const std::optional<quant::DotRows> sh_up_dot = sh_fused ? std::optional(quant::DotRows(shared->up_type)) : std::nullopt;
    const uint64_t gate_mat = static_cast<uint64_t>(n_ff) * w.gate_row_bytes;  // bytes of one expert
    const uint64_t up_mat = static_cast<uint64_t>(n_ff) * w.up_row_bytes;
    pool.parallel_for(n_ff, [&](int64_t r0, int64_t r1, int) {
        for (size_t gi = 0; gi < groups.size(); ++gi) {
            if (gu_flag[gi]) continue;
            const MoeScratch::Group& g = groups[gi];
            const uint8_t* gate_e = w.gate + static_cast<uint64_t>(g.expert) * gate_mat;
            const uint8_t* up_e = w.up + static_cast<uint64_t>(g.expert) * up_mat;
            const int32_t* pairs = order.data() + g.first;
            for (int64_t r = r0; r < r1; ++r) {
                const uint8_t* gr = gate_e + static_cast<uint64_t>(r) * w.gate_row_bytes;
                const uint8_t* ur = up_e + static_cast<uint64_t>(r) * w.up_row_bytes;
                for (int32_t i0 = 0; i0 < g.count; i0 += kDotChunk) {
                    const int n = std::min(kDotChunk, g.count - i0);
                    float gv[kDotChunk], uv[kDotChunk];
                    gate_dot(gr, gate_acts + g.first + i0, n, n_embd, gv);
                    up_dot(ur, up_acts + g.first + i0, n, n_embd, uv);
                    for (int j = 0; j < n; ++j) h[int64_t{pairs[i0 + j]} * n_ff + r] = silu(gv[j]) * uv[j];
                }
            }
        }
        if (!sh_fused) return;
        // The dense expert's rows in proportion: [r0, r1) of n_ff -> [s0, s1) of n_sh.
        const int64_t s0 = r0 * n_sh / n_ff, s1 = r1 * n_sh / n_ff;
        for (int64_t r = s0; r < s1; ++r) {
            float gv[kTokBlock], uv[kTokBlock];
            (*sh_gate_dot)(shared->gate + static_cast<uint64_t>(r) * shared->gate_row_bytes, sh_acts, static_cast<int>(n_tok), n_embd, gv);
            (*sh_up_dot)(shared->up + static_cast<uint64_t>(r) * shared->up_row_bytes, sh_acts, static_cast<int>(n_tok), n_embd, uv);
            for (int64_t t = 0; t < n_tok; ++t) sh_h[t * n_sh + r] = silu(gv[t]) * uv[t];
        }
    });

    // The int8 products take gate's rows as quantized above (up pairs with the same type).
    if (!tiled_gu.empty()) tiled_gate_up(pool, w, x, gu_i8, gate_acts, scratch, h);

    // h quantized for the per-token down products (the tiled experts pack h themselves).
    const int64_t n_active = static_cast<int64_t>(order.size());
    pool.parallel_for(n_active + (sh_fused ? n_tok : 0), [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
            if (i >= n_active) {
                const int64_t t = i - n_active;
                quant::quantize_row(sh_down_act, sh_h + t * n_sh, sh_hq + static_cast<uint64_t>(t) * shq_row, n_sh);
                continue;
            }
            if (pair_tiled_dn[static_cast<size_t>(i)]) continue;
            const int64_t p = order[static_cast<size_t>(i)];
            quant::quantize_row(down_act, h + p * n_ff, hq + static_cast<uint64_t>(p) * hq_row, n_ff);
        }
    });
    if (!tiled_dn.empty()) tiled_down(pool, w, h, dn_i8, scratch, o);

    // Down, then the weighted sum over each token's slots in slot order (so a token's result
    // does not depend on what else is in the batch). Rows [r0, r1) of out belong to one thread.
    const quant::DotRows down_dot(w.down_type);
    const std::optional<quant::DotRows> sh_down_dot = sh_fused ? std::optional(quant::DotRows(shared->down_type)) : std::nullopt;
    const uint64_t down_mat = static_cast<uint64_t>(n_embd) * w.down_row_bytes;
    pool.parallel_for(n_embd, [&](int64_t r0, int64_t r1, int) {
        for (size_t gi = 0; gi < groups.size(); ++gi) {
            if (dn_flag[gi]) continue;
            const MoeScratch::Group& g = groups[gi];
            const uint8_t* down_e = w.down + static_cast<uint64_t>(g.expert) * down_mat;
            const int32_t* pairs = order.data() + g.first;
            for (int64_t r = r0; r < r1; ++r) {
                const uint8_t* dr = down_e + static_cast<uint64_t>(r) * w.down_row_bytes;
                for (int32_t i0 = 0; i0 < g.count; i0 += kDotChunk) {
                    const int n = std::min(kDotChunk, g.count - i0);
                    float ov[kDotChunk];
                    down_dot(dr, down_acts + g.first + i0, n, n_ff, ov);
                    for (int j = 0; j < n; ++j) o[int64_t{pairs[i0 + j]} * n_embd + r] = ov[j];
                }
            }
        }
        if (sh_fused)
            for (int64_t r = r0; r < r1; ++r) {
                float ov[kTokBlock];
                (*sh_down_dot)(shared->down + static_cast<uint64_t>(r) * shared->down_row_bytes, sh_hacts, static_cast<int>(n_tok), n_sh, ov);
                for (int64_t t = 0; t < n_tok; ++t) sh_o[t * n_embd + r] = ov[t];
            }
        for (int64_t t = 0; t < n_tok; ++t) {
            float* out_t = out + t * n_embd;
            for (int64_t r = r0; r < r1; ++r) out_t[r] = 0.0f;
            for (int s = 0; s < k; ++s) {
                const int64_t p = t * k + s;
                if (expert_ids[p] < 0) continue;
                const float wt = expert_w[p];
                const float* o_p = o + p * n_embd;
                for (int64_t r = r0; r < r1; ++r) out_t[r] += wt * o_p[r];
            }
            if (sh_fused)
                for (int64_t r = r0; r < r1; ++r) out_t[r] += sh_o[t * n_embd + r];
        }
    });
    if (shared && !sh_fused) run_dense_expert(pool, *shared, x, n_tok, n_embd, out, scratch);
}

}  // namespace tandem::cpu
