// The lookup tables of the IQ formats (grids, sign patterns, non-linear values), generated
// from the gguf Python package by tools/quant_gen_grids.py; see iq_grids.inc.
#pragma once

#include <cstdint>

namespace tandem::quant {

#include "quant/iq_grids.inc"

}  // namespace tandem::quant
