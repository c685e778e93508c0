// Int8 products: weights whose integers fit an unsigned byte, with integer scales per group of
// 16 or 32 weights and a float scale per 256, multiplied with 8-bit activations by VPDPBUSD
// (64 multiply-adds per instruction against VDPBF16PS's 32), TDPBUSD on the tile unit, or
// VPMADDUBSW + VPMADDWD on AVX2 (cpu::i8_unit()).
//
// The activations are quantized as the per-token path quantizes them (quant::quantize_row to
// vec_dot_type: Q8_K, one scale per 256 values, integers in [-127, 127]; for the group-major
// repacked formats the same in their weight order, Q8_K_U2 or Q8_K_U16) and packed per group of
// 16 tokens, a lane per token (in natural order, or IQ1_S_U2's on the units that take it). The
// weights are unpacked per 256-block into 256 unsigned bytes w, integer
// scales per group (for the formats that have them), int16 coefficients against the
// activations' 16- or 32-value sums (the formats' offsets and mins) and float scales. The
// integers formed are the per-token dot kernel's (quant/simd_kernels.h): one per block, or
// for Q4_K the scaled sum and the mins apart as it keeps them, so a result differs from the
// per-token path's only in float rounding (a block's integer past 2^24 rounds when converted).
//
// On the tile unit (AMX-INT8) the 256-block products of IQ1_S_U2 are TDPBUSD, four per pair
// of C tiles (32 weight rows x 16 tokens each), and the vector units add the offset terms and
// apply the scales to the stored C tiles: the same integers and float steps as on the vector
// units, so both give the same bits.
//
// Formats: IQ1_S_U2 (the routed experts of Unsloth's UD-IQ1_S, repacked) on every unit; IQ1_S
// itself (not repacked: machines short of memory; not yet on the tile unit), Q4_K,
// Q6_K (attention, dense and shared-expert matrices of the usual quants), IQ2_XXS (UD-IQ1_S's
// first down projections), Q2_K (or its regrouped Q2_K_U16) and Q3_K (the experts of UD-Q2_K_XL)
// on the vector units only:
// a scale per 32 or 16 weights would need a tile product per group.
//
// On AVX2 (CPUs without AVX-512 VNNI) a register holds 8 tokens (block_product_avx2 in
// gemm_i8.cpp): the same integers and float steps, so the same bits as the AVX-512 vector units
// (test GemmI8.Avx2AndAvx512GiveTheSameBits).
#pragma once

#include <cstdint>

#include "cpu/gemm.h"
#include "cpu/thread_pool.h"
#include "gguf/types.h"

