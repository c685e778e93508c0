// Internal: the per-ISA kernel tables behind vec_dot_fn (vec_dot.cpp). Each returns nullptr
// for a type it has no kernel for.
#pragma once

#include "quant/vec_dot.h"

namespace tandem::quant {

VecDotFn scalar_kernel(GgmlType type);       // vec_dot_scalar.cpp: every format
VecDotFn avx2_kernel(GgmlType type);         // vec_dot_avx2.cpp
VecDotFn avx512vnni_kernel(GgmlType type);   // vec_dot_avx512.cpp
VecDotRowsFn avx512vnni_rows_kernel(GgmlType type);
VecDotBlockFn avx512vnni_block_kernel(GgmlType type);

}  // namespace tandem::quant
