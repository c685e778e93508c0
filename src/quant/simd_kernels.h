// SIMD dot-product kernels, written once and compiled per instruction set.
//
// Included only by vec_dot_avx2.cpp and vec_dot_avx512.cpp, the latter under
// `#pragma GCC target("avx512...")`; everything here has internal linkage (anonymous
// namespace) so the two compilations never merge at link time, and every header these
// kernels use is included by those files *before* the pragma, so no shared inline function
// is ever compiled with AVX-512 (which would let the linker hand an AVX2 CPU an AVX-512 copy);
// the one exception, simd_scales.h, has internal linkage too.
//
// Scheme (the same integers as vec_dot_scalar.cpp): each 32-weight chunk is decoded into
// 32 unsigned bytes u (offset, or with the sign moved onto the activation; maddubs pair sums
// stay below 2^15, which SimdMatchesScalarAtFullScaleActivations checks), and
//     acc += sum over pairs of maddubs(u, qa) * scale16
// where scale16 holds the integer scale of each 16 weights. Offsets multiply the activation
// group sums (Q8_K bsums). Per 256-block the int32 accumulator is converted once and added
// into float lanes.
//
// AVX2 works on 32 weights per step (maddubs + madd + add). AVX-512 VNNI fuses the last two
// (vpdpwssd) and, for the K and grid formats, works on 64 weights per step in zmm registers:
// on the Xeons we target, 512-bit integer uops leave only ports 0 and 5 to vector work, so
// the kernels are written to minimize vector uops per block; docs/performance.md ("CPU
// kernels") has the counts and the measured bounds. Per-ISA code sits in `if constexpr`
// branches of one template; 512-bit helpers are templates on the ISA so the AVX2
// compilation never instantiates them.
#pragma once

#include "quant/simd_scales.h"  // internal linkage: safe to compile under the AVX-512 pragma

// The several-rows kernels' per-block steps (k_unpack, k_token) are called once per 256
// weights from a row loop and must be inlined into it, which GCC's heuristics do not always do
// for functions of this size (a call, and the float accumulator a stack slot).
#define TANDEM_BLOCK_STEP inline __attribute__((always_inline))
// The same for the per-block lambdas of for_blocks_with_factors (a lambda left a call measured
// 4% slower in IQ2_XXS_U3's kernel).
#define TANDEM_BLOCK_LAMBDA __attribute__((always_inline))

namespace tandem::quant {
namespace {

// Whether this compilation's kernels may use AVX512-VBMI's VPERMB (a byte lookup in a 64-byte
// table): vec_dot_avx512vbmi.cpp defines TANDEM_KERNELS_VBMI and compiles the kernels that gain
// from it; CPUs with AVX-512 VNNI but not VBMI (Cascade Lake) take the others.
#ifdef TANDEM_KERNELS_VBMI
constexpr bool kVbmi = true;
#else
constexpr bool kVbmi = false;
#endif

// VPERMB tables for the 2-bit fields of group-major formats: entry i (a byte's low 6 bits) holds
// values[field s of i] (bits 2s, 2s + 1; s = 0, 1, 2). A field at bits 6, 7 takes table 1 after a
// 16-bit shift right by 4 (bits 2, 3 of the byte are then those bits; the high byte's bits 0, 1
// land in bits 4, 5, which table 1 ignores).
using FieldTables = std::array<std::array<uint8_t, 64>, 3>;
constexpr FieldTables field_tables(const std::array<uint8_t, 4>& values) {
    FieldTables t{};
    for (int s = 0; s < 3; ++s)
        for (int i = 0; i < 64; ++i) t[static_cast<size_t>(s)][static_cast<size_t>(i)] = values[static_cast<size_t>((i >> (2 * s)) & 3)];
    return t;
}
alignas(64) inline constexpr FieldTables kFieldOf = field_tables({0, 1, 2, 3});
alignas(64) inline constexpr FieldTables kIq2xxsMagnitudeOf = field_tables({8, 25, 43, 0});  // kIq2xxsMagnitudes, code 3 unused
alignas(64) inline constexpr FieldTables kFieldPlus5Of = field_tables({5, 6, 7, 8});             // Q3_K_U16's low bits + 5

template <Isa I>
inline __m512i load_table(const std::array<uint8_t, 64>& t) { return _mm512_load_si512(t.data()); }

template <Isa I>
inline __m256i scaled_dot(__m256i acc, __m256i u, __m256i qa, __m256i scale16) {
    const __m256i pairs = _mm256_maddubs_epi16(u, qa);  // [16] int16, |.| <= 2 * 128 * 127
    if constexpr (I == Isa::Avx512Vnni) {
        return _mm256_dpwssd_epi32(acc, pairs, scale16);
    } else {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scale16));
    }
}

// [8] int32, each the sum of 4 products u * qa (u unsigned bytes, qa signed).
template <Isa I>
inline __m256i dot_u8(__m256i u, __m256i qa) {
    if constexpr (I == Isa::Avx512Vnni) {
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, qa);
    } else {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(u, qa), _mm256_set1_epi16(1));
    }
}

inline __m256i scale_pair(int lo, int hi) {
    return _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(lo)), _mm_set1_epi16(static_cast<int16_t>(hi)));
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Q2_K's (and Q2_K_U16's) 16 scale bytes as [16] int16: the low nibbles (scales) and the high
// nibbles (mins) of the 16-weight groups.
inline void q2k_scales_mins16(const uint8_t* scales, __m256i& sc16, __m256i& mn16) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales));
    sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0F)));
    mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
}

// ---- K-quant chunk decoders: the 32 unsigned values u of chunk c (weights 32c .. 32c+31),
// shared by the AVX2 dot steps and the bf16 dequantizer (dequant_bf16.cpp); Q2_K's and Q3_K's
// are in simd_scales.h (the int8 products use them too).

// Q4_K / Q5_K: chunks 2k (low nibbles of qs bytes 32k + l) and 2k + 1 (high nibbles); Q5_K adds
// 16 where bit c of qh[l] is set. u in [0, 15] / [0, 31].
template <typename Block>
inline void k4_chunks(const Block& b, int k, __m256i& lo, __m256i& hi) {
    const __m256i q = load32(b.qs + 32 * k), mask4 = _mm256_set1_epi8(0x0F);
    lo = _mm256_and_si256(q, mask4);
    hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask4);
    if constexpr (sizeof(Block) == sizeof(BlockQ5K)) {
        const __m256i qh = load32(b.qh), sixteen = _mm256_set1_epi8(16);
        const __m256i b_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * k)));
        const __m256i b_hi = _mm256_set1_epi8(static_cast<char>(1 << (2 * k + 1)));
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_lo), b_lo), sixteen));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_hi), b_hi), sixteen));
    }
}

// Q6_K: u in [0, 63] (the value is u - 32): for c = 4 half + t, nibble t / 2 of ql bytes
// 64 half + 32 (t % 2) + l, and bits 2t..2t+1 of qh bytes 32 half + l as bits 4..5.
inline __m256i q6k_chunk(const BlockQ6K& b, int c) {
    const int half = c / 4, t = c % 4;
    const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(load32(b.ql + 64 * half + 32 * (t % 2)), 4 * (t / 2)),
                                        _mm256_set1_epi8(0x0F));
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(load32(b.qh + 32 * half), 2 * t), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// NOTES: on this Xeon family the hardware prefetcher alone leaves one core 10-35% short of
// streaming rate in these loops (bench_quant .../dram and an interleaved A/B, single thread);
// a software prefetch per 64 weight bytes, 4 KiB ahead (about one 7168-wide Q4_K row), closes
// most of it (1 and 2 KiB were worse, 8 KiB no better). Prefetching past the end of a matrix
// is a harmless hint.
// always_inline: GCC treats __builtin_prefetch as free of side effects, so a prefetch_ahead left
// as a call (as it was in for_blocks_with_factors after early inlining) was judged a const
// function and the call deleted: the Intel-form grid kernels of sessions 14 and 15 ran without
// their prefetch (on the Xeon the MoE step at batch 1 took 1.6-2.4x the time of its L2 kernel).
constexpr int kPrefetchBytes = 4096;
template <typename Block>
TANDEM_BLOCK_STEP void prefetch_ahead(const Block* b) {
    const char* p = reinterpret_cast<const char*>(b) + kPrefetchBytes;
    for (size_t off = 0; off < sizeof(Block); off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

// sum_g offset16[g] * bsums[g] over the 16 groups, as [8] int32 to add to an accumulator.
inline __m256i bsum_terms(const BlockQ8K& a, const int16_t* offset16) {
    return _mm256_madd_epi16(load32(a.bsums), load32(offset16));
}

// ---- per-format 256-blocks: add ad * (da * int_a + db * int_b) into facc ----
//
// Scales are unpacked with a few vector ops per block. Under AVX-512 a block is four steps of
// 64 weights: the packed bits of two 32-weight chunks are broadcast to both 256-bit halves
// (vbroadcasti64x4, a plain load), shifted per half with vpsrlvw, and dotted in one zmm
// maddubs + vpdpwssd; under AVX2 eight steps of 32 weights.

// A block's int32 dot: [16] lanes under AVX-512, [8] under AVX2; `ftype` the float vector of
// the same width.
template <Isa I>
struct AccVec {
    using type = __m256i;
    using ftype = __m256;
};
template <>
struct AccVec<Isa::Avx512Vnni> {
    using type = __m512i;
    using ftype = __m512;
};

// The int16 scale of each maddubs lane for weights 64j .. 64j+63 (lane m covers weights
// 2m, 2m+1): `scales` holds one int16 per 16 weights (scale 4j + m / 8), or with kPer32 one
// per 32 weights every kStride int16 (scale kStride * (2j + m / 16)).
template <Isa I, bool kPer32, int kStride = 1>
inline __m512i scales64(__m256i scales, int j) {
    __m512i pick;
    if constexpr (kPer32) {
        pick = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<int16_t>(kStride * 2 * j))),
                                  _mm256_set1_epi16(static_cast<int16_t>(kStride * (2 * j + 1))), 1);
    } else {
        pick = _mm512_add_epi16(_mm512_set1_epi16(static_cast<int16_t>(4 * j)),
                                _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1,
                                                 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
    }
    return _mm512_permutexvar_epi16(pick, _mm512_castsi256_si512(scales));
}

// Per 256-bit half h of a zmm: shift_lo for h = 0, shift_hi for h = 1, as int16 shift counts.
template <Isa I>
inline __m512i half_shifts(int shift_lo, int shift_hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<int16_t>(shift_lo))),
                              _mm256_set1_epi16(static_cast<int16_t>(shift_hi)), 1);
}

template <Isa I>
inline __m256i sum_halves(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// ---- AVX-512: the unsigned values u of weights 64j .. 64j+63 of a K-format block, one zmm;
// shared by the one-row block_dot steps and k_unpack below.

// Q2_K: chunks 2j, 2j+1, qs bytes 32 (j/2) .. +31 at bits 4 (j%2) and 4 (j%2) + 2.
template <Isa I>
inline __m512i q2k_u64(const BlockQ2K& b, int j) {
    const __m512i q = _mm512_broadcast_i64x4(load32(b.qs + 32 * (j / 2)));
    return _mm512_and_si512(_mm512_srlv_epi16(q, half_shifts<I>(4 * (j % 2), 4 * (j % 2) + 2)), _mm512_set1_epi8(3));
}

// Q3_K: Q2_K's low 2 bits | 4 * hmask bit, u = q + 4; hm is hmask broadcast to both halves, and
// chunks 2j, 2j+1 take bits 2j, 2j+1 of hmask[l].
template <Isa I>
inline __m512i q3k_u64(const BlockQ3K& b, __m512i hm, int j) {
    const __m512i q = _mm512_broadcast_i64x4(load32(b.qs + 32 * (j / 2)));
    const __m512i low = _mm512_and_si512(_mm512_srlv_epi16(q, half_shifts<I>(4 * (j % 2), 4 * (j % 2) + 2)), _mm512_set1_epi8(3));
    const __m512i h = _mm512_slli_epi16(_mm512_srlv_epi16(hm, half_shifts<I>(2 * j, 2 * j + 1)), 2);
    return _mm512_ternarylogic_epi32(low, h, _mm512_set1_epi8(4), 0xF8);  // low | (h & 4)
}

// Q4_K / Q5_K: the low then high nibbles of qs bytes 32j .. 32j+31; Q5_K's fifth bits are
// bits 2j, 2j+1 of qh[l].
template <Isa I, typename Block>
inline __m512i k4_u64(const Block& b, int j) {
    const __m512i q = _mm512_broadcast_i64x4(load32(b.qs + 32 * j));
    __m512i u = _mm512_and_si512(_mm512_srlv_epi16(q, half_shifts<I>(0, 4)), _mm512_set1_epi8(0x0F));
    if constexpr (sizeof(Block) == sizeof(BlockQ5K)) {
        const __m512i h = _mm512_srlv_epi16(_mm512_broadcast_i64x4(load32(b.qh)), half_shifts<I>(2 * j, 2 * j + 1));
        u = _mm512_ternarylogic_epi32(u, _mm512_slli_epi16(h, 4), _mm512_set1_epi8(0x10), 0xF8);  // u | (h << 4 & 16)
    }
    return u;
}

// Q6_K: u = q + 32 of chunks 4 half + t, t = 2 (j%2) + {0, 1}, half = j / 2: the low nibbles
// (n = j % 2) of ql[half*64 .. +63] and bits 2t.. of qh[half*32 + l].
template <Isa I>
inline __m512i q6k_u64(const BlockQ6K& b, int j) {
    const int half = j / 2, t = 2 * (j % 2);
    const __m512i lo = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(b.ql + 64 * half), 4 * (j % 2)), _mm512_set1_epi8(0x0F));
    const __m512i h = _mm512_srlv_epi16(_mm512_broadcast_i64x4(load32(b.qh + 32 * half)), half_shifts<I>(2 * t, 2 * t + 2));
    return _mm512_ternarylogic_epi32(lo, _mm512_slli_epi16(h, 4), _mm512_set1_epi8(0x30), 0xF8);
}

// ---- AVX-512: a K-format block unpacked once (k_unpack), then dotted with any number of
// activation rows (k_token): the several-rows kernels. Per row: one maddubs + vpdpwssd per 64
// weights, then the format's float step; the integer lanes and the float steps are block_dot's
// (whose one-row code keeps unpacking and dotting interleaved: as two steps, inlined, Q4_K
// ran 27% slower on one Zen 4 thread, and a decode step on the Xeon with AMX took 45% longer).
struct KBlockZmm {
    __m512i u[4];   // weights 64j .. 64j+63 as unsigned bytes
    __m512i s[4];   // the int16 scale of each of their maddubs lanes
    __m256i coef;   // [16] int16 against the activation sums (Q8_K bsums): mins or offsets
    float d, dmin;  // super-scales (dmin: formats with mins)
};

template <Isa I>
TANDEM_BLOCK_STEP __m256i k_int_dot(const KBlockZmm& w, const BlockQ8K& a, __m512i acc512) {
    for (int j = 0; j < 4; ++j)
        acc512 = _mm512_dpwssd_epi32(acc512, _mm512_maddubs_epi16(w.u[j], _mm512_loadu_si512(a.qs + 64 * j)), w.s[j]);
    return sum_halves<I>(acc512);
}

// Formats with mins (Q2_K, Q4_K, Q5_K): d * int dot - dmin * (mins against bsums).
template <Isa I>
TANDEM_BLOCK_STEP void k_mins_token(const KBlockZmm& w, const BlockQ8K& a, __m256& facc) {
    const __m256i mins = _mm256_madd_epi16(load32(a.bsums), w.coef);  // [8] int32 sums of m * bsum
    const __m256i acc = k_int_dot<I>(w, a, _mm512_setzero_si512());
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * w.d), facc);
    facc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(a.d * w.dmin), facc);
}

template <Isa I>
TANDEM_BLOCK_STEP KBlockZmm k_unpack(const BlockQ2K& b) {
    __m256i sc16;
    KBlockZmm w;
    q2k_scales_mins16(b.scales, sc16, w.coef);
    for (int j = 0; j < 4; ++j) {
        w.u[j] = q2k_u64<I>(b, j);
        w.s[j] = scales64<I, false>(sc16, j);
    }
    w.d = fp16_to_f32(b.d);
    w.dmin = fp16_to_f32(b.dmin);
    return w;
}
template <Isa I>
TANDEM_BLOCK_STEP void k_token(const BlockQ2K*, const KBlockZmm& w, const BlockQ8K& a, __m256& facc) { k_mins_token<I>(w, a, facc); }

template <Isa I>
inline void block_dot(const BlockQ2K& b, const BlockQ8K& a, __m256& facc) {
    __m256i sc16, mn16;
    q2k_scales_mins16(b.scales, sc16, mn16);
    const __m256i mins = _mm256_madd_epi16(load32(a.bsums), mn16);  // [8] int32 sums of m * bsum
    __m256i acc;
    if constexpr (I == Isa::Avx512Vnni) {
        __m512i acc512 = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j)
            acc512 = _mm512_dpwssd_epi32(acc512, _mm512_maddubs_epi16(q2k_u64<I>(b, j), _mm512_loadu_si512(a.qs + 64 * j)),
                                         scales64<I, false>(sc16, j));
        acc = sum_halves<I>(acc512);
    } else {
        alignas(32) int16_t sc[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
        acc = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c)
            acc = scaled_dot<I>(acc, q2k_chunk(b, c), load32(a.qs + 32 * c), scale_pair(sc[2 * c], sc[2 * c + 1]));
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
    facc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(a.d * fp16_to_f32(b.dmin)), facc);
}

template <Isa I>
TANDEM_BLOCK_STEP KBlockZmm k_unpack(const BlockQ3K& b) {
    // u below is q + 4 (low 2 bits | 4 * hmask bit): the offset -4 sc goes against bsums.
    const __m256i sc16 = q3k_scales(b.scales);
    KBlockZmm w;
    w.coef = _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-4));
    const __m512i hm = _mm512_broadcast_i64x4(load32(b.hmask));
    for (int j = 0; j < 4; ++j) {
        w.u[j] = q3k_u64<I>(b, hm, j);
        w.s[j] = scales64<I, false>(sc16, j);
    }
    w.d = fp16_to_f32(b.d);
    w.dmin = 0.0f;
    return w;
}
template <Isa I>
TANDEM_BLOCK_STEP void k_token(const BlockQ3K*, const KBlockZmm& w, const BlockQ8K& a, __m256& facc) {
    const __m256i off = _mm256_madd_epi16(load32(a.bsums), w.coef);
    const __m256i acc = k_int_dot<I>(w, a, _mm512_zextsi256_si512(off));
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * w.d), facc);
}

