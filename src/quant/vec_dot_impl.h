// Internal: the per-ISA kernel tables behind vec_dot_fn (vec_dot.cpp). Each returns nullptr
// for a type it has no kernel for.
#pragma once

#include "quant/vec_dot.h"

namespace tandem::quant {

VecDotFn scalar_kernel(GgmlType type);       // vec_dot_scalar.cpp: every format
VecDotFn avx2_kernel(GgmlType type);         // vec_dot_avx2.cpp
VecDotRowsFn avx2_rows_kernel(GgmlType type);
VecDotFn avx512vnni_kernel(GgmlType type);   // vec_dot_avx512.cpp
VecDotRowsFn avx512vnni_rows_kernel(GgmlType type);
VecDotBlockFn avx512vnni_block_kernel(GgmlType type);
VecDotFn avx512vbmi_kernel(GgmlType type);   // vec_dot_avx512vbmi.cpp: the formats VPERMB speeds up
VecDotRowsFn avx512vbmi_rows_kernel(GgmlType type);

// Whether the AVX-512 path takes those kernels: the CPU has AVX512-VBMI, unless TANDEM_VBMI=0
// (environment; the tests run both).
bool vbmi_kernels();

// Whether the AVX-512 one-row kernels of the grid formats (IQ1_S_U2's dot_iq1su2_row and
// dot_grid_row, simd_kernels.h) form each block's float factor in their loop (AMD) or 16 blocks
// at a time (grid_factors: Intel, where the vector ports are the bound); both give the same bits.
// Q4_0 and Q5_0 take the 256-bit kernel (with a several-rows form) in the inline form and the
// two-blocks-per-zmm one with its factors 16 at a time in the chunked form (equal within rounding).
// TANDEM_BLOCK_FACTORS=inline|chunked (environment) chooses instead of the CPU's vendor.
bool inline_block_factors();

}  // namespace tandem::quant
