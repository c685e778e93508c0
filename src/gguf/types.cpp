#include "gguf/types.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "core/check.h"

namespace tandem {
namespace {

using T = GgmlType;
constexpr std::array kTypes = {
    GgmlTypeTraits{T::F32, "F32", 1, 4, false},          GgmlTypeTraits{T::F16, "F16", 1, 2, false},
    GgmlTypeTraits{T::Q4_0, "Q4_0", 32, 18, true},       GgmlTypeTraits{T::Q4_1, "Q4_1", 32, 20, true},
    GgmlTypeTraits{T::Q5_0, "Q5_0", 32, 22, true},       GgmlTypeTraits{T::Q5_1, "Q5_1", 32, 24, true},
    GgmlTypeTraits{T::Q8_0, "Q8_0", 32, 34, true},       GgmlTypeTraits{T::Q8_1, "Q8_1", 32, 40, true},
    GgmlTypeTraits{T::Q2_K, "Q2_K", 256, 84, true},      GgmlTypeTraits{T::Q3_K, "Q3_K", 256, 110, true},
    GgmlTypeTraits{T::Q4_K, "Q4_K", 256, 144, true},     GgmlTypeTraits{T::Q5_K, "Q5_K", 256, 176, true},
    GgmlTypeTraits{T::Q6_K, "Q6_K", 256, 210, true},     GgmlTypeTraits{T::Q8_K, "Q8_K", 256, 292, true},
    GgmlTypeTraits{T::IQ2_XXS, "IQ2_XXS", 256, 66, true}, GgmlTypeTraits{T::IQ2_XS, "IQ2_XS", 256, 74, true},
    GgmlTypeTraits{T::IQ3_XXS, "IQ3_XXS", 256, 98, true}, GgmlTypeTraits{T::IQ1_S, "IQ1_S", 256, 50, true},
    GgmlTypeTraits{T::IQ4_NL, "IQ4_NL", 32, 18, true},   GgmlTypeTraits{T::IQ3_S, "IQ3_S", 256, 110, true},
    GgmlTypeTraits{T::IQ2_S, "IQ2_S", 256, 82, true},    GgmlTypeTraits{T::IQ4_XS, "IQ4_XS", 256, 136, true},
    GgmlTypeTraits{T::I8, "I8", 1, 1, false},            GgmlTypeTraits{T::I16, "I16", 1, 2, false},
    GgmlTypeTraits{T::I32, "I32", 1, 4, false},          GgmlTypeTraits{T::I64, "I64", 1, 8, false},
    GgmlTypeTraits{T::F64, "F64", 1, 8, false},          GgmlTypeTraits{T::IQ1_M, "IQ1_M", 256, 56, true},
    GgmlTypeTraits{T::BF16, "BF16", 1, 2, false},        GgmlTypeTraits{T::TQ1_0, "TQ1_0", 256, 54, true},
    GgmlTypeTraits{T::TQ2_0, "TQ2_0", 256, 66, true},    GgmlTypeTraits{T::MXFP4, "MXFP4", 32, 17, true},
};
// In-memory layouts (quant/repack.h): known by ggml_traits, never read from or written to a file.
constexpr std::array kInternalTypes = {
    GgmlTypeTraits{T::IQ1_S_U2, "IQ1_S_U2", 256, 70, true},
    GgmlTypeTraits{T::IQ1_M_U2, "IQ1_M_U2", 256, 76, true},
    GgmlTypeTraits{T::IQ2_XXS_U3, "IQ2_XXS_U3", 256, 102, true},
    GgmlTypeTraits{T::IQ3_XXS_U4, "IQ3_XXS_U4", 256, 134, true},
    GgmlTypeTraits{T::Q8_K_U2, "Q8_K_U2", 256, 448, true},
    GgmlTypeTraits{T::Q8_K_U16, "Q8_K_U16", 256, 384, true},
    GgmlTypeTraits{T::Q2_K_U16, "Q2_K_U16", 256, 84, true},
    GgmlTypeTraits{T::Q3_K_U16, "Q3_K_U16", 256, 110, true},
};

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type_id) {
    for (const auto& t : kTypes)
        if (static_cast<uint32_t>(t.type) == type_id) return t;
    return std::nullopt;
}

const GgmlTypeTraits& ggml_traits(GgmlType type) {
    for (const auto& t : kTypes)
        if (t.type == type) return t;
    for (const auto& t : kInternalTypes)
        if (t.type == type) return t;
    fail("unknown ggml type id {}", static_cast<uint32_t>(type));
}

std::string_view ggml_type_name(GgmlType type) { return ggml_traits(type).name; }

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
    auto eq = [](std::string_view a, std::string_view b) {
        return std::ranges::equal(a, b, [](char x, char y) { return std::toupper(x) == std::toupper(y); });
    };
    for (const auto& t : kTypes)
        if (eq(t.name, name)) return t.type;
    return std::nullopt;
}

std::span<const GgmlTypeTraits> ggml_all_types() { return kTypes; }

}  // namespace tandem