template <Isa I>
inline void block_dot(const BlockQ3K& b, const BlockQ8K& a, __m256& facc) {
    // u below is q + 4 (low 2 bits | 4 * hmask bit): the offset -4 sc goes against bsums.
    const __m256i sc16 = q3k_scales(b.scales);
    const __m256i off = _mm256_madd_epi16(load32(a.bsums), _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-4)));
    __m256i acc;
    if constexpr (I == Isa::Avx512Vnni) {
        const __m512i hm = _mm512_broadcast_i64x4(load32(b.hmask));
        __m512i acc512 = _mm512_zextsi256_si512(off);
        for (int j = 0; j < 4; ++j)
            acc512 = _mm512_dpwssd_epi32(acc512, _mm512_maddubs_epi16(q3k_u64<I>(b, hm, j), _mm512_loadu_si512(a.qs + 64 * j)),
                                         scales64<I, false>(sc16, j));
        acc = sum_halves<I>(acc512);
    } else {
        alignas(32) int16_t sc[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
        acc = off;
        for (int c = 0; c < 8; ++c)
            acc = scaled_dot<I>(acc, q3k_chunk(b, c), load32(a.qs + 32 * c), scale_pair(sc[2 * c], sc[2 * c + 1]));
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
}

template <Isa I, typename Block>
TANDEM_BLOCK_STEP KBlockZmm k4_unpack(const Block& b) {
    const __m128i sm = k4_scales_mins(b.scales);
    const __m256i sc16 = _mm256_cvtepu8_epi16(sm);  // [8] scales, then [8] mins
    KBlockZmm w;
    w.coef = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));  // min of each 16 weights
    for (int j = 0; j < 4; ++j) {
        w.u[j] = k4_u64<I>(b, j);
        w.s[j] = scales64<I, true>(sc16, j);
    }
    w.d = fp16_to_f32(b.d);
    w.dmin = fp16_to_f32(b.dmin);
    return w;
}
template <Isa I>
TANDEM_BLOCK_STEP KBlockZmm k_unpack(const BlockQ4K& b) { return k4_unpack<I>(b); }
template <Isa I>
TANDEM_BLOCK_STEP KBlockZmm k_unpack(const BlockQ5K& b) { return k4_unpack<I>(b); }
template <Isa I>
TANDEM_BLOCK_STEP void k_token(const BlockQ4K*, const KBlockZmm& w, const BlockQ8K& a, __m256& facc) { k_mins_token<I>(w, a, facc); }
template <Isa I>
TANDEM_BLOCK_STEP void k_token(const BlockQ5K*, const KBlockZmm& w, const BlockQ8K& a, __m256& facc) { k_mins_token<I>(w, a, facc); }

template <Isa I, typename Block>
inline void k4_block_dot(const Block& b, const BlockQ8K& a, __m256& facc) {
    const __m128i sm = k4_scales_mins(b.scales);
    const __m256i sc16 = _mm256_cvtepu8_epi16(sm);                         // [8] scales, then [8] mins
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));  // min of each 16 weights
    const __m256i mins = _mm256_madd_epi16(load32(a.bsums), mn16);
    __m256i acc;
    if constexpr (I == Isa::Avx512Vnni) {
        __m512i acc512 = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j)
            acc512 = _mm512_dpwssd_epi32(acc512, _mm512_maddubs_epi16(k4_u64<I>(b, j), _mm512_loadu_si512(a.qs + 64 * j)),
                                         scales64<I, true>(sc16, j));
        acc = sum_halves<I>(acc512);
    } else {
        alignas(32) int16_t sc[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
        acc = _mm256_setzero_si256();
        for (int k = 0; k < 4; ++k) {
            __m256i lo, hi;
            k4_chunks(b, k, lo, hi);
            acc = scaled_dot<I>(acc, lo, load32(a.qs + 64 * k), _mm256_set1_epi16(sc[2 * k]));
            acc = scaled_dot<I>(acc, hi, load32(a.qs + 64 * k + 32), _mm256_set1_epi16(sc[2 * k + 1]));
        }
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
    facc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(a.d * fp16_to_f32(b.dmin)), facc);
}

template <Isa I>
inline void block_dot(const BlockQ4K& b, const BlockQ8K& a, __m256& facc) { k4_block_dot<I>(b, a, facc); }
template <Isa I>
inline void block_dot(const BlockQ5K& b, const BlockQ8K& a, __m256& facc) { k4_block_dot<I>(b, a, facc); }

template <Isa I>
TANDEM_BLOCK_STEP KBlockZmm k_unpack(const BlockQ6K& b) {
    // u below is q + 32: the offset -32 sc goes against bsums.
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    KBlockZmm w;
    w.coef = _mm256_slli_epi16(sc16, 5);
    for (int j = 0; j < 4; ++j) {
        w.u[j] = q6k_u64<I>(b, j);
        w.s[j] = scales64<I, false>(sc16, j);
    }
    w.d = fp16_to_f32(b.d);
    w.dmin = 0.0f;
    return w;
}
template <Isa I>
TANDEM_BLOCK_STEP void k_token(const BlockQ6K*, const KBlockZmm& w, const BlockQ8K& a, __m256& facc) {
    const __m256i off = _mm256_madd_epi16(load32(a.bsums), w.coef);  // subtracted below
    const __m256i acc = k_int_dot<I>(w, a, _mm512_setzero_si512());
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc, off)), _mm256_set1_ps(a.d * w.d), facc);
}

template <Isa I>
inline void block_dot(const BlockQ6K& b, const BlockQ8K& a, __m256& facc) {
    // u below is q + 32: the offset -32 sc goes against bsums.
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    const __m256i off = _mm256_madd_epi16(load32(a.bsums), _mm256_slli_epi16(sc16, 5));  // subtracted below
    __m256i acc;
    if constexpr (I == Isa::Avx512Vnni) {
        __m512i acc512 = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j)
            acc512 = _mm512_dpwssd_epi32(acc512, _mm512_maddubs_epi16(q6k_u64<I>(b, j), _mm512_loadu_si512(a.qs + 64 * j)),
                                         scales64<I, false>(sc16, j));
        acc = sum_halves<I>(acc512);
    } else {
        alignas(32) int16_t sc[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
        acc = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c)
            acc = scaled_dot<I>(acc, q6k_chunk(b, c), load32(a.qs + 32 * c), scale_pair(sc[2 * c], sc[2 * c + 1]));
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc, off)), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
}

// ---- grid formats (IQ1_S, IQ2_*, IQ3_*) ----
//
// Per 256-block the grid indices, sign bits and scales of all 256 weights are computed with a
// few vector ops, then the grid entries are fetched with gathers (vpgatherdq / vpgatherdd):
// under AVX-512 64 weights (8 entries of 8 bytes or 16 of 4) per gather, one zmm maddubs and
// one vpdpwssd per 64 weights, and the signs applied to the activations through a 64-bit mask
// register; under AVX2 32 weights per step. Signs: bit e of a 256-bit string (32 bytes, one
// per 8 weights) negates weight e. docs/performance.md counts the uops per block.

// Weights whose grid values are stored as signed {-1, 0, 1} (IQ1_S/IQ1_M) are gathered from
// kIq1sGridU (grids.h), + 1 in every byte, so an entry is directly maddubs' unsigned operand.

// kKsigns as arithmetic: a 7-bit sign index i becomes the byte i | parity(i) << 7 (the eighth
// sign makes the count of negatives even). x: bytes < 128.
inline __m256i ksigns_bytes(__m256i x) {
    const __m256i parity_lut = _mm256_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0, 0,
                                                -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0);
    // parity(x) = parity(low nibble ^ high nibble); the 16-bit shift's spill-over from the
    // next byte lands in bits 4..7, which the mask drops.
    const __m256i folded = _mm256_and_si256(_mm256_xor_si256(x, _mm256_srli_epi16(x, 4)), _mm256_set1_epi8(0x0F));
    return _mm256_or_si256(x, _mm256_shuffle_epi8(parity_lut, folded));
}

// Each dword of aux (IQ2_XXS / IQ3_XXS: four 7-bit sign indices at bits 0, 7, 14, 21) as
// four sign bytes, in order.
template <Isa I>
inline __m256i ksigns_from_aux(__m256i aux) {
    // Field l, shifted left by l bits, lands in byte l.
    const __m256i f3 = _mm256_and_si256(_mm256_slli_epi32(aux, 3), _mm256_set1_epi32(0x7F000000));
    const __m256i m0 = _mm256_set1_epi32(0x7F), m1 = _mm256_set1_epi32(0x7F00), m2 = _mm256_set1_epi32(0x7F0000);
    if constexpr (I == Isa::Avx512Vnni) {
        // Bit selects m ? x : rest (vpternlogd 0xCA); bits outside the fields stay 0 from f3.
        const __m256i f23 = _mm256_ternarylogic_epi32(m2, _mm256_slli_epi32(aux, 2), f3, 0xCA);
        const __m256i f123 = _mm256_ternarylogic_epi32(m1, _mm256_slli_epi32(aux, 1), f23, 0xCA);
        return ksigns_bytes(_mm256_ternarylogic_epi32(m0, aux, f123, 0xCA));
    } else {
        const __m256i f0 = _mm256_and_si256(aux, m0);
        const __m256i f1 = _mm256_and_si256(_mm256_slli_epi32(aux, 1), m1);
        const __m256i f2 = _mm256_and_si256(_mm256_slli_epi32(aux, 2), m2);
        return ksigns_bytes(_mm256_or_si256(_mm256_or_si256(f0, f1), _mm256_or_si256(f2, f3)));
    }
}

// Where a block's scales sit in GridAcc::scales: one int16 per 16 weights, one int16 per 32
// weights, or one int32 (< 2^15) per 32 weights.
enum class ScaleLayout { kPer16, kPer32, kPer32Dword };

// The integer dot of one block, accumulated over its 64- (AVX-512) or 32-weight steps.
template <Isa I, ScaleLayout kLayout>
struct GridAcc {
    typename AccVec<I>::type v;
    __m256i scales;
    alignas(32) int16_t sc[16];          // AVX2: `scales` again, for broadcasts
    alignas(32) uint64_t sign_bits[4];   // bit e: weight e is negative (signed grids only)

    explicit GridAcc(__m256i scales_in) : scales(scales_in) {
        if constexpr (I == Isa::Avx512Vnni) {
            v = _mm512_setzero_si512();
        } else {
            v = _mm256_setzero_si256();
            _mm256_store_si256(reinterpret_cast<__m256i*>(sc), scales_in);
        }
    }
    void set_signs(__m256i bits) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(sign_bits), bits);
        // NOTES: keeps the mask bits in memory: kmovq k, m64 is a plain load, while GCC would
        // otherwise move them through general registers (vmovq/vpextrq + kmovq, port 5 each).
        if constexpr (I == Isa::Avx512Vnni) asm volatile("" ::: "memory");
    }

    // Weights 64j .. 64j+63 (AVX-512).
    template <bool kSigned>
    void step64(__m512i u, const int8_t* qa, int j) {
        __m512i q = _mm512_loadu_si512(qa + 64 * j);
        if constexpr (kSigned)
            q = _mm512_mask_sub_epi8(q, _load_mask64(reinterpret_cast<__mmask64*>(&sign_bits[j])),
                                     _mm512_setzero_si512(), q);
        __m512i scale;
        if constexpr (kLayout == ScaleLayout::kPer16) scale = scales64<I, false>(scales, j);
        else if constexpr (kLayout == ScaleLayout::kPer32) scale = scales64<I, true, 1>(scales, j);
        else scale = scales64<I, true, 2>(scales, j);
        v = _mm512_dpwssd_epi32(v, _mm512_maddubs_epi16(u, q), scale);
    }
    // Weights 32g .. 32g+31 (AVX2).
    template <bool kSigned>
    void step32(__m256i u, const int8_t* qa, int g) {
        __m256i q = load32(qa + 32 * g);
        if constexpr (kSigned) {
            // Byte e takes byte e / 8 of the 32 sign bits, then keeps bit e % 8; -1 where set.
            uint32_t bits;
            std::memcpy(&bits, reinterpret_cast<const uint8_t*>(sign_bits) + 4 * g, 4);
            const __m256i spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(static_cast<int>(bits)),
                _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
            const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
            const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
            q = _mm256_sign_epi8(q, _mm256_or_si256(neg, _mm256_set1_epi8(1)));
        }
        __m256i scale;
        if constexpr (kLayout == ScaleLayout::kPer16) {
            // Words 0-7 scale 2g, 8-15 scale 2g + 1: dword g of `scales` everywhere, then its
            // low word in the low lane and its high word in the high one (no general registers).
            const __m256i both = _mm256_permutevar8x32_epi32(scales, _mm256_set1_epi32(g));
            scale = _mm256_shuffle_epi8(both, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2,
                                                               3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
        }
        else if constexpr (kLayout == ScaleLayout::kPer32) scale = _mm256_set1_epi16(sc[g]);
        else scale = _mm256_set1_epi16(sc[2 * g]);
        v = scaled_dot<I>(v, u, q, scale);
    }
};

// Eight 8-byte grid entries (64 weights) at 32-bit indices.
template <Isa I>
inline __m512i gather8x64(const uint64_t* table, __m256i idx) {
    return _mm512_i32gather_epi64(idx, table, 8);
}
inline __m256i gather4x64(const uint64_t* table, __m128i idx) {
    return _mm256_i32gather_epi64(reinterpret_cast<const long long*>(table), idx, 8);
}

// Weights 64j .. 64j+63 from eight 8-byte entries at idx.
template <Isa I, bool kSigned, typename Acc>
inline void grid8_steps(Acc& acc, const uint64_t* table, __m256i idx, const int8_t* qa, int j) {
    if constexpr (I == Isa::Avx512Vnni) {
        acc.template step64<kSigned>(gather8x64<I>(table, idx), qa, j);
    } else {
        acc.template step32<kSigned>(gather4x64(table, _mm256_castsi256_si128(idx)), qa, 2 * j);
        acc.template step32<kSigned>(gather4x64(table, _mm256_extracti128_si256(idx, 1)), qa, 2 * j + 1);
    }
}

// Weights 64j .. 64j+63 from sixteen 4-byte entries at idx (IQ3 grids).
template <Isa I, typename Acc>
inline void grid16_steps(Acc& acc, const uint32_t* table, __m256i idx_lo, __m256i idx_hi, const int8_t* qa, int j) {
    const auto* t = reinterpret_cast<const int*>(table);
    if constexpr (I == Isa::Avx512Vnni) {
        const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(idx_lo), idx_hi, 1);
        acc.template step64<true>(_mm512_i32gather_epi32(idx, t, 4), qa, j);
    } else {
        acc.template step32<true>(_mm256_i32gather_epi32(t, idx_lo, 4), qa, 2 * j);
        acc.template step32<true>(_mm256_i32gather_epi32(t, idx_hi, 4), qa, 2 * j + 1);
    }
}

template <Isa I>
inline typename AccVec<I>::type add_low128(typename AccVec<I>::type v, __m128i x) {
    if constexpr (I == Isa::Avx512Vnni) return _mm512_add_epi32(v, _mm512_zextsi128_si512(x));
    else return _mm256_add_epi32(v, _mm256_zextsi128_si256(x));
}

// The float unit of each grid format's integer dot: x = d * unit * (integer).
template <typename Block>
constexpr float kGridUnit = 0.125f;  // IQ1_S, IQ2_XXS, IQ2_XS, IQ2_S: d/8 * (2 s + 1) ...
template <>
constexpr float kGridUnit<BlockIq3Xxs> = 0.25f;
template <>
constexpr float kGridUnit<BlockIq3XxsU4> = 0.25f;
template <>
constexpr float kGridUnit<BlockIq3S> = 1.0f;
template <>
constexpr float kGridUnit<BlockQ3KU16> = 1.0f;  // d (sc - 32) (u - 4)

// IQ1_S's qh[i] (scale, delta sign and high index bits of group i) in int16 lanes 2i and
// 2i + 1, i.e. per 16 weights, as the Q8_K bsums are.
template <Isa I>
inline __m256i iq1s_qh_per16(const BlockIq1S& b) {
    const __m128i qh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qh));  // [8] u16
    if constexpr (I == Isa::Avx512Vnni) {
        return _mm256_permutexvar_epi16(_mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                        _mm256_castsi128_si256(qh));
    } else {
        return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(qh, qh)), _mm_unpackhi_epi16(qh, qh), 1);
    }
}

// The grid indices of IQ1_S entries 16h .. 16h+15 (AVX-512), one per dword, from qhd =
// iq1s_qh_per16: index = qs[k] | bits 3l..3l+2 of qh[k/4] << 8 (l = k % 4), the 3 bits
// rotated to 8..10 and merged as lo | (rot & 0x700). The int16 word 2k of `rep` is qh[k/4];
// its high word is qh[k/4] as well, which the mask drops.
template <Isa I>
inline __m512i iq1s_indices16(const BlockIq1S& b, __m256i qhd, int h) {
    static_assert(I == Isa::Avx512Vnni);
    const __m512i rot = _mm512_set_epi32(31, 2, 5, 8, 31, 2, 5, 8, 31, 2, 5, 8, 31, 2, 5, 8);
    const __m512i rep = _mm512_permutexvar_epi16(
        _mm512_add_epi16(_mm512_set1_epi16(static_cast<int16_t>(8 * h)),
                         _mm512_set_epi16(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0,
                                          0, 0, 0, 0, 0)),
        _mm512_castsi256_si512(qhd));
    const __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * h)));
    return _mm512_ternarylogic_epi32(lo, _mm512_rolv_epi32(rep, rot), _mm512_set1_epi32(0x700), 0xF8);
}

