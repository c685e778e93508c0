// What a model file holds, in the terms a user plans hardware with: hyperparameters, tokenizer,
// tensor types, bytes per component, and the bytes one decoded token must read.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace tandem::model {

enum class Component { Embedding, Attention, DenseFfn, Router, SharedExperts, RoutedExperts, Norms, Output, Other };
std::string_view component_name(Component c);

// Which component a tensor belongs to, from its GGUF name (llama.cpp's naming: token_embd,
// blk.N.attn_*, blk.N.ffn_*_exps, blk.N.ffn_*_shexp, blk.N.ffn_gate_inp, output, ...).
Component classify_tensor(std::string_view name);

struct Summary {
    std::string architecture;
    std::string name;
    std::vector<std::pair<std::string, std::string>> hyperparameters;  // label, value as text
    std::string tokenizer_model;  // tokenizer.ggml.model, e.g. "gpt2"
    std::string tokenizer_pre;    // tokenizer.ggml.pre, e.g. "deepseek-v3"
    uint64_t vocab_size = 0;
    uint64_t n_tensors = 0;
    uint64_t n_params = 0;
    uint64_t file_bytes = 0;
    int n_shards = 1;
    std::map<std::string, uint64_t> tensors_per_type;   // type name -> count
    std::map<std::string, uint64_t> bytes_per_type;     // type name -> bytes
    std::map<Component, uint64_t> bytes_per_component;
    int64_t n_expert = 0, n_expert_used = 0;
    // Bytes a decode step reads for one token: every weight except the routed experts and the
    // embedding table, one embedding row, and n_expert_used / n_expert of the routed experts.
    uint64_t active_bytes_per_token = 0;
    uint64_t active_expert_bytes_per_token = 0;
    // The routed experts in formats with a faster in-memory layout (quant/repack.h; --repack):
    // those formats ("IQ1_S, IQ2_XXS") and the bytes the layouts add.
    std::string repacked_formats;
    uint64_t repack_growth = 0;
};

Summary summarize(const gguf::File& file);

}  // namespace tandem::model
