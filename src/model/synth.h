// Synthetic models: random but valid weights at real shapes, for benchmarks and tests.
//
// The file is laid out exactly as llama.cpp's converter lays out a DeepSeek-V2/V3/R1 GGUF
// (tensor names, [in, out] GGUF shapes, `deepseek2.*` metadata), so everything that loads a
// real R1 file loads these, and speed measured on them is speed on the real thing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/types.h"
#include "gguf/writer.h"

namespace tandem::model {

// Shapes of a deepseek2-family model; also what the forward pass reads back from metadata.
struct SynthShape {
    std::string name;
    int64_t n_layer = 0;          // transformer blocks
    int64_t n_layer_dense = 0;    // leading blocks with a dense FFN instead of experts
    int64_t n_embd = 0;           // hidden size
    int64_t n_ff = 0;             // dense FFN width
    int64_t n_ff_exp = 0;         // routed/shared expert width
    int64_t n_head = 0;
    int64_t q_lora_rank = 0;      // 0: no low-rank q (V2-Lite)
    int64_t kv_lora_rank = 0;
    int64_t qk_nope_head_dim = 0;
    int64_t qk_rope_head_dim = 0;
    int64_t v_head_dim = 0;
    int64_t n_expert = 0;
    int64_t n_expert_used = 0;
    int64_t n_expert_shared = 0;
    int64_t n_expert_groups = 0;  // 0: no group-limited routing keys
    int64_t n_group_used = 0;
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    bool sigmoid_gating = true;   // V3/R1: sigmoid + exp_probs_b; V2: softmax
    bool norm_topk = true;
    float expert_weights_scale = 1.0f;
    float rope_freq_base = 10000.0f;
    float rope_yarn_factor = 0.0f;  // 0: no YaRN
    int64_t rope_yarn_orig_ctx = 0;
    float rope_yarn_log_mul = 0.0f;
    float rms_eps = 1e-6f;
};

// Presets: "r1" (DeepSeek-R1/V3 671B shapes), "v2-lite", "tiny" (a few MB, for tests).
SynthShape synth_preset(const std::string& preset);
std::vector<std::string> synth_preset_names();
std::vector<std::string> synth_recipe_names();

struct SynthOptions {
    std::string preset = "tiny";
    std::string recipe = "f32";   // ud-iq1_s, ud-iq1_m, ud-iq2_xxs, ud-q2_k_xl, q4_k_m, q8_0, f16, f32
    int64_t n_layer = -1;         // override; -1 keeps the preset's
    int64_t n_layer_dense = -1;
    int64_t n_expert = -1;
    std::string vocab_json;       // a Hugging Face tokenizer.json to take the vocabulary from
    std::string vocab_pre = "deepseek-v3";
    uint64_t seed = 1;
    int n_shards = 1;
};

// The type a tensor gets under a recipe; falls back to a 32-wide block type (Q8_0) when the
// tensor's first dimension is not a multiple of the chosen type's block size.
GgmlType synth_tensor_type(const std::string& recipe, const std::string& tensor_name, int64_t ne0,
                           int64_t layer, const SynthShape& shape);

// Builds the writer for a synthetic model (tensors are filled as they are written).
gguf::Writer synth_writer(const SynthOptions& opt, SynthShape* shape_out = nullptr);

}  // namespace tandem::model
