// AVX2 dot-product kernels: simd_kernels.h compiled for the x86 baseline.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/unpack.h"
#include "quant/vec_dot_impl.h"
#include "quant/simd_kernels.h"

namespace tandem::quant {

VecDotFn avx2_kernel(GgmlType type) { return simd_kernel<Isa::Avx2>(type); }
VecDotRowsFn avx2_rows_kernel(GgmlType type) { return simd_rows_kernel<Isa::Avx2>(type); }

}  // namespace tandem::quant