template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq1S& b, const BlockQ8K& a) {
    // Per 32 weights (group i): (d/8) * (8 s * sum(g qa) + delta s * bsum), s = 2 sc + 1,
    // g in {-1,0,1}; with u = g + 1 in {0,1,2}: sum(g qa) = sum(u qa) - bsum, so the group's
    // offset is (delta - 8) s = +-s - 8 s against its activation sum.
    const __m256i qhd = iq1s_qh_per16<I>(b);
    // 8 s = 16 sc + 8 with sc = bits 12..14.
    const __m256i scale16 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qhd, 8), _mm256_set1_epi16(0x70)),
                                            _mm256_set1_epi16(8));
    const __m256i s = _mm256_srli_epi16(scale16, 3);
    const __m256i off16 = _mm256_sub_epi16(_mm256_sign_epi16(s, _mm256_or_si256(qhd, _mm256_set1_epi16(1))), scale16);
    GridAcc<I, ScaleLayout::kPer16> acc(scale16);
    if constexpr (I == Isa::Avx512Vnni) {
        acc.v = _mm512_dpwssd_epi32(acc.v, _mm512_zextsi256_si512(load32(a.bsums)), _mm512_zextsi256_si512(off16));
        for (int h = 0; h < 2; ++h) {
            const __m512i idx = iq1s_indices16<I>(b, qhd, h);
            grid8_steps<I, false>(acc, kIq1sGridU.data(), _mm512_castsi512_si256(idx), a.qs, 2 * h);
            grid8_steps<I, false>(acc, kIq1sGridU.data(), _mm512_extracti64x4_epi64(idx, 1), a.qs, 2 * h + 1);
        }
    } else {
        acc.v = _mm256_madd_epi16(load32(a.bsums), off16);
        for (int j = 0; j < 4; ++j) {
            // Entries 8j .. 8j+7 (groups 2j, 2j+1), qh[2j] | qh[2j+1] << 16 in every lane.
            const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * j)));
            const __m256i qh2 = _mm256_set1_epi32(
                static_cast<int>(load_u32(reinterpret_cast<const uint8_t*>(b.qh) + 4 * j)));
            const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(qh2, _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25)),
                                                _mm256_set1_epi32(7));
            grid8_steps<I, false>(acc, kIq1sGridU.data(), _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8)), a.qs, j);
        }
    }
    return acc.v;
}

template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq2Xxs& b, const BlockQ8K& a) {
    // qs as 16 dwords: group g's aux0 (four 8-bit grid indices) at dword 2g, aux1 (four 7-bit
    // sign indices, 4-bit scale at bits 28..31) at 2g + 1.
    const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
    if constexpr (I == Isa::Avx2) {
        // NOTES: here 256-bit gathers (~0.85 cycles per element) lose to scalar table loads
        // (measured 0.84x), so each chunk is assembled from four 64-bit loads.
        __m256i acc = _mm256_setzero_si256();
        for (int g = 0; g < 8; ++g) {
            const uint32_t aux0 = load_u32(qs + 8 * g), aux1 = load_u32(qs + 8 * g + 4);
            const auto entry = [](uint64_t v) { return static_cast<int64_t>(v); };
            const __m256i u = _mm256_setr_epi64x(entry(kIq2xxsGrid[aux0 & 0xFF]), entry(kIq2xxsGrid[(aux0 >> 8) & 0xFF]),
                                                 entry(kIq2xxsGrid[(aux0 >> 16) & 0xFF]), entry(kIq2xxsGrid[aux0 >> 24]));
            const __m256i signs = _mm256_setr_epi64x(
                entry(kKsignsMul[aux1 & 0x7F]), entry(kKsignsMul[(aux1 >> 7) & 0x7F]),
                entry(kKsignsMul[(aux1 >> 14) & 0x7F]), entry(kKsignsMul[(aux1 >> 21) & 0x7F]));
            acc = scaled_dot<I>(acc, u, _mm256_sign_epi8(load32(a.qs + 32 * g), signs),
                                _mm256_set1_epi16(static_cast<int16_t>(2 * (aux1 >> 28) + 1)));
        }
        return acc;
    } else {
        const __m256i aux1 = _mm512_castsi512_si256(_mm512_permutexvar_epi32(
            _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15), _mm512_loadu_si512(qs)));
        // 2 ls + 1 per 32 weights, as [8] int32.
        const __m256i s32 = _mm256_or_si256(_mm256_slli_epi32(_mm256_srli_epi32(aux1, 28), 1), _mm256_set1_epi32(1));
        GridAcc<I, ScaleLayout::kPer32Dword> acc(s32);
        acc.set_signs(ksigns_from_aux<I>(aux1));
        for (int j = 0; j < 4; ++j) {
            // Bytes 16j + {0..3, 8..11}: the grid indices of groups 2j, 2j+1.
            const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16 * j));
            const __m128i packed = _mm_shuffle_epi8(
                raw, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1));
            grid8_steps<I, true>(acc, kIq2xxsGrid, _mm256_cvtepu8_epi32(packed), a.qs, j);
        }
        return acc.v;
    }
}

// IQ1_M, IQ1_M_U2: [16] int16 2 sc + 1, one per 16 weights.
template <Isa I, typename Block>
inline __m256i iq1m_scale16(const Block& b) {
    if constexpr (I == Isa::Avx512Vnni) {
        // Sub-scale g: bits 3 (g % 4) .. of scales u16 g / 4.
        const __m256i rep = _mm256_permutexvar_epi16(
            _mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
            _mm256_castsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.scales))));
        const __m256i sc = _mm256_and_si256(
            _mm256_srlv_epi16(rep,
                              _mm256_setr_epi16(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9)),
            _mm256_set1_epi16(7));
        return _mm256_or_si256(_mm256_add_epi16(sc, sc), _mm256_set1_epi16(1));
    } else {
        return iq1m_scales16(b.scales);
    }
}

// IQ3_XXS_U4 (IQ3_XXS with its grid values and signs written out, quant/repack.h): IQ3_XXS's
// integer sum_g s_g sum v q, as sum_g s_g sum u q - 62 sum_g s_g (sum of q over g) with u = v +
// 62 unsigned (VPMADDUBSW's operand; a pair's sum <= 2 * 124 * 128 does not saturate) mapped
// from the weight's nibble by a VPSHUFB, the second term through the Q8_K sums.
template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq3XxsU4& b, const BlockQ8K& a) {
    const __m256i s32 = nibble_scales32(b.sc);
    // -62 s_g in int16 words 2g, 2g + 1 (the two 16-value sums of group g).
    const __m256i off16 = _mm256_mullo_epi16(_mm256_or_si256(s32, _mm256_slli_epi32(s32, 16)), _mm256_set1_epi16(-62));
    GridAcc<I, ScaleLayout::kPer32Dword> acc(s32);
    if constexpr (I == Isa::Avx512Vnni) {
        acc.v = _mm512_dpwssd_epi32(acc.v, _mm512_zextsi256_si512(load32(a.bsums)), _mm512_zextsi256_si512(off16));
        const __m512i lut = _mm512_broadcast_i32x4(iq3xxsu4_u_table());
        const __m512i x[2] = {_mm512_loadu_si512(b.q), _mm512_loadu_si512(b.q + 64)};
        for (int c = 0; c < 4; ++c) {  // weights 64c ..: nibble c / 2 of q[64 (c % 2) ..]
            const __m512i nib = _mm512_and_si512(c >= 2 ? _mm512_srli_epi16(x[c % 2], 4) : x[c % 2], _mm512_set1_epi8(0x0F));
            acc.template step64<false>(_mm512_shuffle_epi8(lut, nib), a.qs, c);
        }
    } else {
        acc.v = _mm256_madd_epi16(load32(a.bsums), off16);
        for (int g = 0; g < 8; ++g) acc.template step32<false>(iq3xxsu4_u(b, g), a.qs, g);
    }
    return acc.v;
}

template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq1M& b, const BlockQ8K& a) {
    // As the scalar form: (d/8) * (2 sc + 1) * q with q = 8 g +- 1 (the delta sign changes
    // every 8 weights). Here u = q + 9 = 8 (g + 1) + (1 +- 1) in [0, 18]; the +9 comes back
    // through the group sums. Entry k's index is qs[k] | low 3 bits of nibble k of qh << 8,
    // and the nibble's bit 3 is the delta sign; the 8 nibbles of entries 8j .. 8j+7 are the
    // dword at qh + 4j.
    const __m256i scale16 = iq1m_scale16<I>(b);
    const __m256i off16 = _mm256_mullo_epi16(scale16, _mm256_set1_epi16(-9));
    GridAcc<I, ScaleLayout::kPer16> acc(scale16);
    const __m256i twos = _mm256_set1_epi8(2);  // 1 + delta for delta = +1
    if constexpr (I == Isa::Avx512Vnni) {
        acc.v = _mm512_dpwssd_epi32(acc.v, _mm512_zextsi256_si512(load32(a.bsums)), _mm512_zextsi256_si512(off16));
        for (int j = 0; j < 4; ++j) {
            const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * j)));
            // Nibble m rotated to bits 8..11: index bits 8..10, delta sign bit 11.
            const __m256i rot = _mm256_rolv_epi32(_mm256_set1_epi32(static_cast<int>(load_u32(b.qh + 4 * j))),
                                                  _mm256_setr_epi32(8, 4, 0, 28, 24, 20, 16, 12));
            const __m256i idx = _mm256_ternarylogic_epi32(lo, rot, _mm256_set1_epi32(0x700), 0xF8);
            const __mmask8 plus = _mm256_testn_epi32_mask(rot, _mm256_set1_epi32(0x800));
            // 8 (g + 1) stays inside each byte (<= 16), so a 16-bit shift is safe.
            const __m512i g8 = _mm512_slli_epi16(gather8x64<I>(kIq1sGridU.data(), idx), 3);
            acc.template step64<false>(_mm512_mask_add_epi64(g8, plus, g8, _mm512_broadcast_i64x4(twos)), a.qs, j);
        }
    } else {
        acc.v = _mm256_madd_epi16(load32(a.bsums), off16);
        for (int j = 0; j < 4; ++j) {
            const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * j)));
            const __m256i nib = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(load_u32(b.qh + 4 * j))),
                                                  _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
            const __m256i idx = _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(nib, _mm256_set1_epi32(7)), 8));
            const __m256i minus = _mm256_and_si256(nib, _mm256_set1_epi32(8));  // per entry: 8 where delta = -1
            for (int h = 0; h < 2; ++h) {
                const __m128i idx4 = h ? _mm256_extracti128_si256(idx, 1) : _mm256_castsi256_si128(idx);
                const __m128i minus4 = h ? _mm256_extracti128_si256(minus, 1) : _mm256_castsi256_si128(minus);
                const __m256i plus = _mm256_cmpeq_epi64(_mm256_cvtepu32_epi64(minus4), _mm256_setzero_si256());
                const __m256i g8 = _mm256_slli_epi16(gather4x64(kIq1sGridU.data(), idx4), 3);
                acc.template step32<false>(_mm256_add_epi8(g8, _mm256_and_si256(plus, twos)), a.qs, 2 * j + h);
            }
        }
    }
    return acc.v;
}


// IQ2_XS / IQ2_S: 4-bit scales, two per byte (low nibble first), as [16] int16 2 s + 1.
inline __m256i iq2_scales(const uint8_t* scales) {
    const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales));
    const __m128i nib = _mm_unpacklo_epi8(_mm_and_si128(raw, _mm_set1_epi8(0x0F)),
                                          _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
    const __m256i s = _mm256_cvtepu8_epi16(nib);
    return _mm256_or_si256(_mm256_add_epi16(s, s), _mm256_set1_epi16(1));
}

template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq2Xs& b, const BlockQ8K& a) {
    // qs[k]: 9-bit grid index | 7-bit sign index << 9.
    const __m256i q0 = load32(b.qs), q1 = load32(b.qs + 16);
    // Sign indices as bytes in entry order (packus interleaves 128-bit lanes; permute undoes it).
    const __m256i sidx = _mm256_permute4x64_epi64(
        _mm256_packus_epi16(_mm256_srli_epi16(q0, 9), _mm256_srli_epi16(q1, 9)), 0xD8);
    GridAcc<I, ScaleLayout::kPer16> acc(iq2_scales(b.scales));
    acc.set_signs(ksigns_bytes(sidx));
    for (int j = 0; j < 4; ++j) {
        const __m256i e = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 8 * j)));
        grid8_steps<I, true>(acc, kIq2xsGrid, _mm256_and_si256(e, _mm256_set1_epi32(511)), a.qs, j);
    }
    return acc.v;
}

template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq2S& b, const BlockQ8K& a) {
    GridAcc<I, ScaleLayout::kPer16> acc(iq2_scales(b.scales));
    acc.set_signs(load32(b.signs));  // explicit: bit e % 8 of signs[e / 8]
    for (int j = 0; j < 4; ++j) {
        // Entries 8j .. 8j+7: qs[k] | bits 2(k%4)..+1 of qh[k/4] << 8.
        const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * j)));
        uint16_t qh2;
        std::memcpy(&qh2, b.qh + 2 * j, 2);
        const __m256i hi = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_set1_epi32(qh2), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
            _mm256_set1_epi32(3));
        grid8_steps<I, true>(acc, kIq2sGrid, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8)), a.qs, j);
    }
    return acc.v;
}

template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq3Xxs& b, const BlockQ8K& a) {
    const __m256i aux = load32(b.qs + 64);  // [8] u32 after the 64 grid indices, one per 32 weights
    const __m256i s32 = _mm256_or_si256(_mm256_slli_epi32(_mm256_srli_epi32(aux, 28), 1), _mm256_set1_epi32(1));
    GridAcc<I, ScaleLayout::kPer32Dword> acc(s32);
    acc.set_signs(ksigns_from_aux<I>(aux));
    for (int j = 0; j < 4; ++j) {
        const __m256i idx_lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 16 * j)));
        const __m256i idx_hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 16 * j + 8)));
        grid16_steps<I>(acc, kIq3xxsGrid, idx_lo, idx_hi, a.qs, j);
    }
    return acc.v;
}

template <Isa I>
inline typename AccVec<I>::type grid_block(const BlockIq3S& b, const BlockQ8K& a) {
    // Scales: nibble i % 2 of scales[i / 2] for the 32 weights i; x = d (1 + 2 sc) grid sign.
    const __m128i raw = _mm_cvtsi32_si128(static_cast<int>(load_u32(b.scales)));
    const __m128i nib = _mm_unpacklo_epi8(_mm_and_si128(raw, _mm_set1_epi8(0x0F)),
                                          _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
    const __m128i s = _mm_cvtepu8_epi16(nib);
    GridAcc<I, ScaleLayout::kPer32> acc(_mm256_zextsi128_si256(_mm_or_si128(_mm_add_epi16(s, s), _mm_set1_epi16(1))));
    acc.set_signs(load32(b.signs));
    for (int j = 0; j < 4; ++j) {
        // Entries 16j .. 16j+15: qs[k] | bit k % 8 of qh[k / 8] << 8.
        const __m256i shifts = _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1);
        const __m256i bit8 = _mm256_set1_epi32(0x100);
        const __m256i lo0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 16 * j)));
        const __m256i lo1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 16 * j + 8)));
        const __m256i h0 = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(b.qh[2 * j]), shifts), bit8);
        const __m256i h1 = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(b.qh[2 * j + 1]), shifts), bit8);
        grid16_steps<I>(acc, kIq3sGrid, _mm256_or_si256(lo0, h0), _mm256_or_si256(lo1, h1), a.qs, j);
    }
    return acc.v;
}

// The f16 super-scale of a grid block (IQ1_M spreads it over its scales' top nibbles).
template <typename Block>
inline uint16_t grid_d(const Block& b) {
    return b.d;
}
inline uint16_t grid_d(const BlockIq1M& b) { return iq1m_scale_bits(b); }
inline uint16_t grid_d(const BlockIq1MU2& b) { return iq1m_scale_bits(b); }

// The float factors ad * d * unit of up to kChunk consecutive blocks, into f[]: the f16
// scales and activation scales are copied with scalar loads/stores (ports a vector kernel
// leaves idle) and converted with one vcvtph2ps, instead of ~6 vector uops per block.
inline float act_scale(const BlockQ8K& a) { return a.d; }
inline float act_scale(const BlockQ8KU2& a) { return a.d; }
inline float act_scale(const BlockQ8KU16& a) { return a.d; }
template <Isa I, typename Block, typename Act>
inline void grid_factors(const Block* wb, const Act* ab, int64_t count, float* f) {
    constexpr int kChunk = I == Isa::Avx512Vnni ? 16 : 8;
    alignas(64) uint16_t d[kChunk] = {};
    alignas(64) float ad[kChunk] = {};
    for (int64_t k = 0; k < count; ++k) {
        d[k] = grid_d(wb[k]);
        ad[k] = act_scale(ab[k]);
        asm volatile("" ::: "memory");  // keeps GCC from turning this strided copy into gathers
    }
    if constexpr (I == Isa::Avx512Vnni) {
        const __m512 wd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d))),
                                        _mm512_set1_ps(kGridUnit<Block>));
        _mm512_store_ps(f, _mm512_mul_ps(_mm512_load_ps(ad), wd));
    } else {
        const __m256 wd = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d))),
                                        _mm256_set1_ps(kGridUnit<Block>));
        _mm256_store_ps(f, _mm256_mul_ps(_mm256_load_ps(ad), wd));
    }
}

// The float side of a row's dot: acc += float(integer lanes) * factor per block, summed at the
// end; [16] lanes under AVX-512, [8] under AVX2.
template <Isa I>
struct FloatAcc {
    typename AccVec<I>::ftype v{};
    void add(typename AccVec<I>::type x, float factor) {
        if constexpr (I == Isa::Avx512Vnni) v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(x), _mm512_set1_ps(factor), v);
        else v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(x), _mm256_set1_ps(factor), v);
    }
    float sum() const {
        if constexpr (I == Isa::Avx512Vnni) return _mm512_reduce_add_ps(v);
        else return hsum(v);
    }
};

// step(k, f) for each of a row's nb blocks, f = its factor ad * d * unit, formed by grid_factors
// a register's width of blocks at a time (the weights prefetched ahead).
template <Isa I, typename Block, typename Act, typename Step>
TANDEM_BLOCK_STEP void for_blocks_with_factors(const Block* wb, const Act* ab, int64_t nb, Step&& step) {
    constexpr int kChunk = I == Isa::Avx512Vnni ? 16 : 8;
    alignas(64) float f[kChunk];
    for (int64_t i0 = 0; i0 < nb; i0 += kChunk) {
        const int64_t count = std::min<int64_t>(kChunk, nb - i0);
        grid_factors<I>(wb + i0, ab + i0, count, f);
        for (int64_t k = 0; k < count; ++k) {
            prefetch_ahead(wb + i0 + k);
            step(i0 + k, f[k]);
        }
    }
}

// for_blocks_with_factors, or with kInline each block's factor formed in the loop (the same
// float operations: ad * (d * unit)), as inline_block_factors() chooses.
template <Isa I, bool kInline, typename Block, typename Act, typename Step>
TANDEM_BLOCK_STEP void for_blocks_factored(const Block* wb, const Act* ab, int64_t nb, Step&& step) {
    if constexpr (kInline) {
        for (int64_t k = 0; k < nb; ++k) {
            prefetch_ahead(wb + k);
            step(k, act_scale(ab[k]) * (fp16_to_f32(grid_d(wb[k])) * kGridUnit<Block>));
        }
    } else {
        for_blocks_with_factors<I>(wb, ab, nb, step);
    }
}