namespace tandem::cpu {

// Whether panel_gemm_i8 takes weights of `type` on `unit` (this CPU's, cpu::i8_unit()): a format
// it unpacks, on a unit that runs it (the tile unit: IQ1_S_U2 only).
bool i8_gemm_supports(GgmlType type, I8Unit unit = i8_unit());
// Whether products of weights a and b on `unit` can share one packing of the activations: the
// same quantized rows (quant::vec_dot_type) in the same order.
bool i8_shares_packing(GgmlType a, GgmlType b, I8Unit unit = i8_unit());
// i8_gemm_supports(type) for rows of n_in values that are whole 256-blocks (the packing's unit):
// where cpu::matmul takes gemm_i8.
bool i8_gemm_takes(GgmlType type, int64_t n_in);
// The fewest tokens for which it beats the per-token path (the rows dot kernel,
// quant::DotRows, where the format has one), in cpu::matmul and in a MoE layer. Measured with
// bench_cpu panel_i8/ against rows/ (7168 -> 2048, one Zen 4 thread, GMAC/s), where a product
// of up to 8 tokens costs about the same (one half group), so the int8 rate grows with the
// count and the crossing is interpolated from 4 and 8 tokens: on the vector units IQ1_S_U2 6
// (int8 64 at 4 tokens, 117 at 8; rows 78 and 75), Q4_K 5 (int8 52, 110; rows 55, 65), Q6_K 7
// (int8 39, 79; rows 60, 67), IQ2_XXS 3 (int8 31 at 4; per-token 13.5), Q2_K 6 (int8 49, 100;
// rows 67, 71), Q3_K 7 (int8 45, 93; rows 61, 73), IQ1_S 3 (int8 25, 56; one gathering dot per
// token 14); on the tile unit 6 (the Xeon, IQ1_S_U2: int8
// 32 at 4, 65 at 8; rows 55 and 45). On AVX2 (one Zen 4 thread with TANDEM_ISA=avx2
// TANDEM_GEMM=int8; a product of up to 8 tokens costs one of 8; until session 16 no rows kernel
// there, so the per-token path's rate was one dot per token): IQ1_S_U2 4 (int8 73-79 at 8 tokens; per-token
// 31), Q4_K 5 (73; 38), Q6_K 4 (66; 26), IQ2_XXS 3 (47-48; 14.5), Q2_K 5 (69-71; 34; 4 would just
// pass), Q3_K 3 (65; 20), IQ1_S 3 (46-48; 12.6). Session 14's group-major layouts made their
// per-token kernels faster (the same bench, us for 2048 x 7168 x N tokens, int8 at 4 tokens
// against rows or per-token dots at 4): AVX-512 IQ1_S_U2 5 (835; 817, 1020 at 5), IQ1_M_U2 5
// (1385; 1225; 8 since session 15, below), IQ2_XXS_U3 4 (1310; 1358; 8 since session 15); AVX2 IQ1_S_U2 5 (1513; 1481), IQ1_M_U2 4 (1906;
// 1937), IQ2_XXS_U3 4 (1921; 1810 at 3). Session 15's Q2_K_U16 (the same bench): AVX-512 6 (int8
// 1213 at 4 and 8 tokens; rows 840 at 4, 1590 at 8), AVX2 5 (1700; per-token dots 1529 at 4); with
// rows kernels for IQ1_M_U2 and IQ2_XXS_U3 their AVX-512 thresholds are 8 (int8 1403-1408 and
// 1347-1533 at 4-8 tokens; rows 826 and 853 at 4, 1571 and 1565 at 8), IQ3_XXS_U4's 7 (int8
// 1248-1258; rows 851 at 4, 1537 at 8). Session 16's AVX2 rows kernels (4 rows at a time) moved
// the AVX2 thresholds (us, int8 at 4 and 8 tokens; rows at 4, 8): IQ1_S_U2 7 (1537-1543; 933,
// 1893), Q4_K 6 (1548-1557; 1126, 2027), Q6_K 6 (1664-1690; 1267, 2320), Q2_K 6 (1635-1647; 1191,
// 2276), Q3_K 6 (1852-1860; 1427, 2726), Q2_K_U16 7 (1687-1838; 941, 1985), Q3_K_U16 7 (2124-2128;
// 1186, 2432), IQ1_M_U2 8 (1920-1923; 1031, 2057), IQ2_XXS_U3 7 (2071-2072; 1246, 2454).
int64_t i8_min_tokens(GgmlType type);

// Activations packed for panel_gemm_i8: ceil(n_tok / 16) groups, each n_in / 256 blocks of
//   [64 quads][16 tokens][4] int8 (q), [4 pairs][16 tokens][2] int16 (sums of q over
//   the 32 values of groups 2p, 2p + 1), [8 pairs][16 tokens][2] int16 (the same over 16
//   values: the Q8_K bsums), [16] float (the token's Q8_K scale),
// i.e. kI8BlockBytes per block per group. Tokens past n_tok have q = 0 and scale 0. On the
// AVX-512 vector units a last group of 8 tokens or fewer is a half group: two quads (two pairs) per
// token, [32][8 tokens][8] int8, [2][8][4] int16, [4][8][4] int16, [8] float, in the first
// half of each part, so a register holds 8 tokens' values and no lane is padding.
inline constexpr int64_t kI8BlockBytes = 4096 + 256 + 512 + 64;
uint64_t packed_acts_i8_bytes(int64_t n_tok, int64_t n_in);
// For weights of `type`: token t's row is x + rows[t] * x_stride (rows may be null: row t). n_in
// a multiple of 256. `unit`: the unit the product will run on (its half groups, and the order of
// the values: IQ1_S_U2's own on the AVX-512 and tile units, natural elsewhere); tests pass
// another one than this CPU's to compare them.
void pack_acts_i8(GgmlType type, const float* x, int64_t x_stride, const int32_t* rows, int64_t n_tok, int64_t n_in,
                  uint8_t* packed, I8Unit unit = i8_unit());
// The same from rows already quantized to quant::vec_dot_type(type) (quant::quantize_row):
// token t's at q8_rows[t].
void pack_q8k_i8(GgmlType type, const void* const* q8_rows, int64_t n_tok, int64_t n_in, uint8_t* packed,
                 I8Unit unit = i8_unit());

// out[t * 32 + r] = sum_i w[r, i] * act[t, i] for t < n_tok, r < n_rows <= kPanelRows: the
// n_rows weight rows starting at w (row_bytes apart) times the packed tokens, as panel_gemm
// (same output layout) but in int8; columns from n_rows to the next multiple of 8 are written
// too (zero rows' results). Requires i8_gemm_supports(type).
void panel_gemm_i8(GgmlType type, const uint8_t* w, uint64_t row_bytes, int64_t n_rows, int64_t n_in, const uint8_t* packed,
                   int64_t n_tok, float* out, PanelScratch& ps, I8Unit unit = i8_unit());

// y[t, o] = sum_i w[o, i] * x[t, i], as cpu::gemm (same arguments) but in int8: the tokens
// packed once, the 32-row panels spread over the pool. Requires i8_gemm_supports(w_type).
void gemm_i8(ThreadPool& pool, GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
             const float* x, int64_t n_tok, float* y, GemmScratch& scratch);

}  // namespace tandem::cpu
