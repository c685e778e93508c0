// Hugging Face tokenizer.json -> GGUF tokenizer metadata.
//
// Sets the tokenizer.ggml.* keys the way llama.cpp's convert_hf_to_gguf.py does for a
// byte-level BPE model (its get_vocab_base plus gguf-py's SpecialVocab): the token list in id
// order with added tokens in their slots and "[PAD<id>]" UNUSED fillers for ids no token uses,
// token types (added tokens CONTROL when marked special or shaped like "<|...|>"/"<｜...｜>",
// otherwise USER_DEFINED; the rest NORMAL), merges as "left right" strings, and from
// tokenizer_config.json beside the file (when present) the bos/eos/pad ids, add_bos/add_eos
// and the chat template.
#pragma once

#include <cstdint>
#include <string>

namespace tandem::gguf {
class Metadata;
}

namespace tandem::text {

struct HfVocabOptions {
    std::string pre;         // tokenizer.ggml.pre, e.g. "deepseek-v3" (required)
    int64_t vocab_size = 0;  // pad the token list to this size (a model's n_vocab); 0 = as is
};

// Throws tandem::Error naming the file and the field when the tokenizer is not byte-level BPE
// or a field is malformed.
void hf_tokenizer_to_gguf_metadata(const std::string& tokenizer_json_path,
                                   const HfVocabOptions& opts, gguf::Metadata& md);

}  // namespace tandem::text
