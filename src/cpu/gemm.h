// Matrix products for many tokens at once in bfloat16 (prefill, batched decode), on Intel AMX
// or on AVX512-BF16 vector units.
//
// Per-token dot products (matmul.h) unpack every weight block once per token, so a prompt of
// 512 tokens would cost 512 times the unpacking of the whole model. Here each weight matrix is
// unpacked once per call instead: rows are dequantized to bfloat16 one panel of kPanelRows at
// a time (quant::dequantize_row_bf16), activations are rounded to bfloat16 once, and the tile
// unit (TDPBF16PS: a 16x32 by 32x16 bf16 product accumulated in float32, 16 cycles), or on CPUs
// without one the vector units (VDPBF16PS), multiply each panel with every token of the batch.
//
// Numerics: weights and activations are each rounded to bf16 (8 significant bits, relative
// error <= 2^-9), products are accumulated in float32. That is comparable to the 8-bit
// activation blocks of the per-token path but not the same arithmetic: a token's result
// depends (within that rounding) on whether its batch took this path.
#pragma once

#include <xmmintrin.h>

#include <cstdint>
#include <vector>

#include "core/aligned.h"
#include "cpu/thread_pool.h"
#include "gguf/types.h"

namespace tandem::cpu {

// Prefetches the cache lines of [p, p + n) into L1. The panel products read a short piece of
// each of 32 rows, row_bytes apart, per step: more streams than the hardware prefetchers
// follow, so they fetch each row's next piece a step ahead. Always inlined: GCC counts
// __builtin_prefetch as free of side effects and deletes calls to a function that only prefetches
// (quant/simd_kernels.h prefetch_ahead).
__attribute__((always_inline)) inline void prefetch_bytes(const uint8_t* p, uint64_t n) {
    const auto first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63};
    for (uintptr_t a = first; a < reinterpret_cast<uintptr_t>(p) + n; a += 64)
        _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
}
// The same for [base + offset, + n), which may lie past base's buffer (a step ahead of the
// last): the address is computed as an integer and never read.
__attribute__((always_inline)) inline void prefetch_bytes(const void* base, uint64_t offset, uint64_t n) {
    prefetch_bytes(reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(base) + offset), n);
}

// Which unit runs the bf16 products of this file, chosen once from CPUID:
//   amx:    the tile unit (TDPBF16PS: 16x32 by 32x16 in 16 cycles), on CPUs with AMX-TILE,
//           AMX-BF16 and AVX512-BF16 where the kernel granted the tile data state (arch_prctl);
//   avx512: the vector units (VDPBF16PS: 16 lanes of 2 bf16 products each), on CPUs with
//           AVX512-BF16 and VNNI but no AMX (AMD Zen 4 and 5, Intel Cooper Lake);
//   none:   no bf16 products: the per-token path (cpu/matmul.h), and the int8 products of the
//           formats that have one (i8_unit below).
// TANDEM_GEMM=off, avx512 or int8 in the environment caps the choice (A/B runs, and the
// exactness tests that need the per-token path; off also drops the int8 products, int8 keeps
// only them); TANDEM_GEMM=amx-emulated picks the tile unit with its operations run in C++
// (cpu/tiles.h: tests of the tile paths on CPUs without one; needs AVX512-BF16 and VNNI);
// any other value is an error.
enum class GemmUnit { none, avx512, amx };
GemmUnit gemm_unit();
const char* gemm_unit_name(GemmUnit unit);  // "AMX" (or "AMX (emulated)"), "AVX512-BF16", "none"

// Which unit runs the int8 products (cpu/gemm_i8.h), from the same choice:
//   amx:    the tile unit with AMX-INT8 (IQ1_S_U2 only; the other formats take bf16 there);
//   avx512: the AVX-512 VNNI vector units (the dot kernels' ISA, quant::active_isa()), with or
//           without a bf16 unit (Zen 4 and 5; Cascade Lake and Ice Lake have none);
//   avx2:   VPMADDUBSW on AVX2 (active_isa() avx2 and no bf16 unit: AMD Zen 2/3, Intel client
//           cores, and Skylake-X, whose AVX-512 has no VNNI);
//   none:   TANDEM_GEMM=off, the scalar kernels (TANDEM_ISA=scalar), or TANDEM_ISA=avx2 on a CPU
//           with a bf16 unit (the products stay bf16).
// TANDEM_GEMM=int8 drops the bf16 unit and keeps these (with TANDEM_ISA=avx2, an AVX-512 CPU
// runs as an AVX2 one: tests and A/B).
enum class I8Unit { none, avx2, avx512, amx };
I8Unit i8_unit();
// What `tandem bench` reports: gemm_unit_name() where there is a bf16 unit, else "AVX512-INT8",
// "AVX2-INT8" or "none".
const char* matrix_units_name();

// True when the tile unit runs the products here: gemm_unit() == GemmUnit::amx.
bool amx_available();
// amx_available() and the tile unit also multiplies bytes (AMX-INT8: cpu/gemm_i8.h).
bool amx_int8_available();

// Loads, on the calling thread, the tile configuration of every tile product in tandem
// (palette 1; tiles 0-7 all 16 rows of 64 bytes). Requires amx_available().
void amx_configure_tiles();

inline constexpr int64_t kPanelRows = 32;  // weight rows dequantized and multiplied together
inline constexpr int64_t kTokenGroup = 16; // tokens per tile column block

