// DeepSeek-V2 / V2-Lite / V3 / R1 (and Kimi-K2): GGUF architecture `deepseek2`.
//
// Multi-head latent attention (DeepSeek-V2 paper, section 2.1) with the weight absorption of
// its appendix: the cache holds one 576-wide latent row per token and layer (the normalised
// c_kv, kv_lora_rank values, then the shared roped key k_pe, qk_rope_head_dim values), and
// each head attends over it directly:
//   score_j = (W_uk^T q_nope) . c_kv_j + q_pe . k_pe_j          (times the softmax scale)
//   out     = W_uv (sum_j p_j c_kv_j)
// Then a Mixture-of-Experts FFN (DeepSeek-V3 paper, section 2.1.2): sigmoid or softmax
// affinities, optional group-limited selection, top-k, optional normalisation, a scale, plus
// shared experts; the first `leading_dense_block_count` layers have a dense FFN instead.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <string>

#include "core/check.h"
#include "core/memory.h"
#include "core/progress.h"
#include "core/units.h"
#include "cpu/attention.h"
#include "cpu/moe.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/summary.h"
#include "model/weights.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/repack.h"

namespace tandem::model {
namespace {

struct Config {
    int64_t n_layer = 0;
    int64_t n_layer_dense = 0;      // leading layers with a dense FFN
    int64_t n_embd = 0;
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    int64_t n_head = 0;
    int64_t q_lora_rank = 0;        // 0: q is one full-rank projection (V2-Lite)
    int64_t kv_lora_rank = 0;
    int64_t qk_nope_head_dim = 0;
    int64_t qk_rope_head_dim = 0;
    int64_t v_head_dim = 0;
    int64_t n_ff = 0;               // dense FFN width
    int64_t n_ff_exp = 0;           // width of one routed expert
    int64_t n_expert = 0;
    int64_t n_expert_used = 0;
    int64_t n_expert_shared = 0;
    int64_t n_group = 0;            // expert groups (0 or 1: no group limit)
    int64_t n_group_used = 0;
    bool sigmoid_gating = false;    // V3/R1: sigmoid affinities, bias used only for selection
    bool norm_topk = false;
    float expert_weights_scale = 1.0f;
    float rms_eps = 1e-6f;
    RopeParams rope;
    float yarn_log_mul = 0.0f;      // 0.1 * mscale_all_dim

    int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
    int64_t cache_width() const { return kv_lora_rank + qk_rope_head_dim; }  // 576 for R1
};

Config read_config(const gguf::File& file) {
    const gguf::Metadata& md = file.metadata();
    const std::string a = "deepseek2.";
    Config c;
    c.n_layer = md.get_int(a + "block_count");
    c.n_layer_dense = md.int_or(a + "leading_dense_block_count", 0);
    c.n_embd = md.get_int(a + "embedding_length");
    c.n_ctx_train = md.int_or(a + "context_length", 4096);
    c.n_head = md.get_int(a + "attention.head_count");
    c.q_lora_rank = md.int_or(a + "attention.q_lora_rank", 0);
    c.kv_lora_rank = md.get_int(a + "attention.kv_lora_rank");
    c.qk_rope_head_dim = md.get_int(a + "rope.dimension_count");
    // Newer conversions store the MLA head sizes under *_mla and the latent sizes under
    // key_length/value_length; older ones (all Unsloth R1 quants) only the head sizes.
    const int64_t key_len = md.int_or(a + "attention.key_length_mla", md.get_int(a + "attention.key_length"));
    c.v_head_dim = md.int_or(a + "attention.value_length_mla", md.get_int(a + "attention.value_length"));
    c.qk_nope_head_dim = key_len - c.qk_rope_head_dim;
    c.n_ff = md.int_or(a + "feed_forward_length", 0);
    c.n_ff_exp = md.int_or(a + "expert_feed_forward_length", 0);
    c.n_expert = md.int_or(a + "expert_count", 0);
    c.n_expert_used = md.int_or(a + "expert_used_count", 0);
    c.n_expert_shared = md.int_or(a + "expert_shared_count", 0);
    c.n_group = md.int_or(a + "expert_group_count", 0);
    c.n_group_used = md.int_or(a + "expert_group_used_count", 0);
    c.sigmoid_gating = md.int_or(a + "expert_gating_func", 1) == 2;
    c.norm_topk = md.bool_or(a + "expert_weights_norm", false);
    c.expert_weights_scale = static_cast<float>(md.float_or(a + "expert_weights_scale", 1.0));
    c.rms_eps = static_cast<float>(md.float_or(a + "attention.layer_norm_rms_epsilon", 1e-6));
    c.rope.dim = c.qk_rope_head_dim;
    c.rope.freq_base = static_cast<float>(md.float_or(a + "rope.freq_base", 10000.0));
    if (md.string_or_none(a + "rope.scaling.type").value_or("none") == "yarn") {
        c.rope.yarn_factor = static_cast<float>(md.get_float(a + "rope.scaling.factor"));
        c.rope.yarn_orig_ctx = md.get_int(a + "rope.scaling.original_context_length");
        c.yarn_log_mul = static_cast<float>(md.float_or(a + "rope.scaling.yarn_log_multiplier", 0.0));
    }
    const gguf::TensorInfo& embd = file.tensor("token_embd.weight");
    c.n_vocab = embd.ne.size() == 2 ? embd.ne[1] : 0;

    auto need = [](bool ok, std::string_view what) {
        if (!ok) fail("deepseek2 model: {}", what);
    };
    need(c.n_layer > 0 && c.n_layer <= 1024, "block_count must be 1 to 1024");
    need(c.n_layer_dense >= 0 && c.n_layer_dense <= c.n_layer, "leading_dense_block_count exceeds block_count");
    need(c.n_head > 0 && c.kv_lora_rank > 0 && c.qk_nope_head_dim > 0 && c.v_head_dim > 0, "attention sizes must be positive");
    need(c.qk_rope_head_dim > 0 && c.qk_rope_head_dim % 2 == 0, "rope.dimension_count must be even and positive");
    if (c.n_layer_dense < c.n_layer) {
        need(c.n_expert > 0 && c.n_expert_used > 0 && c.n_expert_used <= c.n_expert && c.n_ff_exp > 0,
             "MoE layers need expert_count, expert_used_count (<= expert_count) and expert_feed_forward_length");
        need(c.n_expert_used <= 64, "expert_used_count above 64 is not supported");
    }
    if (c.n_group > 1)
        need(c.n_expert % c.n_group == 0 && c.n_group_used >= 1 && c.n_group_used <= c.n_group,
             "expert_group_count must divide expert_count and expert_group_used_count be 1 to expert_group_count");
    need(c.n_vocab > 0, "token_embd.weight must be 2-D");
    return c;
}

// The routed experts' matrices of one tensor, [n_expert][n_out, n_in], as the kernels read
// them: in place in the memory map, or a repacked copy (quant/repack.h) held here.
struct ExpertMat {
    GgmlType type = GgmlType::F32;
    int64_t n_in = 0, n_out = 0, n_expert = 0;
    const uint8_t* data = nullptr;
    uint64_t row_bytes = 0;
    const gguf::TensorInfo* file_tensor = nullptr;
    std::unique_ptr<uint8_t[]> owned;

