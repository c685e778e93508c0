// Block formats: the entry points the rest of tandem calls, dispatching on the ggml type.
//
// Per-type block structs, scalar references and SIMD kernels live beside this header
// (blocks.h, dequant.cpp, ...); this is the one table that binds a type to them.
#pragma once

#include <cstdint>
#include <span>

#include "gguf/types.h"

namespace tandem::quant {

// True when dequantize_row supports the type.
bool can_dequantize(GgmlType type);
// Dequantizes `n` values (a multiple of the type's block size) from `src` into `dst`.
// Throws tandem::Error for a type without a dequantizer.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Dequantizes `n` values into bfloat16 bits (round to nearest even), for the tile-unit matrix
// products: AVX-512 unpacking for the formats DeepSeek quants use (has_fast_bf16_dequant),
// the reference dequantizer plus a conversion for the rest. Only for CPUs with AVX512-BF16
// (cpu::gemm_unit() not none implies it); `n` as for dequantize_row.
void dequantize_row_bf16(GgmlType type, const void* src, uint16_t* dst, int64_t n);
bool has_fast_bf16_dequant(GgmlType type);

// True when quantize_row supports the type.
bool can_quantize(GgmlType type);
// Quantizes `n` floats (a multiple of the block size) into blocks of `type` at `dst`.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);
// The scalar reference of quantize_row's Q8_K (activations), which runs vectorized unless
// TANDEM_ISA=scalar; the two give the same bytes (tests/quant/test_blocks.cpp).
void quantize_row_q8k_reference(const float* src, void* dst, int64_t n);

// Fills `out` (a whole number of blocks) with random but valid blocks of `type`: every scale
// field finite and positive-ish, dequantized values of magnitude about `scale`. Deterministic
// for a given seed. For synthetic models and tests.
void fill_random(GgmlType type, std::span<uint8_t> out, uint64_t seed, float scale);

}  // namespace tandem::quant
