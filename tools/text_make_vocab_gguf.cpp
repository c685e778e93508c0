// text_make_vocab_gguf: a GGUF file holding only a tokenizer (no tensors), from a Hugging Face
// tokenizer.json, for tests of the tokenizer and of `tandem tokenize`.
//
//   text_make_vocab_gguf --tokenizer tokenizer.json --pre deepseek-v3 [--vocab-size N] --out F
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "gguf/writer.h"
#include "text/hf_vocab.h"

int main(int argc, char** argv) {
    std::string tokenizer, out;
    tandem::text::HfVocabOptions opts;
    auto usage = [] {
        std::fprintf(stderr,
                     "usage: text_make_vocab_gguf --tokenizer tokenizer.json --pre NAME "
                     "[--vocab-size N] --out FILE.gguf\n");
        return 2;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) return usage();
        const std::string v = argv[++i];
        if (a == "--tokenizer") {
            tokenizer = v;
        } else if (a == "--pre") {
            opts.pre = v;
        } else if (a == "--vocab-size") {
            opts.vocab_size = std::strtoll(v.c_str(), nullptr, 10);
        } else if (a == "--out") {
            out = v;
        } else {
            return usage();
        }
    }
    if (tokenizer.empty() || out.empty() || opts.pre.empty()) return usage();
    try {
        tandem::gguf::Writer w;
        w.set("general.architecture", tandem::gguf::Value::string("tokenizer-only"));
        tandem::text::hf_tokenizer_to_gguf_metadata(tokenizer, opts, w.metadata());
        w.write(out);
    } catch (const tandem::Error& e) {
        std::fprintf(stderr, "text_make_vocab_gguf: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