    static ExpertMat of(const gguf::TensorInfo& t) {
        return {t.type, t.ne[0], t.ne[1], t.ne[2], t.data, t.row_bytes(), &t, nullptr};
    }
    uint64_t bytes() const { return row_bytes * static_cast<uint64_t>(n_out * n_expert); }
    // bytes() in `layout`, a format with the same block size (quant/repack.h).
    uint64_t bytes_as(GgmlType layout) const { return bytes() / ggml_traits(type).type_size * ggml_traits(layout).type_size; }
    Mat expert(int64_t e) const {
        TANDEM_CHECK(e >= 0 && e < n_expert, "expert {} of {}", e, n_expert);
        return {type, n_in, n_out, data + static_cast<uint64_t>(e * n_out) * row_bytes, row_bytes};
    }
};

struct Layer {
    std::vector<float> attn_norm;   // [n_embd]
    Mat q_a;                        // [q_lora_rank, n_embd]         (V3/R1)
    std::vector<float> q_a_norm;    // [q_lora_rank]
    Mat q_b;                        // [n_head * qk_head_dim, q_lora_rank]
    Mat q;                          // [n_head * qk_head_dim, n_embd]  (V2-Lite)
    Mat kv_a;                       // [kv_lora_rank + qk_rope_head_dim, n_embd]
    std::vector<float> kv_a_norm;   // [kv_lora_rank]
    std::vector<Mat> k_b;           // per head: [kv_lora_rank, qk_nope_head_dim]  (W_uk^T)
    std::vector<Mat> v_b;           // per head: [v_head_dim, kv_lora_rank]        (W_uv)
    std::vector<uint8_t> k_b_owned;  // W_uk^T derived from attn_kv_b when the file has no attn_k_b
    Mat kv_b;                       // [n_head * (nope + v), kv_lora_rank] per head W_uk then W_uv rows, if in the file
    Mat wo;                         // [n_embd, n_head * v_head_dim]
    std::vector<float> ffn_norm;    // [n_embd]
    // Dense FFN.
    Mat ffn_gate, ffn_up, ffn_down;  // [n_ff, n_embd] x2, [n_embd, n_ff]
    // MoE.
    Mat gate_inp;                   // [n_expert, n_embd]
    std::vector<float> exp_probs_b; // [n_expert] selection bias (V3/R1)
    ExpertMat gate_exps, up_exps;   // [n_expert][n_ff_exp, n_embd]
    ExpertMat down_exps;            // [n_expert][n_embd, n_ff_exp]
    Mat gate_sh, up_sh, down_sh;    // shared experts, [n_ff_exp * n_shared, n_embd] ...
};

// W_uk^T for each head, from attn_kv_b ([n_head * (nope + v), kv_lora] rows, per head the nope
// key rows then the v value rows): transposed once at load so that absorbing a query is a row
// product. Float32, held in `owned`.
// W_uk^T per head, [rank, nope], from the legacy attn_kv_b. Stored as float32 when the file's
// kv_b is float (or every weight must stay exact: f32_activations); otherwise as bf16, so that
// prefill multiplies it on the bf16 path (cpu/gemm.h) like every quantized matrix: rounding
// values that come from a quantized tensor to bf16 adds ~2^-9 relative error.
void derive_k_b(const Config& c, const Mat& kv_b, bool keep_f32, Layer& l) {
    const int64_t nope = c.qk_nope_head_dim, rank = c.kv_lora_rank, per_head = nope + c.v_head_dim;
    const GgmlType type = keep_f32 ? GgmlType::F32 : GgmlType::BF16;
    const uint64_t elem = keep_f32 ? 4 : 2;
    l.k_b_owned.assign(static_cast<size_t>(c.n_head * rank * nope) * elem, 0);
    std::vector<float> row(static_cast<size_t>(rank));
    for (int64_t h = 0; h < c.n_head; ++h) {
        uint8_t* dst = l.k_b_owned.data() + static_cast<uint64_t>(h * rank * nope) * elem;  // [rank, nope]
        for (int64_t d = 0; d < nope; ++d) {
            dequantize_mat_row(kv_b, h * per_head + d, row.data());
            for (int64_t r = 0; r < rank; ++r) {
                const float v = row[static_cast<size_t>(r)];
                uint8_t* at = dst + static_cast<uint64_t>(r * nope + d) * elem;
                if (keep_f32) {
                    std::memcpy(at, &v, 4);
                } else {
                    const uint16_t b16 = quant::f32_to_bf16(v);
                    std::memcpy(at, &b16, 2);
                }
            }
        }
    }
    for (int64_t h = 0; h < c.n_head; ++h)
        l.k_b.push_back({type, nope, rank, l.k_b_owned.data() + static_cast<uint64_t>(h * rank * nope) * elem,
                         static_cast<uint64_t>(nope) * elem});
}

uint64_t bytes_of(const std::vector<Mat>& mats) {
    uint64_t n = 0;
    for (const Mat& m : mats) n += m.bytes();
    return n;
}

// Where a forward pass spends its time, per step, when TANDEM_PROFILE is set in the
// environment: accumulated over the model's life, separately for one-token batches (decode)
// and larger ones (prefill), and printed to stderr when it is destroyed, with the weight bytes
// each step read and the rate (a decode step is bound by those reads).
struct StepProfile {
    enum Step { kAttnQ, kCacheRows, kAbsorbK, kAttnCore, kAbsorbV, kAttnOut, kRouter, kExperts, kDense, kOutput, kSteps };
    static constexpr const char* kNames[kSteps] = {
        "q, latent kv projections",  "cache rows (norm, rope)", "MLA W_uk, or kv decompression", "attention over the cache",
        "MLA W_uv (latent output)", "attention output (wo)",       "router",                        "experts (routed, shared)",
        "dense FFN",                "output head"};
    bool on = std::getenv("TANDEM_PROFILE") != nullptr;
    int kind = 0;  // 0: decode (one-token batches), 1: prefill
    double seconds[2][kSteps] = {};
    double bytes[2][kSteps] = {};
    using Clock = std::chrono::steady_clock;
    Clock::time_point t0 = Clock::now();
    // Charges the time since the last mark, and `weight_bytes` read, to `step`.
    void mark(Step step, uint64_t weight_bytes = 0) {
        if (!on) return;
        const auto now = Clock::now();
        seconds[kind][step] += std::chrono::duration<double>(now - t0).count();
        bytes[kind][step] += static_cast<double>(weight_bytes);
        t0 = now;
    }
    void reset() {
        std::fill_n(&seconds[0][0], 2 * kSteps, 0.0);
        std::fill_n(&bytes[0][0], 2 * kSteps, 0.0);
    }
    void start(int64_t n_tok) {
        kind = n_tok > 1 ? 1 : 0;
        if (on) t0 = Clock::now();
    }
    ~StepProfile() {
        if (!on) return;
        for (int k : {1, 0}) {
            double total = 0, total_bytes = 0;
            for (int i = 0; i < kSteps; ++i) total += seconds[k][i], total_bytes += bytes[k][i];
            if (total == 0) continue;
            fmt::print(stderr, "profile  {}: {:.3f} s, {} of weights read at {:.1f} GB/s\n", k ? "prefill (batches of 2+ tokens)" : "decode (1-token batches)",
                       total, format_bytes(static_cast<uint64_t>(total_bytes)), total_bytes / total / 1e9);
            for (int i = 0; i < kSteps; ++i)
                fmt::print(stderr, "profile    {:<30} {:8.3f} s  {:5.1f}%  {:>10} read  {:6.1f} GB/s\n", kNames[i], seconds[k][i],
                           100.0 * seconds[k][i] / total, format_bytes(static_cast<uint64_t>(bytes[k][i])),
                           bytes[k][i] / std::max(seconds[k][i], 1e-12) / 1e9);
        }
    }
};

class DeepSeek2 final : public Model {
public:
    DeepSeek2(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt)
        : pool_(pool), c_(read_config(file)), f32_activations_(opt.f32_activations) {
        Binder b(file);
        const Config& c = c_;
        token_embd_ = b.mat("token_embd.weight", c.n_embd, c.n_vocab);
        output_norm_ = b.vec("output_norm.weight", c.n_embd);
        output_ = b.has("output.weight") ? b.mat("output.weight", c.n_embd, c.n_vocab) : token_embd_;
        const int64_t n_q = c.n_head * c.qk_head_dim();
        layers_.resize(static_cast<size_t>(c.n_layer));
        for (int64_t il = 0; il < c.n_layer; ++il) {
            Layer& l = layers_[static_cast<size_t>(il)];
            const std::string p = fmt::format("blk.{}.", il);
            l.attn_norm = b.vec(p + "attn_norm.weight", c.n_embd);
            if (c.q_lora_rank > 0) {
                l.q_a = b.mat(p + "attn_q_a.weight", c.n_embd, c.q_lora_rank);
                l.q_a_norm = b.vec(p + "attn_q_a_norm.weight", c.q_lora_rank);
                l.q_b = b.mat(p + "attn_q_b.weight", c.q_lora_rank, n_q);
            } else {
                l.q = b.mat(p + "attn_q.weight", c.n_embd, n_q);
            }
            l.kv_a = b.mat(p + "attn_kv_a_mqa.weight", c.n_embd, c.cache_width());
            l.kv_a_norm = b.vec(p + "attn_kv_a_norm.weight", c.kv_lora_rank);
            if (b.has(p + "attn_k_b.weight")) {
                // Newer conversions split attn_kv_b into per-head W_uk^T and W_uv.
                const auto& kb = b.tensor(p + "attn_k_b.weight", {c.qk_nope_head_dim, c.kv_lora_rank, c.n_head});
                const auto& vb = b.tensor(p + "attn_v_b.weight", {c.kv_lora_rank, c.v_head_dim, c.n_head});
                for (int64_t h = 0; h < c.n_head; ++h) {
                    l.k_b.push_back(mat_of(kb, h));
                    l.v_b.push_back(mat_of(vb, h));
                }
                // Some of these files keep attn_kv_b too: the decompressed form needs its rows.
                if (b.has(p + "attn_kv_b.weight")) l.kv_b = b.mat(p + "attn_kv_b.weight", c.kv_lora_rank, c.n_head * (c.qk_nope_head_dim + c.v_head_dim));
            } else {
                l.kv_b = b.mat(p + "attn_kv_b.weight", c.kv_lora_rank, c.n_head * (c.qk_nope_head_dim + c.v_head_dim));
                derive_k_b(c, l.kv_b, opt.f32_activations || l.kv_b.type == GgmlType::F32 || l.kv_b.type == GgmlType::F16, l);
                for (int64_t h = 0; h < c.n_head; ++h)
                    l.v_b.push_back(l.kv_b.rows(h * (c.qk_nope_head_dim + c.v_head_dim) + c.qk_nope_head_dim, c.v_head_dim));
            }
            l.wo = b.mat(p + "attn_output.weight", c.n_head * c.v_head_dim, c.n_embd);
            l.ffn_norm = b.vec(p + "ffn_norm.weight", c.n_embd);
            if (il < c.n_layer_dense) {
                l.ffn_gate = b.mat(p + "ffn_gate.weight", c.n_embd, c.n_ff);
                l.ffn_up = b.mat(p + "ffn_up.weight", c.n_embd, c.n_ff);
                l.ffn_down = b.mat(p + "ffn_down.weight", c.n_ff, c.n_embd);
                continue;
            }
            l.gate_inp = b.mat(p + "ffn_gate_inp.weight", c.n_embd, c.n_expert);
            l.exp_probs_b = b.vec_opt(p + "exp_probs_b.bias", c.n_expert);
            l.gate_exps = ExpertMat::of(b.tensor(p + "ffn_gate_exps.weight", {c.n_embd, c.n_ff_exp, c.n_expert}));
            l.up_exps = ExpertMat::of(b.tensor(p + "ffn_up_exps.weight", {c.n_embd, c.n_ff_exp, c.n_expert}));
            l.down_exps = ExpertMat::of(b.tensor(p + "ffn_down_exps.weight", {c.n_ff_exp, c.n_embd, c.n_expert}));
            if (c.n_expert_shared > 0) {
                const int64_t n_sh = c.n_ff_exp * c.n_expert_shared;
                l.gate_sh = b.mat(p + "ffn_gate_shexp.weight", c.n_embd, n_sh);
                l.up_sh = b.mat(p + "ffn_up_shexp.weight", c.n_embd, n_sh);
                l.down_sh = b.mat(p + "ffn_down_shexp.weight", n_sh, c.n_embd);
            }
        }
        decompressible_ = std::all_of(layers_.begin(), layers_.end(), [](const Layer& l) { return !l.kv_b.empty(); });
        mla_ = opt.mla;
        if (mla_ == MlaForm::kDecompressed && !decompressible_)
            fail("deepseek2 model: the decompressed attention form needs attn_kv_b in every layer; this file has only "
                 "attn_k_b/attn_v_b (use the absorbed form)");
        inv_freq_ = rope_inv_freq(c.rope);
        // Softmax scale, with YaRN's attention temperature (DeepSeek's mscale_all_dim) applied
        // to both q and k: 1/sqrt(d_qk) * mscale^2.
        float mscale = 1.0f;
        if (c.rope.yarn_factor > 1.0f) mscale = 1.0f + c.yarn_log_mul * std::log(c.rope.yarn_factor);
        kq_scale_ = mscale * mscale / std::sqrt(static_cast<float>(c.qk_head_dim()));
        scratch_.resize(static_cast<size_t>(pool.n_threads()));
        for (auto& sc : scratch_) sc.f32_activations = opt.f32_activations;
        bytes_per_token_ = summarize(file).active_bytes_per_token;
        repack_experts(file, opt.repack, opt.memory_bytes ? opt.memory_bytes : memory_available());
    }

