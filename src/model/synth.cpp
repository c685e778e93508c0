#include "model/synth.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

#include "core/check.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "text/hf_vocab.h"

namespace tandem::model {

SynthShape synth_preset(const std::string& preset) {
    SynthShape s;
    if (preset == "r1") {
        // DeepSeek-R1 / V3 (config.json of deepseek-ai/DeepSeek-R1).
        s.name = "DeepSeek-R1 (synthetic)";
        s.n_layer = 61, s.n_layer_dense = 3;
        s.n_embd = 7168, s.n_ff = 18432, s.n_ff_exp = 2048;
        s.n_head = 128, s.q_lora_rank = 1536, s.kv_lora_rank = 512;
        s.qk_nope_head_dim = 128, s.qk_rope_head_dim = 64, s.v_head_dim = 128;
        s.n_expert = 256, s.n_expert_used = 8, s.n_expert_shared = 1;
        s.n_expert_groups = 8, s.n_group_used = 4;
        s.n_vocab = 129280, s.n_ctx_train = 163840;
        s.sigmoid_gating = true, s.norm_topk = true, s.expert_weights_scale = 2.5f;
        s.rope_yarn_factor = 40.0f, s.rope_yarn_orig_ctx = 4096, s.rope_yarn_log_mul = 0.1f;
    } else if (preset == "v2-lite") {
        // DeepSeek-V2-Lite: no q low-rank, softmax gating, 2 shared experts.
        s.name = "DeepSeek-V2-Lite (synthetic)";
        s.n_layer = 27, s.n_layer_dense = 1;
        s.n_embd = 2048, s.n_ff = 10944, s.n_ff_exp = 1408;
        s.n_head = 16, s.q_lora_rank = 0, s.kv_lora_rank = 512;
        s.qk_nope_head_dim = 128, s.qk_rope_head_dim = 64, s.v_head_dim = 128;
        s.n_expert = 64, s.n_expert_used = 6, s.n_expert_shared = 2;
        s.n_vocab = 102400, s.n_ctx_train = 163840;
        s.sigmoid_gating = false, s.norm_topk = false, s.expert_weights_scale = 1.0f;
        s.rope_yarn_factor = 40.0f, s.rope_yarn_orig_ctx = 4096, s.rope_yarn_log_mul = 0.0707f;
    } else if (preset == "tiny") {
        // R1's structure at toy sizes; dimensions stay multiples of 256 where R1's are, so the
        // K and IQ recipes apply unchanged.
        s.name = "tiny deepseek2 (synthetic)";
        s.n_layer = 3, s.n_layer_dense = 1;
        s.n_embd = 256, s.n_ff = 512, s.n_ff_exp = 256;
        s.n_head = 4, s.q_lora_rank = 256, s.kv_lora_rank = 256;
        s.qk_nope_head_dim = 32, s.qk_rope_head_dim = 16, s.v_head_dim = 32;
        s.n_expert = 8, s.n_expert_used = 2, s.n_expert_shared = 1;
        s.n_expert_groups = 4, s.n_group_used = 2;
        s.n_vocab = 512, s.n_ctx_train = 4096;
        s.sigmoid_gating = true, s.norm_topk = true, s.expert_weights_scale = 2.5f;
        s.rope_yarn_factor = 4.0f, s.rope_yarn_orig_ctx = 1024, s.rope_yarn_log_mul = 0.1f;
    } else {
        fail("unknown preset '{}' (expected one of: r1, v2-lite, tiny)", preset);
    }
    return s;
}

std::vector<std::string> synth_preset_names() { return {"r1", "v2-lite", "tiny"}; }
std::vector<std::string> synth_recipe_names() {
    return {"ud-iq1_s", "ud-iq1_m", "ud-iq2_xxs", "ud-q2_k_xl", "q4_k_m", "q8_0", "f16", "f32"};
}

namespace {

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// The recipe's choice before the block-size fallback.
GgmlType recipe_type(const std::string& recipe, const std::string& name, int64_t layer, const SynthShape& shape) {
    using T = GgmlType;
    if (name.ends_with("_norm.weight") || contains(name, "ffn_gate_inp") || contains(name, "exp_probs_b"))
        return T::F32;
    if (recipe == "f32") return T::F32;
    if (recipe == "f16") return T::F16;
    if (recipe == "q8_0") return T::Q8_0;

    const bool routed = contains(name, "_exps");
    const bool down = contains(name, "ffn_down");
    const int64_t moe_idx = layer - shape.n_layer_dense;  // index among MoE layers
    // Unsloth's dynamic quants keep everything but the routed experts at 4-6 bits: attention
    // and the shared expert are a few percent of the bytes and matter most for quality.
    if (!routed) {
        if (name.starts_with("output.")) return T::Q6_K;
        if (name.starts_with("token_embd")) return T::Q4_K;
        if (contains(name, "attn_kv_b") || contains(name, "attn_kv_a_mqa") || down) return T::Q6_K;
        return T::Q4_K;
    }
    if (recipe == "ud-iq1_s") {
        // gate/up at 1.56 bits; the down projections of the first MoE layers at IQ2_XXS.
        if (down && moe_idx < std::max<int64_t>(1, (shape.n_layer - shape.n_layer_dense) / 8)) return T::IQ2_XXS;
        return T::IQ1_S;
    }
    if (recipe == "ud-iq1_m") return down ? T::IQ2_XXS : T::IQ1_M;  // gate/up at 1.75 bits, down at 2.06
    if (recipe == "ud-iq2_xxs") {
        // 2.06 bits; the down projections of the first MoE layers at 2.6 (Q2_K).
        if (down && moe_idx < std::max<int64_t>(1, (shape.n_layer - shape.n_layer_dense) / 8)) return T::Q2_K;
        return T::IQ2_XXS;
    }
    if (recipe == "ud-q2_k_xl") return down ? T::Q3_K : T::Q2_K;
    if (recipe == "q4_k_m") return down ? T::Q6_K : T::Q4_K;
    fail("unknown recipe '{}' (expected one of: ud-iq1_s, ud-iq1_m, ud-iq2_xxs, ud-q2_k_xl, q4_k_m, q8_0, f16, f32)", recipe);
}

// 64-bit FNV-1a, to give each tensor its own random stream.
uint64_t hash_name(std::string_view s) {
    uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
    return h;
}

// Fills a tensor with random valid blocks, in parallel chunks of whole blocks. Each chunk has
// its own seed, so the contents do not depend on the number of threads.
void fill_tensor(GgmlType type, std::span<uint8_t> out, uint64_t seed, float scale) {
    const auto& t = ggml_traits(type);
    constexpr uint64_t kChunkBytes = 8u << 20;
    const uint64_t blocks_per_chunk = std::max<uint64_t>(1, kChunkBytes / t.type_size);
    const uint64_t n_blocks = out.size() / t.type_size;
    const uint64_t n_chunks = (n_blocks + blocks_per_chunk - 1) / blocks_per_chunk;
    const unsigned n_threads = static_cast<unsigned>(std::min<uint64_t>(n_chunks, std::max(1u, std::thread::hardware_concurrency())));
    auto work = [&](unsigned tid) {
        for (uint64_t c = tid; c < n_chunks; c += n_threads) {
            const uint64_t b0 = c * blocks_per_chunk, b1 = std::min(n_blocks, b0 + blocks_per_chunk);
            quant::fill_random(type, out.subspan(b0 * t.type_size, (b1 - b0) * t.type_size), seed + c * 0x9e3779b97f4a7c15ull, scale);
        }
    };
    if (n_threads <= 1) {
        work(0);
        return;
    }
    std::vector<std::jthread> threads;
    for (unsigned i = 0; i < n_threads; ++i) threads.emplace_back(work, i);
}

// Norm weights near 1, as trained models have them.
void fill_norm(std::span<uint8_t> out, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(0.9f, 1.1f);
    for (size_t i = 0; i + 4 <= out.size(); i += 4) {
        const float v = u(rng);
        std::memcpy(out.data() + i, &v, 4);
    }
}

}  // namespace

GgmlType synth_tensor_type(const std::string& recipe, const std::string& tensor_name, int64_t ne0, int64_t layer,
                           const SynthShape& shape) {
    const GgmlType t = recipe_type(recipe, tensor_name, layer, shape);
    if (ne0 % ggml_traits(t).block_size == 0) return t;
    return GgmlType::Q8_0;  // e.g. V2-Lite's 1408-wide expert down projections
}

gguf::Writer synth_writer(const SynthOptions& opt, SynthShape* shape_out) {
    using gguf::Value;
    SynthShape s = synth_preset(opt.preset);
    if (opt.n_layer >= 0) s.n_layer = opt.n_layer;
    if (opt.n_layer_dense >= 0) s.n_layer_dense = opt.n_layer_dense;
    if (opt.n_expert >= 0) s.n_expert = opt.n_expert;
    if (s.n_layer < 1 || s.n_layer > 1000) fail("--layers {} is out of range (1 to 1000)", s.n_layer);
    if (s.n_layer_dense < 0 || s.n_layer_dense > s.n_layer)
        fail("--dense {} must be between 0 and the layer count {}", s.n_layer_dense, s.n_layer);
    if (s.n_expert < s.n_expert_used || s.n_expert > 4096)
        fail("--experts {} must be between the experts used per token ({}) and 4096", s.n_expert, s.n_expert_used);
    if (s.n_expert_groups > 0 && s.n_expert % s.n_expert_groups != 0) {
        // Group-limited routing needs whole groups; fewer experts than R1's drop the group keys.
        s.n_expert_groups = 0, s.n_group_used = 0;
    }
    // Recipes are validated up front, before any work.
    (void)recipe_type(opt.recipe, "blk.0.ffn_up_exps.weight", 0, s);

    gguf::Writer w;
    const std::string a = "deepseek2.";
    w.set("general.architecture", Value::string("deepseek2"));
    w.set("general.name", Value::string(s.name));
    w.set("general.file_type_recipe", Value::string(opt.recipe));
    w.set(a + "block_count", Value::u32(static_cast<uint32_t>(s.n_layer)));
    w.set(a + "context_length", Value::u32(static_cast<uint32_t>(s.n_ctx_train)));
    w.set(a + "embedding_length", Value::u32(static_cast<uint32_t>(s.n_embd)));
    w.set(a + "feed_forward_length", Value::u32(static_cast<uint32_t>(s.n_ff)));
    w.set(a + "attention.head_count", Value::u32(static_cast<uint32_t>(s.n_head)));
    w.set(a + "attention.head_count_kv", Value::u32(static_cast<uint32_t>(s.n_head)));
    w.set(a + "rope.freq_base", Value::f32(s.rope_freq_base));
    w.set(a + "attention.layer_norm_rms_epsilon", Value::f32(s.rms_eps));
    w.set(a + "expert_used_count", Value::u32(static_cast<uint32_t>(s.n_expert_used)));
    w.set(a + "leading_dense_block_count", Value::u32(static_cast<uint32_t>(s.n_layer_dense)));
    if (s.q_lora_rank > 0) w.set(a + "attention.q_lora_rank", Value::u32(static_cast<uint32_t>(s.q_lora_rank)));
    w.set(a + "attention.kv_lora_rank", Value::u32(static_cast<uint32_t>(s.kv_lora_rank)));
    w.set(a + "attention.key_length", Value::u32(static_cast<uint32_t>(s.qk_nope_head_dim + s.qk_rope_head_dim)));
    w.set(a + "attention.value_length", Value::u32(static_cast<uint32_t>(s.v_head_dim)));
    w.set(a + "expert_feed_forward_length", Value::u32(static_cast<uint32_t>(s.n_ff_exp)));
    w.set(a + "expert_count", Value::u32(static_cast<uint32_t>(s.n_expert)));
    w.set(a + "expert_shared_count", Value::u32(static_cast<uint32_t>(s.n_expert_shared)));
    w.set(a + "expert_weights_scale", Value::f32(s.expert_weights_scale));
    w.set(a + "expert_weights_norm", Value::boolean(s.norm_topk));
    w.set(a + "expert_gating_func", Value::u32(s.sigmoid_gating ? 2 : 1));  // 1 softmax, 2 sigmoid
    if (s.n_expert_groups > 0) {
        w.set(a + "expert_group_count", Value::u32(static_cast<uint32_t>(s.n_expert_groups)));
        w.set(a + "expert_group_used_count", Value::u32(static_cast<uint32_t>(s.n_group_used)));
    }
    w.set(a + "rope.dimension_count", Value::u32(static_cast<uint32_t>(s.qk_rope_head_dim)));
    if (s.rope_yarn_factor > 0) {
        w.set(a + "rope.scaling.type", Value::string("yarn"));
        w.set(a + "rope.scaling.factor", Value::f32(s.rope_yarn_factor));
        w.set(a + "rope.scaling.original_context_length", Value::u32(static_cast<uint32_t>(s.rope_yarn_orig_ctx)));
        w.set(a + "rope.scaling.yarn_log_multiplier", Value::f32(s.rope_yarn_log_mul));
    }

    if (!opt.vocab_json.empty()) {
        text::HfVocabOptions vo;
        vo.pre = opt.vocab_pre;
        text::hf_tokenizer_to_gguf_metadata(opt.vocab_json, vo, w.metadata());
        s.n_vocab = static_cast<int64_t>(w.metadata().get_strings("tokenizer.ggml.tokens").size());
    } else {
        // A plain byte-level vocabulary of n_vocab tokens, so the file is self-contained.
        std::vector<std::string> tokens;
        for (int64_t i = 0; i < s.n_vocab; ++i) tokens.push_back(fmt::format("<tok{}>", i));
        w.set("tokenizer.ggml.model", Value::string("none"));
        w.set("tokenizer.ggml.tokens", Value::strings(tokens));
    }
    w.set(a + "vocab_size", Value::u32(static_cast<uint32_t>(s.n_vocab)));

    const int64_t n_embd_head_qk = s.qk_nope_head_dim + s.qk_rope_head_dim;
    auto add = [&](const std::string& name, std::vector<int64_t> ne, int64_t layer) {
        const GgmlType type = synth_tensor_type(opt.recipe, name, ne[0], layer, s);
        const uint64_t seed = opt.seed ^ hash_name(name);
        if (name.ends_with("_norm.weight")) {
            w.add_tensor(name, type, std::move(ne), [seed](std::span<uint8_t> out) { fill_norm(out, seed); });
            return;
        }
        float scale = 1.0f / std::sqrt(static_cast<float>(ne[0]));
        if (name.starts_with("token_embd")) scale = 0.5f;
        if (contains(name, "exp_probs_b")) scale = 0.01f;
        w.add_tensor(name, type, std::move(ne),
                     [type, seed, scale](std::span<uint8_t> out) { fill_tensor(type, out, seed, scale); });
    };

    // Shapes in GGUF order [in, out(, experts)]: ne[0] is the input dimension.
    add("token_embd.weight", {s.n_embd, s.n_vocab}, -1);
    for (int64_t il = 0; il < s.n_layer; ++il) {
        const std::string p = fmt::format("blk.{}.", il);
        add(p + "attn_norm.weight", {s.n_embd}, il);
        if (s.q_lora_rank > 0) {
            add(p + "attn_q_a.weight", {s.n_embd, s.q_lora_rank}, il);
            add(p + "attn_q_a_norm.weight", {s.q_lora_rank}, il);
            add(p + "attn_q_b.weight", {s.q_lora_rank, s.n_head * n_embd_head_qk}, il);
        } else {
            add(p + "attn_q.weight", {s.n_embd, s.n_head * n_embd_head_qk}, il);
        }
        add(p + "attn_kv_a_mqa.weight", {s.n_embd, s.kv_lora_rank + s.qk_rope_head_dim}, il);
        add(p + "attn_kv_a_norm.weight", {s.kv_lora_rank}, il);
        add(p + "attn_kv_b.weight", {s.kv_lora_rank, s.n_head * (s.qk_nope_head_dim + s.v_head_dim)}, il);
        add(p + "attn_output.weight", {s.n_head * s.v_head_dim, s.n_embd}, il);
        add(p + "ffn_norm.weight", {s.n_embd}, il);
        if (il < s.n_layer_dense) {
            add(p + "ffn_gate.weight", {s.n_embd, s.n_ff}, il);
            add(p + "ffn_up.weight", {s.n_embd, s.n_ff}, il);
            add(p + "ffn_down.weight", {s.n_ff, s.n_embd}, il);
            continue;
        }
        add(p + "ffn_gate_inp.weight", {s.n_embd, s.n_expert}, il);
        if (s.sigmoid_gating) add(p + "exp_probs_b.bias", {s.n_expert}, il);
        add(p + "ffn_gate_exps.weight", {s.n_embd, s.n_ff_exp, s.n_expert}, il);
        add(p + "ffn_up_exps.weight", {s.n_embd, s.n_ff_exp, s.n_expert}, il);
        add(p + "ffn_down_exps.weight", {s.n_ff_exp, s.n_embd, s.n_expert}, il);
        if (s.n_expert_shared > 0) {
            const int64_t n_ff_sh = s.n_ff_exp * s.n_expert_shared;
            add(p + "ffn_gate_shexp.weight", {s.n_embd, n_ff_sh}, il);
            add(p + "ffn_up_shexp.weight", {s.n_embd, n_ff_sh}, il);
            add(p + "ffn_down_shexp.weight", {n_ff_sh, s.n_embd}, il);
        }
    }
    add("output_norm.weight", {s.n_embd}, -1);
    add("output.weight", {s.n_embd, s.n_vocab}, -1);
    if (shape_out) *shape_out = s;
    return w;
}

}  // namespace tandem::model
