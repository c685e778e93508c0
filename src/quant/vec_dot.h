// Dot products of a quantized weight row with activations quantized to 8-bit blocks.
//
// As in GGUF kernels, activations are quantized once per token (quantize_row into
// vec_dot_type(weight type): Q8_K for the 256-wide K/IQ/TQ formats, the same in the weights'
// order for the group-major repacked ones (Q8_K_U2: IQ1_S_U2, IQ2_XXS_U3; Q8_K_U16: IQ1_M_U2,
// Q2_K_U16, Q3_K_U16),
// Q8_0 for the 32-wide ones, F32 for the float formats) and every weight row is dotted against them in integer
// arithmetic. Activations must come from quantize_row: the SIMD kernels rely on |q| <= 127.
//
// Every format has a scalar reference (vec_dot_scalar.cpp); AVX2 and AVX-512 VNNI kernels
// exist for the formats in has_simd_kernel(). The instruction set is chosen once from CPUID
// (active_isa()); vec_dot_fn(type, isa) gives a specific one for tests and benchmarks.
#pragma once

#include <cstdint>
#include <string_view>

#include "gguf/types.h"

namespace tandem::quant {

enum class Isa { Scalar, Avx2, Avx512Vnni };

std::string_view isa_name(Isa isa);
// The best instruction set this CPU runs, read from CPUID. Throws tandem::Error below AVX2:
// the whole binary is compiled for an AVX2 baseline.
Isa detect_isa();
// detect_isa() once, at first use; TANDEM_ISA=scalar|avx2|avx512vnni (environment) lowers it.
Isa active_isa();

// Sum over n elements of weight row `w` (n / block_size blocks of `type`) times activation
// row `a` (blocks of vec_dot_type(type)). n is a multiple of the type's block size.
using VecDotFn = float (*)(const void* w, const void* a, int64_t n);

// The activation block type that pairs with a weight type.
GgmlType vec_dot_type(GgmlType type);
bool can_vec_dot(GgmlType type);
// True when `isa` has its own kernel for `type` (otherwise vec_dot_fn falls back to scalar).
bool has_simd_kernel(GgmlType type, Isa isa);
// The kernel for `type` on `isa` (scalar where that ISA has none). Throws for an unsupported
// type or an ISA this CPU lacks.
VecDotFn vec_dot_fn(GgmlType type, Isa isa);
// The kernel for `type` on active_isa().
VecDotFn vec_dot_fn(GgmlType type);

inline float vec_dot(GgmlType type, const void* w, const void* a, int64_t n) { return vec_dot_fn(type)(w, a, n); }

// One weight row against several activation rows: out[j] = dot(w, a[j], n) for j < n_act, bit
// for bit what the VecDotFn of the same type and ISA gives, but each weight block is unpacked
// once for all of them (the per-token path of a batch: a prompt's tokens routed to an expert).
using VecDotRowsFn = void (*)(const void* w, const void* const* a, int n_act, int64_t n, float* out);
// The several-rows kernel for `type` on `isa`, or nullptr where there is none (then call the
// VecDotFn once per row).
VecDotRowsFn vec_dot_rows_fn(GgmlType type, Isa isa);
VecDotRowsFn vec_dot_rows_fn(GgmlType type);  // on active_isa()

// A block of weight rows (row r at w + r * row_bytes, n_rows <= kVecDotBlockRows) against a block
// of activation rows (n_act <= kVecDotBlockActs): y[t * ldy + r] = dot(row r, a[t], n), bit for
// bit, with rows and activations taken a slice of n at a time so that both stay in L1 (float
// weights, whose rows are 4 bytes a value: the router of a prompt). nullptr where a type has none.
inline constexpr int kVecDotBlockRows = 16, kVecDotBlockActs = 16;
using VecDotBlockFn = void (*)(const void* w, uint64_t row_bytes, int n_rows, const void* const* a, int n_act, int64_t n,
                               float* y, int64_t ldy);
VecDotBlockFn vec_dot_block_fn(GgmlType type, Isa isa);
VecDotBlockFn vec_dot_block_fn(GgmlType type);  // on active_isa()

// A type's dot products, one row or several: the rows kernel where there is one.
struct DotRows {
    VecDotFn one = nullptr;
    VecDotRowsFn many = nullptr;
    explicit DotRows(GgmlType type) : one(vec_dot_fn(type)), many(vec_dot_rows_fn(type)) {}
    void operator()(const void* w, const void* const* a, int n_act, int64_t n, float* out) const {
        if (many && n_act > 1) return many(w, a, n_act, n, out);
        for (int j = 0; j < n_act; ++j) out[j] = one(w, a[j], n);
    }
};

}  // namespace tandem::quant