    // Rewrites the routed experts whose format has a faster in-memory layout (IQ1_S ->
    // IQ1_S_U2, IQ1_M -> IQ1_M_U2, IQ2_XXS -> IQ2_XXS_U3, IQ3_XXS -> IQ3_XXS_U4, Q2_K -> Q2_K_U16,
    // Q3_K -> Q3_K_U16, quant/repack.h)
    // into memory of this process: all as asked, or on auto as many expert tensors (by format,
    // then layer) as keep the copies (a per-process copy, unlike the file's shared page cache)
    // and the rest of the model within 80% of `memory` (each tensor repacked speeds up its share
    // of a token's expert reads, so a machine short of room for all of them still gains in
    // proportion). The file's pages of the rewritten tensors are released.
    void repack_experts(const gguf::File& file, Repack mode, uint64_t memory) {
        std::vector<ExpertMat*> candidates;
        uint64_t all_from = 0, all_to = 0;
        for (Layer& l : layers_)
            for (ExpertMat* m : {&l.gate_exps, &l.up_exps, &l.down_exps})
                if (const auto layout = m->data ? quant::repacked_type(m->type) : std::nullopt) {
                    candidates.push_back(m);
                    all_from += m->bytes();
                    all_to += m->bytes_as(*layout);
                }
        if (candidates.empty() || mode == Repack::kOff) return;
        // Where memory runs short, the formats that gain the most time per added byte go first:
        // Q2_K and Q3_K add none (their layouts are reorderings); per weight, one Zen 4 thread's dot kernel
        // saves 0.048 ns for IQ1_S (14.5 -> 46.6 G weights/s, +0.078 bytes), 0.082 ns for IQ3_XXS
        // (9.1 -> 36.3, +0.14), 0.039 ns for IQ1_M (14.7 -> 34.1, +0.078), 0.042 ns for IQ2_XXS
        // (13.7 -> 32.7, +0.14): 0.61, 0.58, 0.50 and 0.30 ns per added byte. Then layer order.
        const auto rank = [](GgmlType t) {
            return t == GgmlType::Q2_K || t == GgmlType::Q3_K ? 0 : t == GgmlType::IQ1_S ? 1 : t == GgmlType::IQ3_XXS ? 2 : t == GgmlType::IQ1_M ? 3 : 4;
        };
        std::stable_sort(candidates.begin(), candidates.end(),
                         [&](const ExpertMat* a, const ExpertMat* b) { return rank(a->type) < rank(b->type); });
        std::vector<ExpertMat*> todo;
        uint64_t from = 0, to = 0, resident = file.total_file_bytes();
        for (ExpertMat* m : candidates) {
            const uint64_t m_from = m->bytes(), m_to = m->bytes_as(*quant::repacked_type(m->type));
            if (mode == Repack::kAuto && resident - m_from + m_to > memory / 5 * 4) continue;  // a smaller one may fit
            todo.push_back(m);
            from += m_from;
            to += m_to;
            resident = resident - m_from + m_to;
        }
        const auto formats = [](const std::vector<ExpertMat*>& ms) {  // as "IQ1_S" or "IQ1_M, IQ2_XXS"
            std::string names;
            for (const ExpertMat* m : ms) add_to_list(names, ggml_type_name(m->type));
            return names;
        };
        const std::string name = formats(candidates);
        if (todo.size() < candidates.size() && all_to == all_from)  // same-size regroupings (Q2_K, Q3_K) only
            fmt::print(stderr, "note: {} expert tensors left in the file's layout: the model ({}) is more than 80% of the {} "
                               "available, so they stay in the shared page cache (--repack on to regroup them anyway)\n",
                       name, format_bytes(file.total_file_bytes()), format_bytes(memory));
        else if (todo.size() < candidates.size())
            fmt::print(stderr, "note: {} of {} {} expert tensors repacked for speed: all would take {} more memory, {} for "
                               "the model against {} available (--repack on to force)\n",
                       todo.size(), candidates.size(), name, format_bytes(all_to - all_from),
                       format_bytes(file.total_file_bytes() - all_from + all_to), format_bytes(memory));
        if (todo.empty()) return;
        Progress bar(fmt::format("repacking {} experts", formats(todo)), from);
        uint64_t done = 0;
        for (ExpertMat* m : todo) {
            const GgmlType type = *quant::repacked_type(m->type);
            const uint64_t in_block = ggml_traits(m->type).type_size, out_block = ggml_traits(type).type_size;
            const int64_t n_blocks = static_cast<int64_t>(m->bytes() / in_block);
            std::unique_ptr<uint8_t[]> out(new (std::nothrow) uint8_t[m->bytes_as(type)]);
            if (!out) fail("cannot allocate {} to repack {} (--repack off keeps the file's layout)", format_bytes(m->bytes_as(type)),
                           m->file_tensor->name);
            // Uninitialised: the threads below touch the pages first.
            pool_.parallel_for(n_blocks, [&](int64_t b0, int64_t b1, int) {
                quant::repack_blocks(m->type, m->data + static_cast<uint64_t>(b0) * in_block,
                                     out.get() + static_cast<uint64_t>(b0) * out_block, b1 - b0);
            });
            file.release_pages(*m->file_tensor);
            m->row_bytes = m->row_bytes / in_block * out_block;
            m->type = type;
            m->owned = std::move(out);
            m->data = m->owned.get();
            done += static_cast<uint64_t>(n_blocks) * in_block;
            bar.update(done);
        }
        bar.finish();
        // A decoded token reads n_expert_used of each layer's n_expert experts.
        bytes_per_token_ += (to - from) / static_cast<uint64_t>(c_.n_expert) * static_cast<uint64_t>(c_.n_expert_used);
    }

