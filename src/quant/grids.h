// The lookup tables of the IQ formats (grids, sign patterns, non-linear values), generated
// from the gguf Python package by tools/quant_gen_grids.py; see iq_grids.inc.
#pragma once

#include <array>
#include <cstdint>

namespace tandem::quant {

#include "quant/iq_grids.inc"

// kIq1sGrid with every value + 1: bytes u in {0, 1, 2}, the unsigned operand the kernels
// multiply (IQ1_S, IQ1_M) and the 2-bit values of IQ1_S_U2 (quant/repack.h).
constexpr std::array<uint64_t, 2048> make_iq1s_grid_u() {
    std::array<uint64_t, 2048> t{};
    for (size_t i = 0; i < t.size(); ++i)
        for (int j = 0; j < 8; ++j) {
            const auto v = static_cast<uint8_t>(static_cast<int8_t>(kIq1sGrid[i] >> (8 * j)) + 1);
            t[i] |= uint64_t{v} << (8 * j);
        }
    return t;
}
alignas(64) inline constexpr std::array<uint64_t, 2048> kIq1sGridU = make_iq1s_grid_u();

}  // namespace tandem::quant