// Whether products with a [*, n_in] matrix of `type` can take the bf16 path: gemm_unit() not
// none, a quantized or BF16 type (F32/F16 weights keep their precision), n_in a multiple of 32.
bool gemm_supports(GgmlType type, int64_t n_in);
// The fewest tokens for which the bf16 path beats dotting each token on its own: 4 on the tile
// unit; 8 on the vector units, whose 16 lanes are 16 tokens (a product of 4 tokens costs as
// much as one of 16 there; measured on Zen 4, Q4_K 2048x7168: per-token 0.84 ms at 4 tokens,
// 1.65 at 8, bf16 1.77 and 1.64). On the vector units a format with a several-rows dot kernel
// (quant::vec_dot_rows_fn) keeps the per-token path longer: 16 tokens, Q6_K 48, IQ1_S_U2 24;
// the 32-weight formats (Q8_0, Q4_0, Q5_0, IQ4_NL, Q4_1, Q5_1) stay at 8 (rows and bf16 meet
// near 10 tokens for Q8_0, and 8 keeps their prompts' paths where they were before).
// Measured with bench_cpu rows/ and panel/ (7168 -> 2048, one Zen 4 thread), GMAC/s rows
// kernel against bf16: Q4_K 50 vs 47 at 16 tokens, 50 vs 70 at 32; Q6_K 67 vs 50 at 32, 68
// vs 70 at 64; IQ1_S_U2 74 vs 55 at 16, 73 vs 84 at 32.
int64_t bf16_min_tokens(GgmlType type);
// Whether a product of n_tok tokens should take the bf16 path (cpu::gemm, gemm_serial):
// supported and n_tok >= bf16_min_tokens(type).
bool bf16_gemm_applies(GgmlType type, int64_t n_in, int64_t n_tok);
// The same for cpu::matmul's tile path: the int8 product (cpu/gemm_i8.h) from
// i8_min_tokens(type) where the format has one on this CPU (and n_in is whole 256-blocks), else
// bf16 as above.
int64_t gemm_min_tokens(GgmlType type);
bool gemm_applies(GgmlType type, int64_t n_in, int64_t n_tok);

// Activations packed for the tile unit: ceil(n_tok / 16) groups of [n_in / 2][16][2] bf16,
// i.e. tile row r of group g holds values 2r, 2r + 1 of tokens 16g .. 16g + 15 (64 bytes).
// Tokens past n_tok are zero.
uint64_t packed_acts_size(int64_t n_tok, int64_t n_in);  // in uint16 elements
// Token t's row is x + rows[t] * x_stride (rows may be null: row t).
void pack_acts(const float* x, int64_t x_stride, const int32_t* rows, int64_t n_tok, int64_t n_in, uint16_t* packed);

// out[t, r] = sum_i w[r, i] * act[t, i] for t < n_tok, r < n_rows (<= kMaxPanels * kPanelRows):
// the n_rows weight rows starting at w (row_bytes apart, any dequantizable type) times the
// packed tokens, one panel of kPanelRows rows after the other for each chunk of K.
// The rows are dequantized up to kChunk values at a time into a 32 x kChunk bf16 chunk (32 KiB,
// L1-resident), which the tile unit multiplies with every token group while the next chunk is
// unpacked into a second buffer (the vector units: after it); rows past n_rows are zero.
//   packed: pack_acts of n_tok tokens, out: [n_tok, ceil(n_rows / 32) * 32] f32
// max_chunk caps the chunk width (at least 64; bench_cpu tries other widths than kChunk).
inline constexpr int64_t kChunk = 512;
inline constexpr int64_t kMaxPanels = 4;
struct PanelScratch;
void panel_gemm(GgmlType type, const uint8_t* w, uint64_t row_bytes, int64_t n_rows, int64_t n_in, const uint16_t* packed,
                int64_t n_tok, float* out, PanelScratch& ps, int64_t max_chunk = kChunk);

// Per-thread buffers of the tile path: one panel and its product (grown, never shrunk).
struct PanelScratch {
    aligned_vector<uint16_t> chunk;  // [kPanelRows, chunk width] bf16
    aligned_vector<float> acc;       // [panels][token groups][2][16 rows][16 tokens] C tiles between chunks
    aligned_vector<uint8_t> i8_blocks;  // panel_gemm_i8's unpacked weight blocks (cpu/gemm_i8.h)
    aligned_vector<int32_t> i8_tiles;   // and its C tiles of one block, on the tile unit
    std::vector<float> out;          // [n_tok, n_rows]
    float* out_for(int64_t n_tok, int64_t n_rows = kPanelRows);
};

struct GemmScratch {
    aligned_vector<uint16_t> packed;    // pack_acts of the call's tokens
    std::vector<PanelScratch> threads;  // [n_threads]
    int64_t max_chunk = kChunk;         // panel_gemm's chunk width cap (bench_cpu chunk/ varies it)
};

// y[t, o] = sum_i w[o, i] * x[t, i], as cpu::matmul (same arguments), in bf16 on gemm_unit().
// Requires gemm_supports(w_type, n_in).
void gemm(ThreadPool& pool, GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
          const float* x, int64_t n_tok, float* y, GemmScratch& scratch);

// The same on the calling thread only (inside work already spread over threads), writing
// y[t * y_stride + o]. Uses scratch.packed and scratch.threads[0]. Requires gemm_supports.
void gemm_serial(GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out, const float* x,
                 int64_t n_tok, float* y, int64_t y_stride, GemmScratch& scratch);

}  // namespace tandem::cpu