    int64_t n_vocab() const override { return c_.n_vocab; }
    int64_t n_ctx_train() const override { return c_.n_ctx_train; }
    uint64_t bytes_per_token() const override { return bytes_per_token_; }
    void reset_profile() override { prof_.reset(); }
    // The cache keeps the attention's bf16 blocks where every layer's attention runs in bf16
    // (then a decode step packs nothing, and the cache takes 2.1 KiB per position and layer
    // instead of 2.25), else f32 rows.
    std::unique_ptr<KvCache> make_cache(int64_t max_ctx) const override {
        const bool blocks = std::all_of(layers_.begin(), layers_.end(), [&](const Layer& l) { return bf16_attention(l); });
        return std::make_unique<KvCache>(c_.n_layer, c_.cache_width(), max_ctx, blocks ? c_.kv_lora_rank : 0);
    }
    std::string describe() const override {
        return fmt::format("deepseek2: {} layers ({} dense), n_embd {}, {} heads, MLA rank {} (cache {} values/token/layer), "
                           "{} experts ({} used, {} shared){}",
                           c_.n_layer, c_.n_layer_dense, c_.n_embd, c_.n_head, c_.kv_lora_rank, c_.cache_width(),
                           c_.n_expert, c_.n_expert_used, c_.n_expert_shared,
                           c_.sigmoid_gating ? ", sigmoid routing" : ", softmax routing");
    }

    void forward(const Batch& batch, KvCache& cache, float* logits) override {
        validate_batch(batch, cache, c_.n_vocab);
        const Config& c = c_;
        const int64_t n_tok = batch.size();
        if (n_tok == 0) return;
        x_.resize(static_cast<size_t>(n_tok * c.n_embd));
        h_.resize(x_.size());
        y_.resize(x_.size());

        // token embeddings
        pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
            for (int64_t t = t0; t < t1; ++t) dequantize_mat_row(token_embd_, batch.tokens[static_cast<size_t>(t)], x(t));
        });

        decompress_ = use_decompressed(batch);
        prof_.start(n_tok);
        // The last layer's output matters only for the tokens that want logits: it appends
        // every token's latent row to the cache, then runs the rest for those tokens alone (a
        // prompt's last layer costs one token's work instead of the whole prompt's).
        const Batch* cur = &batch;
        const int64_t n_out = batch.n_logits();
        for (int64_t il = 0; il < c.n_layer; ++il) {
            const Layer& l = layers_[static_cast<size_t>(il)];
            // attention rmsnorm, attention, residual
            rms_norm_rows(pool_, x_.data(), l.attn_norm.data(), h_.data(), cur->size(), c.n_embd, c.rms_eps);
            if (il == c.n_layer - 1 && n_out < n_tok) {
                append_latent(l, il, batch, cache);
                keep_logit_rows(batch);
                cur = &out_batch_;
                if (out_batch_.size() == 0) break;
                decompress_ = use_decompressed(out_batch_);
                attention(l, il, out_batch_, cache, false);
            } else {
                attention(l, il, batch, cache, true);
            }
            const int64_t n_cur = cur->size();
            add_rows(pool_, x_.data(), y_.data(), n_cur, c.n_embd);
            // ffn rmsnorm, dense FFN or experts, residual
            rms_norm_rows(pool_, x_.data(), l.ffn_norm.data(), h_.data(), n_cur, c.n_embd, c.rms_eps);
            if (il < c.n_layer_dense) {
                swiglu_ffn(pool_, l.ffn_gate, l.ffn_up, l.ffn_down, h_.data(), n_cur, y_.data(), g_, u_, scratch_[0]);
                prof_.mark(StepProfile::kDense, l.ffn_gate.bytes() + l.ffn_up.bytes() + l.ffn_down.bytes());
            } else {
                moe(l, n_cur);
            }
            add_rows(pool_, x_.data(), y_.data(), n_cur, c.n_embd);
        }
        cache.commit(batch);

        // output norm and head, for the tokens that want logits
        output_logits(pool_, cur->want_logits, x_.data(), h_.data(), c.n_embd, output_norm_, c.rms_eps, output_, logits,
                      scratch_[0]);
        prof_.mark(StepProfile::kOutput, n_out > 0 ? output_.bytes() : 0);
    }

private:
    float* x(int64_t t) { return x_.data() + t * c_.n_embd; }
    float* h(int64_t t) { return h_.data() + t * c_.n_embd; }

    // Keeps, in order, the rows of x_ and h_ of the tokens that want logits and describes
    // them in out_batch_ (all wanting logits).
    void keep_logit_rows(const Batch& batch) {
        out_batch_.clear();
        for (int64_t t = 0; t < batch.size(); ++t) {
            if (!batch.want_logits[static_cast<size_t>(t)]) continue;
            const int64_t k = out_batch_.size();
            if (k != t) {
                std::copy_n(x(t), c_.n_embd, x(k));
                std::copy_n(h(t), c_.n_embd, h(k));
            }
            out_batch_.add(batch.tokens[static_cast<size_t>(t)], batch.pos[static_cast<size_t>(t)],
                           batch.seq[static_cast<size_t>(t)], true);
        }
    }

