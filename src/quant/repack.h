// In-memory layouts that trade bytes for cheaper kernels: a weight tensor read from a file is
// rewritten once, at load time, into a layout tandem's kernels read faster, holding exactly the
// same weights (each dequantizes to the same float32 values).
//
// IQ1_S -> IQ1_S_U2 (BlockIq1SU2, 70 bytes per 256 weights against 50): IQ1_S stores each run of
// 8 weights as an 11-bit index into a 2048-entry grid, and its dot kernel spends most of its
// time fetching the entries (32 gathered loads per block, on the same two vector ports as the
// arithmetic); IQ1_S_U2 stores the grid values themselves, 2 bits each. 40% more bytes for
// the routed experts, about half the instructions per block (docs/performance.md).
//
// IQ1_M -> IQ1_M_U2 (BlockIq1MU2, 76 bytes per 256 weights against 56): the same for IQ1_M,
// whose grid is IQ1_S's; the delta signs (one per 8 weights) become a bit mask.
//
// IQ2_XXS -> IQ2_XXS_U3 (BlockIq2XxsU3, 102 bytes per 256 weights against 66): IQ2_XXS's 8-bit
// grid indices (one per 8 weights, into 256 entries of the values 8, 25, 43) and 7-bit sign
// indices become a 2-bit magnitude code and a sign bit per weight: the grid gathers go, for
// 1.55x the bytes.
//
// IQ3_XXS -> IQ3_XXS_U4 (BlockIq3XxsU4, 134 bytes per 256 weights against 98): the same for
// IQ3_XXS (256 grid entries of 4 values from 8 magnitudes, a 7-bit sign index per 8 weights):
// a nibble per weight, its magnitude code and sign.
//
// Q2_K -> Q2_K_U16 (BlockQ2KU16, the same 84 bytes): the 2-bit values regrouped so that each
// 4-byte lane of a 64-byte chunk holds one 16-weight group (u16_position, IQ1_M_U2's order): a
// chunk is one VPDPBUSD against Q8_K_U16 activations and the group scales apply per lane,
// where Q2_K's order needs a VPMADDUBSW, a scale permute and a VPDPWSSD per 64 weights.
//
// Q3_K -> Q3_K_U16 (BlockQ3KU16, the same 110 bytes): the same for Q3_K (UD-Q2_K_XL's down
// experts), its high bits regrouped in that order too (chunk c's as one 64-bit mask).
#pragma once

#include <cstdint>
#include <optional>

#include "gguf/types.h"

namespace tandem::quant {

// The layout `type` is repacked into, if any.
std::optional<GgmlType> repacked_type(GgmlType type);

// Rewrites n_blocks blocks of `from` at src into repacked_type(from) at dst (buffers must not
// overlap). Throws for a type with no repacked layout.
void repack_blocks(GgmlType from, const void* src, void* dst, int64_t n_blocks);

}  // namespace tandem::quant
