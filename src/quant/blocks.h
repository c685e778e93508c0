// The ggml block formats, one struct per type, fields in file byte order.
//
// Layouts are facts of the GGUF format (ggml-common.h; the `gguf` Python package's quants.py
// dequantizers are the executable spec we test against). Sizes are checked against the
// type table in gguf/types.h by tests/quant. f16 fields are kept as raw uint16_t bits and
// converted with fp16_to_f32, so a struct never depends on a compiler's half type.
//
// Blocks are read in place from the memory map. Every type's size is a multiple of its
// alignment and GGUF aligns tensor data to 32 bytes, so struct access is aligned.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tandem::quant {

// Elements per super-block of the K, IQ and TQ formats.
inline constexpr int kQK = 256;
// Elements per block of the legacy 32-wide formats (Q4_0 ... Q8_1, IQ4_NL, MXFP4).
inline constexpr int kQ32 = 32;

// ---- legacy 32-element blocks -------------------------------------------------------------

// x = d * (q - 8), q 4-bit. qs[j] holds element j (low nibble) and j+16 (high nibble).
struct BlockQ4_0 {
    uint16_t d;       // f16 scale
    uint8_t qs[16];   // [32] nibbles
};
static_assert(sizeof(BlockQ4_0) == 18);

// x = d * q + m, q 4-bit unsigned.
struct BlockQ4_1 {
    uint16_t d;       // f16 scale
    uint16_t m;       // f16 offset (the block minimum)
    uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20);

// x = d * (q - 16), q 5-bit: low nibble as Q4_0, bit 4 of element j is bit j of qh.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];    // little-endian uint32, bit j = high bit of element j
    uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22);

// x = d * q + m, q 5-bit unsigned, bits as Q5_0.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24);

// x = d * q, q int8. Also the activation format of the 32-wide dot products.
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// NOTES: GGUF's type table (gguf package GGML_QUANT_SIZES, gguf/types.h) gives Q8_1 40 bytes,
// the original layout with f32 d and s; ggml's CPU code later shrank its in-memory block to
// 36 bytes (two f16). Q8_1 never appears in model files, so we follow the file table.
struct BlockQ8_1 {
    float d;          // scale
    float s;          // d * sum(qs), precomputed for offset formats
    int8_t qs[32];
};
static_assert(sizeof(BlockQ8_1) == 40);

// x = d * kIq4nlValues[q], q 4-bit, nibble order as Q4_0.
struct BlockIq4Nl {
    uint16_t d;
    uint8_t qs[16];
};
static_assert(sizeof(BlockIq4Nl) == 18);

// x = 2^(e-128) * kMxfp4Values[q] (the e8m0 scale halved because the values are doubled).
struct BlockMxfp4 {
    uint8_t e;        // e8m0 exponent
    uint8_t qs[16];   // nibble order as Q4_0
};
static_assert(sizeof(BlockMxfp4) == 17);

// ---- K-quants: 256-element super-blocks ---------------------------------------------------

// 16 sub-blocks of 16: x = d * (sc & 15) * q - dmin * (sc >> 4), q 2-bit.
// qs byte (half*32 + l) holds element half*128 + s*32 + l in bits 2s..2s+1.
struct BlockQ2K {
    uint8_t scales[16];   // [16] low nibble scale, high nibble min
    uint8_t qs[64];       // [256] 2-bit
    uint16_t d;           // f16 super-scale of the scales
    uint16_t dmin;        // f16 super-scale of the mins
};
static_assert(sizeof(BlockQ2K) == 84);

// Q2_K in group-major order (tandem's in-memory layout Q2_K_U16, quant/repack.h; the same
// size): the same scales, d and dmin, with q of weight e = 16 j + 4 c + r (group j of 16) in
// bits 2c..2c+1 of qs[4 j + r] (u16_position: each 4-byte lane of a 64-byte chunk c holds one
// group, so one VPDPBUSD per chunk against Q8_K_U16 activations gives every group's sum).
struct BlockQ2KU16 {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d;
    uint16_t dmin;
};
static_assert(sizeof(BlockQ2KU16) == 84);

// 16 sub-blocks of 16: x = d * (sc - 32) * q, q in [-4, 3] = low 2 bits from qs (as Q2_K)
// minus 4 unless bit (e / 32) of hmask[e % 32] is set. sc is 6-bit: low nibbles in
// scales[0..7] (sub-block i: byte i % 8, nibble i / 8), high 2 bits in scales[8 + i % 4]
// at bit 2 * (i / 4).
struct BlockQ3K {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};
static_assert(sizeof(BlockQ3K) == 110);