    // MLA; reads h_, writes y_ (the attention output, pre-residual). The projections and the
    // cache update (unless `append` is false: append_latent ran already) are shared; the
    // attention itself runs in the form chosen for the batch (decompress_, see
    // use_decompressed), both writing attn_ ([n_tok, n_head * v_head_dim]).
    void attention(const Layer& l, int64_t il, const Batch& batch, KvCache& cache, bool append) {
        const Config& c = c_;
        const int64_t n_tok = batch.size(), n_q = c.n_head * c.qk_head_dim();
        q_.resize(static_cast<size_t>(n_tok * n_q));
        // q projection (through the low-rank bottleneck for V3/R1), with the latent kv one
        // (the same input) where the cache rows are appended here
        const bool low_rank = c.q_lora_rank > 0;
        const Mat& q_in = low_rank ? l.q_a : l.q;
        if (low_rank) cq_.resize(static_cast<size_t>(n_tok * c.q_lora_rank));
        float* q_in_y = low_rank ? cq_.data() : q_.data();
        if (append) {
            kva_.resize(static_cast<size_t>(n_tok * c.cache_width()));
            matmul_pair(pool_, q_in, q_in_y, l.kv_a, kva_.data(), h_.data(), n_tok, scratch_[0]);
        } else {
            matmul(pool_, q_in, h_.data(), n_tok, q_in_y, q_in.n_out, scratch_[0]);
        }
        if (low_rank) {
            rms_norm_rows(pool_, cq_.data(), l.q_a_norm.data(), cq_.data(), n_tok, c.q_lora_rank, c.rms_eps);
            matmul(pool_, l.q_b, cq_.data(), n_tok, q_.data(), n_q, scratch_[0]);
        }
        prof_.mark(StepProfile::kAttnQ, l.q_a.bytes() + l.q_b.bytes() + l.q.bytes() + (append ? l.kv_a.bytes() : 0));
        // The rope angles of the batch's positions, once per layer (each token rotates its
        // cache row and every head's query with them).
        rope_angles(batch.pos, inv_freq_, rope_cs_);
        if (append) append_rows(l, il, batch, cache);
        attn_.resize(static_cast<size_t>(n_tok * c.n_head * c.v_head_dim));
        if (decompress_) attend_decompressed(l, il, batch, cache);
        else attend_absorbed(l, il, batch, cache);
        // output projection
        matmul(pool_, l.wo, attn_.data(), n_tok, y_.data(), c.n_embd, scratch_[0]);
        prof_.mark(StepProfile::kAttnOut, l.wo.bytes());
    }

    // The latent kv of every token of the batch (from h_), appended to the cache.
    void append_latent(const Layer& l, int64_t il, const Batch& batch, KvCache& cache) {
        kva_.resize(static_cast<size_t>(batch.size() * c_.cache_width()));
        matmul(pool_, l.kv_a, h_.data(), batch.size(), kva_.data(), c_.cache_width(), scratch_[0]);
        prof_.mark(StepProfile::kAttnQ, l.kv_a.bytes());
        rope_angles(batch.pos, inv_freq_, rope_cs_);
        append_rows(l, il, batch, cache);
    }