// A row's sum over its blocks of block(k) (the block's integer lanes) times the block's factor,
// FloatAcc's float step.
template <Isa I, bool kInline, typename Block, typename Act, typename BlockFn>
TANDEM_BLOCK_STEP float sum_blocks(const Block* wb, const Act* ab, int64_t nb, BlockFn&& block) {
    FloatAcc<I> facc;
    for_blocks_factored<I, kInline>(wb, ab, nb, [&](int64_t k, float f) TANDEM_BLOCK_LAMBDA { facc.add(block(k), f); });
    return facc.sum();
}

// Grid formats: per block ad * d * unit * (integer dot), the float step at full vector width,
// the factors formed 16 at a time or, kInlineFactors, per block (inline_block_factors: on one
// Zen 4 thread, bench_cpu kernel/, IQ2_XXS_U3 28.0-28.5 -> 25.0-25.2 block cycles, IQ1_M_U2
// 26.9-27.4 -> 25.1-25.5, IQ2_XXS 67.8-69.2 -> 63.2-65.2, IQ1_S unchanged).
template <Isa I, typename Block, bool kInlineFactors = false>
float dot_grid_row(const void* w, const void* a, int64_t n) {  // w: [n/256] Block, a: [n/256] Q8_K
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8K*>(a);
    return sum_blocks<I, kInlineFactors>(wb, ab, n / kQK, [&](int64_t k) TANDEM_BLOCK_LAMBDA { return grid_block<I>(wb[k], ab[k]); });
}
template <Isa I, typename Block>
VecDotFn grid_row_kernel() {
    if constexpr (I == Isa::Avx512Vnni) return inline_block_factors() ? dot_grid_row<I, Block, true> : dot_grid_row<I, Block, false>;
    return dot_grid_row<I, Block>;
}

// IQ1_S_U2 (IQ1_S with its grid values written out, quant/repack.h) against Q8_K_U2 (its
// activations in the weights' order, quant/blocks.h): a lookup, or a shift and a mask, per 64
// weights instead of IQ1_S's gathers. Per group g (32 weights, scale s = 2 sc + 1, x = d s (u - 1
// + delta)), with 64 x / d = s (64 u - 64 + 64 delta) and 64 delta = +-8, the block's integer is
//   T = sum_g s_g L_g / 8,   L_g = sum_{e in g} 64 u_e q_e - 72 qsum_g + 16 qsum_g [delta_g > 0],
// and the block contributes ad * d/8 * T. Every 4-byte lane of a 64-byte chunk holds weights of
// one group (the layout's point), so lane i (of 16) gathers L of group i / 2's half over the four
// chunks, starting from the activations' corr (-72 bsum_i); the float step scales it by s / 8 of
// its group and ad * d/8 of the block. The delta term: in the VBMI one-row kernel the row's plus
// terms (16 x the lane's 16 values, q8ku2_plus) added to the start of the lanes whose group has
// delta +1/8 (one masked add), elsewhere a weight byte 16 merged into those lanes' masks: the same
// integer in every lane, so every AVX-512 form gives the same bits (test_vec_dot
// VbmiKernelsMatchTheVnniOnesBitForBit, RowsKernelMatchesOneRowBitForBit). The AVX2 and scalar
// kernels sum in another order (equal within rounding).
//
// NOTES: 64 u, a field moved to bits 6, 7 of each byte, is what a lookup of a byte's low 6 bits
// gives for chunks 0-2 and a mask alone for chunk 3: with VBMI 3 VPERMB (port 5) and a VPANDD
// instead of 3 shifts (port 0) and 4 VPTERNLOGD. Under AVX-512 with VBMI a block is then 15 vector
// uops with grid_factors' factor (objdump of the loop), 6 of them port-0-only on Intel (the
// VPSRLVD of the broadcast nibbles, 4 VPDPBUSD, VCVTDQ2PS), against 18 with 9 (the form without
// VBMI, also the previous one): a bound of 7.5 cycles per block per core on two ports, not 9. One Zen 4 thread, bench_cpu kernel/ block cycles, two rounds: inline factors 15.1-15.3 ->
// 12.6-13.1, grid_factors 17.3-17.6 -> 14.5; expert/IQ1_S_U2 gate 269-272 -> 240-246 us, down
// 284-288 -> 263.
alignas(64) inline constexpr std::array<float, 16> kIq1su2EighthScale = [] {
    std::array<float, 16> t{};
    for (int n = 0; n < 16; ++n) t[static_cast<size_t>(n)] = static_cast<float>(2 * (n & 7) + 1) / 8.0f;
    return t;
}();
alignas(64) inline constexpr FieldTables kU64Of = field_tables({0, 64, 128, 192});  // IQ1_S_U2's 64 u
alignas(64) inline constexpr FieldTables kU8Of = field_tables({0, 8, 16, 24});       // IQ1_M_U2's 8 u

// One block's shared part under AVX-512: the four chunks' weight bytes w (64 u, and with
// kDeltaInStart false 16 more where the group's delta is +1/8), the lanes' scales and the lanes
// whose group has delta +1/8. kDeltaInStart (VBMI only) leaves the delta to iq1su2_start: one
// masked add per activation row instead of 4 VPORDs per block, so the one-row kernel takes it and
// the several-rows kernel does not (with it, on one Zen 4 thread, rows/IQ1_S_U2/gate/tok8 took
// 17% longer).
// (Templates on the ISA, as the other 512-bit helpers: the AVX2 compilation never has them.)
template <Isa I>
struct Iq1su2Zmm {
    __m512i w[4];
    __m512 scale;     // each lane's group s / 8
    __mmask16 plus;   // lane i: group i / 2 has delta +1/8 (bit 3 of its nibble clear)
};
template <Isa I, bool kDeltaInStart>
TANDEM_BLOCK_STEP Iq1su2Zmm<I> iq1su2_unpack(const BlockIq1SU2& b) {
    static_assert(kVbmi || !kDeltaInStart, "without VPERMB a mask per chunk merges the delta for free");
    const __m512i nib = _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(load_u32(b.sc))),
                                          _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28));
    Iq1su2Zmm<I> z;
    z.scale = _mm512_permutexvar_ps(nib, _mm512_load_ps(kIq1su2EighthScale.data()));  // reads bits 0..3 only
    z.plus = _mm512_testn_epi32_mask(nib, _mm512_set1_epi32(8));
    const __m512i x = _mm512_loadu_si512(b.qs), top = _mm512_set1_epi8(static_cast<char>(0xC0));
    if constexpr (kDeltaInStart) {
        for (int c = 0; c < 3; ++c) z.w[c] = _mm512_permutexvar_epi8(x, load_table<I>(kU64Of[static_cast<size_t>(c)]));
        z.w[3] = _mm512_and_si512(x, top);
        return z;
    }
    // The delta as a weight byte 16 (w q then adds 16 qsum where delta = +1/8); 0xEA: (x & top) | plus.
    const __m512i plus = _mm512_maskz_mov_epi32(z.plus, _mm512_set1_epi8(16));
    if constexpr (kVbmi) {
        for (int c = 0; c < 3; ++c)
            z.w[c] = _mm512_or_si512(_mm512_permutexvar_epi8(x, load_table<I>(kU64Of[static_cast<size_t>(c)])), plus);
    } else {  // u of chunk c at bits 2c, 2c + 1 moved to bits 6, 7 (the 16-bit shifts' spill across bytes falls outside the mask)
        z.w[0] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(x, 6), top, plus, 0xEA);
        z.w[1] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(x, 4), top, plus, 0xEA);
        z.w[2] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(x, 2), top, plus, 0xEA);
    }
    z.w[3] = _mm512_ternarylogic_epi32(x, top, plus, 0xEA);
    return z;
}
// The lanes' start: corr, plus the block's plus terms (q8ku2_plus) where the group's delta is
// +1/8 unless the weight bytes hold that term.
template <Isa I, bool kDeltaInStart>
TANDEM_BLOCK_STEP __m512i iq1su2_start(const Iq1su2Zmm<I>& z, const BlockQ8KU2& a, const int32_t* plus) {
    const __m512i corr = _mm512_loadu_si512(a.corr);
    if constexpr (kDeltaInStart) return _mm512_mask_add_epi32(corr, z.plus, corr, _mm512_loadu_si512(plus));
    return corr;
}
// The lanes' L of one activation block against the unpacked weights (the one-row kernel's: with VBMI the
// delta in the start).
template <Isa I>
TANDEM_BLOCK_STEP __m512i iq1su2_lanes(const Iq1su2Zmm<I>& z, const BlockQ8KU2& a, const int32_t* plus) {
    __m512i acc = iq1su2_start<I, kVbmi>(z, a, plus);
    for (int c = 0; c < 4; ++c) acc = _mm512_dpbusd_epi32(acc, z.w[c], _mm512_loadu_si512(a.qs + 64 * c));
    return acc;
}
// facc += lanes * scale * f: the group-major kernels' float step (scale: each lane's group
// scale, f: the block's factor ad * d * unit).
template <Isa I>
inline __m512 lanes_float_step(__m512 facc, __m512i lanes, __m512 scale, float f) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(scale, _mm512_set1_ps(f)), facc);
}
// sum_blocks for the group-major kernels under AVX-512, whose block(k) gives the lanes'
// integers and their groups' scales.
template <Isa I>
struct ScaledLanes {
    __m512i lanes;
    __m512 scale;
};
template <Isa I, bool kInline, typename Block, typename Act, typename BlockFn>
TANDEM_BLOCK_STEP float sum_scaled_lanes(const Block* wb, const Act* ab, int64_t nb, BlockFn&& block) {
    __m512 facc = _mm512_setzero_ps();
    // f by reference: read after block(k), whose unpacking may hold a compiler memory barrier
    // (IQ2_XXS_U3's sign bits), so the factor's load folds into the VMULPS as a broadcast; taken
    // by value it was loaded before the barrier and broadcast from a register, a port-5 uop more.
    for_blocks_factored<I, kInline>(wb, ab, nb, [&](int64_t k, const float& f) TANDEM_BLOCK_LAMBDA {
        const ScaledLanes<I> b = block(k);
        facc = lanes_float_step<I>(facc, b.lanes, b.scale, f);
    });
    return _mm512_reduce_add_ps(facc);
}
// The chunk step of the formats whose weight bytes go against the activations as they are (a
// function object: passed as a function pointer it was not inlined, 50% slower).
struct DotChunk {
    template <typename Z, typename Act>
    TANDEM_BLOCK_STEP __m512i operator()(const Z& z, int c, const Act& a, __m512i acc) const {
        return _mm512_dpbusd_epi32(acc, z.w[c], _mm512_loadu_si512(a.qs + 64 * c));
    }
};
// The AVX2 group-major kernels' int16 scales of a 32-byte half h of a chunk, where word k
// belongs to group 4h + k / 4 (IQ1_S_U2, IQ2_XXS_U3: 8 weights of a group per half chunk):
// from [8] int16 group scales, twice (both 128-bit lanes).
inline void half_word_scales(__m256i s8x2, __m256i out[2]) {
    out[0] = _mm256_shuffle_epi8(s8x2, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6,
                                                         7, 6, 7, 6, 7));
    out[1] = _mm256_shuffle_epi8(s8x2, _mm256_setr_epi8(8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 12, 13, 12, 13, 12,
                                                         13, 12, 13, 14, 15, 14, 15, 14, 15, 14, 15));
}

// kInlineFactors: each block's factor ad * d/8 computed in the loop (VCVTPH2PS, two multiplies,
// a broadcast: 5 more vector uops per block) instead of 16 blocks at a time by grid_factors
// (scalar copies, one VCVTPH2PS, then a broadcast from memory), as inline_block_factors()
// chooses. NOTES: on the Xeons the vector ports are the bound and the copies use others, so
// grid_factors (15 vector uops per block with VBMI against 20); on Zen 4, which has four vector
// pipes, the copies' wide reload of narrow stores cost more: one thread, bench_cpu kernel/IQ1_S_U2
// (VBMI), 12.4-12.8 block cycles inline, 14.3-14.6 by grid_factors (gathering the factors instead:
// 13.7-14.8). Both give the same bits (the same float operations).
template <Isa I, bool kInlineFactors>
float dot_iq1su2_row(const void* w, const void* a, int64_t n) {  // w: [n/256] IQ1_S_U2, a: [n/256] Q8_K_U2
    const auto* wb = static_cast<const BlockIq1SU2*>(w);
    const auto* ab = static_cast<const BlockQ8KU2*>(a);
    const int64_t nb = n / kQK;
    static_assert(I == Isa::Avx512Vnni, "AVX2: dot_row_avx2");
    return sum_scaled_lanes<I, kInlineFactors>(wb, ab, nb, [&](int64_t k) TANDEM_BLOCK_LAMBDA {
        const Iq1su2Zmm<I> z = iq1su2_unpack<I, kVbmi>(wb[k]);
        return ScaledLanes<I>{iq1su2_lanes<I>(z, ab[k], q8ku2_plus(ab, nb, k)), z.scale};
    });
}

// IQ2_XXS_U3 (IQ2_XXS with its grid values and signs written out, quant/repack.h) against
// Q8_K_U2 (both in IQ1_S_U2's group-major order): IQ2_XXS's integer sum_g s_g sum_{e in g} v_e q_e
// (s = 2 ls + 1, v = +-8, 25 or 43, block factor d/8) with every 4-byte lane of a 64-byte chunk in
// one group, as for IQ1_S_U2: per chunk a shift and a mask for the codes, a VPSHUFB for the
// magnitudes, the chunk's 64 sign bits (a mask register) negating the activations, one VPDPBUSD;
// the group scales per lane (group i / 2) in the float step. NOTES: 24 vector uops per block
// under AVX-512 against ~35 with the natural layout (per chunk a VPMADDUBSW, a scale VPERMW and a
// VPDPWSSD, the scales unpacked to dwords first).
alignas(64) inline constexpr std::array<float, 16> kOddScale = [] {
    std::array<float, 16> t{};
    for (int n = 0; n < 16; ++n) t[static_cast<size_t>(n)] = static_cast<float>(2 * n + 1);
    return t;
}();

// One IQ2_XXS_U3 block under AVX-512: the chunks' magnitudes (with VBMI one VPERMB of the chunk's
// bits, kFieldOf's order; else a shift, a mask and a VPSHUFB), the sign bits (through memory: KMOVQ
// k, m64 is a plain load, GridAcc::set_signs) and the lanes' scales 2 ls + 1.
template <Isa I>
struct Iq2xxsu3Zmm {
    __m512i mag[4];
    alignas(32) __mmask64 sign_bits[4];  // read back as masks: the type KMOVQ's intrinsic takes
    __m512 scale;
};
template <Isa I>
TANDEM_BLOCK_STEP Iq2xxsu3Zmm<I> iq2xxsu3_unpack(const BlockIq2XxsU3& b) {
    Iq2xxsu3Zmm<I> z;
    const __m512i shifts = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    z.scale = _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(load_u32(b.sc))), shifts),
                                    _mm512_load_ps(kOddScale.data()));
    _mm256_store_si256(reinterpret_cast<__m256i*>(z.sign_bits), load32(b.signs));
    asm volatile("" ::: "memory");
    const __m512i x = _mm512_loadu_si512(b.qs);
    const __m512i lut = _mm512_broadcast_i32x4(_mm256_castsi256_si128(iq2xxsu3_lut()));
    for (int c = 0; c < 4; ++c) {
        if constexpr (kVbmi)
            z.mag[c] = _mm512_permutexvar_epi8(c == 3 ? _mm512_srli_epi16(x, 4) : x, load_table<I>(kIq2xxsMagnitudeOf[c == 3 ? 1 : c]));
        else
            z.mag[c] = _mm512_shuffle_epi8(lut, _mm512_and_si512(c ? _mm512_srli_epi16(x, 2 * c) : x, _mm512_set1_epi8(3)));
    }
    return z;
}
// Chunk c's VPDPBUSD: the magnitudes against the activations negated where the sign is set.
struct Iq2xxsChunk {
    template <typename Z>
    TANDEM_BLOCK_STEP __m512i operator()(Z& z, int c, const BlockQ8KU2& a, __m512i acc) const {
        const __m512i v = _mm512_loadu_si512(a.qs + 64 * c);
        return _mm512_dpbusd_epi32(acc, z.mag[c], _mm512_mask_sub_epi8(v, _load_mask64(&z.sign_bits[c]),
                                                                        _mm512_setzero_si512(), v));
    }
};

template <Isa I, bool kInlineFactors>
float dot_iq2xxsu3_row(const void* w, const void* a, int64_t n) {  // w: [n/256] IQ2_XXS_U3, a: [n/256] Q8_K_U2
    const auto* wb = static_cast<const BlockIq2XxsU3*>(w);
    const auto* ab = static_cast<const BlockQ8KU2*>(a);
    const int64_t nb = n / kQK;
    static_assert(I == Isa::Avx512Vnni, "AVX2: dot_row_avx2");
    return sum_scaled_lanes<I, kInlineFactors>(wb, ab, nb, [&](int64_t k) TANDEM_BLOCK_LAMBDA {
        Iq2xxsu3Zmm<I> z = iq2xxsu3_unpack<I>(wb[k]);
        __m512i acc = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) acc = Iq2xxsChunk{}(z, c, ab[k], acc);
        return ScaledLanes<I>{acc, z.scale};
    });
}

// IQ1_M_U2 (IQ1_M with its grid values written out) against Q8_K_U16 (both group-major per 16
// weights, u16_position): per group j (scale s = 2 sc + 1, 8 x / d = s (w - 9) with w = 8 u + 1 +-
// 1), T = sum_j s_j L_j, L_j = sum_{e in j} w_e q_e - 9 qsum_j, block factor d/8. Lane j of every
// 64-byte chunk holds group j's weights 4c .. 4c + 3, so per chunk a shift, a VPTERNLOGD (mask |
// delta) and one VPDPBUSD; the +2 of a delta of +1/8 per lane and entry (chunks 0, 1: entry 2j,
// chunks 2, 3: entry 2j + 1), the scales per lane in the float step. NOTES: 23 vector uops per
// block under AVX-512, where the previous layout (entries, not groups, per 8-byte lane) took a
// VPMADDUBSW, a scale VPERMW and a VPDPWSSD per chunk: ~36. With VBMI chunks 0-2 take a VPERMB
// (port 5) and a VPORD instead of a shift (port 0) and a VPTERNLOGD: the same count, port-0-only
// 11 -> 8 on Intel; one Zen 4 thread, kernel/ block cycles 17.0-17.3 -> 16.7 (inline factors),
// 19.7 -> 19.0 (grid_factors).
alignas(64) inline constexpr std::array<float, 16> kIq1mScale = [] {
    std::array<float, 16> t{};
    for (int n = 0; n < 16; ++n) t[static_cast<size_t>(n)] = static_cast<float>(2 * (n & 7) + 1);
    return t;
}();

