#include "model/summary.h"

#include "core/check.h"
#include "core/units.h"
#include "quant/repack.h"

namespace tandem::model {

std::string_view component_name(Component c) {
    switch (c) {
        case Component::Embedding: return "embeddings";
        case Component::Attention: return "attention";
        case Component::DenseFfn: return "dense FFN";
        case Component::Router: return "router";
        case Component::SharedExperts: return "shared experts";
        case Component::RoutedExperts: return "routed experts";
        case Component::Norms: return "norms";
        case Component::Output: return "output";
        case Component::Other: return "other";
    }
    return "other";
}

Component classify_tensor(std::string_view name) {
    auto has = [&](std::string_view s) { return name.find(s) != std::string_view::npos; };
    if (name.starts_with("token_embd")) return Component::Embedding;
    if (name.starts_with("output_norm")) return Component::Norms;
    if (name.starts_with("output")) return Component::Output;
    if (has("_norm")) return Component::Norms;
    if (has("_exps")) return Component::RoutedExperts;
    if (has("_shexp")) return Component::SharedExperts;
    if (has("ffn_gate_inp") || has("exp_probs_b")) return Component::Router;
    if (has(".attn_")) return Component::Attention;
    if (has(".ffn_")) return Component::DenseFfn;
    return Component::Other;
}

namespace {

std::string value_text(const gguf::Value& v) {
    using gguf::ValueType;
    switch (v.type) {
        case ValueType::FLOAT32:
        case ValueType::FLOAT64: return fmt::format("{:g}", std::get<double>(v.data));
        case ValueType::BOOL: return std::get<bool>(v.data) ? "true" : "false";
        case ValueType::STRING: return std::get<std::string>(v.data);
        case ValueType::ARRAY: return fmt::format("[{} values]", std::get<std::vector<gguf::Value>>(v.data).size());
        case ValueType::INT8:
        case ValueType::INT16:
        case ValueType::INT32:
        case ValueType::INT64: return fmt::format("{}", std::get<int64_t>(v.data));
        default: return fmt::format("{}", std::get<uint64_t>(v.data));
    }
}

}  // namespace

Summary summarize(const gguf::File& file) {
    const gguf::Metadata& md = file.metadata();
    Summary s;
    s.architecture = md.string_or_none("general.architecture").value_or("unknown");
    s.name = md.string_or_none("general.name").value_or("");
    s.n_shards = static_cast<int>(file.shards().size());
    s.file_bytes = file.total_file_bytes();

    // Hyperparameters: the architecture's own keys, in the order the file stores them.
    const std::string prefix = s.architecture + ".";
    for (const auto& [key, value] : md.entries())
        if (key.starts_with(prefix) && value.type != gguf::ValueType::ARRAY)
            s.hyperparameters.emplace_back(key.substr(prefix.size()), value_text(value));

    s.tokenizer_model = md.string_or_none("tokenizer.ggml.model").value_or("");
    s.tokenizer_pre = md.string_or_none("tokenizer.ggml.pre").value_or("");
    if (const gguf::Value* tokens = md.find("tokenizer.ggml.tokens"); tokens && tokens->type == gguf::ValueType::ARRAY)
        s.vocab_size = std::get<std::vector<gguf::Value>>(tokens->data).size();

    s.n_expert = md.int_or(prefix + "expert_count", 0);
    s.n_expert_used = md.int_or(prefix + "expert_used_count", 0);

    uint64_t embd_row_bytes = 0;
    for (const auto& t : file.tensors()) {
        const std::string type(ggml_type_name(t.type));
        s.tensors_per_type[type] += 1;
        s.bytes_per_type[type] += t.n_bytes;
        s.n_params += t.n_elements;
        const Component c = classify_tensor(t.name);
        s.bytes_per_component[c] += t.n_bytes;
        if (c == Component::Embedding) embd_row_bytes = t.row_bytes();
        if (const auto to = quant::repacked_type(t.type); to && c == Component::RoutedExperts) {
            const uint64_t from_size = ggml_traits(t.type).type_size;
            s.repack_growth += t.n_bytes / from_size * (ggml_traits(*to).type_size - from_size);
            add_to_list(s.repacked_formats, type);
        }
    }
    s.n_tensors = file.tensors().size();

    uint64_t total = 0;
    for (const auto& [c, b] : s.bytes_per_component) total += b;
    const uint64_t routed = s.bytes_per_component[Component::RoutedExperts];
    const uint64_t embd = s.bytes_per_component[Component::Embedding];
    if (s.n_expert > 0 && s.n_expert_used > 0)
        s.active_expert_bytes_per_token = routed / static_cast<uint64_t>(s.n_expert) * static_cast<uint64_t>(s.n_expert_used);
    s.active_bytes_per_token = total - routed - embd + embd_row_bytes + s.active_expert_bytes_per_token;
    return s;
}

}  // namespace tandem::model