    // Cache rows from the latent kv projection (kva_): c_kv (normalised) and the shared k_pe
    // (roped).
    void append_rows(const Layer& l, int64_t il, const Batch& batch, KvCache& cache) {
        const Config& c = c_;
        const int64_t rank = c.kv_lora_rank, width = c.cache_width(), n_tok = batch.size();
        // Room for every row first (a sequence's rows may move while they grow), then the rows,
        // finished in place in kva_ and stored, on all threads.
        for (int64_t t = 0; t < n_tok; ++t) cache.reserve_row(batch.seq[static_cast<size_t>(t)], il, batch.pos[static_cast<size_t>(t)]);
        pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
            for (int64_t t = t0; t < t1; ++t) {
                float* row = kva_.data() + t * width;
                rms_norm(row, l.kv_a_norm.data(), row, rank, c.rms_eps);
                rope(row + rank, c.qk_rope_head_dim, rope_cs_.data() + t * c.qk_rope_head_dim, false);
                cache.write_row(batch.seq[static_cast<size_t>(t)], il, batch.pos[static_cast<size_t>(t)], row);
            }
        });
        prof_.mark(StepProfile::kCacheRows);
    }

    // The absorbed form: per head, q_cat = [W_uk^T q_nope, rope(q_pe)] is one width-wide query
    // against the latent cache rows, and W_uv decompresses the rank-wide latent output.
    void attend_absorbed(const Layer& l, int64_t il, const Batch& batch, const KvCache& cache) {
        const Config& c = c_;
        const int64_t n_tok = batch.size(), n_q = c.n_head * c.qk_head_dim(), rank = c.kv_lora_rank;
        const int64_t nope = c.qk_nope_head_dim, rope_dim = c.qk_rope_head_dim, width = c.cache_width();
        qcat_.resize(static_cast<size_t>(n_tok * c.n_head * width));
        pool_.parallel_for(c.n_head, [&](int64_t h0, int64_t h1, int tid) {
            std::vector<float> qn(static_cast<size_t>(n_tok * nope));
            for (int64_t hh = h0; hh < h1; ++hh) {
                for (int64_t t = 0; t < n_tok; ++t) {
                    const float* qh = q_.data() + t * n_q + hh * c.qk_head_dim();
                    std::copy(qh, qh + nope, qn.data() + t * nope);
                    float* qc = qcat_.data() + (t * c.n_head + hh) * width;
                    std::copy(qh + nope, qh + c.qk_head_dim(), qc + rank);
                    rope(qc + rank, rope_dim, rope_cs_.data() + t * rope_dim, false);
                }
                // W_uk^T q_nope straight into the first rank values of each (token, head) row
                matmul_serial(l.k_b[static_cast<size_t>(hh)], qn.data(), n_tok, qcat_.data() + hh * width, c.n_head * width,
                              scratch_[static_cast<size_t>(tid)]);
            }
        });
        prof_.mark(StepProfile::kAbsorbK, prof_.on ? bytes_of(l.k_b) : 0);
        // scores over the sequence's cached positions (causal), softmax, latent output; row
        // t * n_head + h of qcat_ and olat_ is (token t, head h)
        olat_.resize(static_cast<size_t>(n_tok * c.n_head * rank));
        const int64_t n_rows = n_tok * c.n_head;
        row_kv_.resize(static_cast<size_t>(n_rows));
        row_n_ctx_.resize(static_cast<size_t>(n_rows));
        row_kv_blocks_ = cache.mla_blocks();
        for (int64_t t = 0; t < n_tok; ++t) {
            const int32_t seq = batch.seq[static_cast<size_t>(t)];
            const void* kv = row_kv_blocks_ ? static_cast<const void*>(cache.blocks(seq, il)) : cache.rows(seq, il);
            std::fill_n(row_kv_.begin() + t * c.n_head, c.n_head, kv);
            std::fill_n(row_n_ctx_.begin() + t * c.n_head, c.n_head, batch.pos[static_cast<size_t>(t)] + 1);
        }
        attend_rows(l, qcat_.data(), n_rows, width, rank, olat_.data());
        prof_.mark(StepProfile::kAttnCore);
        // per head: W_uv decompresses the latent output to v_head_dim values
        pool_.parallel_for(c.n_head, [&](int64_t h0, int64_t h1, int tid) {
            std::vector<float> ol(static_cast<size_t>(n_tok * rank));
            for (int64_t hh = h0; hh < h1; ++hh) {
                for (int64_t t = 0; t < n_tok; ++t) {
                    const float* src = olat_.data() + (t * c.n_head + hh) * rank;
                    std::copy(src, src + rank, ol.data() + t * rank);
                }
                matmul_serial(l.v_b[static_cast<size_t>(hh)], ol.data(), n_tok, attn_.data() + hh * c.v_head_dim,
                              c.n_head * c.v_head_dim, scratch_[static_cast<size_t>(tid)]);
            }
        });
        prof_.mark(StepProfile::kAbsorbV, prof_.on ? bytes_of(l.v_b) : 0);
    }

    // The decompressed form: for every cached position of the batch's sequences, the per-head
    // keys W_uk c_kv and values W_uv c_kv (attn_kv_b's rows), then ordinary attention per head
    // with qk_head_dim-wide keys and v_head_dim-wide values. Per (query, position, head) that
    // is ~(nope + rope + 2 v) multiply-adds instead of the absorbed form's (width + rank), for
    // (nope + v) * rank per cached position and head: cheaper once a batch has many tokens
    // per sequence (use_decompressed).
    // The rows handed to the attention core are [v | k_nope | k_pe] (dw values, the values
    // leading as the core expects) against queries [0 | q_nope | rope(q_pe)], so the same
    // core (tile or float) serves both forms. Heads go in blocks whose rows fit ~64 MiB.
    void attend_decompressed(const Layer& l, int64_t il, const Batch& batch, const KvCache& cache) {
        const Config& c = c_;
        const int64_t n_tok = batch.size(), n_q = c.n_head * c.qk_head_dim(), rank = c.kv_lora_rank;
        const int64_t nope = c.qk_nope_head_dim, rope_dim = c.qk_rope_head_dim, v = c.v_head_dim;
        const int64_t per_head = nope + v, dw = v + nope + rope_dim;
        // The batch's sequences (use_decompressed found them for this forward pass): positions
        // [0, n_ctx) of each, one after another from bs.at[s] in the rows below.
        const BatchSeqs& bs = batch_seqs_;
        const int64_t total = bs.at.back();
        // Every cached position's c_kv ([total, rank]) and k_pe ([total, rope_dim]).
        ckv_.resize(static_cast<size_t>(total * rank));
        kpe_.resize(static_cast<size_t>(total * rope_dim));
        pool_.parallel_for(total, [&](int64_t j0, int64_t j1, int) {
            std::vector<float> row(static_cast<size_t>(c.cache_width()));
            for (int64_t j = j0; j < j1; ++j) {
                const auto s = static_cast<size_t>(std::upper_bound(bs.at.begin(), bs.at.end(), j) - bs.at.begin() - 1);
                cache.read_row(bs.ids[s], il, j - bs.at[s], row.data());
                std::copy_n(row.data(), rank, ckv_.data() + j * rank);
                std::copy_n(row.data() + rank, rope_dim, kpe_.data() + j * rope_dim);
            }
        });
        const int64_t hb = std::clamp<int64_t>((int64_t{64} << 20) / std::max<int64_t>(1, total * dw * 4), 1, c.n_head);
        for (int64_t h0 = 0; h0 < c.n_head; h0 += hb) {
            const int64_t nh = std::min(hb, c.n_head - h0), n_rows = nh * n_tok;
            dec_.resize(static_cast<size_t>(total * nh * per_head));
            matmul(pool_, l.kv_b.rows(h0 * per_head, nh * per_head), ckv_.data(), total, dec_.data(), nh * per_head, scratch_[0]);
            // rows of (head hh, position j): dkv_ + (hh * total + j) * dw
            dkv_.resize(static_cast<size_t>(nh * total * dw));
            pool_.parallel_for(total, [&](int64_t j0, int64_t j1, int) {
                for (int64_t j = j0; j < j1; ++j) {
                    const float* kpe = kpe_.data() + j * rope_dim;
                    for (int64_t hh = 0; hh < nh; ++hh) {
                        const float* src = dec_.data() + (j * nh + hh) * per_head;  // [k_nope | v]
                        float* dst = dkv_.data() + (hh * total + j) * dw;
                        std::copy_n(src + nope, v, dst);
                        std::copy_n(src, nope, dst + v);
                        std::copy_n(kpe, rope_dim, dst + v + nope);
                    }
                }
            });
            prof_.mark(StepProfile::kAbsorbK, l.kv_b.rows(h0 * per_head, nh * per_head).bytes());
            // query rows (head hh, token t) at dq_ + (hh * n_tok + t) * dw
            dq_.resize(static_cast<size_t>(n_rows * dw));
            row_kv_.resize(static_cast<size_t>(n_rows));
            row_kv_blocks_ = false;
            row_n_ctx_.resize(static_cast<size_t>(n_rows));
            pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
                for (int64_t t = t0; t < t1; ++t) {
                    const int32_t pos = batch.pos[static_cast<size_t>(t)];
                    const int64_t s = bs.tok_seq[static_cast<size_t>(t)];
                    for (int64_t hh = 0; hh < nh; ++hh) {
                        const float* qh = q_.data() + t * n_q + (h0 + hh) * c.qk_head_dim();
                        const int64_t r = hh * n_tok + t;
                        float* dst = dq_.data() + r * dw;
                        std::fill_n(dst, v, 0.0f);
                        std::copy_n(qh, nope + rope_dim, dst + v);
                        rope(dst + v + nope, rope_dim, rope_cs_.data() + t * rope_dim, false);
                        row_kv_[static_cast<size_t>(r)] = dkv_.data() + (hh * total + bs.at[static_cast<size_t>(s)]) * dw;
                        row_n_ctx_[static_cast<size_t>(r)] = pos + 1;
                    }
                }
            });
            dout_.resize(static_cast<size_t>(n_rows * v));
            attend_rows(l, dq_.data(), n_rows, dw, v, dout_.data());
            pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
                for (int64_t t = t0; t < t1; ++t)
                    for (int64_t hh = 0; hh < nh; ++hh)
                        std::copy_n(dout_.data() + (hh * n_tok + t) * v, v, attn_.data() + (t * c.n_head + h0 + hh) * v);
            });
            prof_.mark(StepProfile::kAttnCore);
        }
    }

    // The batch's distinct sequences in order of first appearance, each with the number of its
    // cached positions the batch reads (its tokens' largest pos + 1) and where its positions
    // start when all are laid end to end; and each token's index into them.
    struct BatchSeqs {
        std::vector<int32_t> ids;
        std::vector<int64_t> n_ctx, at;  // at: [n_seqs + 1]
        std::vector<int64_t> tok_seq;
    };
    void find_batch_seqs(const Batch& batch) {
        BatchSeqs& bs = batch_seqs_;
        bs.ids.clear();
        bs.n_ctx.clear();
        bs.tok_seq.resize(batch.tokens.size());
        for (size_t t = 0; t < batch.tokens.size(); ++t) {
            // A batch holds few sequences: a linear search finds the token's.
            const auto s = static_cast<size_t>(std::find(bs.ids.begin(), bs.ids.end(), batch.seq[t]) - bs.ids.begin());
            if (s == bs.ids.size()) {
                bs.ids.push_back(batch.seq[t]);
                bs.n_ctx.push_back(0);
            }
            bs.n_ctx[s] = std::max<int64_t>(bs.n_ctx[s], batch.pos[t] + 1);
            bs.tok_seq[t] = static_cast<int64_t>(s);
        }
        bs.at.assign(bs.ids.size() + 1, 0);
        for (size_t s = 0; s < bs.ids.size(); ++s) bs.at[s + 1] = bs.at[s] + bs.n_ctx[s];
    }

    // Whether this batch runs the decompressed form (and, when it may, its sequences into
    // batch_seqs_ for attend_decompressed): as asked (LoadOptions::mla), or, on auto,
    // where it is faster. Per head, the absorbed form costs 2 nope rank multiply-adds per token
    // (W_uk^T q, W_uv o) plus (width + rank) per (token, cached position); the decompressed one
    // (nope + v) rank per cached position of the batch's sequences plus (dw + v) per (token,
    // position), dw = v + nope + rope as attend_decompressed lays its rows out.
    // - The float32 core is bound by those multiply-adds: decompress when that count is lower
    //   (at R1's sizes a prefill of n tokens after p cached ones gains when
    //   640 n (p + n / 2) > 131072 p: every prefill from an empty cache, chunks of 205+ tokens).
    //   So is the bf16 core on the vector units (cpu::GemmUnit::avx512): measured on a 2-core
    //   Zen 4, 4-layer R1, decompressed against absorbed prefills of 64 / 512 / 2048 tokens
    //   +1% / +1-2% / +4%.
    // - The tile core is not (its time goes to the per-score softmax and to streaming the packed
    //   cache, the same count in both forms), so there the gain is only the projections: one
    //   large product over the positions instead of a small one per head. Measured on the GPU
    //   benchmark machine's CPU (16 threads, 13-layer R1 UD-IQ1_S, docs/performance.md): 7%
    //   slower at a 512-token prefill, 5% faster at 2048. So: prefills from an empty or short
    //   cache (projection work no larger than the absorbed form's) of kDecompressMinTokens+.
    static constexpr int64_t kDecompressMinTokens = 1024;
    bool use_decompressed(const Batch& batch) {
        if (!decompressible_ || mla_ == MlaForm::kAbsorbed) return false;
        find_batch_seqs(batch);
        if (mla_ == MlaForm::kDecompressed) return true;
        const Config& c = c_;
        const double n_tok = static_cast<double>(batch.size()), n_pos = static_cast<double>(batch_seqs_.at.back());
        const double rank = static_cast<double>(c.kv_lora_rank), nope = static_cast<double>(c.qk_nope_head_dim);
        const double absorb_proj = n_tok * 2 * nope * rank, decompress_proj = n_pos * (nope + c.v_head_dim) * rank;
        if (bf16_attention(layers_.front()) && cpu::amx_available())
            return batch.size() >= kDecompressMinTokens && decompress_proj <= absorb_proj;
        double sum_ctx = 0;
        for (const int32_t pos : batch.pos) sum_ctx += pos + 1;
        const double v = static_cast<double>(c.v_head_dim), dw = v + nope + static_cast<double>(c.qk_rope_head_dim);
        return decompress_proj + sum_ctx * (dw + v) < absorb_proj + sum_ctx * static_cast<double>(c.cache_width() + c.kv_lora_rank);
    }

    // The attention core over query rows q ([n_rows, width]): row i attends to positions
    // [0, row_n_ctx_[i]) of the rows at row_kv_[i] ([*, width] f32, values their leading
    // `rank`; or, with row_kv_blocks_, a cache's blocks of them, cpu/attention.h) and writes o
    // ([n_rows, rank]). In bf16 where the layer allows (bf16_attention), else in float32.
    void attend_rows(const Layer& l, const float* q, int64_t n_rows, int64_t width, int64_t rank, float* o) {
        if (bf16_attention(l)) {
            // Rows that share cache rows (and so a packing of them) form one MlaSeq.
            mla_seqs_.clear();
            mla_row_seq_.resize(static_cast<size_t>(n_rows));
            for (int64_t i = 0; i < n_rows; ++i) {
                const void* kv = row_kv_[static_cast<size_t>(i)];
                const int64_t n_ctx = row_n_ctx_[static_cast<size_t>(i)];
                // Rows of one cache mostly come in runs: try the last one first.
                const auto same = [&](const cpu::MlaSeq& s) { return s.rows == kv || s.blocks == kv; };
                auto found = !mla_seqs_.empty() && same(mla_seqs_.back())
                                 ? mla_seqs_.end() - 1
                                 : std::find_if(mla_seqs_.begin(), mla_seqs_.end(), same);
                if (found == mla_seqs_.end())
                    found = mla_seqs_.insert(mla_seqs_.end(), row_kv_blocks_ ? cpu::MlaSeq{.blocks = static_cast<const uint16_t*>(kv)}
                                                                           : cpu::MlaSeq{.rows = static_cast<const float*>(kv)});
                found->n_ctx = std::max(found->n_ctx, n_ctx);
                mla_row_seq_[static_cast<size_t>(i)] = static_cast<int32_t>(found - mla_seqs_.begin());
            }
            cpu::MlaParams p;
            p.width = width;
            p.rank = rank;
            p.scale = kq_scale_;
            p.n_rows = n_rows;
            p.q = q;
            p.row_seq = mla_row_seq_.data();
            p.row_n_ctx = row_n_ctx_.data();
            p.seqs = mla_seqs_;
            p.o = o;
            cpu::mla_attention(pool_, p, mla_scratch_);
            return;
        }
        // Float32: runs of up to kRowBlock consecutive rows with the same cache rows (the heads
        // of one token in the absorbed form, the tokens of one head in the decompressed one)
        // are scored together, so each cache row is read once per run and reused from L1 by
        // every row of the run whose limit covers it.
        constexpr int64_t kRowBlock = kAttnRows;
        TANDEM_CHECK(!row_kv_blocks_);  // a cache keeps blocks only where every layer's attention is bf16
        runs_.clear();
        for (int64_t i = 0; i < n_rows;) {
            int64_t j = i + 1;
            while (j < n_rows && j - i < kRowBlock && row_kv_[static_cast<size_t>(j)] == row_kv_[static_cast<size_t>(i)]) ++j;
            runs_.emplace_back(i, j);
            i = j;
        }
        pool_.parallel_for(static_cast<int64_t>(runs_.size()), [&](int64_t r0, int64_t r1, int) {
            std::vector<float> p;  // [rows of the run][its longest limit]
            for (int64_t r = r0; r < r1; ++r) {
                const auto [i0, i1] = runs_[static_cast<size_t>(r)];
                const auto* kv = static_cast<const float*>(row_kv_[static_cast<size_t>(i0)]);  // keys, the values leading
                attend_float_run(q + i0 * width, i1 - i0, row_n_ctx_.data() + i0, kv, kv, width, width, rank, kq_scale_, p,
                                 o + i0 * rank);
            }
        });
    }

    // Whether attention over the cache runs in bf16 (cpu/attention.h, on the tile unit or the
    // vector units): where the CPU has either, unless every product must stay float32
    // (f32_activations) or the layer's latent projection (attn_kv_a_mqa, the cache's source)
    // is float32/float16: such models keep
    // float32 attention as they keep float32 products (cpu::gemm_applies); the transformers
    // fixtures of tests/python check them at 1e-3, which bf16 scores miss by ~5x.
    // NOTES: decided per layer from its weights, never from the batch, so that a token decoded
    // alone and the same token inside a prefill take the same arithmetic (in the same form).
    bool bf16_attention(const Layer& l) const {
        const GgmlType t = l.kv_a.type;
        return cpu::mla_attention_available() && !f32_activations_ && t != GgmlType::F32 && t != GgmlType::F16;
    }

    // Expert choice for one token from router logits: ids and weights (n_expert_used each).
    void route(const Layer& l, const float* logit, int32_t* ids, float* weights) const {
        const Config& c = c_;
        const int64_t n = c.n_expert, k = c.n_expert_used;
        std::vector<float> score(static_cast<size_t>(n)), choice(static_cast<size_t>(n));
        if (c.sigmoid_gating) {
            for (int64_t e = 0; e < n; ++e) score[static_cast<size_t>(e)] = 1.0f / (1.0f + std::exp(-logit[e]));
        } else {
            std::copy(logit, logit + n, score.begin());
            softmax(score.data(), n);
        }
        // The selection bias (V3's auxiliary-loss-free balancing) steers the choice only.
        for (int64_t e = 0; e < n; ++e)
            choice[static_cast<size_t>(e)] = score[static_cast<size_t>(e)] + (l.exp_probs_b.empty() ? 0.0f : l.exp_probs_b[static_cast<size_t>(e)]);
        if (c.n_group > 1) {
            // Group-limited routing: keep the n_group_used groups with the best group score
            // (V3: sum of the group's top two choice scores; V2: its best score).
            const int64_t per = n / c.n_group;
            std::vector<std::pair<float, int64_t>> groups;
            for (int64_t g = 0; g < c.n_group; ++g) {
                std::vector<float> s(choice.begin() + g * per, choice.begin() + (g + 1) * per);
                std::sort(s.begin(), s.end(), std::greater<>());
                const float gs = c.sigmoid_gating ? s[0] + (per > 1 ? s[1] : 0.0f) : s[0];
                groups.emplace_back(gs, g);
            }
            std::stable_sort(groups.begin(), groups.end(), [](auto& a, auto& b) { return a.first > b.first; });
            for (int64_t gi = c.n_group_used; gi < c.n_group; ++gi)
                for (int64_t e = groups[static_cast<size_t>(gi)].second * per; e < (groups[static_cast<size_t>(gi)].second + 1) * per; ++e)
                    choice[static_cast<size_t>(e)] = -INFINITY;
        }
        std::vector<int32_t> order(static_cast<size_t>(n));
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
            const float ca = choice[static_cast<size_t>(a)], cb = choice[static_cast<size_t>(b)];
            return ca > cb || (ca == cb && a < b);
        });
        float sum = 0;
        for (int64_t i = 0; i < k; ++i) {
            ids[i] = order[static_cast<size_t>(i)];
            weights[i] = score[static_cast<size_t>(ids[i])];
            sum += weights[i];
        }
        for (int64_t i = 0; i < k; ++i) {
            if (c.norm_topk) weights[i] /= sum + 1e-20f;
            weights[i] *= c.expert_weights_scale;
        }
    }

    // Routed experts plus shared experts; reads h_, writes y_.
    void moe(const Layer& l, int64_t n_tok) {
        const Config& c = c_;
        const int64_t k = c.n_expert_used;
        router_.resize(static_cast<size_t>(n_tok * c.n_expert));
        matmul(pool_, l.gate_inp, h_.data(), n_tok, router_.data(), c.n_expert, scratch_[0]);
        ids_.resize(static_cast<size_t>(n_tok * k));
        wts_.resize(ids_.size());
        pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
            for (int64_t t = t0; t < t1; ++t) route(l, router_.data() + t * c.n_expert, ids_.data() + t * k, wts_.data() + t * k);
        });
        prof_.mark(StepProfile::kRouter, l.gate_inp.bytes());

        // routed experts: gate, up, SiLU, down and the weighted sum, spread over all threads
        const cpu::ExpertWeights ew{l.gate_exps.type, l.up_exps.type, l.down_exps.type,
                                    l.gate_exps.data, l.up_exps.data, l.down_exps.data,
                                    l.gate_exps.row_bytes, l.up_exps.row_bytes, l.down_exps.row_bytes,
                                    c.n_embd, c.n_ff_exp, c.n_expert};
        const uint64_t shared_bytes = l.gate_sh.bytes() + l.up_sh.bytes() + l.down_sh.bytes();
        if (f32_activations_) {
            moe_out_.resize(static_cast<size_t>(n_tok * c.n_embd));
            moe_f32(l, n_tok);
            if (!l.gate_sh.empty()) swiglu_ffn(pool_, l.gate_sh, l.up_sh, l.down_sh, h_.data(), n_tok, y_.data(), g_, u_, scratch_[0]);
            else std::fill_n(y_.begin(), n_tok * c.n_embd, 0.0f);
            for (int64_t i = 0; i < n_tok * c.n_embd; ++i) y_[static_cast<size_t>(i)] += moe_out_[static_cast<size_t>(i)];
            prof_.mark(StepProfile::kExperts, (prof_.on ? routed_bytes(l) : 0) + shared_bytes);
            return;
        }
        // The shared experts run inside the routed step (cpu/moe.h: in the same jobs at decode).
        cpu::DenseExpert sh{};
        if (!l.gate_sh.empty())
            sh = {l.gate_sh.type, l.up_sh.type, l.down_sh.type, l.gate_sh.data, l.up_sh.data, l.down_sh.data,
                  l.gate_sh.row_stride, l.up_sh.row_stride, l.down_sh.row_stride, l.gate_sh.n_out};
        cpu::moe_forward(pool_, ew, h_.data(), n_tok, ids_.data(), wts_.data(), static_cast<int>(k), y_.data(), moe_scratch_,
                         l.gate_sh.empty() ? nullptr : &sh);
        prof_.mark(StepProfile::kExperts, (prof_.on ? routed_bytes(l) : 0) + shared_bytes);
    }

    // The bytes of the routed experts the current batch chose (ids_), each read once.
    uint64_t routed_bytes(const Layer& l) const {
        std::vector<uint8_t> used(static_cast<size_t>(c_.n_expert), 0);
        for (const int32_t e : ids_) used[static_cast<size_t>(e)] = 1;
        const uint64_t per_expert = (l.gate_exps.bytes() + l.up_exps.bytes() + l.down_exps.bytes()) / static_cast<uint64_t>(c_.n_expert);
        return per_expert * static_cast<uint64_t>(std::count(used.begin(), used.end(), uint8_t{1}));
    }

    // The routed experts with float32 activations (see QuantScratch): each active expert runs
    // over the tokens that chose it; writes moe_out_.
    void moe_f32(const Layer& l, int64_t n_tok) {
        const Config& c = c_;
        const int64_t k = c.n_expert_used;
        std::fill(moe_out_.begin(), moe_out_.end(), 0.0f);
        std::vector<float> xe, d;
        for (int64_t e = 0; e < c.n_expert; ++e) {
            std::vector<std::pair<int64_t, float>> toks;
            for (int64_t i = 0; i < n_tok * k; ++i)
                if (ids_[static_cast<size_t>(i)] == e) toks.emplace_back(i / k, wts_[static_cast<size_t>(i)]);
            if (toks.empty()) continue;
            const int64_t m = static_cast<int64_t>(toks.size());
            xe.resize(static_cast<size_t>(m * c.n_embd));
            for (int64_t i = 0; i < m; ++i) std::copy(h(toks[static_cast<size_t>(i)].first), h(toks[static_cast<size_t>(i)].first) + c.n_embd, xe.data() + i * c.n_embd);
            d.resize(static_cast<size_t>(m * c.n_embd));
            swiglu_ffn(pool_, l.gate_exps.expert(e), l.up_exps.expert(e), l.down_exps.expert(e), xe.data(), m, d.data(),
                       g_, u_, scratch_[0]);
            for (int64_t i = 0; i < m; ++i) {
                const auto [t, w] = toks[static_cast<size_t>(i)];
                for (int64_t j = 0; j < c.n_embd; ++j) moe_out_[static_cast<size_t>(t * c.n_embd + j)] += w * d[static_cast<size_t>(i * c.n_embd + j)];
            }
        }
    }

    cpu::ThreadPool& pool_;
    Config c_;
    bool f32_activations_;
    Mat token_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<Layer> layers_;
    std::vector<float> inv_freq_;
    float kq_scale_ = 1.0f;
    uint64_t bytes_per_token_ = 0;
    // Step buffers, grown to the largest batch seen.
    std::vector<float> x_, h_, y_, q_, cq_, kva_, qcat_, olat_, attn_, g_, u_, router_, wts_, moe_out_;
    StepProfile prof_;
    cpu::MoeScratch moe_scratch_;
    // attend_rows: each query row's cache rows and limit, the bf16 core's sequences (one per
    // distinct cache) and each row's index into them, the float core's runs of rows.
    std::vector<const void*> row_kv_;  // f32 rows, or a cache's blocks where row_kv_blocks_
    bool row_kv_blocks_ = false;
    std::vector<int32_t> row_n_ctx_;
    std::vector<cpu::MlaSeq> mla_seqs_;
    std::vector<int32_t> mla_row_seq_;
    std::vector<std::pair<int64_t, int64_t>> runs_;
    cpu::MlaScratch mla_scratch_;
    // attend_decompressed: latent rows, the cache row of each position, decompressed keys and
    // values, rows and queries of a head block, its output.
    BatchSeqs batch_seqs_;
    Batch out_batch_;                // forward's last layer: the tokens that want logits
    std::vector<float> ckv_, kpe_, dec_, dkv_, dq_, dout_;  // attend_decompressed
    std::vector<float> rope_cs_;  // attention: the batch's rope angles, [n_tok][rope_dim / 2][2]
    MlaForm mla_ = MlaForm::kAuto;
    bool decompressible_ = false;  // every layer has attn_kv_b (W_uk and W_uv as rows)
    bool decompress_ = false;      // the current batch runs the decompressed form
    std::vector<int32_t> ids_;
    std::vector<QuantScratch> scratch_;  // one per pool thread
};

}  // namespace

std::unique_ptr<Model> load_deepseek2(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt) {
    return std::make_unique<DeepSeek2>(file, pool, opt);
}

}  // namespace tandem::model