// One IQ1_M_U2 block under AVX-512: the chunks' weight bytes w = 8 u + 2 [delta = +1/8] (u of chunk
// c at bits 2c, 2c + 1, moved to bits 3, 4; the spill across bytes falls outside the mask; lane j:
// delta bits 2j for chunks 0, 1 and 2j + 1 for 2, 3) and the lanes' scales (lane j: word j / 4 of
// the scales, its 3-bit field j % 4).
template <Isa I>
struct Iq1mu2Zmm {
    __m512i w[4];
    __m512 scale;
};
template <Isa I>
TANDEM_BLOCK_STEP Iq1mu2Zmm<I> iq1mu2_unpack(const BlockIq1MU2& b) {
    const __m512i words = _mm512_setr_epi32(0, 0, 0, 0, 0x10001, 0x10001, 0x10001, 0x10001, 0x20002, 0x20002, 0x20002, 0x20002,
                                            0x30003, 0x30003, 0x30003, 0x30003);
    const __m512i field_shift = _mm512_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9);
    const __m512i entry_shift = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i m = _mm512_set1_epi8(0x18), two = _mm512_set1_epi8(2);
    Iq1mu2Zmm<I> z;
    const __m512i sc = _mm512_permutexvar_epi16(words, _mm512_set1_epi64(static_cast<long long>(load_u64(b.scales))));
    z.scale = _mm512_permutexvar_ps(_mm512_srlv_epi32(sc, field_shift), _mm512_load_ps(kIq1mScale.data()));  // reads bits 0..3
    const __m512i dl = _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(load_u32(b.delta))), entry_shift);
    const __m512i plus_lo = _mm512_maskz_mov_epi32(_mm512_testn_epi32_mask(dl, _mm512_set1_epi32(1)), two);
    const __m512i plus_hi = _mm512_maskz_mov_epi32(_mm512_testn_epi32_mask(dl, _mm512_set1_epi32(2)), two);
    const __m512i x = _mm512_loadu_si512(b.qs);
    if constexpr (kVbmi) {  // 8 u of chunks 0-2 by a VPERMB each (port 5) instead of a shift (port 0)
        z.w[0] = _mm512_or_si512(_mm512_permutexvar_epi8(x, load_table<I>(kU8Of[0])), plus_lo);
        z.w[1] = _mm512_or_si512(_mm512_permutexvar_epi8(x, load_table<I>(kU8Of[1])), plus_lo);
        z.w[2] = _mm512_or_si512(_mm512_permutexvar_epi8(x, load_table<I>(kU8Of[2])), plus_hi);
    } else {
        z.w[0] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(x, 3), m, plus_lo, 0xEA);
        z.w[1] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(x, 1), m, plus_lo, 0xEA);
        z.w[2] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x, 1), m, plus_hi, 0xEA);
    }
    z.w[3] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x, 3), m, plus_hi, 0xEA);
    return z;
}

template <Isa I, bool kInlineFactors>
float dot_iq1mu2_row(const void* w, const void* a, int64_t n) {  // w: [n/256] IQ1_M_U2, a: [n/256] Q8_K_U16
    const auto* wb = static_cast<const BlockIq1MU2*>(w);
    const auto* ab = static_cast<const BlockQ8KU16*>(a);
    const int64_t nb = n / kQK;
    static_assert(I == Isa::Avx512Vnni, "AVX2: dot_row_avx2");
    return sum_scaled_lanes<I, kInlineFactors>(wb, ab, nb, [&](int64_t k) TANDEM_BLOCK_LAMBDA {
        const Iq1mu2Zmm<I> z = iq1mu2_unpack<I>(wb[k]);
        __m512i acc = _mm512_loadu_si512(ab[k].corr);
        for (int c = 0; c < 4; ++c) acc = DotChunk{}(z, c, ab[k], acc);
        return ScaledLanes<I>{acc, z.scale};
    });
}

// Q2_K_U16 (Q2_K regrouped, quant/repack.h) against Q8_K_U16 (both group-major per 16 weights,
// u16_position): per group j (x = d sc_j q - dmin m_j), L_j = sum_{e in j} q_e a_e, and per block
// ad (d sum_j sc_j L_j - dmin sum_j m_j bsum_j). Lane j of every 64-byte chunk holds group j's
// q of weights 4c .. 4c + 3 at bits 2c, so per chunk a shift, a mask and one VPDPBUSD; sc_j per
// lane in the float step, m_j bsum_j per lane by a VPMADDWD (q2ku16_token). NOTES: 20 vector
// uops per block under AVX-512 with the factors formed 16 blocks at a time (Q2_K's kernel: a VPMADDUBSW, a scale VPERMW and a VPDPWSSD per 64
// weights, about 42).
alignas(64) inline constexpr std::array<float, 16> kNibbleValue = [] {
    std::array<float, 16> t{};
    for (int n = 0; n < 16; ++n) t[static_cast<size_t>(n)] = static_cast<float>(n);
    return t;
}();

// fd = ad * d and fm = ad * dmin of up to 16 consecutive blocks of a format with mins (Q2_K_U16
// under AVX-512), into fd[], fm[]: grid_factors' scalar copies and one conversion per register.
template <Isa I, typename Block, typename Act>
inline void mins_factors(const Block* wb, const Act* ab, int64_t count, float* fd, float* fm) {
    alignas(64) uint16_t d[16] = {}, dmin[16] = {};
    alignas(64) float ad[16] = {};
    for (int64_t k = 0; k < count; ++k) {
        d[k] = wb[k].d;
        dmin[k] = wb[k].dmin;
        ad[k] = act_scale(ab[k]);
        asm volatile("" ::: "memory");  // keeps GCC from turning this strided copy into gathers
    }
    const __m512 a = _mm512_load_ps(ad);
    _mm512_store_ps(fd, _mm512_mul_ps(a, _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d)))));
    _mm512_store_ps(fm, _mm512_mul_ps(a, _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(dmin)))));
}

// step(k, fd, fm) for each of a row's nb blocks, fd = ad * d and fm = ad * dmin: per block
// (kInline) or by mins_factors a register's width of blocks at a time (inline_block_factors
// chooses, as for_blocks_factored); the same float operations either way.
template <Isa I, bool kInline, typename Block, typename Act, typename Step>
TANDEM_BLOCK_STEP void for_blocks_with_mins(const Block* wb, const Act* ab, int64_t nb, Step&& step) {
    if constexpr (kInline) {
        for (int64_t k = 0; k < nb; ++k) {
            prefetch_ahead(wb + k);
            const float ad = act_scale(ab[k]);
            step(k, ad * fp16_to_f32(wb[k].d), ad * fp16_to_f32(wb[k].dmin));
        }
    } else {
        alignas(64) float fd[16], fm[16];
        for (int64_t i0 = 0; i0 < nb; i0 += 16) {
            const int64_t count = std::min<int64_t>(16, nb - i0);
            mins_factors<I>(wb + i0, ab + i0, count, fd, fm);
            for (int64_t k = 0; k < count; ++k) {
                prefetch_ahead(wb + i0 + k);
                step(i0 + k, fd[k], fm[k]);
            }
        }
    }
}

// One Q2_K_U16 block's shared part under AVX-512: the four chunks' q, the lanes' scales sc_j as
// floats and mins m_j as dwords.
template <Isa I>
struct Q2ku16Zmm {
    __m512i q[4];
    __m512 scale;
    __m512i mins;
};
template <Isa I>
inline Q2ku16Zmm<I> q2ku16_unpack(const BlockQ2KU16& b) {
    Q2ku16Zmm<I> z;
    const __m512i sm = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));  // sc_j | m_j << 4
    z.scale = _mm512_permutexvar_ps(sm, _mm512_load_ps(kNibbleValue.data()));                        // reads bits 0..3
    z.mins = _mm512_srli_epi32(sm, 4);
    const __m512i x = _mm512_loadu_si512(b.qs), three = _mm512_set1_epi8(3);
    z.q[0] = _mm512_and_si512(x, three);
    if constexpr (kVbmi) {  // a VPERMB per chunk (port 5) instead of a shift (port 0) and a mask
        z.q[1] = _mm512_permutexvar_epi8(x, load_table<I>(kFieldOf[1]));
        z.q[2] = _mm512_permutexvar_epi8(x, load_table<I>(kFieldOf[2]));
        z.q[3] = _mm512_permutexvar_epi8(_mm512_srli_epi16(x, 4), load_table<I>(kFieldOf[1]));
    } else {
        z.q[1] = _mm512_and_si512(_mm512_srli_epi16(x, 2), three);
        z.q[2] = _mm512_and_si512(_mm512_srli_epi16(x, 4), three);
        z.q[3] = _mm512_and_si512(_mm512_srli_epi16(x, 6), three);
    }
    return z;
}
// One activation block's share, in two accumulators: facc.l += the lanes' L_j sc_j fd, facc.m +=
// -9 m_j bsum_j fm (m_j against the activations' corr = -9 bsum_j: |corr| < 2^15, so a VPMADDWD
// of the dwords multiplies their low halves; the row's sum is l + m / 9, the division once).
// (No member initializers: GCC compiles the implicit constructor without the AVX-512 target.)
template <Isa I>
struct MinsAcc {
    __m512 l, m;
    static MinsAcc zero() { return {_mm512_setzero_ps(), _mm512_setzero_ps()}; }
    float sum() const { return _mm512_reduce_add_ps(l) + _mm512_reduce_add_ps(m) * (1.0f / 9.0f); }
};
template <Isa I>
TANDEM_BLOCK_STEP void q2ku16_token(MinsAcc<I>& facc, const Q2ku16Zmm<I>& z, const BlockQ8KU16& a, float fd, float fm) {
    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z.q[0], _mm512_loadu_si512(a.qs));
    for (int c = 1; c < 4; ++c) acc = _mm512_dpbusd_epi32(acc, z.q[c], _mm512_loadu_si512(a.qs + 64 * c));
    const __m512i mins = _mm512_madd_epi16(_mm512_loadu_si512(a.corr), z.mins);
    facc.l = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(z.scale, _mm512_set1_ps(fd)), facc.l);
    facc.m = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_set1_ps(fm), facc.m);
}

template <Isa I, bool kInlineFactors>
float dot_q2ku16_row(const void* w, const void* a, int64_t n) {  // w: [n/256] Q2_K_U16, a: [n/256] Q8_K_U16
    const auto* wb = static_cast<const BlockQ2KU16*>(w);
    const auto* ab = static_cast<const BlockQ8KU16*>(a);
    const int64_t nb = n / kQK;
    static_assert(I == Isa::Avx512Vnni, "AVX2: dot_row_avx2");
    MinsAcc<I> facc = MinsAcc<I>::zero();
    for_blocks_with_mins<I, kInlineFactors>(wb, ab, nb, [&](int64_t k, float fd, float fm) TANDEM_BLOCK_LAMBDA {
        q2ku16_token<I>(facc, q2ku16_unpack<I>(wb[k]), ab[k], fd, fm);
    });
    return facc.sum();

}

// Q3_K_U16 (Q3_K regrouped, quant/repack.h) against Q8_K_U16: per group j (x = d s_j (u - 4),
// s_j = sc_j - 32, u = low + 4 high in [0, 7]), L_j = sum_{e in j} (u_e - 4) a_e and per block ad d
// sum_j s_j L_j. Lane j of every chunk holds group j's weights: per chunk its low bits (a shift
// and a mask; with VBMI one VPERMB that also adds 5), + 4 where the high bit is set (a masked
// byte add, the chunk's 64 high bits one mask register loaded from the block), one VPDPBUSD; the
// -4 offset against the 16-value sums (with VBMI: w = u + 5 against the activations' corr = -9
// bsum_j, the sum's start); s_j per lane in the float step. NOTES: 23 vector uops per block under
// AVX-512 with VBMI (objdump of the Intel form's loop), ~30 without; Q3_K's kernel (a VPMADDUBSW,
// a scale VPERMW and a VPDPWSSD per 64 weights, the high bits shifted into place) about 45.
template <Isa I>
struct Q3ku16Zmm {
    __m512i w[4];
    __m512 scale;
};
// Lane j's s_j = sc_j - 32 as a float. With VBMI two VPMULTISHIFTQB pick each lane's bits out of
// the broadcast scale bytes (Q3_K's layout: the low nibble of lane j in byte j % 8 at bit 4 (j /
// 8), the high 2 bits in byte 8 + j % 4 at bit 2 (j / 4), taken to bits 4, 5 by a rotation 4 bits
// short), merged by a VPTERNLOGD: 6 vector uops against q3k_scales' 13.
template <Isa I>
inline __m512 q3ku16_scales(const BlockQ3KU16& b) {
    if constexpr (kVbmi) {
        constexpr auto lo_at = [](int j) { return static_cast<long long>(8 * (j % 8) + 4 * (j / 8)); };
        constexpr auto hi_at = [](int j) { return static_cast<long long>((8 * (j % 4) + 2 * (j / 4) + 60) % 64); };
        const __m512i lo = _mm512_multishift_epi64_epi8(
            _mm512_setr_epi64(lo_at(0) | lo_at(1) << 32, lo_at(2) | lo_at(3) << 32, lo_at(4) | lo_at(5) << 32, lo_at(6) | lo_at(7) << 32,
                              lo_at(8) | lo_at(9) << 32, lo_at(10) | lo_at(11) << 32, lo_at(12) | lo_at(13) << 32, lo_at(14) | lo_at(15) << 32),
            _mm512_set1_epi64(static_cast<long long>(load_u64(b.scales))));
        const __m512i hi = _mm512_multishift_epi64_epi8(
            _mm512_setr_epi64(hi_at(0) | hi_at(1) << 32, hi_at(2) | hi_at(3) << 32, hi_at(4) | hi_at(5) << 32, hi_at(6) | hi_at(7) << 32,
                              hi_at(8) | hi_at(9) << 32, hi_at(10) | hi_at(11) << 32, hi_at(12) | hi_at(13) << 32, hi_at(14) | hi_at(15) << 32),
            _mm512_set1_epi32(static_cast<int>(load_u32(b.scales + 8))));
        // 0xE4: (lo & 0x0F) | (hi & ~0x0F), then the low 6 bits
        const __m512i s6 = _mm512_and_si512(_mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi32(0x0F), 0xE4), _mm512_set1_epi32(0x3F));
        return _mm512_cvtepi32_ps(_mm512_sub_epi32(s6, _mm512_set1_epi32(32)));
    } else {
        return _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(q3k_scales(b.scales)));
    }
}
// A chunk's weights w (u, or with VBMI u + 5) from qs (x) and the chunk's high bits (k).
template <Isa I>
TANDEM_BLOCK_STEP __m512i q3ku16_chunk(__m512i x, __mmask64 k, int c) {
    __m512i low;
    if constexpr (kVbmi) {
        low = _mm512_permutexvar_epi8(c == 3 ? _mm512_srli_epi16(x, 4) : x, load_table<I>(kFieldPlus5Of[c == 3 ? 1 : c]));
    } else {
        low = _mm512_and_si512(c ? _mm512_srli_epi16(x, 2 * c) : x, _mm512_set1_epi8(3));
    }
    // low + 4 where k is set, in place: the merge-masked intrinsic had GCC copy the register
    // first, a move per chunk
    asm("vpaddb %[four], %[v], %[v]%{%[k]%}" : [v] "+v"(low) : [four] "v"(_mm512_set1_epi8(4)), [k] "Yk"(k));
    return low;
}
// The lanes' starting sums: the offsets against the activations' 16-value sums.
template <Isa I>
inline __m512i q3ku16_start(const BlockQ8KU16& a) {
    if constexpr (kVbmi) return _mm512_loadu_si512(a.corr);  // w = u + 5: sum w q - 9 qsum
    else return _mm512_madd_epi16(_mm512_cvtepi16_epi32(load32(a.bsums)), _mm512_set1_epi32(0xFFFC));  // w = u: - 4 qsum
}
// The chunks' high bits as mask registers, through memory: KMOVQ k, m64 is a plain load
// (GridAcc::set_signs).
struct HighBits {
    alignas(32) __mmask64 bits[4];  // read back as masks: the type KMOVQ's intrinsic takes
};
template <Isa I>
inline void load_high_bits(const BlockQ3KU16& b, HighBits& h) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(h.bits), load32(b.hmask));
    asm volatile("" ::: "memory");
}
template <Isa I>
inline __mmask64 high_mask(HighBits& h, int c) { return _load_mask64(&h.bits[c]); }

template <Isa I>
inline Q3ku16Zmm<I> q3ku16_unpack(const BlockQ3KU16& b) {
    Q3ku16Zmm<I> z;
    z.scale = q3ku16_scales<I>(b);
    HighBits h;
    load_high_bits<I>(b, h);
    const __m512i x = _mm512_loadu_si512(b.qs);
    for (int c = 0; c < 4; ++c) z.w[c] = q3ku16_chunk<I>(x, high_mask<I>(h, c), c);
    return z;
}
// The lanes' L_j of one activation block against the unpacked weights.
template <Isa I>
inline __m512i q3ku16_lanes(const Q3ku16Zmm<I>& z, const BlockQ8KU16& a) {
    __m512i acc = q3ku16_start<I>(a);
    for (int c = 0; c < 4; ++c) acc = _mm512_dpbusd_epi32(acc, z.w[c], _mm512_loadu_si512(a.qs + 64 * c));
    return acc;
}

template <Isa I, bool kInlineFactors>
float dot_q3ku16_row(const void* w, const void* a, int64_t n) {  // w: [n/256] Q3_K_U16, a: [n/256] Q8_K_U16
    const auto* wb = static_cast<const BlockQ3KU16*>(w);
    const auto* ab = static_cast<const BlockQ8KU16*>(a);
    const int64_t nb = n / kQK;
    static_assert(I == Isa::Avx512Vnni, "AVX2: dot_row_avx2");
    return sum_scaled_lanes<I, kInlineFactors>(wb, ab, nb, [&](int64_t k) TANDEM_BLOCK_LAMBDA {
        // the chunks unpacked and dotted one at a time (the same integers as q3ku16_lanes)
        HighBits h;
        load_high_bits<I>(wb[k], h);
        const __m512i x = _mm512_loadu_si512(wb[k].qs);
        __m512i acc = q3ku16_start<I>(ab[k]);
        for (int c = 0; c < 4; ++c)
            acc = _mm512_dpbusd_epi32(acc, q3ku16_chunk<I>(x, high_mask<I>(h, c), c), _mm512_loadu_si512(ab[k].qs + 64 * c));
        return ScaledLanes<I>{acc, q3ku16_scales<I>(wb[k])};
    });
}

