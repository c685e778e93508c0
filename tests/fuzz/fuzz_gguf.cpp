// libFuzzer target over the GGUF parser: any input must parse or throw tandem::Error, never
// crash, leak or read out of bounds (built with ASan+UBSan by the `fuzz` preset).
#include <cstddef>
#include <cstdint>

#include "core/check.h"
#include "gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const tandem::gguf::Shard s = tandem::gguf::parse({data, size}, "fuzz.gguf");
        // Touch what a loader would touch: metadata getters and every tensor's bytes.
        for (const auto& [key, value] : s.metadata.entries()) (void)s.metadata.find(key);
        volatile uint8_t sink = 0;
        for (const auto& t : s.tensors)
            if (t.n_bytes) sink = sink ^ t.data[0] ^ t.data[t.n_bytes - 1];
        (void)sink;
    } catch (const tandem::Error&) {
    }
    return 0;
}