// Q3_K in group-major order (tandem's in-memory layout Q3_K_U16, quant/repack.h; the same size):
// the same scales and d, qs as Q2_K_U16's (the low 2 bits of weight e at its u16_position p: bits
// 2 (p / 64) of qs[p % 64]) and the high bit of weight e at bit p of hmask (bit p % 8 of byte
// p / 8: chunk c's 64 bits, lane j's 16 of them its group's, as one little-endian uint64 at
// hmask + 8c). x = d * (sc - 32) * (low + 4 * high - 4).
struct BlockQ3KU16 {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};
static_assert(sizeof(BlockQ3KU16) == 110);

// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], q 4-bit, sc and m 6-bit packed in
// scales[12]: j < 4: sc = scales[j] & 63, m = scales[j+4] & 63; j >= 4: sc = low nibble of
// scales[j+4] | (top 2 bits of scales[j-4]) << 4, m = high nibble of scales[j+4] | (top 2
// bits of scales[j]) << 4. qs byte (c*32 + l) holds element c*64 + l (low) and c*64+32+l (high).
struct BlockQ4K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};
static_assert(sizeof(BlockQ4K) == 144);

// As Q4_K with a fifth bit: bit (e / 32) of qh[e % 32].
struct BlockQ5K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
static_assert(sizeof(BlockQ5K) == 176);

// 16 sub-blocks of 16: x = d * scales[e/16] * (q - 32), q 6-bit. For element
// e = half*128 + n*64 + m (m < 64): low nibble = ql[half*64 + m] >> 4n, high 2 bits =
// qh[half*32 + m % 32] >> 2 * (2n + m / 32).
struct BlockQ6K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210);

// The activation format of the K/IQ dot products: x = d * q, plus the sums of each 16 q's
// (the K-quant offsets multiply those instead of every element).
struct BlockQ8K {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
};
static_assert(sizeof(BlockQ8K) == 292);

// The activations of IQ1_S_U2's dot products (internal type Q8_K_U2): a Q8_K block's d, q and
// 16-value sums with q in IQ1_S_U2's weight order, qs[64 c + 8 g + m] = q[32 g + 8 c + m], so
// that byte k of a 64-byte chunk of q pairs with byte k of the weights' qs, and corr[i] =
// -72 bsums[i], the term the AVX-512 kernels start from. Bytes: qs 0..255, corr 256..319, d 320,
// bsums 324..355, zeros to 384. A row of n values is n/256 such blocks followed by n/256 plus
// terms of 64 bytes (q8ku2_plus: [16] int32, 16 x the sum of the 16 values of 4-byte lane i over
// the four chunks, which the VBMI one-row kernel adds where a group's delta is +1/8;
// simd_kernels.h), so Q8_K_U2's row bytes are 448 per 256 values.
// NOTES: in a 64-byte aligned row (the activation buffers are) every block's four q chunks and
// corr are then aligned 64-byte loads; at 356 bytes with q at 4, each crossed a cache line, and
// one Zen 4 thread spent 13% more cycles per block in IQ1_S_U2's kernel (kernel/ 17.2 against
// 15.1-15.8; Q2_K_U16 and Q3_K_U16 10%, IQ1_M_U2 and IQ2_XXS_U3 7-8%). The plus terms sit apart
// so that the kernels which do not read them do not stream them: as a 448-byte block, the
// several-rows kernels (8 activation rows in L2) took 10-17% longer.
struct BlockQ8KU2 {
    int8_t qs[256];
    int32_t corr[16];
    float d;
    int16_t bsums[16];
    uint8_t pad[28];
};
static_assert(sizeof(BlockQ8KU2) == 384 && offsetof(BlockQ8KU2, corr) == 256 && offsetof(BlockQ8KU2, d) == 320);
inline constexpr int64_t kQ8KU2PlusBytes = 64;
// Block k's plus terms in a Q8_K_U2 row of nb blocks.
inline const int32_t* q8ku2_plus(const BlockQ8KU2* row, int64_t nb, int64_t k) {
    return reinterpret_cast<const int32_t*>(reinterpret_cast<const uint8_t*>(row + nb) + k * kQ8KU2PlusBytes);
}
// The position in IQ1_S_U2 order of value e (of 256) of a block.
constexpr int u2_position(int e) { return 64 * ((e % 32) / 8) + 8 * (e / 32) + e % 8; }

// The same for IQ1_M_U2, Q2_K_U16 and Q3_K_U16, whose scales are per 16 weights (internal type
// Q8_K_U16; Q8_K_U2's block bytes, no plus terms):
// qs[64 c + 4 j + r] = q[16 j + 4 c + r] (each 4-byte lane of a chunk one group j of 16),
// corr[j] = -9 bsums[j].
struct BlockQ8KU16 {
    int8_t qs[256];
    int32_t corr[16];
    float d;
    int16_t bsums[16];
    uint8_t pad[28];
};
static_assert(sizeof(BlockQ8KU16) == 384 && offsetof(BlockQ8KU16, corr) == 256 && offsetof(BlockQ8KU16, d) == 320);
constexpr int u16_position(int e) { return 64 * ((e % 16) / 4) + 4 * (e / 16) + e % 4; }

