// ggml tensor types as stored in GGUF files: ids, block sizes and bytes per block.
//
// The ids and sizes are facts of the format (ggml.h / the `gguf` Python package's
// GGML_QUANT_SIZES); tests/python/test_types.py checks this table against that package.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace tandem {

enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    // tandem's own in-memory layouts, never read from or written to a file (ids far above
    // ggml's): see quant/repack.h.
    IQ1_S_U2 = 0x10000,
    IQ1_M_U2 = 0x10001,
    IQ2_XXS_U3 = 0x10002,
    IQ3_XXS_U4 = 0x10003,
    Q8_K_U2 = 0x10004,   // activations for IQ1_S_U2, IQ2_XXS_U3: Q8_K in their weight order (quant/blocks.h)
    Q8_K_U16 = 0x10005,  // activations for IQ1_M_U2, Q2_K_U16, Q3_K_U16: per 16-weight group
    Q2_K_U16 = 0x10006,
    Q3_K_U16 = 0x10007,
};

struct GgmlTypeTraits {
    GgmlType type;
    std::string_view name;    // as ggml and the gguf package spell it, e.g. "IQ1_S"
    uint32_t block_size;      // elements per block
    uint32_t type_size;       // bytes per block
    bool quantized;
};

// Traits of a type id read from a file; nullopt when the id is unknown (or retired, 4/5/31-33)
// or one of tandem's in-memory layouts.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type_id);
const GgmlTypeTraits& ggml_traits(GgmlType type);
std::string_view ggml_type_name(GgmlType type);
std::optional<GgmlType> ggml_type_from_name(std::string_view name);  // case-insensitive; file types only

// Every type a file may hold, in id order (not the in-memory layouts).
std::span<const GgmlTypeTraits> ggml_all_types();

// Bits per weight, for human summaries.
inline double ggml_bits_per_weight(const GgmlTypeTraits& t) {
    return 8.0 * t.type_size / t.block_size;
}

}  // namespace tandem
