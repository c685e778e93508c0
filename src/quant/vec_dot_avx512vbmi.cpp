// AVX-512 kernels that use AVX512-VBMI (VPERMB): simd_kernels.h compiled with VBMI enabled
// (TANDEM_KERNELS_VBMI), for the formats whose 2-bit fields it unpacks in fewer uops or off port 0. Reached
// only through vec_dot_fn after CPUID says the CPU has AVX-512 VNNI and VBMI (Ice Lake, Sapphire
// Rapids, Zen 4 on); as vec_dot_avx512.cpp, every header is included before the target pragma.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/unpack.h"
#include "quant/vec_dot_impl.h"

#define TANDEM_KERNELS_VBMI 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "quant/simd_kernels.h"

namespace tandem::quant {
namespace {
constexpr Isa kI = Isa::Avx512Vnni;
// Per 64 weights (kernel/ on one Zen 4 thread, block cycles, Intel form): Q2_K_U16 three shifts
// and masks become VPERMBs (20 -> 18 vector uops; 21.7-22.3 -> 20.5), IQ2_XXS_U3 a shift, a mask
// and a VPSHUFB become one VPERMB (24 -> 18; 24.9 -> 23.7), IQ1_S_U2 three shifts and four
// VPTERNLOGD become three VPERMB and a VPANDD (18 -> 15, port-0-only 9 -> 6; 17.3-17.6 -> 14.3-14.8),
// IQ1_M_U2 three shifts become VPERMBs (the same 23 uops, port-0-only 11 -> 8; 19.7 -> 19.0).
VecDotFn vbmi_table(GgmlType type) {
    const bool inline_factors = inline_block_factors();
    switch (type) {
        case GgmlType::IQ1_S_U2: return inline_factors ? dot_iq1su2_row<kI, true> : dot_iq1su2_row<kI, false>;
        case GgmlType::IQ1_M_U2: return inline_factors ? dot_iq1mu2_row<kI, true> : dot_iq1mu2_row<kI, false>;
        case GgmlType::Q2_K_U16: return inline_factors ? dot_q2ku16_row<kI, true> : dot_q2ku16_row<kI, false>;
        case GgmlType::IQ2_XXS_U3: return inline_factors ? dot_iq2xxsu3_row<kI, true> : dot_iq2xxsu3_row<kI, false>;
        case GgmlType::Q3_K_U16: return inline_factors ? dot_q3ku16_row<kI, true> : dot_q3ku16_row<kI, false>;
        default: return nullptr;
    }
}
VecDotRowsFn vbmi_rows_table(GgmlType type) {
    if (type == GgmlType::IQ1_S_U2) return dot_iq1su2_rows<kI>;
    if (type == GgmlType::IQ1_M_U2) return dot_iq1mu2_rows<kI>;
    if (type == GgmlType::Q2_K_U16) return dot_q2ku16_rows<kI>;
    if (type == GgmlType::Q3_K_U16) return dot_q3ku16_rows<kI>;
    if (type == GgmlType::IQ2_XXS_U3) return dot_iq2xxsu3_rows<kI>;
    return nullptr;
}
}  // namespace
}  // namespace tandem::quant
#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace tandem::quant {

VecDotFn avx512vbmi_kernel(GgmlType type) { return vbmi_table(type); }
VecDotRowsFn avx512vbmi_rows_kernel(GgmlType type) { return vbmi_rows_table(type); }

}  // namespace tandem::quant