// ---- ternary ------------------------------------------------------------------------------

// x = d * (t - 1), t in {0,1,2}: 5 trits per byte in qs (bytes 0..31: elements p*32 + l,
// bytes 32..47: 160 + p*16 + l), 4 per byte in qh (240 + p*4 + l); trit p of byte v is
// ((uint8_t)(v * 3^p) * 3) >> 8.
struct BlockTq1_0 {
    uint8_t qs[48];
    uint8_t qh[4];
    uint16_t d;
};
static_assert(sizeof(BlockTq1_0) == 54);

// x = d * (t - 1), t 2-bit in Q2_K's element order.
struct BlockTq2_0 {
    uint8_t qs[64];
    uint16_t d;
};
static_assert(sizeof(BlockTq2_0) == 66);

// ---- IQ formats: 256-element super-blocks with lattice grids (grids.h) --------------------

// 8 groups of 32, each two uint32: aux0 = four 8-bit indices into kIq2xxsGrid (8 values
// each), aux1 = four 7-bit sign indices (bits 0..27, kKsigns) and a 4-bit scale ls (28..31):
// x = d * (0.5 + ls) * 0.25 * grid * sign.
struct BlockIq2Xxs {
    uint16_t d;
    uint16_t qs[32];   // [8][2] uint32 as 16-bit halves
};
static_assert(sizeof(BlockIq2Xxs) == 66);

// IQ2_XXS with every grid value and sign written out (tandem's in-memory layout IQ2_XXS_U3,
// quant/repack.h): the same weights, x = d * (0.5 + ls) * 0.25 * m * sign with the magnitude m
// in {8, 25, 43} (every value of kIq2xxsGrid) as a code 0, 1, 2, both in IQ1_S_U2's group-major
// order: weight e's code in bits 2c..2c+1 of qs[p % 64] and its sign in bit p % 8 of signs[p / 8]
// (set: negative), p = u2_position(e) = 64 c + 8 g + m for e = 32 g + 8 c + m; the scale ls of
// group g (32 weights) in nibble g of sc (low nibble first). 3 bits per weight instead of 2.06,
// and no table lookups.
struct BlockIq2XxsU3 {
    uint16_t d;
    uint8_t sc[4];
    uint8_t signs[32];
    uint8_t qs[64];
};
static_assert(sizeof(BlockIq2XxsU3) == 102);

// 32 entries of 9-bit kIq2xsGrid index | 7-bit sign index << 9; 4-bit scale per 16
// elements (scales byte i: low nibble entries 4i..4i+1, high nibble 4i+2..4i+3).
struct BlockIq2Xs {
    uint16_t d;
    uint16_t qs[32];
    uint8_t scales[8];
};
static_assert(sizeof(BlockIq2Xs) == 74);

// 32 entries of 10-bit kIq2sGrid index (low 8 bits in qs[g], high 2 in qh[g/4] at bit
// 2*(g%4)), explicit sign bits (signs[g], bit j for value j), scales as IQ2_XS.
struct BlockIq2S {
    uint16_t d;
    uint8_t qs[32];
    uint8_t signs[32];
    uint8_t qh[8];
    uint8_t scales[8];
};
static_assert(sizeof(BlockIq2S) == 82);

// 64 8-bit kIq3xxsGrid indices (4 values each), then 8 uint32 (one per 32 elements) packing
// four 7-bit sign indices and a 4-bit scale: x = d * (0.5 + ls) * 0.5 * grid * sign.
struct BlockIq3Xxs {
    uint16_t d;
    uint8_t qs[96];   // [64] grid indices, then [8] little-endian uint32
};
static_assert(sizeof(BlockIq3Xxs) == 98);

// IQ3_XXS with every grid value and sign written out (tandem's in-memory layout IQ3_XXS_U4,
// quant/repack.h): the same weights, x = d * (0.5 + ls) * 0.5 * m * sign with the magnitude m in
// {4, 12, 20, 28, 36, 44, 52, 62} (every value of kIq3xxsGrid) as a code 0..7 and the sign as bit
// 3 (set: negative) of one nibble per weight: weight e = 128 h + j in nibble h of q[j] (low
// first); the scale ls of group g (32 weights) in nibble g of sc. 4.2 bits per weight against
// 3.06, and no table lookups.
struct BlockIq3XxsU4 {
    uint16_t d;
    uint8_t sc[4];
    uint8_t q[128];
};
static_assert(sizeof(BlockIq3XxsU4) == 134);