// ---- several activation rows per weight row (VecDotRowsFn) ----
//
// The several-rows kernels of the group-major formats: per block unpack(b) once (its weights and
// lanes' scales, z.scale), then for each of the T activation rows the lanes' integers, start(z, a)
// stepped by chunk(z, c, a, acc) for c = 0 .. 3 (token-innermost, so consecutive VPDPBUSDs are
// independent: a row's four are a chain), and the one-row kernels' float step with the same
// factor (ad * (d * unit)): every result is bit-identical to the format's one-row kernel.
constexpr int kRowsChunk = 8;
template <int T, typename Block, typename Act, typename Unpack, typename Start, typename Chunk>
void scaled_lanes_rows_chunk(const Block* wb, const Act* const* a, int64_t nb, float* out, Unpack&& unpack, Start&& start, Chunk&& chunk) {
    constexpr Isa I = Isa::Avx512Vnni;
    __m512 facc[T];
    for (int t = 0; t < T; ++t) facc[t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb; ++k) {
        const Block& b = wb[k];
        prefetch_ahead(wb + k);
        auto z = unpack(b);
        const float wd = fp16_to_f32(grid_d(b)) * kGridUnit<Block>;
        __m512i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = start(z, a[t][k]);
        for (int c = 0; c < 4; ++c)
            for (int t = 0; t < T; ++t) acc[t] = chunk(z, c, a[t][k], acc[t]);
        for (int t = 0; t < T; ++t) facc[t] = lanes_float_step<I>(facc[t], acc[t], z.scale, act_scale(a[t][k]) * wd);
    }
    for (int t = 0; t < T; ++t) out[t] = _mm512_reduce_add_ps(facc[t]);
}

// chunk(std::integral_constant<int, T>, j) for activation rows j .. j + T - 1, T = kRowsChunk
// until fewer are left, then the rest at once.
template <typename Chunk>
inline void for_row_chunks(int n_act, Chunk&& chunk) {
    int j = 0;
    for (; j + kRowsChunk <= n_act; j += kRowsChunk) chunk(std::integral_constant<int, kRowsChunk>{}, j);
    switch (n_act - j) {
        case 0: break;
        case 1: chunk(std::integral_constant<int, 1>{}, j); break;
        case 2: chunk(std::integral_constant<int, 2>{}, j); break;
        case 3: chunk(std::integral_constant<int, 3>{}, j); break;
        case 4: chunk(std::integral_constant<int, 4>{}, j); break;
        case 5: chunk(std::integral_constant<int, 5>{}, j); break;
        case 6: chunk(std::integral_constant<int, 6>{}, j); break;
        default: chunk(std::integral_constant<int, 7>{}, j); break;
    }
}
static_assert(kRowsChunk == 8);

template <typename Block, typename Act, typename Unpack, typename Start, typename Chunk>
void scaled_lanes_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out, Unpack&& unpack, Start&& start, Chunk&& chunk) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* const* ab = reinterpret_cast<const Act* const*>(a);
    for_row_chunks(n_act, [&](auto t, int j) {
        scaled_lanes_rows_chunk<decltype(t)::value>(wb, ab + j, n / kQK, out + j, unpack, start, chunk);
    });
}

// IQ1_S_U2 (iq1su2_unpack with the delta in the weight bytes), starting from the activations' corr.
template <Isa I>
void dot_iq1su2_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    scaled_lanes_rows<BlockIq1SU2, BlockQ8KU2>(
        w, a, n_act, n, out, [&](const BlockIq1SU2& b) TANDEM_BLOCK_LAMBDA { return iq1su2_unpack<I, false>(b); },
        [&](const Iq1su2Zmm<I>& z, const BlockQ8KU2& q) TANDEM_BLOCK_LAMBDA { return iq1su2_start<I, false>(z, q, nullptr); }, DotChunk{});
}

// Q2_K_U16 against n_act <= kRowsChunk activation rows: each block unpacked once (q2ku16_unpack),
// then every row's dot and float step as dot_q2ku16_row's (its factors the same products), so
// every result is bit-identical to it.
template <int T>
void dot_q2ku16_rows_chunk(const BlockQ2KU16* wb, const BlockQ8KU16* const* a, int64_t nb, float* out) {
    constexpr Isa I = Isa::Avx512Vnni;
    MinsAcc<I> facc[T];
    for (int t = 0; t < T; ++t) facc[t] = MinsAcc<I>::zero();
    for (int64_t k = 0; k < nb; ++k) {
        const BlockQ2KU16& b = wb[k];
        prefetch_ahead(wb + k);
        const Q2ku16Zmm<I> z = q2ku16_unpack<I>(b);
        const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
        for (int t = 0; t < T; ++t) {
            const float ad = a[t][k].d;
            q2ku16_token<I>(facc[t], z, a[t][k], ad * d, ad * dmin);
        }
    }
    for (int t = 0; t < T; ++t) out[t] = facc[t].sum();
}

template <Isa I>
void dot_q2ku16_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    const auto* wb = static_cast<const BlockQ2KU16*>(w);
    const auto* const* ab = reinterpret_cast<const BlockQ8KU16* const*>(a);
    for_row_chunks(n_act, [&](auto t, int j) { dot_q2ku16_rows_chunk<decltype(t)::value>(wb, ab + j, n / kQK, out + j); });
}

// Q3_K_U16 (q3ku16_unpack), starting from its offsets (q3ku16_start).
template <Isa I>
void dot_q3ku16_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    scaled_lanes_rows<BlockQ3KU16, BlockQ8KU16>(
        w, a, n_act, n, out, [&](const BlockQ3KU16& b) TANDEM_BLOCK_LAMBDA { return q3ku16_unpack<I>(b); },
        [&](const auto&, const BlockQ8KU16& q) TANDEM_BLOCK_LAMBDA { return q3ku16_start<I>(q); }, DotChunk{});
}

// IQ2_XXS_U3 (iq2xxsu3_unpack, Iq2xxsChunk) and IQ1_M_U2 (iq1mu2_unpack, from the activations' corr).
template <Isa I>
void dot_iq2xxsu3_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    scaled_lanes_rows<BlockIq2XxsU3, BlockQ8KU2>(
        w, a, n_act, n, out, [&](const BlockIq2XxsU3& b) TANDEM_BLOCK_LAMBDA { return iq2xxsu3_unpack<I>(b); },
        [&](const auto&, const BlockQ8KU2&) TANDEM_BLOCK_LAMBDA { return _mm512_setzero_si512(); }, Iq2xxsChunk{});
}
template <Isa I>
void dot_iq1mu2_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    scaled_lanes_rows<BlockIq1MU2, BlockQ8KU16>(
        w, a, n_act, n, out, [&](const BlockIq1MU2& b) TANDEM_BLOCK_LAMBDA { return iq1mu2_unpack<I>(b); },
        [&](const auto&, const BlockQ8KU16& q) TANDEM_BLOCK_LAMBDA { return _mm512_loadu_si512(q.corr); }, DotChunk{});
}

// IQ3_XXS_U4 against n_act <= kRowsChunk activation rows: each block's u, offsets and chunk scales
// once, then per row grid_block's integer steps (the offsets against the sums, a VPMADDUBSW and a
// VPDPWSSD per 64 weights) and dot_grid_row's float step: bit-identical results.
template <int T>
void dot_iq3xxsu4_rows_chunk(const BlockIq3XxsU4* wb, const BlockQ8K* const* a, int64_t nb, float* out) {
    constexpr Isa I = Isa::Avx512Vnni;
    const __m512i lut = _mm512_broadcast_i32x4(iq3xxsu4_u_table());
    FloatAcc<I> facc[T];
    for (int64_t k = 0; k < nb; ++k) {
        const BlockIq3XxsU4& b = wb[k];
        prefetch_ahead(wb + k);
        const __m256i s32 = nibble_scales32(b.sc);
        const __m256i off16 = _mm256_mullo_epi16(_mm256_or_si256(s32, _mm256_slli_epi32(s32, 16)), _mm256_set1_epi16(-62));
        const __m512i x[2] = {_mm512_loadu_si512(b.q), _mm512_loadu_si512(b.q + 64)};
        __m512i u[4], scale[4];
        for (int c = 0; c < 4; ++c) {
            u[c] = _mm512_shuffle_epi8(lut, _mm512_and_si512(c >= 2 ? _mm512_srli_epi16(x[c % 2], 4) : x[c % 2], _mm512_set1_epi8(0x0F)));
            scale[c] = scales64<I, true, 2>(s32, c);
        }
        const float wd = fp16_to_f32(grid_d(b)) * kGridUnit<BlockIq3XxsU4>;
        for (int t = 0; t < T; ++t) {
            const BlockQ8K& q = a[t][k];
            __m512i v = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(load32(q.bsums)), _mm512_zextsi256_si512(off16));
            for (int c = 0; c < 4; ++c)
                v = _mm512_dpwssd_epi32(v, _mm512_maddubs_epi16(u[c], _mm512_loadu_si512(q.qs + 64 * c)), scale[c]);
            facc[t].add(v, act_scale(q) * wd);
        }
    }
    for (int t = 0; t < T; ++t) out[t] = facc[t].sum();
}

template <Isa I>
void dot_iq3xxsu4_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    const auto* wb = static_cast<const BlockIq3XxsU4*>(w);
    const auto* const* ab = reinterpret_cast<const BlockQ8K* const*>(a);
    for_row_chunks(n_act, [&](auto t, int j) { dot_iq3xxsu4_rows_chunk<decltype(t)::value>(wb, ab + j, n / kQK, out + j); });
}

// K formats (Q2_K .. Q6_K): each block unpacked once (k_unpack), then k_token per activation
// row: the integer lanes and float steps of block_dot, so the results equal dot_k_row's.
template <Isa I, typename Block, int T>
void dot_k_rows_chunk(const Block* wb, const BlockQ8K* const* a, int64_t nb, float* out) {
    __m256 facc[T];
    for (int t = 0; t < T; ++t) facc[t] = _mm256_setzero_ps();
    for (int64_t k = 0; k < nb; ++k) {
        prefetch_ahead(wb + k);
        const KBlockZmm w = k_unpack<I>(wb[k]);
        for (int t = 0; t < T; ++t) k_token<I>(wb + k, w, a[t][k], facc[t]);
    }
    for (int t = 0; t < T; ++t) out[t] = hsum(facc[t]);
}

template <Isa I, typename Block>
void dot_k_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* const* ab = reinterpret_cast<const BlockQ8K* const*>(a);
    for_row_chunks(n_act, [&](auto t, int j) { dot_k_rows_chunk<I, Block, decltype(t)::value>(wb, ab + j, n / kQK, out + j); });
}

// ---- AVX2: several activation rows per weight row ----
//
// Each AVX2 one-row kernel of a 256-weight format takes a block in eight steps of 32 weights,
// acc += VPMADDWD(VPMADDUBSW(u, q), scales) with q the activations' bytes 32 i .. 32 i + 31 of
// step i, in the natural formats and the group-major ones alike (there step i = 2 c + h, chunk c's
// half h, at 64 c + 32 h). Steps32 holds a block's eight steps (u, the int16 scales, IQ2_XXS_U3's
// signs), unpacked once for every activation row; the integer sums are exact, so they do not
// depend on the steps' order, and each row's float step is its one-row kernel's: the results are
// bit-identical to it (test_vec_dot RowsKernelMatchesOneRowBitForBit). For the group-major layouts
// one row of it is the one-row kernel (dot_row_avx2). NOTES: the K formats keep block_dot's own
// AVX2 steps for one row: as one row of this kernel they ran 3-15% slower (one Zen 4 thread as
// AVX2, kernel/ block cycles Q2_K 27.4-28.9 -> 30.4-30.5, Q3_K 45.4-46.7 -> 51.0, Q4_K 23.4-24.8 ->
// 24.7-25.0, Q6_K 32.3-32.5 -> 36.2-39.4): a block's eight u and eight scales held at once do not
// fit AVX2's 16 registers, where block_dot unpacks each step as it goes.
struct Steps32 {
    __m256i u[8];
    __m256i s[8];
    __m256i sign[8];  // IQ2_XXS_U3: -1 or 1 per activation byte
    __m256i coef;     // [16] int16 against the activations' 16-value sums (mins or offsets)
    float d, dmin;    // the block's factors: d (grid formats: d x unit), dmin (formats with mins)
};
// How a format's one-row kernel turns a block's integers into floats (fd = ad x d).
enum class Avx2Float {
    mins,           // Q2_K, Q4_K, Q5_K, Q2_K_U16: acc fd - (coef . sums) ad dmin
    minus_offsets,  // Q6_K: (acc - coef . sums) fd
    plain,          // Q3_K, and the grid formats (d already x unit): acc fd, acc started at coef . sums
};

TANDEM_BLOCK_STEP Steps32 steps32(const BlockQ2K& b) {
    __m256i sc16;
    Steps32 z;
    q2k_scales_mins16(b.scales, sc16, z.coef);
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
    for (int c = 0; c < 8; ++c) {
        z.u[c] = q2k_chunk(b, c);
        z.s[c] = scale_pair(sc[2 * c], sc[2 * c + 1]);
    }
    z.d = fp16_to_f32(b.d);
    z.dmin = fp16_to_f32(b.dmin);
    return z;
}
TANDEM_BLOCK_STEP Steps32 steps32(const BlockQ3K& b) {
    const __m256i sc16 = q3k_scales(b.scales);
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
    Steps32 z;
    z.coef = _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-4));
    for (int c = 0; c < 8; ++c) {
        z.u[c] = q3k_chunk(b, c);
        z.s[c] = scale_pair(sc[2 * c], sc[2 * c + 1]);
    }
    z.d = fp16_to_f32(b.d);
    return z;
}
template <typename Block>
TANDEM_BLOCK_STEP Steps32 k4_steps32(const Block& b) {
    const __m128i sm = k4_scales_mins(b.scales);
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), _mm256_cvtepu8_epi16(sm));
    Steps32 z;
    z.coef = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
    for (int k = 0; k < 4; ++k) {
        k4_chunks(b, k, z.u[2 * k], z.u[2 * k + 1]);
        z.s[2 * k] = _mm256_set1_epi16(sc[2 * k]);
        z.s[2 * k + 1] = _mm256_set1_epi16(sc[2 * k + 1]);
    }
    z.d = fp16_to_f32(b.d);
    z.dmin = fp16_to_f32(b.dmin);
    return z;
}
TANDEM_BLOCK_STEP Steps32 steps32(const BlockQ4K& b) { return k4_steps32(b); }
TANDEM_BLOCK_STEP Steps32 steps32(const BlockQ5K& b) { return k4_steps32(b); }
TANDEM_BLOCK_STEP Steps32 steps32(const BlockQ6K& b) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
    Steps32 z;
    z.coef = _mm256_slli_epi16(sc16, 5);
    for (int c = 0; c < 8; ++c) {
        z.u[c] = q6k_chunk(b, c);
        z.s[c] = scale_pair(sc[2 * c], sc[2 * c + 1]);
    }
    z.d = fp16_to_f32(b.d);
    return z;
}
// The group-major formats per 16 weights: half h holds groups 8h .. 8h + 7 (a dword each), whose
// [8] int16 scales sh give word k of a step the scale of group 8h + k / 2.
inline __m256i group16_word_scales(__m256i s16, int h) {
    const __m128i sh = h ? _mm256_extracti128_si256(s16, 1) : _mm256_castsi256_si128(s16);
    return _mm256_setr_m128i(_mm_unpacklo_epi16(sh, sh), _mm_unpackhi_epi16(sh, sh));
}
TANDEM_BLOCK_STEP Steps32 steps32(const BlockQ2KU16& b) {
    __m256i s16;
    Steps32 z;
    q2k_scales_mins16(b.scales, s16, z.coef);
    for (int h = 0; h < 2; ++h) {
        const __m256i x = load32(b.qs + 32 * h);
        for (int c = 0; c < 4; ++c) {
            z.u[2 * c + h] = _mm256_and_si256(c ? _mm256_srli_epi16(x, 2 * c) : x, _mm256_set1_epi8(3));
            z.s[2 * c + h] = group16_word_scales(s16, h);
        }
    }
    z.d = fp16_to_f32(b.d);
    z.dmin = fp16_to_f32(b.dmin);
    return z;
}
TANDEM_BLOCK_STEP Steps32 steps32(const BlockQ3KU16& b) {
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i s16 = q3k_scales(b.scales);
    Steps32 z;
    z.coef = _mm256_mullo_epi16(s16, _mm256_set1_epi16(-4));
    for (int h = 0; h < 2; ++h) {
        const __m256i x = load32(b.qs + 32 * h);
        for (int c = 0; c < 4; ++c) {
            const __m256i high = sign_bytes(_mm256_set1_epi32(static_cast<int>(load_u32(b.hmask + 8 * c + 4 * h))), spread);
            z.u[2 * c + h] = _mm256_or_si256(_mm256_and_si256(c ? _mm256_srli_epi16(x, 2 * c) : x, _mm256_set1_epi8(3)),
                                             _mm256_and_si256(high, _mm256_set1_epi8(4)));
            z.s[2 * c + h] = group16_word_scales(s16, h);
        }
    }
    z.d = fp16_to_f32(b.d) * kGridUnit<BlockQ3KU16>;
    return z;
}
TANDEM_BLOCK_STEP Steps32 steps32(const BlockIq1MU2& b) {
    const __m256i s16 = iq1m_scales16(b.scales);
    Steps32 z;
    z.coef = _mm256_mullo_epi16(s16, _mm256_set1_epi16(-9));
    const __m256i delta = _mm256_set1_epi32(static_cast<int>(load_u32(b.delta)));
    for (int h = 0; h < 2; ++h) {
        const __m256i dl = _mm256_srlv_epi32(delta, _mm256_add_epi32(_mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), _mm256_set1_epi32(16 * h)));
        const __m256i x = load32(b.qs + 32 * h);
        for (int c = 0; c < 4; ++c) {
            const __m256i bit = _mm256_set1_epi32(c < 2 ? 1 : 2);
            const __m256i plus = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(dl, bit), _mm256_setzero_si256()), _mm256_set1_epi8(2));
            const __m256i s = c == 0 ? _mm256_slli_epi16(x, 3) : c == 1 ? _mm256_slli_epi16(x, 1) : c == 2 ? _mm256_srli_epi16(x, 1) : _mm256_srli_epi16(x, 3);
            z.u[2 * c + h] = _mm256_or_si256(_mm256_and_si256(s, _mm256_set1_epi8(0x18)), plus);
            z.s[2 * c + h] = group16_word_scales(s16, h);
        }
    }
    z.d = fp16_to_f32(grid_d(b)) * kGridUnit<BlockIq1MU2>;
    return z;
}
// The group-major formats per 32 weights (IQ1_S_U2, IQ2_XXS_U3): half h holds groups 4h .. 4h + 3,
// 8 bytes each (half_word_scales).
TANDEM_BLOCK_STEP Steps32 steps32(const BlockIq1SU2& b) {
    __m128i scale8, off;
    iq1su2_scales(b, scale8, off);
    Steps32 z;
    z.coef = _mm256_setr_m128i(_mm_unpacklo_epi16(off, off), _mm_unpackhi_epi16(off, off));
    __m256i word_scales[2];
    half_word_scales(_mm256_broadcastsi128_si256(scale8), word_scales);
    for (int h = 0; h < 2; ++h) {
        const __m256i x = load32(b.qs + 32 * h);
        for (int c = 0; c < 4; ++c) {
            z.u[2 * c + h] = _mm256_and_si256(c ? _mm256_srli_epi16(x, 2 * c) : x, _mm256_set1_epi8(3));
            z.s[2 * c + h] = word_scales[h];
        }
    }
    z.d = fp16_to_f32(grid_d(b)) * kGridUnit<BlockIq1SU2>;
    return z;
}
TANDEM_BLOCK_STEP Steps32 steps32(const BlockIq2XxsU3& b) {
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    Steps32 z;
    z.coef = _mm256_setzero_si256();
    __m256i word_scales[2];
    half_word_scales(_mm256_broadcastsi128_si256(_mm_or_si128(_mm_slli_epi16(_mm_cvtepu8_epi16(nibbles8(b.sc)), 1), _mm_set1_epi16(1))),
                     word_scales);
    for (int h = 0; h < 2; ++h) {
        const __m256i x = load32(b.qs + 32 * h);
        for (int c = 0; c < 4; ++c) {
            z.u[2 * c + h] = _mm256_shuffle_epi8(iq2xxsu3_lut(), _mm256_and_si256(c ? _mm256_srli_epi16(x, 2 * c) : x, _mm256_set1_epi8(3)));
            const __m256i neg = sign_bytes(_mm256_set1_epi32(static_cast<int>(load_u32(b.signs + 8 * c + 4 * h))), spread);
            z.sign[2 * c + h] = _mm256_or_si256(neg, _mm256_set1_epi8(1));
            z.s[2 * c + h] = word_scales[h];
        }
    }
    z.d = fp16_to_f32(grid_d(b)) * kGridUnit<BlockIq2XxsU3>;
    return z;
}

