// AVX-512 VNNI dot-product kernels: simd_kernels.h compiled with AVX-512 enabled.
//
// Every header is included before the target pragma (see simd_kernels.h for why); only the
// kernel templates, which have internal linkage, are compiled with the wider target. This
// file is reached only through vec_dot_fn after CPUID says the CPU has AVX-512 VNNI.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/unpack.h"
#include "quant/vec_dot_impl.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
// NOTES: GCC 12's _mm512_undefined_epi32 (behind the gathers, extracti64x4, inserti64x4)
// is `__m512i __Y = __Y;`, which -W(maybe-)uninitialized reports once inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "quant/simd_kernels.h"

namespace tandem::quant {
namespace {
VecDotFn avx512_table(GgmlType type) { return simd_kernel<Isa::Avx512Vnni>(type); }
VecDotRowsFn avx512_rows_table(GgmlType type) { return simd_rows_kernel<Isa::Avx512Vnni>(type); }
VecDotBlockFn avx512_block_table(GgmlType type) { return simd_block_kernel<Isa::Avx512Vnni>(type); }
}  // namespace
}  // namespace tandem::quant
#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace tandem::quant {

VecDotFn avx512vnni_kernel(GgmlType type) { return avx512_table(type); }
VecDotRowsFn avx512vnni_rows_kernel(GgmlType type) { return avx512_rows_table(type); }
VecDotBlockFn avx512vnni_block_kernel(GgmlType type) { return avx512_block_table(type); }

}  // namespace tandem::quant