// 64 9-bit kIq3sGrid indices (low 8 in qs[g], bit 8 = bit g%8 of qh[g/8]), explicit signs
// (bit e%8 of signs[e/8]), 4-bit scale per 32: x = d * (1 + 2 * sc) * grid * sign.
struct BlockIq3S {
    uint16_t d;
    uint8_t qs[64];
    uint8_t qh[8];
    uint8_t signs[32];
    uint8_t scales[4];
};
static_assert(sizeof(BlockIq3S) == 110);

// 8 groups of 32; per group qh[ib] holds four 3-bit high index bits (bits 3l..3l+2), a 3-bit
// scale (12..14) and the delta sign (15): x = d * (2 * sc + 1) * (grid + delta),
// delta = +-1/8, grid index = qs[4*ib + l] | high bits << 8 into kIq1sGrid.
struct BlockIq1S {
    uint16_t d;
    uint8_t qs[32];
    uint16_t qh[8];
};
static_assert(sizeof(BlockIq1S) == 50);

// IQ1_S with every grid value written out (tandem's in-memory layout IQ1_S_U2, quant/repack.h):
// the same weights, x = d * (2 * sc + 1) * (u - 1 + delta), but u = grid value + 1 in {0, 1, 2}
// is 2 bits at a fixed place instead of an 11-bit index into a 2048-entry grid, so kernels read
// it with a shift and a mask instead of a table lookup (gather). Weight e = 32 g + 8 c + m of
// group g (32 weights) sits in bits 2c..2c+1 of qs[8 g + m], so each byte holds one group's
// weights and so does each 4-byte lane of a 64-byte chunk c of them (paired with Q8_K_U2's
// activations); group g has nibble g of sc (byte g / 2, low nibble first): bits 0..2 the scale
// sc, bit 3 the delta sign (set: delta = -1/8).
struct BlockIq1SU2 {
    uint16_t d;
    uint8_t sc[4];
    uint8_t qs[64];
};
static_assert(sizeof(BlockIq1SU2) == 70);

// 32 groups of 8: grid index = qs[g] | (qh[g/2] >> 4*(g%2) & 7) << 8, delta sign = bit 3 of
// that nibble. scales is four little-endian uint16: 3-bit scales at bits 0,3,6,9 (one per 16
// elements, 4 per uint16) and the f16 super-scale split over their top nibbles (uint16 k
// holds bits 4k..4k+3). x = d * (2 * sc + 1) * (grid + delta).
struct BlockIq1M {
    uint8_t qs[32];
    uint8_t qh[16];
    uint8_t scales[8];
};
static_assert(sizeof(BlockIq1M) == 56);

// IQ1_M with every grid value written out (tandem's in-memory layout IQ1_M_U2, quant/repack.h),
// as IQ1_S_U2 is for IQ1_S: the same weights, x = d * (2 * sc + 1) * (u - 1 + delta), with
// u = grid value + 1 in {0, 1, 2} of weight e = 16 j + 4 c + r (group j of 16) in bits 2c..2c+1
// of qs[4 j + r] (u16_position: each 4-byte lane of a 64-byte chunk c holds one group), the
// delta sign of the 8 weights 8k .. 8k + 7 in bit k % 8 of delta[k / 8] (set: delta = -1/8),
// and scales (the 3-bit scales per 16 weights and the f16 d) as IQ1_M has them.
struct BlockIq1MU2 {
    uint8_t scales[8];
    uint8_t delta[4];
    uint8_t qs[64];
};
static_assert(sizeof(BlockIq1MU2) == 76);

// 8 sub-blocks of 32: x = d * (sc - 32) * kIq4nlValues[q]; sc 6-bit = low nibble of
// scales_l[ib/2] (nibble ib%2) | bits 2ib..2ib+1 of scales_h << 4. qs[16*ib + j] holds
// element 32*ib + j (low) and 32*ib + 16 + j (high).
struct BlockIq4Xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
};
static_assert(sizeof(BlockIq4Xs) == 136);

// ---- scalar helpers -----------------------------------------------------------------------

// Exact f16 -> f32 (F16C is in the x86 baseline; subnormals convert exactly).
inline float fp16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
// Round-to-nearest-even f32 -> f16.
inline uint16_t f32_to_fp16(float f) {
    return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
// Round-to-nearest-even f32 -> bf16; NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

// MXFP4's e8m0 scale, halved: 2^(e - 128), as a float bit pattern (subnormal for e < 2).
inline float e8m0_to_f32_half(uint8_t e) {
    uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline uint64_t load_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

}  // namespace tandem::quant