template <typename Block>
constexpr Avx2Float kAvx2Float = std::is_same_v<Block, BlockQ6K> ? Avx2Float::minus_offsets
                                 : std::is_same_v<Block, BlockQ2K> || std::is_same_v<Block, BlockQ4K> || std::is_same_v<Block, BlockQ5K> ||
                                           std::is_same_v<Block, BlockQ2KU16>
                                     ? Avx2Float::mins
                                     : Avx2Float::plain;
template <typename Block>
constexpr bool kAvx2Signed = std::is_same_v<Block, BlockIq2XxsU3>;
// Whether acc starts at coef . sums (the offsets, into the block's integer).
template <typename Block>
constexpr bool kAvx2StartsAtOffsets = kAvx2Float<Block> == Avx2Float::plain && !kAvx2Signed<Block>;

template <typename Block, typename Act, int T>
void dot_rows_chunk_avx2(const Block* wb, const Act* const* a, int64_t nb, float* out) {
    constexpr Isa I = Isa::Avx2;
    __m256 facc[T];
    for (int t = 0; t < T; ++t) facc[t] = _mm256_setzero_ps();
    for (int64_t k = 0; k < nb; ++k) {
        prefetch_ahead(wb + k);
        const Steps32 z = steps32(wb[k]);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) {
            const auto& q = a[t][k];
            acc[t] = kAvx2StartsAtOffsets<Block> ? _mm256_madd_epi16(load32(q.bsums), z.coef) : _mm256_setzero_si256();
        }
        for (int i = 0; i < 8; ++i)
            for (int t = 0; t < T; ++t) {
                __m256i q = load32(a[t][k].qs + 32 * i);
                if constexpr (kAvx2Signed<Block>) q = _mm256_sign_epi8(q, z.sign[i]);
                acc[t] = scaled_dot<I>(acc[t], z.u[i], q, z.s[i]);
            }
        for (int t = 0; t < T; ++t) {
            const auto& q = a[t][k];
            const float ad = q.d;
            if constexpr (kAvx2Float<Block> == Avx2Float::mins) {
                const __m256i mins = _mm256_madd_epi16(load32(q.bsums), z.coef);
                facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[t]), _mm256_set1_ps(ad * z.d), facc[t]);
                facc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(ad * z.dmin), facc[t]);
            } else if constexpr (kAvx2Float<Block> == Avx2Float::minus_offsets) {
                const __m256i off = _mm256_madd_epi16(load32(q.bsums), z.coef);
                facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[t], off)), _mm256_set1_ps(ad * z.d), facc[t]);
            } else {
                facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[t]), _mm256_set1_ps(ad * z.d), facc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) out[t] = hsum(facc[t]);
}

// One row of it: the AVX2 one-row kernel of the group-major layouts (one Zen 4 thread as an AVX2
// CPU, bench_cpu kernel/ block cycles, against their former own kernels with the factors formed 8
// blocks at a time: IQ1_S_U2 22.6 -> 19.2, Q2_K_U16 23.7 -> 20.0, Q3_K_U16 37.1 -> 35.0, IQ1_M_U2
// 30.7 -> 28.8, IQ2_XXS_U3 38.2 -> 37.0).
template <typename Block, typename Act>
float dot_row_avx2(const void* w, const void* a, int64_t n) {
    float out;
    const void* acts[1] = {a};
    dot_rows_chunk_avx2<Block, Act, 1>(static_cast<const Block*>(w), reinterpret_cast<const Act* const*>(acts), n / kQK, &out);
    return out;
}

// AVX2 has 16 registers: 4 rows at a time (their integer and float accumulators, a step's u and scales).
constexpr int kRowsChunkAvx2 = 4;
template <typename Block, typename Act>
void dot_rows_avx2(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* const* ab = reinterpret_cast<const Act* const*>(a);
    const int64_t nb = n / kQK;
    int j = 0;
    for (; j + kRowsChunkAvx2 <= n_act; j += kRowsChunkAvx2) dot_rows_chunk_avx2<Block, Act, kRowsChunkAvx2>(wb, ab + j, nb, out + j);
    switch (n_act - j) {
        case 1: dot_rows_chunk_avx2<Block, Act, 1>(wb, ab + j, nb, out + j); break;
        case 2: dot_rows_chunk_avx2<Block, Act, 2>(wb, ab + j, nb, out + j); break;
        case 3: dot_rows_chunk_avx2<Block, Act, 3>(wb, ab + j, nb, out + j); break;
        default: break;
    }
}
static_assert(kRowsChunkAvx2 == 4);

// The 32 signed 4-bit (Q4_0) or 5-bit (Q5_0) values of a block as [32] int8: the low nibbles
// of qs are elements 0..15, the high nibbles 16..31; Q5_0's qh bit j is element j's fifth bit.
inline __m256i unpack_nibbles(const uint8_t* qs) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(0x0f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f));
    return _mm256_setr_m128i(lo, hi);
}

inline __m256i fifth_bits(const uint8_t* qh) {  // byte j = 0x10 when bit j of the u32 is set
    uint32_t bits;
    std::memcpy(&bits, qh, 4);
    // Byte j takes byte j/8 of the word, then keeps bit j%8.
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int>(bits)),
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// ---- non-linear 4-bit values (IQ4_NL, IQ4_XS): a 16-byte table lookup with vpshufb ----

// The 32 values of one 16-byte nibble run as [32] int8: low nibbles are elements 0..15,
// high nibbles 16..31 (Q4_0's order, which IQ4_NL and IQ4_XS's sub-blocks share).
inline __m256i iq4_values(const uint8_t* qs) {
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
    return _mm256_shuffle_epi8(lut, unpack_nibbles(qs));
}

template <Isa I>
inline void block_dot(const BlockIq4Xs& b, const BlockQ8K& a, __m256& facc) {
    // Scales: low nibble of scales_l[i / 2] (nibble i % 2) | bits 2i..2i+1 of scales_h << 4, - 32.
    alignas(16) int16_t sc[8];
    const uint32_t lo = load_u32(b.scales_l), hi = b.scales_h;
    for (int i = 0; i < 8; ++i) sc[i] = static_cast<int16_t>((((lo >> (4 * i)) & 0x0F) | (((hi >> (2 * i)) & 3) << 4)) - 32);
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < 8; ++i) {
        // Signed values: |v| is the unsigned operand, v's sign moves onto qa (|v| <= 127).
        const __m256i v = iq4_values(b.qs + 16 * i);
        const __m256i qa = _mm256_sign_epi8(load32(a.qs + 32 * i), v);
        acc = scaled_dot<I>(acc, _mm256_abs_epi8(v), qa, _mm256_set1_epi16(sc[i]));
    }
    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(a.d * fp16_to_f32(b.d)), facc);
}

// ---- 32-weight blocks (Q8_0, Q4_0, Q5_0, IQ4_NL, Q4_1, Q5_1) against Q8_0, one or several rows ----

// A block's 32 values as [32] int8: signed (Q8_0, Q4_0, Q5_0, IQ4_NL) or, for the formats with a
// min (Q4_1, Q5_1: x = d q + m), the unsigned q.
template <typename Block>
constexpr bool kQ32Min = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>;
template <typename Block>
TANDEM_BLOCK_STEP __m256i q32_values(const Block& b) {
    if constexpr (std::is_same_v<Block, BlockQ8_0>) {
        return load32(b.qs);
    } else if constexpr (std::is_same_v<Block, BlockIq4Nl>) {
        return iq4_values(b.qs);
    } else if constexpr (std::is_same_v<Block, BlockQ5_0>) {
        return _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles(b.qs), fifth_bits(b.qh)), _mm256_set1_epi8(16));
    } else if constexpr (std::is_same_v<Block, BlockQ4_0>) {
        return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8));
    } else if constexpr (std::is_same_v<Block, BlockQ5_1>) {
        return _mm256_or_si256(unpack_nibbles(b.qs), fifth_bits(b.qh));
    } else {
        static_assert(std::is_same_v<Block, BlockQ4_1>);
        return unpack_nibbles(b.qs);
    }
}

// These formats against T Q8_0 activation rows: each block's values once, then per row the
// integer dot and the float step (signed values: |w| in the unsigned operand, w's sign onto the
// activations; with a min: d sum(q qa) + m sum(qa)). T = 1 is the one-row kernel (dot_q32_row), so
// the several-rows kernel (dot_q32_rows) gives its bits: a prompt's llama-family products on CPUs
// without a bf16 unit (AVX2, AVX-512 before Cooper Lake) take this path, each block unpacked once
// for up to 8 tokens instead of once per token.
template <Isa I, typename Block, int T>
void dot_q32_rows_chunk(const Block* wb, const BlockQ8_0* const* a, int64_t nb, float* out) {
    __m256 facc[T];
    for (int t = 0; t < T; ++t) facc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        prefetch_ahead(wb + i);
        const __m256i q = q32_values(wb[i]);
        const float wd = fp16_to_f32(wb[i].d);
        if constexpr (kQ32Min<Block>) {
            const float wm = fp16_to_f32(wb[i].m);
            for (int t = 0; t < T; ++t) {
                const __m256i qa = load32(a[t][i].qs);
                const float ad = fp16_to_f32(a[t][i].d);
                facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8<I>(q, qa)), _mm256_set1_ps(wd * ad), facc[t]);
                facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8<I>(_mm256_set1_epi8(1), qa)), _mm256_set1_ps(wm * ad), facc[t]);
            }
        } else {
            const __m256i u = _mm256_abs_epi8(q);
            for (int t = 0; t < T; ++t) {
                const __m256i dot = dot_u8<I>(u, _mm256_sign_epi8(load32(a[t][i].qs), q));
                facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(wd * fp16_to_f32(a[t][i].d)), facc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) out[t] = hsum(facc[t]);
}
template <Isa I, typename Block>
float dot_q32_row(const void* w, const void* a, int64_t n) {  // w: [n/32] Block, a: [n/32] Q8_0
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    float out;
    dot_q32_rows_chunk<I, Block, 1>(static_cast<const Block*>(w), &ab, n / kQ32, &out);
    return out;
}
template <Isa I, typename Block>
void dot_q32_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* const* ab = reinterpret_cast<const BlockQ8_0* const*>(a);
    for_row_chunks(n_act, [&](auto t, int j) { dot_q32_rows_chunk<I, Block, decltype(t)::value>(wb, ab + j, n / kQ32, out + j); });
}

// ---- Q4_0 / Q5_0 under AVX-512: two blocks per zmm ----
//
// Each block's 32 weights become unsigned bytes q with w = q - kOffset (8 for Q4_0, 16 for
// Q5_0); per pair of blocks one vpdpbusd for sum(q qa) and one for kOffset * sum(qa): the
// same integers as the scalar form. Float factors ad * d are converted 16 blocks at a time.
// NOTES: measured against the 256-bit kernel (interleaved A/B, one core): Q4_0 +10-15% in L2,
// +22-33% streaming, Q5_0 +28-30% / +19-47%; the same scheme for Q8_0, Q4_1, Q5_1 and IQ4_NL was
// 0.84-1.07x (with 512-bit uops only two vector ports remain, and the per-block scale
// copies cost as much as the dot), so those keep the 256-bit kernels.

template <typename Block>
constexpr int kQ32Offset = std::is_same_v<Block, BlockQ5_0> ? 16 : 8;

// Blocks b0, b1 as [64] unsigned bytes q (b0's 32 weights, then b1's).
template <Isa I, typename Block>
inline __m512i q32_pair_u(const Block& b0, const Block& b1) {
    // qs[j]: element j (low nibble) and j + 16 (high): each block's 16 bytes go to two
    // 128-bit lanes, shifted by 0 and 4.
    const __m512i raw = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0.qs)))),
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b1.qs))), 1);
    const __m512i shifts =
        _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0);
    __m512i u = _mm512_and_si512(_mm512_srlv_epi16(raw, shifts), _mm512_set1_epi8(0x0F));
    if constexpr (std::is_same_v<Block, BlockQ5_0>) {
        // qh: bit j = fifth bit of element j, i.e. of byte j of the block's 32.
        const uint64_t bits = uint64_t{load_u32(b0.qh)} | (uint64_t{load_u32(b1.qh)} << 32);
        u = _mm512_mask_add_epi8(u, _cvtu64_mask64(bits), u, _mm512_set1_epi8(16));
    }
    return u;
}

// The f16 scales of up to 16 consecutive blocks (a Q4_0/Q5_0 row's or a Q8_0 activation row's)
// as floats, the rest 0.
template <typename Block>
inline __m512 q32_scales(const Block* b, int64_t count) {
    alignas(32) uint16_t d[16] = {};
    for (int64_t k = 0; k < count; ++k) {
        d[k] = b[k].d;
        asm volatile("" ::: "memory");  // keeps GCC from turning this strided copy into gathers
    }
    return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d)));
}

// The same against T activation rows (each pair of blocks unpacked once; each row's factors 16
// blocks at a time); T = 1 is the one-row kernel, so the several-rows kernel gives its bits.
template <Isa I, typename Block, int T>
void dot_q4_5_0_rows_zmm_chunk(const Block* wb, const BlockQ8_0* const* a, int64_t nb, float* out) {
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(kQ32Offset<Block>));
    alignas(64) float f[T][16];
    __m512 facc[T];
    for (int t = 0; t < T; ++t) facc[t] = _mm512_setzero_ps();
    for (int64_t i0 = 0; i0 + 1 < nb; i0 += 16) {
        const int64_t count = std::min<int64_t>(16, nb - i0) & ~int64_t{1};  // whole pairs
        const __m512 wd = q32_scales(wb + i0, count);  // once for every row: f[t] = d * ad
        for (int t = 0; t < T; ++t) _mm512_store_ps(f[t], _mm512_mul_ps(wd, q32_scales(a[t] + i0, count)));
        for (int64_t k = 0; k < count; k += 2) {
            const int64_t i = i0 + k;
            prefetch_ahead(wb + i);
            const __m512i u = q32_pair_u<I>(wb[i], wb[i + 1]);
            for (int t = 0; t < T; ++t) {
                const __m512i qa = _mm512_inserti64x4(_mm512_castsi256_si512(load32(a[t][i].qs)), load32(a[t][i + 1].qs), 1);
                const __m512i dot = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, qa),
                                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, qa));
                // f[t][k] for block i's int32 lanes 0..7, f[t][k + 1] for block i + 1's lanes 8..15.
                const __m512 factor = _mm512_mask_broadcastss_ps(_mm512_set1_ps(f[t][k]), 0xFF00, _mm_load_ss(f[t] + k + 1));
                facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), factor, facc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        float sum = _mm512_reduce_add_ps(facc[t]);
        if (nb % 2) sum += dot_q32_row<I, Block>(wb + nb - 1, a[t] + nb - 1, kQ32);  // a last, unpaired block
        out[t] = sum;
    }
}
template <Isa I, typename Block>
float dot_q4_5_0_row_zmm(const void* w, const void* a, int64_t n) {  // w: [n/32] Q4_0 or Q5_0, a: [n/32] Q8_0
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    float out;
    dot_q4_5_0_rows_zmm_chunk<I, Block, 1>(static_cast<const Block*>(w), &ab, n / kQ32, &out);
    return out;
}
template <Isa I, typename Block>
void dot_q4_5_0_rows_zmm(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* const* ab = reinterpret_cast<const BlockQ8_0* const*>(a);
    for_row_chunks(n_act, [&](auto t, int j) { dot_q4_5_0_rows_zmm_chunk<I, Block, decltype(t)::value>(wb, ab + j, n / kQ32, out + j); });
}

// ---- F32 / F16 / BF16 weights . F32 activations ----

enum class FloatWeights { kF32, kF16, kBf16 };

template <FloatWeights kW>
inline __m256 load8_float(const void* w, int64_t i) {  // weights i .. i+7 as f32
    if constexpr (kW == FloatWeights::kF32) return _mm256_loadu_ps(static_cast<const float*>(w) + i);
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    if constexpr (kW == FloatWeights::kBf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    else return _mm256_cvtph_ps(h);
}

template <Isa I, FloatWeights kW>
float dot_float_row(const void* w, const void* a, int64_t n) {  // w: [n] f32, f16 or bf16, a: [n] f32
    constexpr int64_t kElem = kW == FloatWeights::kF32 ? 4 : 2;  // weight bytes
    const auto* x = static_cast<const float*>(a);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch(static_cast<const char*>(w) + i * kElem + kPrefetchBytes, _MM_HINT_T0);
        for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(load8_float<kW>(w, i + 8 * k), _mm256_loadu_ps(x + i + 8 * k), acc[k]);
    }
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) {
        float wv;
        if constexpr (kW == FloatWeights::kF32) wv = static_cast<const float*>(w)[i];
        else if constexpr (kW == FloatWeights::kBf16) wv = bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
        else wv = fp16_to_f32(static_cast<const uint16_t*>(w)[i]);
        sum += wv * x[i];
    }
    return sum;
}

// Float weights against n_act <= kRowsChunk f32 activation rows (AVX-512): each 32 weights are
// loaded (and converted) once for all rows. A row's two zmm accumulators are dot_float_row's
// four ymm ones side by side (lanes 0-7 of the first: weights 32j .. 32j + 7, as its acc[0];
// 8-15 as acc[1]; the second as acc[2], acc[3]), with the same fused multiply-adds and the same
// final additions and tail, so every result is bit-identical to dot_float_row's.
template <FloatWeights kW>
inline __m512 load16_float(const void* w, int64_t i) {  // weights i .. i+15 as f32
    if constexpr (kW == FloatWeights::kF32) return _mm512_loadu_ps(static_cast<const float*>(w) + i);
    else return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
}

// dot_float_row's result from its four accumulators held as two zmm (acc01, acc23), the
// weights' tail from i on added one by one as it does.
template <FloatWeights kW>
inline float float_row_sum(__m512 acc01, __m512 acc23, const void* w, const float* x, int64_t i, int64_t n) {
    const auto halves = [](__m512 v) {  // lanes 0-7 + lanes 8-15
        return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    };
    float sum = hsum(_mm256_add_ps(halves(acc01), halves(acc23)));
    for (int64_t j = i; j < n; ++j) {
        float wv;
        if constexpr (kW == FloatWeights::kF32) wv = static_cast<const float*>(w)[j];
        else wv = fp16_to_f32(static_cast<const uint16_t*>(w)[j]);
        sum += wv * x[j];
    }
    return sum;
}

// kR weight rows (1 or 2) against T activation rows, the steps of 32 weights from i0 to i1 added
// to acc: the 32 weights of a step are loaded once for the T rows, and the T activation pieces
// once for the kR weight rows.
template <FloatWeights kW, int kR, int T>
inline void float_steps(const void* const* w, const float* const* a, int64_t i0, int64_t i1, __m512 (&acc)[kR][T][2]) {
    static_assert(kW != FloatWeights::kBf16);  // BF16: no rows kernel (its products take the bf16 path where there is one)
    constexpr int64_t kElem = kW == FloatWeights::kF32 ? 4 : 2;
    for (int64_t i = i0; i < i1; i += 32) {
        __m512 wv[kR][2];
        for (int r = 0; r < kR; ++r) {
            _mm_prefetch(static_cast<const char*>(w[r]) + i * kElem + kPrefetchBytes, _MM_HINT_T0);
            wv[r][0] = load16_float<kW>(w[r], i);
            wv[r][1] = load16_float<kW>(w[r], i + 16);
        }
        for (int t = 0; t < T; ++t) {
            const __m512 x0 = _mm512_loadu_ps(a[t] + i), x1 = _mm512_loadu_ps(a[t] + i + 16);
            for (int r = 0; r < kR; ++r) {
                acc[r][t][0] = _mm512_fmadd_ps(wv[r][0], x0, acc[r][t][0]);
                acc[r][t][1] = _mm512_fmadd_ps(wv[r][1], x1, acc[r][t][1]);
            }
        }
    }
}

// One weight row against T activation rows, whole.
template <FloatWeights kW, int T>
void dot_float_rows_chunk(const void* w, const float* const* a, int64_t n, float* out) {
    __m512 acc[1][T][2];
    for (int t = 0; t < T; ++t) acc[0][t][0] = acc[0][t][1] = _mm512_setzero_ps();
    const void* w1[1] = {w};
    float_steps<kW, 1, T>(w1, a, 0, n / 32 * 32, acc);
    for (int t = 0; t < T; ++t) out[t] = float_row_sum<kW>(acc[0][t][0], acc[0][t][1], w, a[t], n / 32 * 32, n);
}

template <Isa I, FloatWeights kW>
void dot_float_rows(const void* w, const void* const* a, int n_act, int64_t n, float* out) {
    const auto* const* x = reinterpret_cast<const float* const*>(a);
    for_row_chunks(n_act, [&](auto t, int j) { dot_float_rows_chunk<kW, decltype(t)::value>(w, x + j, n, out + j); });
}

// A block of weight rows against a block of activation rows (VecDotBlockFn), a slice of
// kFloatSlice weights at a time: a slice of the 16 rows and of the 16 activations (16 KiB each
// as f32) stays in L1 while every pair of them is stepped, where a whole row (28 KiB at R1's
// width) would stream four activations from L2 for every two weight rows. Each pair's two
// accumulators wait in `state` between slices; their steps and final sum are dot_float_row's.
constexpr int64_t kFloatSlice = 256;

template <FloatWeights kW, int kR, int T>
void float_slice(const void* const* w, const float* const* a, int64_t i0, int64_t i1, float* state, int r0, int t0) {
    __m512 acc[kR][T][2];
    const auto at = [&](int r, int t) { return state + ((r0 + r) * kVecDotBlockActs + t0 + t) * 32; };
    for (int r = 0; r < kR; ++r)
        for (int t = 0; t < T; ++t) acc[r][t][0] = _mm512_load_ps(at(r, t)), acc[r][t][1] = _mm512_load_ps(at(r, t) + 16);
    float_steps<kW, kR, T>(w, a, i0, i1, acc);
    for (int r = 0; r < kR; ++r)
        for (int t = 0; t < T; ++t) _mm512_store_ps(at(r, t), acc[r][t][0]), _mm512_store_ps(at(r, t) + 16, acc[r][t][1]);
}

template <FloatWeights kW, int kR>
void float_slice_tokens(const void* const* w, const float* const* a, int n_act, int64_t i0, int64_t i1, float* state, int r0) {
    int t = 0;
    for (; t + 4 <= n_act; t += 4) float_slice<kW, kR, 4>(w, a + t, i0, i1, state, r0, t);
    switch (n_act - t) {
        case 1: float_slice<kW, kR, 1>(w, a + t, i0, i1, state, r0, t); break;
        case 2: float_slice<kW, kR, 2>(w, a + t, i0, i1, state, r0, t); break;
        case 3: float_slice<kW, kR, 3>(w, a + t, i0, i1, state, r0, t); break;
        default: break;
    }
}

template <Isa I, FloatWeights kW>
void dot_float_block(const void* w, uint64_t row_bytes, int n_rows, const void* const* a, int n_act, int64_t n, float* y,
                     int64_t ldy) {
    const auto* const* x = reinterpret_cast<const float* const*>(a);
    const auto row = [&](int r) { return static_cast<const uint8_t*>(w) + static_cast<uint64_t>(r) * row_bytes; };
    alignas(64) float state[kVecDotBlockRows * kVecDotBlockActs * 32];
    std::fill_n(state, kVecDotBlockRows * kVecDotBlockActs * 32, 0.0f);
    // NOTES: the slice's activations are copied side by side: rows of 7168 floats are 7 x 4 KiB
    // apart, so their slices fall in the same L1 sets, 16 of them for 8 or 12 ways.
    alignas(64) float xs[kVecDotBlockActs][kFloatSlice];
    const float* xp[kVecDotBlockActs];
    for (int t = 0; t < n_act; ++t) xp[t] = xs[t];
    const int64_t n32 = n / 32 * 32;
    for (int64_t i0 = 0; i0 < n32; i0 += kFloatSlice) {
        const int64_t len = std::min(n32 - i0, kFloatSlice);
        for (int t = 0; t < n_act; ++t)
            for (int64_t i = 0; i < len; i += 16) {
                _mm_prefetch(reinterpret_cast<const char*>(x[t] + i0 + kFloatSlice + i), _MM_HINT_T0);
                _mm512_store_ps(xs[t] + i, _mm512_loadu_ps(x[t] + i0 + i));
            }
        const auto slice = [&](int r) { return row(r) + i0 * (kW == FloatWeights::kF32 ? 4 : 2); };
        int r = 0;
        for (; r + 2 <= n_rows; r += 2) {
            const void* wr[2] = {slice(r), slice(r + 1)};
            float_slice_tokens<kW, 2>(wr, xp, n_act, 0, len, state, r);
        }
        if (r < n_rows) {
            const void* wr[1] = {slice(r)};
            float_slice_tokens<kW, 1>(wr, xp, n_act, 0, len, state, r);
        }
    }
    for (int r = 0; r < n_rows; ++r)
        for (int t = 0; t < n_act; ++t) {
            const float* st = state + (r * kVecDotBlockActs + t) * 32;
            y[t * ldy + r] = float_row_sum<kW>(_mm512_load_ps(st), _mm512_load_ps(st + 16), row(r), x[t], n32, n);
        }
}

template <Isa I, typename Block>
float dot_k_row(const void* w, const void* a, int64_t n) {  // w: [n/256] Block, a: [n/256] Q8_K
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8K*>(a);
    __m256 facc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) {
        prefetch_ahead(wb + i);
        block_dot<I>(wb[i], ab[i], facc);
    }
    return hsum(facc);
}

// The several-rows kernels (VecDotRowsFn); nullptr where a type has none on this ISA.
template <Isa I>
VecDotRowsFn simd_rows_kernel(GgmlType type) {
    if constexpr (I == Isa::Avx512Vnni) {
        switch (type) {
            case GgmlType::IQ1_S_U2: return dot_iq1su2_rows<I>;
            case GgmlType::F32: return dot_float_rows<I, FloatWeights::kF32>;
            case GgmlType::F16: return dot_float_rows<I, FloatWeights::kF16>;
            case GgmlType::Q2_K: return dot_k_rows<I, BlockQ2K>;
            case GgmlType::Q2_K_U16: return dot_q2ku16_rows<I>;
            case GgmlType::Q3_K_U16: return dot_q3ku16_rows<I>;
            case GgmlType::IQ2_XXS_U3: return dot_iq2xxsu3_rows<I>;
            case GgmlType::IQ1_M_U2: return dot_iq1mu2_rows<I>;
            case GgmlType::IQ3_XXS_U4: return dot_iq3xxsu4_rows<I>;
            case GgmlType::Q3_K: return dot_k_rows<I, BlockQ3K>;
            case GgmlType::Q4_K: return dot_k_rows<I, BlockQ4K>;
            case GgmlType::Q5_K: return dot_k_rows<I, BlockQ5K>;
            case GgmlType::Q6_K: return dot_k_rows<I, BlockQ6K>;
            case GgmlType::Q8_0: return dot_q32_rows<I, BlockQ8_0>;
            case GgmlType::IQ4_NL: return dot_q32_rows<I, BlockIq4Nl>;
            case GgmlType::Q4_1: return dot_q32_rows<I, BlockQ4_1>;
            case GgmlType::Q5_1: return dot_q32_rows<I, BlockQ5_1>;
            case GgmlType::Q4_0: return inline_block_factors() ? dot_q32_rows<I, BlockQ4_0> : dot_q4_5_0_rows_zmm<I, BlockQ4_0>;
            case GgmlType::Q5_0: return inline_block_factors() ? dot_q32_rows<I, BlockQ5_0> : dot_q4_5_0_rows_zmm<I, BlockQ5_0>;
            default: break;
        }
    } else {
        switch (type) {
            case GgmlType::Q2_K: return dot_rows_avx2<BlockQ2K, BlockQ8K>;
            case GgmlType::Q3_K: return dot_rows_avx2<BlockQ3K, BlockQ8K>;
            case GgmlType::Q4_K: return dot_rows_avx2<BlockQ4K, BlockQ8K>;
            case GgmlType::Q5_K: return dot_rows_avx2<BlockQ5K, BlockQ8K>;
            case GgmlType::Q6_K: return dot_rows_avx2<BlockQ6K, BlockQ8K>;
            case GgmlType::Q2_K_U16: return dot_rows_avx2<BlockQ2KU16, BlockQ8KU16>;
            case GgmlType::Q3_K_U16: return dot_rows_avx2<BlockQ3KU16, BlockQ8KU16>;
            case GgmlType::IQ1_M_U2: return dot_rows_avx2<BlockIq1MU2, BlockQ8KU16>;
            case GgmlType::IQ1_S_U2: return dot_rows_avx2<BlockIq1SU2, BlockQ8KU2>;
            case GgmlType::IQ2_XXS_U3: return dot_rows_avx2<BlockIq2XxsU3, BlockQ8KU2>;
            case GgmlType::Q8_0: return dot_q32_rows<I, BlockQ8_0>;
            case GgmlType::Q4_0: return dot_q32_rows<I, BlockQ4_0>;
            case GgmlType::Q5_0: return dot_q32_rows<I, BlockQ5_0>;
            case GgmlType::IQ4_NL: return dot_q32_rows<I, BlockIq4Nl>;
            case GgmlType::Q4_1: return dot_q32_rows<I, BlockQ4_1>;
            case GgmlType::Q5_1: return dot_q32_rows<I, BlockQ5_1>;
            default: break;
        }
    }
    return nullptr;
}

// The block kernels (VecDotBlockFn); nullptr where a type has none on this ISA.
template <Isa I>
VecDotBlockFn simd_block_kernel(GgmlType type) {
    if constexpr (I == Isa::Avx512Vnni) {
        if (type == GgmlType::F32) return dot_float_block<I, FloatWeights::kF32>;
        if (type == GgmlType::F16) return dot_float_block<I, FloatWeights::kF16>;
    }
    return nullptr;
}

template <Isa I>
VecDotFn simd_kernel(GgmlType type) {
    using T = GgmlType;
    if constexpr (I == Isa::Avx512Vnni) {
        switch (type) {
            // Q4_0, Q5_0: two blocks per zmm with the factors 16 at a time (q32_scales' scalar
            // copies) on Intel, where it beat the 256-bit kernel 1.3-1.6x (docs/performance.md);
            // on AMD, as the grid formats' factors, those copies cost more than they save: one Zen 4
            // thread, bench_quant vec_dot/Q4_0 8.1 -> 12.0 GB/s and Q5_0 9.0 -> 11.2 with the 256-bit
            // kernel, which also has a several-rows form.
            case T::Q4_0: return inline_block_factors() ? dot_q32_row<I, BlockQ4_0> : dot_q4_5_0_row_zmm<I, BlockQ4_0>;
            case T::Q5_0: return inline_block_factors() ? dot_q32_row<I, BlockQ5_0> : dot_q4_5_0_row_zmm<I, BlockQ5_0>;
            case T::Q2_K_U16: return inline_block_factors() ? dot_q2ku16_row<I, true> : dot_q2ku16_row<I, false>;
            case T::Q3_K_U16: return inline_block_factors() ? dot_q3ku16_row<I, true> : dot_q3ku16_row<I, false>;
            case T::IQ1_S_U2: return inline_block_factors() ? dot_iq1su2_row<I, true> : dot_iq1su2_row<I, false>;
            case T::IQ1_M_U2: return inline_block_factors() ? dot_iq1mu2_row<I, true> : dot_iq1mu2_row<I, false>;
            case T::IQ2_XXS_U3: return inline_block_factors() ? dot_iq2xxsu3_row<I, true> : dot_iq2xxsu3_row<I, false>;
            default: break;
        }
    } else {
        // The group-major layouts on AVX2: the several-rows kernel's steps for one row.
        switch (type) {
            case T::Q2_K_U16: return dot_row_avx2<BlockQ2KU16, BlockQ8KU16>;
            case T::Q3_K_U16: return dot_row_avx2<BlockQ3KU16, BlockQ8KU16>;
            case T::IQ1_S_U2: return dot_row_avx2<BlockIq1SU2, BlockQ8KU2>;
            case T::IQ1_M_U2: return dot_row_avx2<BlockIq1MU2, BlockQ8KU16>;
            case T::IQ2_XXS_U3: return dot_row_avx2<BlockIq2XxsU3, BlockQ8KU2>;
            default: break;
        }
    }
    switch (type) {
        case T::Q8_0: return dot_q32_row<I, BlockQ8_0>;
        case T::Q4_0: return dot_q32_row<I, BlockQ4_0>;
        case T::Q5_0: return dot_q32_row<I, BlockQ5_0>;
        case T::Q2_K: return dot_k_row<I, BlockQ2K>;
        case T::Q3_K: return dot_k_row<I, BlockQ3K>;
        case T::Q4_K: return dot_k_row<I, BlockQ4K>;
        case T::Q5_K: return dot_k_row<I, BlockQ5K>;
        case T::Q6_K: return dot_k_row<I, BlockQ6K>;
        case T::IQ2_XXS: return grid_row_kernel<I, BlockIq2Xxs>();
        case T::IQ3_XXS: return grid_row_kernel<I, BlockIq3Xxs>();
        case T::IQ1_S: return grid_row_kernel<I, BlockIq1S>();
        case T::IQ1_M: return grid_row_kernel<I, BlockIq1M>();
        case T::IQ3_XXS_U4: return grid_row_kernel<I, BlockIq3XxsU4>();
        case T::IQ2_XS: return grid_row_kernel<I, BlockIq2Xs>();
        case T::IQ2_S: return grid_row_kernel<I, BlockIq2S>();
        case T::IQ3_S: return grid_row_kernel<I, BlockIq3S>();
        case T::IQ4_XS: return dot_k_row<I, BlockIq4Xs>;
        case T::IQ4_NL: return dot_q32_row<I, BlockIq4Nl>;
        case T::Q4_1: return dot_q32_row<I, BlockQ4_1>;
        case T::Q5_1: return dot_q32_row<I, BlockQ5_1>;
        case T::F32: return dot_float_row<I, FloatWeights::kF32>;
        case T::F16: return dot_float_row<I, FloatWeights::kF16>;
        case T::BF16: return dot_float_row<I, FloatWeights::kBf16>;
        default: return nullptr;
    }
}

}  // namespace
}  // namespace tandem::quant

#undef TANDEM_BLOCK_STEP
#undef TANDEM_BLOCK_LAMBDA
